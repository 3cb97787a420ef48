//! The `http_request` target: the connection state machine ([`Connection::step`]) over an
//! arbitrary byte stream, delivered whole, in the chunks the input chooses, and (for short
//! streams) one byte at a time, with pipelined requests answered the way `ioscale serve` answers
//! them.
//!
//! # Input format
//!
//! | bytes | meaning |
//! | --- | --- |
//! | `data[0]` | flags: bits 0–2 = number of cut points `k` (0–7); bit 3 = tight limits ([`TIGHT`]) instead of the defaults; bit 4 = the server starts draining (shutdown) after the first request |
//! | next `2k` | cut points, little-endian `u16`, each taken modulo `stream.len() + 1`, then sorted |
//! | the rest | the stream the client sends |
//!
//! # What must hold
//!
//! * Nothing panics, and `used` never exceeds the buffer.
//! * [`Step::NeedMore`] leaves fewer than `max_head` bytes buffered (a client cannot make the
//!   server buffer more), and the header timer runs whenever bytes are buffered; asking again
//!   with the same bytes is again `NeedMore` and consumes nothing.
//! * Every [`Step::Request`] is consistent with its bytes: its head parses alone to the same
//!   request, the head minus its last byte is incomplete (so no cut can change the outcome),
//!   every field lies inside the head and is trimmed, the limits hold, HTTP/1.1 has a `Host`,
//!   and the connection's keep-alive verdict is the request's (and false once draining).
//! * Every [`Step::Reject`] is a request-level error (4xx/5xx of the parser's kinds), consumes
//!   the whole buffer and closes; the next step is [`Step::Close`] and consumes nothing.
//! * Every response the server would write for these outcomes (file head with 200/304, 301
//!   redirect, error with body, error for HEAD, 408 on timeout) parses as HTTP/1.1 with a status
//!   from the allowed set, its reason phrase, one of each header, `Content-Length` equal to the
//!   body that follows (none on 304), no body for HEAD, and the `Connection` header the
//!   version's keep-alive rules require.
//! * The whole stream, the chosen chunks and the byte-by-byte feed give the same sequence of
//!   outcomes and the same final state.

use ioscale_http::response::{write_entity_head, write_error, write_error_for, write_redirect};
use ioscale_http::{
    parse, resolve, Connection, DateCache, Entity, ErrorKind, Limits, Method, Parsed, Request,
    Status, Step, Timer, Version,
};
use std::time::{Duration, UNIX_EPOCH};

/// Small limits, so that the fuzzer reaches every limit with short inputs.
pub const TIGHT: Limits = Limits { max_head: 512, max_target: 128, max_headers: 8, max_body: 64 };

/// Every status `ioscale serve` may answer with.
pub const ALLOWED: &[u16] =
    &[200, 301, 304, 400, 403, 404, 405, 408, 413, 414, 431, 500, 501, 503, 505];

/// The error kinds the parser itself may refuse a request with (the rest come from the path,
/// the file system or the clock).
const PARSER_KINDS: &[ErrorKind] = &[
    ErrorKind::BadRequest,
    ErrorKind::MissingHost,
    ErrorKind::MethodNotAllowed,
    ErrorKind::BodyTooLarge,
    ErrorKind::UriTooLong,
    ErrorKind::HeadersTooLarge,
    ErrorKind::NotImplemented,
    ErrorKind::VersionNotSupported,
];

/// Streams up to this long are also fed one byte at a time.
const BYTEWISE_MAX: usize = 384;

/// A decoded fuzz input.
#[derive(Debug)]
pub struct Input<'a> {
    /// The limits of the connection.
    pub limits: Limits,
    /// Start draining right after the first request.
    pub drain_after_first: bool,
    /// Sorted cut points into `stream`.
    pub cuts: Vec<usize>,
    /// What the client sends.
    pub stream: &'a [u8],
}

impl<'a> Input<'a> {
    /// Decodes `data` (see the module documentation).
    pub fn decode(data: &'a [u8]) -> Input<'a> {
        let (flags, rest) = match data.split_first() {
            Some((&f, rest)) => (f, rest),
            None => (0, data),
        };
        let k = usize::from(flags & 7);
        let (cut_bytes, stream) = rest.split_at((2 * k).min(rest.len()));
        let mut cuts: Vec<usize> = cut_bytes
            .chunks(2)
            .map(|c| {
                usize::from(u16::from_le_bytes([c[0], c.get(1).copied().unwrap_or(0)]))
                    % (stream.len() + 1)
            })
            .collect();
        cuts.sort_unstable();
        Input {
            limits: if flags & 8 != 0 { TIGHT } else { Limits::default() },
            drain_after_first: flags & 16 != 0,
            cuts,
            stream,
        }
    }

    /// The stream cut at the cut points.
    pub fn chunks(&self) -> Vec<&'a [u8]> {
        let mut out = Vec::with_capacity(self.cuts.len() + 1);
        let mut last = 0;
        for &c in self.cuts.iter().chain(std::iter::once(&self.stream.len())) {
            out.push(&self.stream[last..c]);
            last = c;
        }
        out
    }
}

/// Encodes an input (for seeds and tests): `flags` as in the module documentation, without the
/// cut count, which comes from `cuts`.
pub fn encode(flags: u8, cuts: &[u16], stream: &[u8]) -> Vec<u8> {
    assert!(cuts.len() <= 7, "at most 7 cut points");
    let mut v = vec![(flags & !7) | cuts.len() as u8];
    for c in cuts {
        v.extend_from_slice(&c.to_le_bytes());
    }
    v.extend_from_slice(stream);
    v
}

/// One outcome of the state machine, owned so that runs can be compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A request and the status it was answered with.
    Request {
        /// GET or HEAD.
        method: Method,
        /// Its version.
        version: Version,
        /// Its target.
        target: Vec<u8>,
        /// The connection's keep-alive verdict after it.
        keep_alive: bool,
        /// Every header field the parser keeps.
        fields: [Option<Vec<u8>>; 6],
        /// Length of its head.
        head_len: usize,
        /// Length of its body (skipped).
        body_len: u64,
        /// The status of the response written for it.
        status: u16,
    },
    /// A refused request.
    Reject(ErrorKind),
    /// The connection closed.
    Close,
}

/// A whole run: outcomes and the final state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// Outcomes in order.
    pub outcomes: Vec<Outcome>,
    /// Bytes still buffered at the end.
    pub buffered: usize,
    /// Whether the connection is closing.
    pub closing: bool,
    /// The keep-alive verdict at the end.
    pub keep_alive: bool,
    /// Requests parsed.
    pub requests: u64,
    /// The timer that applies at the end.
    pub timer: Timer,
    /// The error a header timeout would answer with now.
    pub timeout: Option<ErrorKind>,
}

/// The fuzz target's body.
pub fn check(data: &[u8]) {
    let input = Input::decode(data);
    let whole = drive(&[input.stream], input.limits, input.drain_after_first);
    if !input.cuts.is_empty() {
        let split = drive(&input.chunks(), input.limits, input.drain_after_first);
        assert_eq!(whole, split, "the chunks {:?} changed the outcome", input.cuts);
    }
    if input.stream.len() <= BYTEWISE_MAX {
        let bytes: Vec<&[u8]> = input.stream.chunks(1).collect();
        let bytewise = drive(&bytes, input.limits, input.drain_after_first);
        assert_eq!(whole, bytewise, "feeding one byte at a time changed the outcome");
    }
}

/// Feeds `chunks` to a new connection as a socket would deliver them, answering each request.
pub fn drive(chunks: &[&[u8]], limits: Limits, drain_after_first: bool) -> Run {
    let mut c = Connection::new(limits);
    let date = DateCache::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::with_capacity(1024);
    let mut path = Vec::new();
    let mut outcomes = Vec::new();
    let mut drained = false;
    'feed: for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let len = buf.len();
            let (used, step) = c.step(&buf);
            assert!(used <= len, "step used {used} of {len} bytes");
            match step {
                Step::NeedMore => {
                    assert!(!c.is_closing(), "NeedMore on a closing connection");
                    buf.drain(..used);
                    assert!(
                        buf.len() < limits.max_head,
                        "NeedMore with {} bytes buffered, limit {}",
                        buf.len(),
                        limits.max_head
                    );
                    if !buf.is_empty() {
                        assert_eq!(c.timer(buf.len()), Timer::Header, "bytes buffered, idle timer");
                    }
                    let again = c.step(&buf);
                    assert_eq!(again, (0, Step::NeedMore), "asking again changed the answer");
                    break;
                }
                Step::Request(r) => {
                    assert!(used >= r.head_len, "used {used} < head {}", r.head_len);
                    let rest = &buf[used - r.head_len..];
                    check_request(&r, rest, &limits);
                    let ka = c.keep_alive();
                    assert_eq!(ka, r.keep_alive && !drained, "connection and request disagree");
                    assert_eq!(c.is_closing(), !ka, "closing is not the opposite of keep-alive");
                    let status = respond(&r, ka, &date, &mut out, &mut path);
                    outcomes.push(Outcome::Request {
                        method: r.method,
                        version: r.version,
                        target: r.target.to_vec(),
                        keep_alive: ka,
                        fields: [
                            r.host,
                            r.if_none_match,
                            r.if_modified_since,
                            r.range,
                            r.if_range,
                            r.accept_encoding,
                        ]
                        .map(|f| f.map(<[u8]>::to_vec)),
                        head_len: r.head_len,
                        body_len: r.body_len,
                        status,
                    });
                    buf.drain(..used);
                    if drain_after_first && !drained {
                        drained = true;
                        c.drain(buf.len());
                    }
                }
                Step::Reject(e) => {
                    assert_eq!(used, len, "a reject must drop the whole buffer");
                    assert!(PARSER_KINDS.contains(&e.kind()), "the parser refused with {e}");
                    assert!(
                        c.is_closing() && !c.keep_alive(),
                        "a reject leaves the connection open"
                    );
                    out.clear();
                    write_error(&mut out, e.status(), &date, false, false);
                    check_response(&out, e.status(), Kind::Error, false, Version::Http11, false);
                    outcomes.push(Outcome::Reject(e.kind()));
                    buf.clear();
                    let next = c.step(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
                    assert_eq!(next, (0, Step::Close), "a request was parsed after a reject");
                    outcomes.push(Outcome::Close);
                    break 'feed;
                }
                Step::Close => {
                    assert_eq!(used, 0, "Close consumed bytes");
                    assert!(c.is_closing(), "Close on an open connection");
                    outcomes.push(Outcome::Close);
                    // Whatever else arrived (or would have) is dropped with the connection.
                    buf.clear();
                    break 'feed;
                }
            }
        }
    }
    let closing = c.is_closing();
    let keep_alive = c.keep_alive();
    let requests = c.requests();
    let timer = c.timer(buf.len());
    // A header timeout now: 408 when anything of a request is pending, silence otherwise.
    let timeout = if closing {
        None
    } else {
        let t = c.timed_out(buf.len());
        assert!(c.is_closing(), "a timeout leaves the connection open");
        if !buf.is_empty() {
            assert!(t.is_some(), "a timeout with {} bytes pending is silent", buf.len());
        }
        if let Some(e) = &t {
            assert_eq!(e.kind(), ErrorKind::Timeout);
            out.clear();
            write_error(&mut out, e.status(), &date, false, false);
            check_response(&out, e.status(), Kind::Error, false, Version::Http11, false);
        }
        t.map(|e| e.kind())
    };
    Run { outcomes, buffered: buf.len(), closing, keep_alive, requests, timer, timeout }
}

/// Whether `inner` lies inside `outer` (same allocation).
fn within(inner: &[u8], outer: &[u8]) -> bool {
    let (i, o) = (inner.as_ptr() as usize, outer.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}

fn check_request(r: &Request<'_>, rest: &[u8], limits: &Limits) {
    assert!(r.head_len > 0 && r.head_len <= rest.len(), "head of {} bytes", r.head_len);
    assert!(r.head_len <= limits.max_head, "head of {} bytes passed the limit", r.head_len);
    let head = &rest[..r.head_len];
    assert_eq!(
        parse(head, limits),
        Ok(Parsed::Complete(r.clone())),
        "the head alone parses differently"
    );
    assert_eq!(
        parse(&head[..head.len() - 1], limits),
        Ok(Parsed::Partial),
        "the head is complete (or refused) before its last byte"
    );
    assert!(!r.target.is_empty() && within(r.target, head), "target outside the head");
    assert!(r.target.len() <= limits.max_target, "target of {} bytes", r.target.len());
    assert!(r.body_len <= limits.max_body, "body of {} bytes passed the limit", r.body_len);
    for f in [r.host, r.if_none_match, r.if_modified_since, r.range, r.if_range, r.accept_encoding]
        .into_iter()
        .flatten()
    {
        assert!(within(f, head), "a field outside the head");
        assert!(
            !f.first().is_some_and(u8::is_ascii_whitespace)
                && !f.last().is_some_and(u8::is_ascii_whitespace),
            "untrimmed field {:?}",
            String::from_utf8_lossy(f)
        );
    }
    if r.version == Version::Http11 {
        assert!(r.host.is_some(), "HTTP/1.1 request without Host");
    }
    assert!(r.target.starts_with(r.path()), "path is not a prefix of the target");
    if let Some(q) = r.query() {
        assert!(within(q, r.target), "query outside the target");
    }
}

/// Which writer made a response.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// `write_error`: text body, `Connection: close` unless keep-alive.
    Error,
    /// `write_entity_head`: head only; `Content-Length` is the entity's (none for 304).
    Entity(u64),
    /// `write_redirect`: 22-byte body, `Location`.
    Redirect,
}

/// Answers `r` as `ioscale serve` does (without the file system: the path decides whether it is
/// a file or a directory), checks the response, and returns its status.
fn respond(
    r: &Request<'_>,
    ka: bool,
    date: &DateCache,
    out: &mut Vec<u8>,
    path: &mut Vec<u8>,
) -> u16 {
    let head = r.method.is_head();
    out.clear();
    match resolve(r.target, path) {
        Err(e) => {
            assert!(
                matches!(e.kind(), ErrorKind::BadPath | ErrorKind::Traversal),
                "the resolver refused with {e}"
            );
            write_error_for(out, e.status(), date, head, r.version, ka);
            check_response(out, e.status(), Kind::Error, head, r.version, ka);
            e.status().code()
        }
        Ok(res) if !res.trailing_slash && path.len() % 4 == 1 => {
            // A directory asked for without its slash: 301 to path/ (the server's encoding).
            let mut loc = Vec::with_capacity(path.len() + 2);
            loc.push(b'/');
            for &b in path.iter() {
                if b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b) {
                    loc.push(b);
                } else {
                    loc.extend_from_slice(format!("%{b:02X}").as_bytes());
                }
            }
            loc.push(b'/');
            write_redirect(out, &loc, date, r.method, r.version, ka);
            check_response(out, Status::MOVED_PERMANENTLY, Kind::Redirect, head, r.version, ka);
            let (_, location) = parse_response(out);
            assert_eq!(location.as_deref(), Some(&loc[..]), "Location changed");
            301
        }
        Ok(_) => {
            let len = r.body_len ^ (r.target.len() as u64 * 977);
            let entity = Entity::new(path, len, UNIX_EPOCH + Duration::from_secs(784111777));
            let status = entity.evaluate(r);
            assert!(
                status == Status::OK || status == Status::NOT_MODIFIED,
                "a file answered {}",
                status.code()
            );
            if r.if_none_match.is_none() && r.if_modified_since.is_none() {
                assert_eq!(status, Status::OK, "304 without a validator");
            }
            write_entity_head(out, status, &entity, date, r.version, ka);
            check_response(out, status, Kind::Entity(len), head, r.version, ka);
            status.code()
        }
    }
}

/// Parses a response head; returns its length and `Location`.
fn parse_response(out: &[u8]) -> (usize, Option<Vec<u8>>) {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(out) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("unparsable response ({other:?}): {:?}", String::from_utf8_lossy(out)),
    };
    let loc = resp.headers.iter().find(|h| h.name == "Location").map(|h| h.value.to_vec());
    (n, loc)
}

fn check_response(out: &[u8], status: Status, kind: Kind, head: bool, v: Version, ka: bool) {
    let text = || String::from_utf8_lossy(out).into_owned();
    assert!(ALLOWED.contains(&status.code()), "status {} outside the allowed set", status.code());
    assert_ne!(status.reason(), "Unknown", "status {} has no reason", status.code());
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(out) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("unparsable response ({other:?}): {:?}", text()),
    };
    assert_eq!(resp.version, Some(1), "not HTTP/1.1: {:?}", text());
    assert_eq!(resp.code, Some(status.code()), "wrong status: {:?}", text());
    assert_eq!(resp.reason, Some(status.reason()), "wrong reason: {:?}", text());
    let mut names: Vec<String> = resp.headers.iter().map(|h| h.name.to_ascii_lowercase()).collect();
    names.sort();
    let count = names.len();
    names.dedup();
    assert_eq!(names.len(), count, "a header repeated: {:?}", text());
    let get = |name: &str| {
        resp.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    };
    assert!(get("date").is_some_and(|d| d.len() == 29), "no Date: {:?}", text());
    assert_eq!(get("server"), Some(&b"ioscale"[..]), "no Server: {:?}", text());
    let body = &out[n..];
    let length = get("content-length").map(|v| {
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("bad Content-Length: {:?}", text()))
    });
    match kind {
        Kind::Entity(len) if status == Status::NOT_MODIFIED => {
            assert_eq!(length, None, "304 with a Content-Length: {:?}", text());
            let _ = len;
            assert!(body.is_empty());
        }
        Kind::Entity(len) => {
            assert_eq!(length, Some(len), "Content-Length is not the file's: {:?}", text());
            assert!(body.is_empty(), "a file head carries bytes: {:?}", text());
        }
        Kind::Error | Kind::Redirect => {
            let length = length.unwrap_or_else(|| panic!("no Content-Length: {:?}", text()));
            if head {
                assert!(body.is_empty(), "a HEAD response has a body: {:?}", text());
            } else {
                assert_eq!(
                    length,
                    body.len() as u64,
                    "Content-Length is not the body's: {:?}",
                    text()
                );
            }
        }
    }
    if status == Status::METHOD_NOT_ALLOWED {
        assert_eq!(get("allow"), Some(&b"GET, HEAD"[..]), "405 without Allow: {:?}", text());
    }
    let connection = get("connection");
    let want: Option<&[u8]> = match (kind, v, ka) {
        (Kind::Error, _, false) => Some(b"close"),
        (_, Version::Http11, false) => Some(b"close"),
        (_, Version::Http10, true) => Some(b"keep-alive"),
        _ => None,
    };
    assert_eq!(connection, want, "wrong Connection header: {:?}", text());
}
