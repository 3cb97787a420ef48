//! `cargo fuzz run http_request`: see `ioscale_fuzz::http` for the input format and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ioscale_fuzz::http::check(data));
