//! The `response_parser` target: the load generator's streaming response parser
//! ([`ioscale_load::http::ResponseParser`]), the instrument that counts responses, so it must
//! never lie: not about how many responses arrived, their statuses, or where each ended.
//!
//! # Input format
//!
//! | bytes | meaning |
//! | --- | --- |
//! | `data[0]` | flags: bits 0–2 = number of cut points `k` (0–7); bit 3 = the request was HEAD; bit 4 = *structured* mode |
//! | next `2k` | cut points, as for `http_request` (little-endian `u16`, modulo the stream length + 1) |
//! | the rest | raw mode: the stream the server sends; structured mode: a recipe, 3 bytes per response, for responses written by `ioscale-http`'s own writers |
//!
//! # What must hold
//!
//! * Nothing panics; `used` never exceeds the bytes given, and a `Done` says it used exactly
//!   the bytes it reports as the response's.
//! * While it waits for more, at most [`MAX_HEAD`] bytes are left pending (the generator's
//!   buffer is bounded); no interim (1xx) status is reported as a response.
//! * Raw mode: the whole stream, the chosen cuts and (for short streams) one byte at a time give
//!   the same responses, the same refusal, and the same verdict at end of stream.
//! * Structured mode: the parser reports exactly the responses written — status, length in
//!   bytes, keep-alive — however the stream is cut, and nothing is left over.

use crate::http::Input;
use ioscale_http::response::{write_entity_head, write_error, write_redirect, write_simple};
use ioscale_http::{DateCache, Entity, Method, Status, Version};
use ioscale_load::http::{Feed, ResponseParser, MAX_HEAD};
use std::time::{Duration, UNIX_EPOCH};

/// Streams up to this long are also fed one byte at a time.
const BYTEWISE_MAX: usize = 384;

/// One thing the parser said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Said {
    /// A response of `len` bytes.
    Done {
        /// Its length in bytes.
        len: usize,
        /// Its status.
        status: u16,
        /// Whether the connection stays open.
        keep_alive: bool,
    },
    /// A refusal (the generator closes the connection).
    Bad(&'static str),
    /// What `eof` says at the end of the stream, with the bytes still pending.
    End(Box<Said>, usize),
    /// Nothing: the stream ended with nothing pending and the parser idle.
    Idle,
}

/// The fuzz target's body.
pub fn check(data: &[u8]) {
    let head_request = data.first().is_some_and(|f| f & 8 != 0);
    let structured = data.first().is_some_and(|f| f & 16 != 0);
    let input = Input::decode(data);
    if structured {
        let (stream, want) = recipe(input.stream, head_request);
        let got = drive(&[&stream], head_request);
        assert_eq!(got, want, "the responses written are not the responses counted");
        let cuts = cut(&stream, &input.cuts);
        assert_eq!(drive(&cuts, head_request), want, "cut at {:?}", input.cuts);
        return;
    }
    let whole = drive(&[input.stream], head_request);
    if !input.cuts.is_empty() {
        let split = drive(&input.chunks(), head_request);
        assert_eq!(whole, split, "the chunks {:?} changed the outcome", input.cuts);
    }
    if input.stream.len() <= BYTEWISE_MAX {
        let bytes: Vec<&[u8]> = input.stream.chunks(1).collect();
        assert_eq!(whole, drive(&bytes, head_request), "one byte at a time changed the outcome");
    }
}

fn cut<'a>(stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c % (stream.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut last = 0;
    for c in cuts.into_iter().chain([stream.len()]) {
        out.push(&stream[last..c]);
        last = c;
    }
    out
}

/// Feeds `chunks` as the generator does: keep what was not used, append the next read.
pub fn drive(chunks: &[&[u8]], head_request: bool) -> Vec<Said> {
    let mut p = ResponseParser::new(head_request);
    let mut buf: Vec<u8> = Vec::new();
    let mut said = Vec::new();
    let mut taken = 0usize;
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let (used, feed) = p.feed(&buf);
            assert!(used <= buf.len(), "used {used} of {} bytes", buf.len());
            taken += used;
            match feed {
                Feed::NeedMore => {
                    buf.drain(..used);
                    assert!(buf.len() <= MAX_HEAD, "{} bytes pending", buf.len());
                    break;
                }
                Feed::Done { consumed, status, keep_alive } => {
                    assert_eq!(consumed, used, "Done reports {consumed} bytes but used {used}");
                    assert!(!(100..200).contains(&status), "interim status {status} counted");
                    assert!(status <= 999, "status {status}");
                    buf.drain(..used);
                    said.push(Said::Done { len: taken, status, keep_alive });
                    taken = 0;
                    assert!(p.is_idle(), "not idle after a response");
                    if !keep_alive {
                        // The generator closes: whatever follows is not read.
                        return said;
                    }
                }
                Feed::Bad(why) => {
                    said.push(Said::Bad(why));
                    return said;
                }
            }
        }
    }
    if p.is_idle() && buf.is_empty() {
        said.push(Said::Idle);
    } else {
        let pending = buf.len();
        let end = match p.eof() {
            Feed::Done { consumed, status, keep_alive } => {
                assert_eq!(consumed, 0, "eof consumed bytes");
                assert!(!keep_alive, "a response ended by close keeps the connection");
                Said::Done { len: taken, status, keep_alive }
            }
            Feed::Bad(why) => Said::Bad(why),
            Feed::NeedMore => panic!("eof asks for more"),
        };
        said.push(Said::End(Box::new(end), pending));
    }
    said
}

/// Writes the responses `recipe` describes (3 bytes each) with `ioscale-http`'s writers, as the
/// server answers HTTP/1.1 requests; returns the stream and what the parser must say.
fn recipe(recipe: &[u8], head_request: bool) -> (Vec<u8>, Vec<Said>) {
    const ERRORS: [Status; 11] = [
        Status::BAD_REQUEST,
        Status::FORBIDDEN,
        Status::NOT_FOUND,
        Status::METHOD_NOT_ALLOWED,
        Status::REQUEST_TIMEOUT,
        Status::PAYLOAD_TOO_LARGE,
        Status::URI_TOO_LONG,
        Status::HEADERS_TOO_LARGE,
        Status::NOT_IMPLEMENTED,
        Status::SERVICE_UNAVAILABLE,
        Status::VERSION_NOT_SUPPORTED,
    ];
    let date = DateCache::new();
    let method = if head_request { Method::Head } else { Method::Get };
    let mut stream = Vec::new();
    let mut want = Vec::new();
    for r in recipe.chunks_exact(3).take(64) {
        let (what, a, b) = (r[0], r[1], r[2]);
        let keep_alive = what & 0x80 == 0;
        let start = stream.len();
        let status = match what & 0x7f {
            0..=39 => {
                let len = u64::from(u16::from_le_bytes([a, b]) % 4096);
                let e = Entity::new(b"f.txt", len, UNIX_EPOCH + Duration::from_secs(784111777));
                write_entity_head(&mut stream, Status::OK, &e, &date, Version::Http11, keep_alive);
                if !head_request {
                    stream.extend(std::iter::repeat_n(a, len as usize));
                }
                200
            }
            40..=59 => {
                let e = Entity::new(b"f.txt", u64::from(a), UNIX_EPOCH);
                write_entity_head(
                    &mut stream,
                    Status::NOT_MODIFIED,
                    &e,
                    &date,
                    Version::Http11,
                    keep_alive,
                );
                304
            }
            60..=79 => {
                let status = ERRORS[usize::from(a) % ERRORS.len()];
                write_error(&mut stream, status, &date, head_request, keep_alive);
                status.code()
            }
            80..=99 => {
                let loc = format!("/d{a}/");
                write_redirect(
                    &mut stream,
                    loc.as_bytes(),
                    &date,
                    method,
                    Version::Http11,
                    keep_alive,
                );
                301
            }
            _ => {
                let body = vec![b'{'; usize::from(b)];
                write_simple(
                    &mut stream,
                    Status::OK,
                    "application/json",
                    &body,
                    &date,
                    method,
                    Version::Http11,
                    keep_alive,
                );
                200
            }
        };
        want.push(Said::Done { len: stream.len() - start, status, keep_alive });
        if !keep_alive {
            // The generator closes here.
            return (stream, want);
        }
    }
    want.push(Said::Idle);
    (stream, want)
}
