//! HTTP/1.1 on the generator's side: requests encoded once per target, and a streaming response
//! parser (heads with `httparse`; Content-Length, chunked, or read-until-close bodies).

/// Outcome of feeding bytes to a [`ResponseParser`].
#[derive(Debug, PartialEq, Eq)]
pub enum Feed {
    /// All of the bytes given were used; more are needed.
    NeedMore,
    /// A whole response ended after `consumed` bytes.
    Done {
        /// Bytes of the input that belonged to this response.
        consumed: usize,
        /// Its status code.
        status: u16,
        /// Whether the connection may carry another request.
        keep_alive: bool,
    },
    /// The bytes are not an HTTP/1.x response.
    Bad(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body { remaining: u64 },
    UntilClose,
    ChunkSize,
    ChunkData { remaining: u64 },
    ChunkEnd,
    Trailers,
}

/// Largest response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;

/// What a response head says about the body and the connection.
struct Head {
    status: u16,
    length: Option<u64>,
    chunked: bool,
    /// `Connection: close`, or HTTP/1.0 without `keep-alive`.
    close: bool,
}

/// Parses a response head at the start of `data`: `Ok(None)` while it is incomplete,
/// `Ok(Some((its length, what it says)))`, or why it is bad — malformed, larger than
/// [`MAX_HEAD`] (whole or in pieces: found by the fuzzer), or a Content-Length that is not a
/// number or differs from another one in the same head (which of them frames the body is
/// ambiguous: a response-splitting hazard, RFC 9112 §6.3).
fn parse_head(data: &[u8]) -> Result<Option<(usize, Head)>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(data) {
        Ok(httparse::Status::Partial) if data.len() > MAX_HEAD => {
            return Err("response head too large")
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("malformed response head"),
        Ok(httparse::Status::Complete(n)) if n > MAX_HEAD => return Err("response head too large"),
        Ok(httparse::Status::Complete(n)) => n,
    };
    let mut head = Head {
        status: resp.code.unwrap_or(0),
        length: None,
        chunked: false,
        close: resp.version == Some(0),
    };
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v: u64 = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or("bad Content-Length")?;
            if head.length.is_some_and(|l| l != v) {
                return Err("conflicting Content-Length values");
            }
            head.length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = h.value.windows(7).any(|w| w.eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = h.value;
            if v.windows(5).any(|w| w.eq_ignore_ascii_case(b"close")) {
                head.close = true;
            } else if v.windows(10).any(|w| w.eq_ignore_ascii_case(b"keep-alive")) {
                head.close = false;
            }
        }
    }
    Ok(Some((n, head)))
}

/// A streaming parser for one response at a time.
#[derive(Debug, Clone)]
pub struct ResponseParser {
    state: State,
    status: u16,
    keep_alive: bool,
    head_request: bool,
}

impl ResponseParser {
    /// A parser expecting a response to a request with a body (GET); `head_request` for HEAD.
    pub fn new(head_request: bool) -> Self {
        ResponseParser { state: State::Head, status: 0, keep_alive: true, head_request }
    }

    /// Starts over for the next response.
    pub fn reset(&mut self) {
        self.state = State::Head;
        self.status = 0;
        self.keep_alive = true;
    }

    /// Whether no byte of a response has been consumed yet.
    pub fn is_idle(&self) -> bool {
        self.state == State::Head
    }

    /// Whether the body runs until the connection closes (then [`ResponseParser::eof`] ends it).
    pub fn until_close(&self) -> bool {
        self.state == State::UntilClose
    }

    /// The end of the stream: completes a read-until-close body.
    pub fn eof(&mut self) -> Feed {
        if self.state == State::UntilClose {
            self.state = State::Head;
            return Feed::Done { consumed: 0, status: self.status, keep_alive: false };
        }
        Feed::Bad("connection closed mid-response")
    }

    /// Consumes bytes from `data`. Returns how many were used and what happened: a `Done`
    /// carries the count of the response's bytes; `NeedMore` means the caller must keep the
    /// bytes after `used` (a partial head or chunk-size line) and call again with more.
    pub fn feed(&mut self, data: &[u8]) -> (usize, Feed) {
        let mut pos = 0;
        loop {
            let rest = &data[pos..];
            match self.state {
                State::Head => {
                    let (n, head) = match parse_head(rest) {
                        Ok(Some(h)) => h,
                        Ok(None) => return (pos, Feed::NeedMore),
                        Err(why) => return (pos, Feed::Bad(why)),
                    };
                    pos += n;
                    if (100..200).contains(&head.status) {
                        continue; // an interim response; the real one follows
                    }
                    self.status = head.status;
                    self.keep_alive = !head.close;
                    let no_body = self.head_request || head.status == 204 || head.status == 304;
                    self.state = if no_body {
                        return self.done(pos);
                    } else if head.chunked {
                        State::ChunkSize
                    } else if let Some(len) = head.length {
                        if len == 0 {
                            return self.done(pos);
                        }
                        State::Body { remaining: len }
                    } else {
                        self.keep_alive = false;
                        State::UntilClose
                    };
                }
                State::Body { remaining } => {
                    let take = (rest.len() as u64).min(remaining);
                    pos += take as usize;
                    if take == remaining {
                        return self.done(pos);
                    }
                    self.state = State::Body { remaining: remaining - take };
                    return (pos, Feed::NeedMore);
                }
                State::UntilClose => return (data.len(), Feed::NeedMore),
                State::ChunkSize => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((n, size))) => {
                        pos += n;
                        self.state = if size == 0 {
                            State::Trailers
                        } else {
                            State::ChunkData { remaining: size }
                        };
                    }
                    Ok(httparse::Status::Partial) => {
                        if rest.len() > 1024 {
                            return (pos, Feed::Bad("chunk-size line too long"));
                        }
                        return (pos, Feed::NeedMore);
                    }
                    Err(_) => return (pos, Feed::Bad("malformed chunk size")),
                },
                State::ChunkData { remaining } => {
                    let take = (rest.len() as u64).min(remaining);
                    pos += take as usize;
                    if take < remaining {
                        self.state = State::ChunkData { remaining: remaining - take };
                        return (pos, Feed::NeedMore);
                    }
                    self.state = State::ChunkEnd;
                }
                State::ChunkEnd => {
                    if rest.len() < 2 {
                        return (pos, Feed::NeedMore);
                    }
                    if &rest[..2] != b"\r\n" {
                        return (pos, Feed::Bad("chunk not followed by CRLF"));
                    }
                    pos += 2;
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    let Some(i) = rest.windows(2).position(|w| w == b"\r\n") else {
                        if rest.len() > MAX_HEAD {
                            return (pos, Feed::Bad("trailers too large"));
                        }
                        return (pos, Feed::NeedMore);
                    };
                    pos += i + 2;
                    if i == 0 {
                        return self.done(pos);
                    }
                }
            }
        }
    }

    fn done(&mut self, pos: usize) -> (usize, Feed) {
        let f = Feed::Done { consumed: pos, status: self.status, keep_alive: self.keep_alive };
        self.state = State::Head;
        (pos, f)
    }
}

/// Encodes `GET path` for `host` once; every send reuses the bytes.
pub fn encode_get(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ioscale-load\r\n\r\n").into_bytes()
}

/// The start of a request that never ends: Provos & Lever's inactive connection.
pub fn encode_incomplete(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(p: &mut ResponseParser, bytes: &[u8]) -> Vec<(u16, bool)> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            let (used, f) = p.feed(&bytes[pos..]);
            pos += used;
            match f {
                Feed::Done { status, keep_alive, .. } => out.push((status, keep_alive)),
                Feed::NeedMore => break,
                Feed::Bad(why) => panic!("{why}"),
            }
        }
        out
    }

    #[test]
    fn content_length_chunked_and_pipelined() {
        let mut p = ResponseParser::new(false);
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX-T: 1\r\n\r\n";
        assert_eq!(whole(&mut p, two), vec![(200, true), (404, true)]);
    }

    #[test]
    fn every_split_point_gives_the_same_result() {
        let bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n";
        for split in 1..bytes.len() {
            let mut p = ResponseParser::new(false);
            let mut pending: Vec<u8> = Vec::new();
            let mut done = 0;
            for part in [&bytes[..split], &bytes[split..]] {
                pending.extend_from_slice(part);
                loop {
                    let (used, f) = p.feed(&pending);
                    pending.drain(..used);
                    match f {
                        Feed::Done { status, .. } => {
                            assert_eq!(status, 200);
                            done += 1;
                        }
                        Feed::NeedMore => break,
                        Feed::Bad(w) => panic!("split {split}: {w}"),
                    }
                    if pending.is_empty() {
                        break;
                    }
                }
            }
            assert_eq!(done, 1, "split at {split}");
        }
    }

    #[test]
    fn close_delimited_http10_and_no_body_statuses() {
        let mut p = ResponseParser::new(false);
        let (_, f) = p.feed(b"HTTP/1.0 200 OK\r\n\r\nbody...");
        assert_eq!(f, Feed::NeedMore);
        assert!(p.until_close());
        assert_eq!(p.eof(), Feed::Done { consumed: 0, status: 200, keep_alive: false });
        let mut p = ResponseParser::new(false);
        assert_eq!(
            whole(&mut p, b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
            vec![(304, true)]
        );
        let mut h = ResponseParser::new(true);
        assert_eq!(
            whole(&mut h, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"),
            vec![(200, false)]
        );
    }

    #[test]
    fn head_limit_holds_however_the_head_arrives() {
        let mut big = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
        big.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        let mut p = ResponseParser::new(false);
        assert!(matches!(p.feed(&big).1, Feed::Bad(_)), "whole");
        let mut p = ResponseParser::new(false);
        assert!(matches!(p.feed(&big[..MAX_HEAD + 5]).1, Feed::Bad(_)), "in pieces");
    }

    #[test]
    fn two_different_content_lengths_are_a_bad_response() {
        let mut p = ResponseParser::new(false);
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 5\r\n\r\nxxxxx";
        assert_eq!(p.feed(r).1, Feed::Bad("conflicting Content-Length values"));
        // The same value twice frames the body without ambiguity.
        let mut p = ResponseParser::new(false);
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx";
        assert!(matches!(p.feed(r).1, Feed::Done { status: 200, .. }));
    }

    #[test]
    fn garbage_is_bad_not_a_panic() {
        let mut p = ResponseParser::new(false);
        assert!(matches!(p.feed(b"SSH-2.0-OpenSSH\r\n\r\n").1, Feed::Bad(_)));
        let mut p = ResponseParser::new(false);
        assert!(matches!(p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").1, Feed::Bad(_)));
        let mut p = ResponseParser::new(false);
        assert!(matches!(
            p.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").1,
            Feed::Bad(_)
        ));
    }
}
