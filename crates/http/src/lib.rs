//! ioscale-http: not built yet; its issue fills this crate.
