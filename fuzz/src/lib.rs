//! The checks behind ioscale's libFuzzer targets, kept in a library so that the committed seed
//! corpora and every past crash can be replayed on stable Rust (`cargo test` in `fuzz/`) as well
//! as fuzzed with `cargo fuzz run <target>`.
//!
//! | target | module | what is fed | what must hold |
//! | --- | --- | --- | --- |
//! | `http_request` | [`http`] | a byte stream cut into chunks at points chosen by the input, pipelined requests | no panic; every request consistent with its bytes; bounded buffering; responses well-formed; the same outcomes whole, split and byte by byte |
//! | `path_resolver` | [`path`] | a request target | no panic; a resolved path never leaves the root, lexically or through a real symlink on a real directory |
//! | `response_parser` | [`response`] | a response stream (raw, or written by `ioscale-http` from a recipe), cut into chunks | no panic; bounded buffering; the same responses however cut; exactly the responses written |
//!
//! Every check panics with a sentence naming the input's effect, which libFuzzer reports as a
//! crash and saves under `fuzz/artifacts/<target>/`.

pub mod http;
pub mod path;
pub mod response;
