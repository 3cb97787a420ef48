//! ioscale-load: not built yet; its issue fills this crate.
