//! ioscale-lab: not built yet; its issue fills this crate.
