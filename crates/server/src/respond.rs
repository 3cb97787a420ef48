//! From a parsed request to its response: the part of the server that does not depend on how
//! bytes move.
//!
//! Both engines call it — the readiness worker (`worker.rs`, any [`ioscale_dispatch::Mechanism`])
//! and the completion engine — so a request gets the same answer whichever model carries it. The
//! [`Responder`] writes the response head (and bodies small enough to copy beside it) into the
//! engine's write buffer and returns the [`Body`] still to send: a cached body by reference or a
//! file range for `sendfile`. It makes no system call on the cached path and allocates nothing.

use crate::access_log::AccessLog;
use crate::files::{Content, Files, Found, LookupError};
use crate::peer::Peer;
use crate::stats::{ServerError, WorkerStats, FILES_BUDGET};
use crate::{Config, Shared};
use ioscale_http::response::{
    write_entity_head, write_error, write_error_for, write_partial_head, write_redirect,
    write_simple, write_unsatisfiable,
};
use ioscale_http::{resolve, DateCache, Error as HttpError, ErrorKind, Ranges, Request, Status};
use std::fs::File;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Cached bodies up to this size are copied next to their head: one send for both.
pub(crate) const COPY_MAX: usize = 16 * 1024;
const STATS_PATH: &[u8] = b"/.ioscale/stats";
const METRICS_PATH: &[u8] = b"/.ioscale/metrics";

/// What must follow the head already written: nothing, a cached body from `pos`, or the bytes
/// `off..end` of an open file.
#[derive(Debug)]
pub(crate) enum Body {
    /// The response is complete in the write buffer.
    None,
    /// The bytes `pos..end` of a cached body `(bytes, pos, end)`.
    Memory(Arc<[u8]>, usize, usize),
    /// A file range `(file, off, end)`, sent with `sendfile` (or read and sent).
    File(Arc<File>, u64, u64),
}

/// One engine's responder: its file cache, its scratch path buffer and its `Date` line.
pub(crate) struct Responder<'a> {
    cfg: &'a Config,
    shared: &'a Shared,
    st: &'a WorkerStats,
    files: Files,
    path: Vec<u8>,
    log: Option<AccessLog>,
    /// The reload epoch whose settings are in force here, and the one of them read per
    /// request (the others are in `files`).
    live_seen: u64,
    stats_public: bool,
    /// [`crate::sys::ticks`] when the loop pass began (the wait returned).
    pass_ticks: u64,
    /// Set by [`Self::head_waited`] for the next request: how long its head took, in ns.
    waited_ns: Option<u64>,
    /// The per-second `Date` header, refreshed by the engine after each wait.
    pub date: DateCache,
}

impl<'a> Responder<'a> {
    /// A responder for worker statistics `st`, with its own file cache.
    pub fn new(cfg: &'a Config, shared: &'a Shared, st: &'a WorkerStats) -> std::io::Result<Self> {
        let (live, live_seen) = shared.live.get();
        Ok(Responder {
            cfg,
            shared,
            st,
            files: {
                st.files[FILES_BUDGET].store(cfg.cache.max_open as u64, Ordering::Relaxed);
                open_files(cfg, &live)?
            },
            live_seen,
            stats_public: live.stats_public,
            pass_ticks: crate::sys::ticks(),
            waited_ns: None,
            path: Vec::with_capacity(cfg.limits.max_target + 16),
            date: DateCache::new(),
            log: shared.access_log.clone().map(AccessLog::new),
        })
    }

    /// Whether requests are logged (then the engine tells [`Peer::addr`]).
    pub fn logging(&self) -> bool {
        self.log.is_some()
    }

    /// Tells that the next request's head took more than one loop pass to arrive: its first
    /// byte came `header_timeout` before the connection's header `deadline`, so its duration
    /// starts there rather than at this pass.
    pub fn head_waited(&mut self, deadline: Instant, now: Instant) {
        let started = deadline.checked_sub(self.cfg.header_timeout).unwrap_or(now);
        let ns = now.saturating_duration_since(started).as_nanos();
        self.waited_ns = Some(u64::try_from(ns).unwrap_or(u64::MAX));
    }

    /// What both engines do when their wait returns: reads the clock, updates the `Date` line
    /// and runs [`Self::tick`]; returns the time read, the engine's `now` for this pass.
    #[inline]
    pub fn wake(&mut self) -> Instant {
        let now = Instant::now();
        self.date.update(SystemTime::now());
        self.tick(now);
        now
    }

    /// Once per loop pass: takes the settings of a reload (SIGHUP) if there was one, writes
    /// the access log's buffer if its oldest line is a second old, drops the cache's idle
    /// entries when they are due, and publishes the cache's counts when they changed.
    #[inline]
    pub fn tick(&mut self, now: Instant) {
        self.pass_ticks = crate::sys::ticks();
        if self.shared.live.epoch() != self.live_seen {
            self.reload();
        }
        if let Some(log) = &mut self.log {
            log.tick(self.st, now);
        }
        if self.files.next_sweep().is_some_and(|t| now >= t) {
            self.files.sweep(now);
        }
        if let Some(c) = self.files.take_counts() {
            self.st.publish_files(&c);
        }
    }

    /// When [`Self::tick`] next has work that no connection's timer brings (the cache's idle
    /// entries): the engine's wait must not outlast it.
    #[inline]
    pub fn next_tick(&self) -> Option<Instant> {
        self.files.next_sweep()
    }

    /// Takes the reloaded settings: a fresh file cache (cached heads carry the old
    /// `Cache-Control`; files being sent keep their descriptors), the stats audience.
    #[cold]
    #[inline(never)]
    fn reload(&mut self) {
        let (live, epoch) = self.shared.live.get();
        self.live_seen = epoch;
        self.stats_public = live.stats_public;
        match open_files(self.cfg, &live) {
            Ok(f) => {
                self.files = f;
                self.st.publish_files(&self.files.counts());
            }
            Err(e) => crate::error_log::error!(
                "SIGHUP: cannot open the root '{}' again: {e}; its cache keeps the old settings",
                self.cfg.root.display()
            ),
        }
    }

    /// Answers `req` ([`Self::respond`], and the metrics endpoint) and writes its access-log
    /// line.
    pub fn serve(
        &mut self,
        req: &Request<'_>,
        peer: Peer<'_>,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Body {
        let start = out.len();
        // `req.target[1]` first: an ordinary request pays one byte comparison, not a path scan.
        let own = req.target.get(1) == Some(&b'.');
        let body = if own && req.path() == METRICS_PATH && (peer.loopback || self.stats_public) {
            let open = self.shared.open.load(Ordering::Relaxed) as u64;
            let format = crate::metrics::Format::negotiate(peer.head);
            let text = crate::metrics::Snapshot::take(&self.shared.stats, open).encode(format);
            self.st.response(200);
            let ct = format.content_type();
            let (m, v) = (req.method, req.version);
            write_simple(out, Status::OK, ct, text.as_bytes(), &self.date, m, v, peer.keep_alive);
            Body::None
        } else {
            self.respond(req, peer, now, out)
        };
        let took = crate::sys::ticks().wrapping_sub(self.pass_ticks);
        match self.waited_ns.take() {
            None => self.st.observe_ticks(took, &self.shared.stats.tick_bounds),
            Some(ns) => {
                let rate = self.shared.stats.ticks_per_s;
                self.st.observe(ns.saturating_add((took as f64 * 1e9 / rate) as u64));
            }
        }
        if let Some(log) = &mut self.log {
            let after = match &body {
                Body::None => 0,
                Body::Memory(_, pos, end) => end.saturating_sub(*pos) as u64,
                Body::File(_, off, end) => end.saturating_sub(*off),
            };
            log.line(self.st, req, &peer, &out[start..], after, &self.date, now);
        }
        body
    }

    /// Writes the response to `req` into `out` and returns the body still to send.
    pub fn respond(
        &mut self,
        req: &Request<'_>,
        peer: Peer<'_>,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Body {
        let ka = peer.keep_alive;
        let head = req.method.is_head();
        if req.path() == STATS_PATH && (peer.loopback || self.stats_public) {
            let doc = self.shared.stats.json(self.shared.open.load(Ordering::Relaxed) as u64);
            let body = serde_json::to_vec_pretty(&doc).unwrap_or_default();
            write_simple(
                out,
                Status::OK,
                "application/json",
                &body,
                &self.date,
                req.method,
                req.version,
                ka,
            );
            self.st.response(200);
            return Body::None;
        }
        let resolved = match resolve(req.target, &mut self.path) {
            Ok(r) => r,
            Err(e) => {
                self.error(e.kind(), req, ka, out);
                return Body::None;
            }
        };
        match self.files.lookup(&self.path, resolved.trailing_slash, now) {
            Ok(Found::File(entry)) => {
                let (entity, content) = entry.variant(req.accept_encoding);
                let status = entity.evaluate(req);
                // The hot path (no Range) tests one field and goes on.
                let (start, end) = match req.range {
                    Some(_) if status == Status::OK => match entity.ranges(req) {
                        Ranges::Whole => (0, entity.len()),
                        Ranges::One { start, end } => {
                            // HEAD gets the GET's 206 head (as nginx and Apache answer).
                            write_partial_head(
                                out,
                                entity,
                                start,
                                end,
                                &self.date,
                                req.version,
                                ka,
                            );
                            self.st.response(206);
                            return if head { Body::None } else { body(content, start, end, out) };
                        }
                        Ranges::Unsatisfiable => {
                            write_unsatisfiable(out, entity, &self.date, head, req.version, ka);
                            self.st.response(416);
                            return Body::None;
                        }
                    },
                    _ => (0, entity.len()),
                };
                write_entity_head(out, status, entity, &self.date, req.version, ka);
                self.st.response(status.code());
                if status == Status::OK && !head {
                    return body(content, start, end, out);
                }
            }
            Ok(Found::Directory) => {
                let mut loc = Vec::with_capacity(self.path.len() + 8);
                loc.push(b'/');
                for &b in &self.path {
                    if b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b) {
                        loc.push(b);
                    } else {
                        loc.extend_from_slice(format!("%{b:02X}").as_bytes());
                    }
                }
                loc.push(b'/');
                if let Some(q) = req.query() {
                    if q.iter().all(|b| b.is_ascii_graphic()) {
                        loc.push(b'?');
                        loc.extend_from_slice(q);
                    }
                }
                write_redirect(out, &loc, &self.date, req.method, req.version, ka);
                self.st.response(301);
            }
            Err(LookupError::Http(e)) => self.error(e.kind(), req, ka, out),
            Err(LookupError::Unavailable) => {
                self.st.error(ServerError::Unavailable);
                self.st.response(503);
                write_error_for(
                    out,
                    Status::SERVICE_UNAVAILABLE,
                    &self.date,
                    head,
                    req.version,
                    ka,
                );
            }
        }
        Body::None
    }

    /// Writes the error response for a request the connection refused (it closes after it),
    /// or for a head that did not arrive in time (408), and logs it: `input` is what the client
    /// sent of it, `addr` its address when known.
    pub fn reject(
        &mut self,
        e: &HttpError,
        addr: Option<IpAddr>,
        input: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
    ) {
        self.st.http_error(e.kind());
        self.st.response(e.status().code());
        let start = out.len();
        write_error(out, e.status(), &self.date, false, false);
        if let Some(log) = &mut self.log {
            log.refused(self.st, addr, input, &out[start..], &self.date, now);
        }
    }

    fn error(&mut self, kind: ErrorKind, req: &Request<'_>, ka: bool, out: &mut Vec<u8>) {
        let head = req.method.is_head();
        self.st.http_error(kind);
        self.st.response(kind.status().code());
        write_error_for(out, kind.status(), &self.date, head, req.version, ka);
    }
}

/// A worker's file cache of the root with the settings in force.
fn open_files(cfg: &Config, live: &crate::reload::Settings) -> std::io::Result<Files> {
    let mut f = Files::open(&cfg.root, cfg.cache)?;
    f.set_options(live.cache_control.clone(), live.precompressed);
    Ok(f)
}

/// The bytes `start..end` of `content`: copied beside the head when cached and small, else
/// handed to the engine by reference (cached) or as a file range (`sendfile`).
fn body(content: &Content, start: u64, end: u64, out: &mut Vec<u8>) -> Body {
    match content {
        Content::Memory(m) => {
            // Within the cached bytes by construction (the entity's length is theirs).
            let (start, end) = (start as usize, (end as usize).min(m.len()));
            if end - start <= COPY_MAX {
                out.extend_from_slice(&m[start..end]);
                Body::None
            } else {
                Body::Memory(m.clone(), start, end)
            }
        }
        Content::Open(f) => Body::File(f.clone(), start, end),
    }
}

impl Drop for Responder<'_> {
    fn drop(&mut self) {
        if let Some(log) = &mut self.log {
            log.flush(self.st);
        }
    }
}
