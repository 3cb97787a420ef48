//! `cargo fuzz run response_parser`: see `ioscale_fuzz::response` for the input format and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ioscale_fuzz::response::check(data));
