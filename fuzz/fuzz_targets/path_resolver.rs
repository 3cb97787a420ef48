//! `cargo fuzz run path_resolver`: see `ioscale_fuzz::path` for the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ioscale_fuzz::path::check(data));
