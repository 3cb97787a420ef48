//! Request heads: parsed with `httparse` into a [`Request`] that borrows the caller's buffer.
//!
//! Nothing is allocated: `httparse` fills an uninitialised header array on the stack and the
//! fields a static server needs are picked out of it. Limits are checked while a head is still
//! incomplete, so a client can never make the caller buffer more than [`Limits::max_head`] bytes.

use crate::error::{Error, ErrorKind};
use std::mem::MaybeUninit;

/// Most header fields any request may have, whatever [`Limits::max_headers`] says.
pub const MAX_HEADERS: usize = 100;

/// Bounds on what a client may send.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line and header fields), in bytes: beyond it, 431 (or 414
    /// when the request line alone is too long).
    pub max_head: usize,
    /// Longest request target, in bytes: beyond it, 414.
    pub max_target: usize,
    /// Most header fields (at most [`MAX_HEADERS`]): beyond it, 431.
    pub max_headers: usize,
    /// Longest request body that is read and discarded (GET and HEAD carry none normally):
    /// beyond it, 413.
    pub max_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_head: 8192, max_target: 4096, max_headers: 64, max_body: 65536 }
    }
}

/// The methods a static server answers.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// HEAD: the GET's headers, no body.
    Head,
}

impl Method {
    /// Whether this is HEAD.
    pub const fn is_head(self) -> bool {
        matches!(self, Method::Head)
    }
}

/// HTTP versions this crate speaks.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: close after each response unless `Connection: keep-alive`.
    Http10,
    /// HTTP/1.1: persistent unless `Connection: close`.
    Http11,
}

/// One parsed request head; every slice borrows the parsed buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'b> {
    /// GET or HEAD.
    pub method: Method,
    /// The version of the request line.
    pub version: Version,
    /// The raw request target, as sent.
    pub target: &'b [u8],
    /// Whether the connection may be kept open after this request (both versions' rules).
    pub keep_alive: bool,
    /// The `Host` header.
    pub host: Option<&'b [u8]>,
    /// `If-None-Match`.
    pub if_none_match: Option<&'b [u8]>,
    /// `If-Modified-Since`.
    pub if_modified_since: Option<&'b [u8]>,
    /// `Range` (kept for byte-range support).
    pub range: Option<&'b [u8]>,
    /// `If-Range` (kept for byte-range support).
    pub if_range: Option<&'b [u8]>,
    /// `Accept-Encoding` (kept for precompressed files).
    pub accept_encoding: Option<&'b [u8]>,
    /// Length of the head in bytes (where the body, or the next pipelined request, starts).
    pub head_len: usize,
    /// `Content-Length` of the body that follows (0 when absent).
    pub body_len: u64,
}

impl Request<'_> {
    /// The path part of the target (before `?`), still percent-encoded.
    pub fn path(&self) -> &[u8] {
        let end = self.target.iter().position(|&b| b == b'?' || b == b'#');
        &self.target[..end.unwrap_or(self.target.len())]
    }

    /// The query (after `?`), if any.
    pub fn query(&self) -> Option<&[u8]> {
        let q = self.target.iter().position(|&b| b == b'?')?;
        Some(&self.target[q + 1..])
    }
}

/// The outcome of [`parse`] on a buffer that holds no error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed<'b> {
    /// The head is not complete yet; read more.
    Partial,
    /// A complete head.
    Complete(Request<'b>),
}

const KNOWN_METHODS: &[&str] = &["POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

/// Parses the request head at the start of `buf`.
///
/// Leading empty lines are skipped (RFC 9112 §2.2). Errors are final: the caller answers with
/// [`Error::status`] and closes the connection.
pub fn parse<'b>(buf: &'b [u8], limits: &Limits) -> Result<Parsed<'b>, Error> {
    // A verdict must not depend on how the bytes were cut into reads (found by fuzzing): look
    // no further than the first point where a limit refuses, whatever follows it.
    let buf = &buf[..limit_point(buf, limits).min(buf.len())];
    let mut headers: [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] =
        [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let n = limits.max_headers.clamp(1, MAX_HEADERS);
    let mut req = httparse::Request::new(&mut []);
    let status = req.parse_with_uninit_headers(buf, &mut headers[..n]);
    let head_len = match status {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return partial(buf, limits),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Error::new(
                ErrorKind::HeadersTooLarge,
                "the request has too many header fields",
            ))
        }
        Err(httparse::Error::Version) => {
            return match version_error(buf) {
                Some(e) => Err(e),
                None => partial(buf, limits),
            }
        }
        Err(_) => return Err(Error::new(ErrorKind::BadRequest, "the request head is malformed")),
    };
    if head_len > limits.max_head {
        return Err(Error::new(
            ErrorKind::HeadersTooLarge,
            "the request head is larger than the limit",
        ));
    }
    let target = req.path.unwrap_or("").as_bytes();
    if target.len() > limits.max_target {
        return Err(Error::new(
            ErrorKind::UriTooLong,
            "the request target is longer than the limit",
        ));
    }
    let method = match req.method.unwrap_or("") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        m if KNOWN_METHODS.contains(&m) => {
            return Err(Error::new(ErrorKind::MethodNotAllowed, "only GET and HEAD are allowed"))
        }
        _ => return Err(Error::new(ErrorKind::NotImplemented, "the method is not implemented")),
    };
    let version = if req.version == Some(0) { Version::Http10 } else { Version::Http11 };
    let mut out = Request {
        method,
        version,
        target,
        keep_alive: version == Version::Http11,
        host: None,
        if_none_match: None,
        if_modified_since: None,
        range: None,
        if_range: None,
        accept_encoding: None,
        head_len,
        body_len: 0,
    };
    let (mut hosts, mut close, mut ka, mut content_length) = (0, false, false, None::<u64>);
    for h in req.headers.iter() {
        let v = trim(h.value);
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            out.host = Some(v);
        } else if name.eq_ignore_ascii_case("connection") {
            for tok in v.split(|&b| b == b',') {
                let tok = trim(tok);
                close |= tok.eq_ignore_ascii_case(b"close");
                ka |= tok.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = parse_u64(v).ok_or(Error::new(
                ErrorKind::BadRequest,
                "Content-Length is not a decimal number",
            ))?;
            if content_length.is_some_and(|c| c != n) {
                return Err(Error::new(ErrorKind::BadRequest, "conflicting Content-Length fields"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Error::new(
                ErrorKind::NotImplemented,
                "request bodies with a Transfer-Encoding are not implemented",
            ));
        } else if name.eq_ignore_ascii_case("if-none-match") {
            out.if_none_match = Some(v);
        } else if name.eq_ignore_ascii_case("if-modified-since") {
            out.if_modified_since = Some(v);
        } else if name.eq_ignore_ascii_case("range") {
            out.range = Some(v);
        } else if name.eq_ignore_ascii_case("if-range") {
            out.if_range = Some(v);
        } else if name.eq_ignore_ascii_case("accept-encoding") {
            out.accept_encoding = Some(v);
        }
    }
    if version == Version::Http11 && hosts != 1 {
        return Err(Error::new(
            ErrorKind::MissingHost,
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    if hosts > 1 {
        return Err(Error::new(ErrorKind::BadRequest, "more than one Host header"));
    }
    out.keep_alive = match version {
        Version::Http11 => !close,
        Version::Http10 => ka && !close,
    };
    out.body_len = content_length.unwrap_or(0);
    if out.body_len > limits.max_body {
        return Err(Error::new(
            ErrorKind::BodyTooLarge,
            "the request body is larger than the limit",
        ));
    }
    Ok(Parsed::Complete(out))
}

/// An incomplete head: fine unless it already breaks a limit.
fn partial<'b>(buf: &[u8], limits: &Limits) -> Result<Parsed<'b>, Error> {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    let line = &buf[start..];
    let line_end = line.iter().position(|&b| b == b'\n');
    // "METHOD SP target SP HTTP/1.1": allow the method and version around the longest target.
    let line_limit = limits.max_target + 32;
    match line_end {
        None if line.len() > line_limit => {
            Err(Error::new(ErrorKind::UriTooLong, "the request target is longer than the limit"))
        }
        Some(e) if e > line_limit => {
            Err(Error::new(ErrorKind::UriTooLong, "the request target is longer than the limit"))
        }
        _ if buf.len() >= limits.max_head => {
            if line_end.is_none() {
                Err(Error::new(ErrorKind::UriTooLong, "the request line is longer than the limit"))
            } else {
                Err(Error::new(
                    ErrorKind::HeadersTooLarge,
                    "the request head is larger than the limit",
                ))
            }
        }
        _ => Ok(Parsed::Partial),
    }
}

/// The length of the shortest prefix of `buf` that [`partial`] refuses whatever follows: the
/// request line passing its limit unterminated, or the head limit.
fn limit_point(buf: &[u8], limits: &Limits) -> usize {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    let line_limit = limits.max_target.saturating_add(32);
    let line = &buf[start..buf.len().min(start.saturating_add(line_limit).saturating_add(1))];
    if line.len() > line_limit && !line.contains(&b'\n') {
        limits.max_head.min(start + line_limit + 1)
    } else {
        limits.max_head
    }
}

/// `httparse` refuses every version but 1.0 and 1.1: a well-formed `HTTP/x.y` is 505, anything
/// else 400. `None` while the line is unterminated and its last word could still become a
/// well-formed version (the verdict waits for it, so that every split of the bytes gets the same).
fn version_error(buf: &[u8]) -> Option<Error> {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    let line = &buf[start..];
    let end = line.iter().position(|&b| b == b'\r' || b == b'\n');
    let line = &line[..end.unwrap_or(line.len())];
    // "METHOD SP target SP version": the third word, and nothing after it.
    let mut words = line.split(|&b| b == b' ');
    let version = words.nth(2).unwrap_or(b"");
    let fits = words.next().is_none()
        && version.len() <= 8
        && version.iter().enumerate().all(|(i, &b)| match i {
            0..=4 => b == b"HTTP/"[i],
            5 | 7 => b.is_ascii_digit(),
            _ => b == b'.',
        });
    if end.is_none() && fits {
        return None;
    }
    Some(if fits && version.len() == 8 {
        Error::new(ErrorKind::VersionNotSupported, "only HTTP/1.0 and HTTP/1.1 are supported")
    } else {
        Error::new(ErrorKind::BadRequest, "the request line is malformed")
    })
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let e = v.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(s, |e| e + 1);
    &v[s..e]
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(buf: &[u8]) -> Request<'_> {
        match parse(buf, &Limits::default()) {
            Ok(Parsed::Complete(r)) => r,
            other => panic!("{:?} for {:?}", other, String::from_utf8_lossy(buf)),
        }
    }

    fn err(buf: &[u8]) -> ErrorKind {
        match parse(buf, &Limits::default()) {
            Err(e) => e.kind(),
            other => panic!("{:?} for {:?}", other, String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn get_11_is_persistent_and_10_is_not() {
        let r = ok(b"GET /a?b=1 HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((r.method, r.version, r.keep_alive), (Method::Get, Version::Http11, true));
        assert_eq!((r.path(), r.query()), (&b"/a"[..], Some(&b"b=1"[..])));
        assert!(!ok(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(
            !ok(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\n").keep_alive
        );
        assert!(ok(b"HEAD / HTTP/1.1\r\nhost: h\r\n\r\n").method.is_head());
    }

    #[test]
    fn conditional_headers_are_kept() {
        let r = ok(b"GET / HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"x\"\r\nIf-Modified-Since:  Sun, 06 Nov 1994 08:49:37 GMT \r\nRange: bytes=0-1\r\n\r\n");
        assert_eq!(r.if_none_match, Some(&b"\"x\""[..]));
        assert_eq!(r.if_modified_since, Some(&b"Sun, 06 Nov 1994 08:49:37 GMT"[..]));
        assert_eq!(r.range, Some(&b"bytes=0-1"[..]));
    }

    #[test]
    fn partial_heads_wait_for_more() {
        for cut in [0, 1, 5, 16, 20, 26] {
            let full = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
            assert_eq!(parse(&full[..cut], &Limits::default()), Ok(Parsed::Partial), "{cut}");
        }
    }

    #[test]
    fn statuses_for_bad_requests() {
        assert_eq!(err(b"GET / HTTP/2.0\r\n\r\n"), ErrorKind::VersionNotSupported);
        assert_eq!(err(b"GET / HTTP/1.2\r\nHost: h\r\n\r\n"), ErrorKind::VersionNotSupported);
        assert_eq!(err(b"GET / FOO/1.1\r\n\r\n"), ErrorKind::BadRequest);
        assert_eq!(err(b"GET / HTTP/1.1\r\n\r\n"), ErrorKind::MissingHost);
        assert_eq!(err(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), ErrorKind::MissingHost);
        assert_eq!(err(b"POST / HTTP/1.1\r\nHost: h\r\n\r\n"), ErrorKind::MethodNotAllowed);
        assert_eq!(err(b"BREW / HTTP/1.1\r\nHost: h\r\n\r\n"), ErrorKind::NotImplemented);
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ErrorKind::NotImplemented
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n"),
            ErrorKind::BadRequest
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            ErrorKind::BadRequest
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999\r\n\r\n"),
            ErrorKind::BodyTooLarge
        );
        assert_eq!(err(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"), ErrorKind::BadRequest);
        assert_eq!(err(b"\x00GET / HTTP/1.1\r\n\r\n"), ErrorKind::BadRequest);
    }

    #[test]
    fn limits_are_enforced_before_the_head_completes() {
        let l = Limits::default();
        let long = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(5000));
        assert_eq!(parse(long.as_bytes(), &l).unwrap_err().kind(), ErrorKind::UriTooLong);
        // An unterminated long request line is refused as soon as it passes the limit.
        let unterminated = format!("GET /{}", "a".repeat(4200));
        assert_eq!(parse(unterminated.as_bytes(), &l).unwrap_err().kind(), ErrorKind::UriTooLong);
        let big = format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n", "v".repeat(9000));
        assert_eq!(parse(big.as_bytes(), &l).unwrap_err().kind(), ErrorKind::HeadersTooLarge);
        let many: String = (0..70).map(|i| format!("X-{i}: v\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n");
        assert_eq!(parse(many.as_bytes(), &l).unwrap_err().kind(), ErrorKind::HeadersTooLarge);
    }

    fn render(
        method: &str,
        target: &str,
        v11: bool,
        close: bool,
        extra: &[(String, String)],
    ) -> String {
        let mut s = format!("{method} {target} HTTP/1.{}\r\n", u8::from(v11));
        if v11 {
            s.push_str("Host: example\r\n");
        }
        if close {
            s.push_str("Connection: close\r\n");
        }
        for (k, v) in extra {
            s.push_str(&format!("X-{k}: {v}\r\n"));
        }
        s.push_str("\r\n");
        s
    }

    proptest! {
        #[test]
        fn round_trip_any_split(
            head in prop::bool::ANY,
            target in "/[a-zA-Z0-9._~%/-]{0,40}",
            v11 in prop::bool::ANY,
            close in prop::bool::ANY,
            extra in prop::collection::vec(("[a-zA-Z0-9-]{1,10}", "[ -~]{0,20}"), 0..8),
            cut in 0usize..400,
        ) {
            let text = render(if head { "HEAD" } else { "GET" }, &target, v11, close, &extra);
            let bytes = text.as_bytes();
            let cut = cut.min(bytes.len());
            if cut < bytes.len() {
                prop_assert_eq!(parse(&bytes[..cut], &Limits::default()), Ok(Parsed::Partial));
            }
            let r = match parse(bytes, &Limits::default()) {
                Ok(Parsed::Complete(r)) => r,
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            };
            prop_assert_eq!(r.method.is_head(), head);
            prop_assert_eq!(r.target, target.as_bytes());
            prop_assert_eq!(r.version == Version::Http11, v11);
            prop_assert_eq!(r.keep_alive, v11 && !close);
            prop_assert_eq!(r.head_len, bytes.len());
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_respect_limits(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let l = Limits { max_head: 256, max_target: 64, max_headers: 4, max_body: 10 };
            if let Ok(Parsed::Complete(r)) = parse(&bytes, &l) {
                prop_assert!(r.head_len <= 256 && r.target.len() <= 64 && r.body_len <= 10);
            }
            if bytes.len() > 256 {
                prop_assert_ne!(parse(&bytes, &l), Ok(Parsed::Partial));
            }
        }
    }
}
