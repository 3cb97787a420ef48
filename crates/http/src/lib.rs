//! ioscale-http: sans-I/O HTTP/1.0 and HTTP/1.1 for a static-file server.
//!
//! This crate knows no sockets, files or clocks of its own: bytes go in, decisions and bytes come
//! out. The readiness engine of `ioscale serve` (one event loop over any dispatch mechanism) and a
//! completion engine (operations submitted to io_uring) drive the same code, the way thttpd's and
//! phhttpd's HTTP core was "identical but for the dispatch mechanism" in Chandra & Mosberger §3.1.1.
//!
//! | module | what | why it is here |
//! | --- | --- | --- |
//! | [`request`] | [`parse`] one request head from a buffer with `httparse`, checked against [`Limits`] | borrowed, allocation-free parsing; pipelined requests are parsed one after another from one buffer |
//! | [`conn`] | [`Connection`]: keep-alive rules of 1.0 and 1.1, request bodies skipped, draining, which timer applies | the per-connection state both engines share |
//! | [`status`] | [`Status`]: code, reason phrase, status line | one place that both [`error`] and [`response`] depend on |
//! | [`response`] | [`DateCache`], [`Entity`] (a file's validators and type), head and error writers, conditional GET | response heads are appended to a caller-owned `Vec<u8>`: no allocation once it has capacity |
//! | [`range`] | [`range::evaluate`] a `Range` header against a length: one range, none satisfiable, or the whole body | byte ranges (RFC 9110 §14) decided without I/O; several ranges get the whole 200 |
//! | [`encoding`] | [`encoding::accepts_gzip`]: `Accept-Encoding` with q-values | choosing a precompressed `.gz` beside a file |
//! | [`path`] | [`resolve`] a request target into a relative path below the root | percent-decoding and `..`, `%2e%2e`, `%2f`, NUL rejected; the result never leaves the root |
//! | [`error`] | [`Error`] with a [`ErrorKind`], each mapped to its status | a user mistake becomes one status and one sentence |
//!
//! ```
//! use ioscale_http::{Connection, Limits, Step};
//!
//! let mut conn = Connection::new(Limits::default());
//! let buf = b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.0\r\n\r\n";
//! let (used, step) = conn.step(buf);
//! let Step::Request(req) = step else { panic!() };
//! assert_eq!(req.target, b"/a.txt");
//! assert!(conn.keep_alive());
//! let (_, step) = conn.step(&buf[used..]);
//! let Step::Request(req) = step else { panic!() };
//! assert!(req.method.is_head());
//! assert!(!conn.keep_alive()); // HTTP/1.0 without "Connection: keep-alive"
//! ```

#![deny(missing_docs)]

pub mod conn;
pub mod encoding;
pub mod error;
pub mod path;
pub mod range;
pub mod request;
pub mod response;
pub mod status;

pub use conn::{Connection, Step, Timer};
pub use error::{Error, ErrorKind};
pub use path::resolve;
pub use range::Ranges;
pub use request::{parse, Limits, Method, Parsed, Request, Version};
pub use response::{DateCache, Entity, EntityOptions};
pub use status::Status;
