//! ioscale-server: not built yet; its issue fills this crate.
