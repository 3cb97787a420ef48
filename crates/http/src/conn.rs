//! The connection state machine both server engines drive: bytes in, one [`Step`] out.
//!
//! The engine owns the buffer and the socket (a readiness engine reads when told it may; a
//! completion engine is handed filled buffers). It calls [`Connection::step`] on the unconsumed
//! bytes, drops the `used` bytes it returns, and acts on the step: answer a request, answer an
//! error and close, or read more. Pipelined requests come out one per call from the same buffer.
//! [`Connection::timer`] says which timeout applies while it waits (idle between requests, or
//! header while a request is half-read: the slowloris defence).

use crate::error::{Error, ErrorKind};
use crate::request::{parse, Limits, Parsed, Request};

/// What the engine does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step<'b> {
    /// No complete request in the buffer: read more (unless [`Connection::is_closing`]).
    NeedMore,
    /// A request to answer. Answer it with `Connection` set from [`Connection::keep_alive`].
    Request(Request<'b>),
    /// A refused request: answer `error.status()` with `Connection: close`, then close.
    Reject(Error),
    /// Nothing more will be parsed on this connection: close once the output is sent.
    Close,
}

/// Which timeout applies to a connection that waits for input.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Timer {
    /// Between requests on a persistent connection (nothing buffered).
    Idle,
    /// Part of a request has arrived: the rest must come before the header timeout.
    Header,
}

/// Per-connection HTTP state.
#[derive(Clone, Debug)]
pub struct Connection {
    limits: Limits,
    keep_alive: bool,
    closing: bool,
    draining: bool,
    discard: u64,
    requests: u64,
    peer_closed: bool,
}

impl Connection {
    /// A new connection with these limits.
    pub fn new(limits: Limits) -> Connection {
        Connection {
            limits,
            keep_alive: true,
            closing: false,
            draining: false,
            discard: 0,
            requests: 0,
            peer_closed: false,
        }
    }

    /// Parses the next request from `buf` (the bytes not yet consumed). Returns how many bytes
    /// the engine drops from the front of its buffer, and the step.
    pub fn step<'b>(&mut self, buf: &'b [u8]) -> (usize, Step<'b>) {
        if self.closing {
            return (0, Step::Close);
        }
        // The rest of a request body nobody asked for is read and dropped.
        let skip = usize::try_from(self.discard).unwrap_or(usize::MAX).min(buf.len());
        self.discard -= skip as u64;
        if self.discard > 0 {
            return (skip, Step::NeedMore);
        }
        let rest = &buf[skip..];
        match parse(rest, &self.limits) {
            Ok(Parsed::Partial) => (skip, Step::NeedMore),
            Ok(Parsed::Complete(req)) => {
                self.requests += 1;
                self.discard = req.body_len;
                self.keep_alive = req.keep_alive && !self.draining;
                if !self.keep_alive {
                    self.closing = true;
                }
                (skip + req.head_len, Step::Request(req))
            }
            Err(e) => {
                self.refuse();
                (buf.len(), Step::Reject(e))
            }
        }
    }

    /// The header timeout expired with `buffered` bytes of an incomplete request: the error to
    /// answer (408) when something arrived, or `None` to close silently an idle connection.
    pub fn timed_out(&mut self, buffered: usize) -> Option<Error> {
        self.refuse();
        (buffered > 0 || self.discard > 0).then(|| {
            Error::new(ErrorKind::Timeout, "the request did not arrive before the header timeout")
        })
    }

    fn refuse(&mut self) {
        self.keep_alive = false;
        self.closing = true;
    }

    /// Whether the response to the last request may leave the connection open.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Whether the connection closes once its output is sent.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// The server is shutting down: the next response says `Connection: close`. Returns whether
    /// the connection may be closed at once (nothing is buffered, no request is in progress).
    pub fn drain(&mut self, buffered: usize) -> bool {
        self.draining = true;
        buffered == 0 && self.discard == 0
    }

    /// The peer shut down its sending side (a half-close): every request already buffered is
    /// still answered as usual; the engine closes once no complete request is left.
    pub fn peer_closed(&mut self) {
        self.peer_closed = true;
    }

    /// Whether the peer has half-closed.
    pub fn is_peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Which timeout applies while waiting for input with `buffered` unconsumed bytes.
    pub fn timer(&self, buffered: usize) -> Timer {
        if buffered > 0 || self.discard > 0 {
            Timer::Header
        } else {
            Timer::Idle
        }
    }

    /// Requests parsed so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Method;
    use proptest::prelude::*;

    /// Feeds `chunks` one after another as a socket would, collecting targets and errors.
    fn drive(chunks: &[&[u8]]) -> (Vec<String>, Option<ErrorKind>, bool) {
        let mut c = Connection::new(Limits::default());
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for ch in chunks {
            buf.extend_from_slice(ch);
            loop {
                let (used, step) = c.step(&buf);
                let done = match step {
                    Step::NeedMore => true,
                    Step::Request(r) => {
                        got.push(String::from_utf8_lossy(r.target).into_owned());
                        false
                    }
                    Step::Reject(e) => return (got, Some(e.kind()), c.is_closing()),
                    Step::Close => return (got, None, true),
                };
                buf.drain(..used);
                // Bounded buffering: an incomplete head never reaches the head limit.
                assert!(!done || buf.len() < c.limits().max_head, "{} bytes buffered", buf.len());
                if done {
                    break;
                }
            }
        }
        (got, None, c.is_closing())
    }

    #[test]
    fn pipelined_requests_come_out_in_order() {
        let all = b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\nGET /3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /4 HTTP/1.1\r\nHost: h\r\n\r\n";
        let (got, err, closing) = drive(&[all]);
        assert_eq!(got, ["/1", "/2", "/3"]);
        assert_eq!((err, closing), (None, true));
    }

    #[test]
    fn bodies_are_skipped_and_limits_close() {
        let (got, err, _) = drive(&[
            b"GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab",
            b"cdeGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
        ]);
        assert_eq!((got, err), (vec!["/a".to_string(), "/b".to_string()], None));
        let (got, err, closing) =
            drive(&[b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nPUT /b HTTP/1.1\r\nHost: h\r\n\r\n"]);
        assert_eq!(
            (got, err, closing),
            (vec!["/a".to_string()], Some(ErrorKind::MethodNotAllowed), true)
        );
    }

    #[test]
    fn timers_and_timeouts() {
        let mut c = Connection::new(Limits::default());
        assert_eq!(c.timer(0), Timer::Idle);
        assert_eq!(c.timer(3), Timer::Header);
        assert_eq!(c.timed_out(3).map(|e| e.kind()), Some(ErrorKind::Timeout));
        assert!(c.is_closing());
        let mut c = Connection::new(Limits::default());
        assert_eq!(c.timed_out(0), None);
    }

    #[test]
    fn a_half_closed_peer_gets_every_buffered_answer() {
        let mut c = Connection::new(Limits::default());
        c.peer_closed();
        let buf = b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
        let (used, s) = c.step(buf);
        assert!(matches!(s, Step::Request(_)) && c.keep_alive());
        assert!(matches!(c.step(&buf[used..]).1, Step::Request(_)));
        assert!(c.is_peer_closed());
    }

    #[test]
    fn draining_closes_after_the_next_response() {
        let mut c = Connection::new(Limits::default());
        assert!(!c.drain(5));
        let (_, s) = c.step(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(matches!(s, Step::Request(r) if r.method == Method::Get));
        assert!(!c.keep_alive() && c.is_closing());
    }

    proptest! {
        #[test]
        fn any_split_of_a_pipeline_gives_the_same_requests(n in 1usize..6, cuts in prop::collection::vec(0usize..200, 0..6)) {
            let text: String = (0..n).map(|i| format!("GET /r{i} HTTP/1.1\r\nHost: h\r\nX-Pad: {}\r\n\r\n", "p".repeat(i * 7))).collect();
            let bytes = text.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for c in cuts.into_iter().chain([bytes.len()]) {
                chunks.push(&bytes[last..c]);
                last = c;
            }
            let (got, err, _) = drive(&chunks);
            prop_assert_eq!(err, None);
            prop_assert_eq!(got, (0..n).map(|i| format!("/r{i}")).collect::<Vec<_>>());
        }

        #[test]
        fn garbage_streams_end_in_a_reject_or_need_more(bytes in prop::collection::vec(any::<u8>(), 0..3000), split in 0usize..3000) {
            let split = split.min(bytes.len());
            // drive() asserts that buffering stays below the head limit; the parse never panics.
            let (got, _, _) = drive(&[&bytes[..split], &bytes[split..]]);
            prop_assert!(got.len() <= bytes.len() / 16);
        }
    }
}
