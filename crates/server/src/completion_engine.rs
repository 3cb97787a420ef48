//! The completion engine: `ioscale serve --dispatch uring-completion`.
//!
//! The readiness worker (`worker.rs`) is told "you may read now" and then reads and writes
//! itself. Here the kernel does the I/O: each worker hands its io_uring
//! ([`ioscale_dispatch::completion::Proactor`]) a *multishot accept* on the listener and a
//! *multishot receive* on every connection — armed once, they keep completing — and queues each
//! response as a *send*. One `io_uring_enter` submits every queued send and waits for the next
//! batch of completions; a receive's data arrives already copied into a buffer the kernel took
//! from the worker's provided-buffer ring.
//!
//! The HTTP is the readiness engine's, unchanged: the same sans-I/O state machine
//! ([`ioscale_http::Connection::step`]) and the same [`Responder`] (cache, `openat2`, stats
//! endpoint), so a request gets the same answer whichever model carries it.
//!
//! | concern | how |
//! | --- | --- |
//! | hot path | a request is parsed straight out of the provided buffer, answered into the worker's write buffer, and the buffer is recycled; the filled write buffer goes to the kernel with a send and comes back in its completion to a pool: no allocation, no system call but the shared enter |
//! | bodies | cached bodies up to 16 KiB ride with the head in the send; a response with a larger body is written by the worker as the readiness engine writes it — head and cached body in one `sendmsg`, or head then `sendfile` — until the socket is full, and a one-shot *poll* in the ring says when it takes more: no file is copied into user memory, so a slow reader costs no buffer, and head and body leave in full segments |
//! | memory | per connection: its state and, while a send is in flight, the buffer of that send (the responses batched in one pass, 64 KiB and one response at most); spare buffers kept: 32 of at most 64 KiB per worker; nothing is held for a connection that is gone |
//! | short sends | the send's buffer comes back advanced; the rest is sent again |
//! | pipelining | input that arrives while a response is in flight waits in the connection's buffer (bounded: past it the receive is cancelled, and re-armed once the output drains) |
//! | buffer ring exhaustion | a receive ends with `ENOBUFS` (counted); buffers are never held across a wait, so re-arming it is always safe and the data is still in the socket |
//! | multishot ended by the kernel | any last completion (`more == false`) of a receive or accept re-arms it |
//! | timeouts | the readiness engine's coarse timer wheel; the wait's own timeout (`IORING_ENTER_EXT_ARG`) is the next tick, so no timeout operation per connection |
//! | close with operations in flight | cancel-then-close linked in the ring; the connection's slot stays taken until its last operation completes, and every token carries the slot's generation, so no completion is ever acted on for a reused descriptor or slot |
//! | `EMFILE` | a multishot accept ending with `EMFILE`/`ENFILE`: the reserve descriptor is freed, queued connections are accepted and closed, the accept re-armed (or paused 200 ms if nothing could be shed): no spin |
//! | shutdown | queued connections are taken in, the accept cancelled and the listener shut; after one more short wait (which runs the kernel's pending receives) idle connections whose sockets hold nothing unread are closed, every other one once its response is out (up to the drain timeout); the other workers' accepts, ended by the shut listener, are not re-armed |

use crate::conns::{
    answer, write_out, AcceptFailure, Close, Io, Phase, Table, LISTENER, WAKER, WBUF_HIGH,
};
use crate::respond::{Body, Responder};
use crate::stats::{bump, WorkerStats};
use crate::{sys, Config, Shared};
use ioscale_dispatch::completion::{
    BufId, Completion, CompletionConfig, OpId, OpKind, Proactor, SendBuf, Value,
};
use ioscale_dispatch::{Token, Waker};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Spare output buffers kept for reuse (with [`POOL_KEEP_CAP`]: at most 2 MiB per worker).
const POOL_MAX: usize = 32;
/// A spare buffer larger than this (grown by pipelined responses) is freed rather than kept.
const POOL_KEEP_CAP: usize = 64 * 1024;
/// Bytes of each provided receive buffer.
const RECV_BUFFER: u32 = 4096;

/// The ring sizes for a server configuration.
fn ring_config(cfg: &Config) -> CompletionConfig {
    CompletionConfig {
        sq_entries: 1024,
        cq_entries: 16384,
        buffers: cfg.uring_buffers,
        buffer_size: RECV_BUFFER,
        single_issuer: true,
    }
}

/// Checks that this kernel runs the engine with the defaults (for [`crate::Engine::probe`]).
pub(crate) fn probe() -> io::Result<()> {
    Proactor::new().map(drop)
}

/// Checks that the engine can run with this configuration (at bind, so a refusal is a start
/// error naming what the kernel lacks).
pub(crate) fn check(cfg: &Config) -> io::Result<()> {
    Proactor::open(ring_config(cfg)).map(drop)
}

/// The completion engine's own per-connection state.
#[derive(Debug)]
struct Ring {
    /// `None` once the close is submitted.
    fd: Option<OwnedFd>,
    /// A send, or a poll for the socket to take more of a body, is in flight (one at a time:
    /// responses go out in order).
    out_busy: bool,
    /// Head bytes of a response with a body not yet taken by the socket, from `rest_pos`.
    rest: Vec<u8>,
    rest_pos: usize,
    /// The armed multishot receive.
    recv: Option<OpId>,
    /// That receive was cancelled because input piled up.
    recv_cancelled: bool,
    /// Operations submitted under this connection's token and not yet finished.
    inflight: u32,
    /// The close is submitted: the slot waits for the last operation.
    closing: bool,
}

impl Io for Ring {
    #[inline]
    fn busy(&self) -> bool {
        self.out_busy
    }

    #[inline]
    fn fd(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    #[inline]
    fn live(&self) -> bool {
        !self.closing
    }
}

type Conn = crate::conns::Conn<Ring>;

struct Engine<'a> {
    t: Table<'a, Ring>,
    st: &'a WorkerStats,
    p: Proactor,
    listener: RawFd,
    accept: Option<OpId>,
    accept_cancelled: bool,
    wbuf: Vec<u8>,
    pool: Vec<Vec<u8>>,
    resp: Responder<'a>,
    waker: Arc<Waker>,
    wake_armed: bool,
    /// Set at the stop: after the next batch of completions, idle connections are closed.
    sweep: bool,
    pending_max: usize,
}

/// Runs worker `id` of the completion engine until the server stops.
pub(crate) fn run(id: usize, cfg: &Config, shared: &Shared, listener: RawFd) -> io::Result<()> {
    // Opened in the worker's own thread: the ring is set up for a single issuer.
    let p = Proactor::open(ring_config(cfg))?;
    let waker = Arc::new(Waker::detached(WAKER)?);
    shared.wakers.lock().map_err(|_| io::Error::other("poisoned"))?.push(waker.clone());
    let t = Table::new(id, cfg, shared, Instant::now());
    let resp = Responder::new(cfg, shared, t.st)?;
    let mut e = Engine {
        st: t.st,
        t,
        p,
        listener,
        accept: None,
        accept_cancelled: false,
        wbuf: Vec::with_capacity(8192),
        pool: Vec::new(),
        resp,
        waker,
        wake_armed: false,
        sweep: false,
        pending_max: cfg.limits.max_head + WBUF_HIGH,
    };
    e.arm_wake()?;
    e.arm_accept()?;
    let mut out = Vec::with_capacity(1024);
    let result = e.main_loop(&mut out);
    e.finish(&mut out);
    result
}

impl Engine<'_> {
    fn arm_accept(&mut self) -> io::Result<()> {
        self.accept = Some(self.p.accept_multi(self.listener, LISTENER)?);
        self.accept_cancelled = false;
        Ok(())
    }

    fn arm_wake(&mut self) -> io::Result<()> {
        self.p.recv_multi(self.waker.as_raw_fd(), WAKER)?;
        self.wake_armed = true;
        Ok(())
    }

    fn main_loop(&mut self, out: &mut Vec<Completion>) -> io::Result<()> {
        loop {
            // ops hook: counter snapshots (SIGUSR2), one relaxed load per pass.
            self.t.shared.stats.poll_snapshot(self.t.id, self.st);
            if self.t.stopping.is_none() && self.t.shared.stop.load(Ordering::Relaxed) {
                self.begin_stop();
            }
            if self.t.drain_over() {
                return Ok(());
            }
            if self.t.resume_due() && self.accept.is_none() {
                self.arm_accept()?;
            }
            let mut timeout = self.t.wait_timeout(self.resp.next_tick());
            if self.sweep {
                // One short wait that runs the kernel's pending work: a request already in an
                // idle connection's socket arrives now and is answered.
                timeout = Some(Duration::from_millis(1));
            }
            out.clear();
            match self.p.complete(out, timeout) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            self.t.now = self.resp.wake();
            for c in out.drain(..) {
                self.on_completion(c)?;
            }
            if self.sweep {
                self.sweep = false;
                self.close_idle(out)?;
            }
            self.st.publish_completion(&self.p.counters());
            self.t.collect_due();
            while let Some((idx, c)) = self.t.next_expired(&mut self.resp) {
                self.close(c, idx, Close::Done);
            }
        }
    }

    /// After the loop: closes what is left and lets the ring finish its operations (bounded),
    /// so that no operation outlives the descriptors and buffers it uses.
    fn finish(&mut self, out: &mut Vec<Completion>) {
        for idx in 0..self.t.slots() {
            if let Some(c) = self.t.take_slot(idx) {
                if c.x.closing {
                    self.t.put(idx, c);
                } else {
                    self.close(c, idx, Close::Done);
                }
            }
        }
        if let Some(op) = self.accept {
            if !self.accept_cancelled {
                let _ = self.p.cancel(op, LISTENER);
                self.accept_cancelled = true;
            }
        }
        let _ = self.p.cancel_fd(self.waker.as_raw_fd(), WAKER);
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.p.in_flight() > 0 && Instant::now() < deadline {
            out.clear();
            if self.p.complete(out, Some(Duration::from_millis(50))).is_err() {
                break;
            }
            for c in out.drain(..) {
                if let Ok(Value::Received(b)) = c.result {
                    self.p.recycle(b);
                }
                if let Some(v) = c.buffer.and_then(SendBuf::into_vec) {
                    drop(v);
                }
            }
        }
        self.st.publish_completion(&self.p.counters());
    }

    fn on_completion(&mut self, c: Completion) -> io::Result<()> {
        match c.token {
            LISTENER => self.on_accept(c),
            WAKER => {
                if let Ok(Value::Received(b)) = c.result {
                    self.p.recycle(b);
                }
                if !c.more {
                    self.wake_armed = false;
                    if self.t.stopping.is_none() || self.t.open > 0 {
                        self.arm_wake()?;
                    }
                }
                Ok(())
            }
            tok => {
                // A completion for an earlier connection in this slot is never acted on.
                let Ok((idx, mut conn)) = self.t.take(tok) else {
                    self.drop_result(c);
                    return Ok(());
                };
                if !c.more {
                    conn.x.inflight = conn.x.inflight.saturating_sub(1);
                }
                if conn.x.closing {
                    self.drop_result(c);
                    self.release_or_keep(conn, idx);
                    return Ok(());
                }
                let r = self.on_conn(&mut conn, idx, c);
                self.settle(conn, idx, r);
                Ok(())
            }
        }
    }

    /// Gives back what a completion nobody acts on carries.
    fn drop_result(&mut self, c: Completion) {
        if let Ok(Value::Received(b)) = c.result {
            self.p.recycle(b);
        }
        if let Some(v) = c.buffer.and_then(SendBuf::into_vec) {
            self.give_back(v);
        }
    }

    fn release_or_keep(&mut self, conn: Conn, idx: usize) {
        if conn.x.inflight == 0 {
            drop(conn);
            self.t.release(idx);
        } else {
            self.t.put(idx, conn);
        }
    }

    fn give_back(&mut self, mut v: Vec<u8>) {
        if self.pool.len() < POOL_MAX && v.capacity() <= POOL_KEEP_CAP {
            v.clear();
            self.pool.push(v);
        }
    }

    // -----------------------------------------------------------------------------------------
    // accepting

    fn on_accept(&mut self, c: Completion) -> io::Result<()> {
        if !c.more {
            self.accept = None;
        }
        // The herd counter's nearest equivalent: each accept completion is a listener notice
        // that carried its connection (a multishot accept never wakes a worker for nothing).
        bump(&self.st.listener_notices, 1);
        match c.result {
            Ok(Value::Accepted(fd)) => {
                // Also while stopping: a connection the kernel completed before the listener
                // was shut is answered, not dropped.
                self.t.accepted();
                self.add_conn(fd);
            }
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => {}
            Err(e) => match self.t.accept_failure(&e) {
                AcceptFailure::Empty | AcceptFailure::Transient | AcceptFailure::Stopped => {}
                AcceptFailure::NoDescriptors => {
                    self.t.shed(self.listener, &e);
                    if c.more && !self.accept_cancelled {
                        // The kernel would keep failing on the same queued connection: stop it;
                        // its last completion re-arms (or the pause does).
                        if let Some(op) = self.accept {
                            self.p.cancel(op, LISTENER)?;
                            self.accept_cancelled = true;
                        }
                    }
                }
                AcceptFailure::Failed => self.t.accept_failed(&e),
            },
        }
        // Not once the server stops: another worker may have shut the shared listener already.
        let stop = self.t.shared.stop.load(Ordering::Relaxed);
        if self.accept.is_none() && !stop && self.t.paused_until.is_none() {
            self.arm_accept()?;
        }
        Ok(())
    }

    fn add_conn(&mut self, fd: OwnedFd) {
        let Some((idx, tok)) = self.t.admit() else { return };
        let recv = match self.p.recv_multi(fd.as_raw_fd(), tok) {
            Ok(op) => op,
            Err(e) => return self.t.refuse(idx, "cannot arm a receive", &e),
        };
        let x = Ring {
            fd: Some(fd),
            out_busy: false,
            rest: Vec::new(),
            rest_pos: 0,
            recv: Some(recv),
            recv_cancelled: false,
            inflight: 1,
            closing: false,
        };
        self.t.install(idx, tok, None, x);
    }

    // -----------------------------------------------------------------------------------------
    // connections

    /// Acts on one completion of a live connection. `Err` closes it.
    fn on_conn(&mut self, conn: &mut Conn, idx: usize, c: Completion) -> Result<(), Close> {
        let tok = conn.token(idx);
        match c.kind {
            OpKind::RecvMulti | OpKind::Recv => {
                if !c.more {
                    conn.x.recv = None;
                    conn.x.recv_cancelled = false;
                }
                match c.result {
                    Ok(Value::Received(b)) => self.on_data(conn, tok, b),
                    Ok(Value::Eof) => {
                        conn.read_closed = true;
                        conn.http.peer_closed();
                        if conn.phase == Phase::Linger {
                            return Err(Close::Done);
                        }
                        self.pump(conn, tok)
                    }
                    Ok(_) => Ok(()),
                    // The buffer ring ran dry (counted by the proactor): the data is still in
                    // the socket; `settle` re-arms the receive, submitted with the next enter,
                    // by which time every buffer of this batch is back in the ring.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(()),
                    Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => Ok(()),
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(()),
                    Err(_) if conn.phase == Phase::Linger => Err(Close::Done),
                    Err(e) => Err(Close::of(&e)),
                }
            }
            OpKind::Send => self.on_sent(conn, tok, c),
            OpKind::Poll => {
                // The socket can take more of a response this worker writes itself.
                conn.x.out_busy = false;
                match c.result {
                    Ok(_) => self.pump(conn, tok),
                    Err(e) => Err(Close::of(&e)),
                }
            }
            OpKind::Cancel | OpKind::Close | OpKind::Timeout | OpKind::Read => Ok(()),
            OpKind::Accept | OpKind::AcceptMulti => Ok(()),
        }
    }

    /// A send completed: the rest of a short send goes again, else the next output.
    fn on_sent(&mut self, conn: &mut Conn, tok: Token, c: Completion) -> Result<(), Close> {
        conn.x.out_busy = false;
        let mut buf = c.buffer;
        match c.result {
            Ok(Value::Sent(n)) => {
                bump(&self.st.bytes_out, n as u64);
                let Some(mut b) = buf.take() else { return Err(Close::Io) };
                b.advance(n);
                if !b.is_empty() {
                    if n == 0 {
                        return Err(Close::Io);
                    }
                    // A short send: the rest goes again.
                    bump(&self.st.completion[5], 1);
                    return self.send(conn, tok, b);
                }
                if let Some(v) = b.into_vec() {
                    self.give_back(v);
                }
                self.pump(conn, tok)
            }
            Ok(_) => Err(Close::Io),
            Err(e) => {
                if let Some(v) = buf.take().and_then(SendBuf::into_vec) {
                    self.give_back(v);
                }
                Err(Close::of(&e))
            }
        }
    }

    /// Received bytes: parsed straight from the provided buffer when nothing waits before them,
    /// else appended to the connection's pending input.
    fn on_data(&mut self, conn: &mut Conn, tok: Token, b: BufId) -> Result<(), Close> {
        bump(&self.st.bytes_in, b.len() as u64);
        if conn.phase == Phase::Linger {
            self.p.recycle(b);
            return Ok(());
        }
        if conn.has_output() || !conn.pending.is_empty() {
            conn.pending.extend_from_slice(self.p.buffer(&b));
            self.p.recycle(b);
            if conn.has_output() {
                if conn.pending.len() > self.pending_max && !conn.x.recv_cancelled {
                    // Input piles up behind output the peer does not read: stop receiving.
                    if let Some(op) = conn.x.recv {
                        self.p.cancel(op, tok).map_err(|_| Close::Io)?;
                        conn.x.inflight += 1;
                        conn.x.recv_cancelled = true;
                    }
                }
                return Ok(());
            }
            return self.pump(conn, tok);
        }
        // The hot path: parse and answer from the kernel's buffer.
        let data = self.p.buffer(&b);
        let (used, _) = answer(&mut self.resp, &mut self.wbuf, self.st, self.t.now, conn, data);
        if used < data.len() {
            conn.pending.extend_from_slice(&data[used..]);
        }
        self.p.recycle(b);
        self.pump(conn, tok)
    }

    /// Moves the connection forward: sends what is owed, answers pending requests, and closes
    /// when the exchange is over. `Err` closes it.
    fn pump(&mut self, conn: &mut Conn, tok: Token) -> Result<(), Close> {
        loop {
            self.flush(conn, tok)?;
            if conn.x.out_busy {
                return Ok(());
            }
            if conn.http.is_closing() {
                return self.t.finish_closing(conn);
            }
            if conn.pending.is_empty() {
                break;
            }
            let input = std::mem::take(&mut conn.pending);
            let (used, _) =
                answer(&mut self.resp, &mut self.wbuf, self.st, self.t.now, conn, &input);
            if used < input.len() {
                conn.pending = input;
                conn.pending.drain(..used);
            }
            if self.wbuf.is_empty() && matches!(conn.body, Body::None) {
                if conn.http.is_closing() {
                    return self.t.finish_closing(conn);
                }
                break; // an incomplete request: wait for more
            }
        }
        if conn.read_closed {
            // The peer sent everything it will; an incomplete request never completes.
            return Err(Close::Done);
        }
        Ok(())
    }

    /// Starts the next output. A response without a body beyond its head (every cached file up
    /// to 16 KiB rides in the head's buffer) goes to the kernel as a send through the ring; a
    /// response with a body is written by [`Engine::write_direct`].
    fn flush(&mut self, conn: &mut Conn, tok: Token) -> Result<(), Close> {
        if conn.x.out_busy {
            return Ok(());
        }
        if !matches!(conn.body, Body::None) || !conn.x.rest.is_empty() {
            return self.write_direct(conn, tok);
        }
        if !self.wbuf.is_empty() {
            let spare = self.pool.pop().unwrap_or_else(|| Vec::with_capacity(8192));
            let v = std::mem::replace(&mut self.wbuf, spare);
            return self.send(conn, tok, SendBuf::from_vec(v));
        }
        Ok(())
    }

    /// Writes a response with a body as the readiness engine does ([`write_out`]): the head
    /// (with what was answered before it) and a cached body in one `sendmsg`, or the head then
    /// `sendfile` from the page cache, until the socket is full; then a one-shot poll in the ring
    /// says when it can take more. No part of a file is ever copied into user memory, so a slow
    /// reader of a large file costs no buffer (it used to hold a 64 KiB read-then-send buffer,
    /// kept after it left), and head and body leave together (as two sends they met Nagle and
    /// the peer's delayed ACK: 40 ms per response). Unsent head bytes wait in `rest`.
    fn write_direct(&mut self, conn: &mut Conn, tok: Token) -> Result<(), Close> {
        if !self.wbuf.is_empty() {
            let spare = self.pool.pop().unwrap_or_else(|| Vec::with_capacity(8192));
            conn.x.rest = std::mem::replace(&mut self.wbuf, spare);
            conn.x.rest_pos = 0;
        }
        let fd = conn.x.fd();
        let x = &mut conn.x;
        let (sent, done) = write_out(self.st, fd, &x.rest[x.rest_pos..], &mut conn.body)?;
        x.rest_pos += sent;
        if x.rest_pos >= x.rest.len() && x.rest.capacity() > 0 {
            let v = std::mem::take(&mut x.rest);
            x.rest_pos = 0;
            self.give_back(v);
        }
        if done {
            return Ok(());
        }
        self.p.poll_writable(fd, tok).map_err(|_| Close::Io)?;
        conn.x.inflight += 1;
        conn.x.out_busy = true;
        Ok(())
    }

    fn send(&mut self, conn: &mut Conn, tok: Token, b: SendBuf) -> Result<(), Close> {
        self.p.send(conn.x.fd(), b, tok).map_err(|_| Close::Io)?;
        conn.x.inflight += 1;
        conn.x.out_busy = true;
        Ok(())
    }

    /// Puts a connection back with the receive and timer its state needs, or closes it.
    fn settle(&mut self, mut c: Conn, idx: usize, r: Result<(), Close>) {
        if let Some(why) = self.t.must_close(&mut c, r) {
            return self.close(c, idx, why);
        }
        // Keep a receive armed unless the peer is done or input piles up behind output.
        if c.x.recv.is_none() && !c.read_closed && c.pending.len() <= self.pending_max {
            match self.p.recv_multi(c.x.fd(), c.token(idx)) {
                Ok(op) => {
                    c.x.recv = Some(op);
                    c.x.inflight += 1;
                }
                Err(_) => return self.close(c, idx, Close::Io),
            }
        }
        self.t.file_timer(idx, &mut c);
        self.t.put(idx, c);
    }

    /// Closes through the ring: a plain close when nothing is in flight, else cancel-then-close.
    /// The slot stays taken until the connection's last operation has completed.
    fn close(&mut self, mut c: Conn, idx: usize, why: Close) {
        self.t.closed(why);
        c.x.closing = true;
        c.pending = Vec::new();
        if !c.x.out_busy {
            c.body = Body::None;
        }
        let tok = c.token(idx);
        if let Some(fd) = c.x.fd.take() {
            let raw = fd.as_raw_fd();
            let queued = if c.x.inflight == 0 {
                self.p.close(fd, tok).map(|_| 1)
            } else {
                self.p.cancel_and_close(fd, tok).map(|_| 2)
            };
            match queued {
                Ok(n) => c.x.inflight += n,
                Err(_) => {
                    // Nothing was queued (the submission ring stayed full): close directly;
                    // operations in flight still hold the socket and complete (cancelled or
                    // not) under this slot's token.
                    // SAFETY: `raw` came from the `OwnedFd` given to the failed call, which
                    // released it without closing it; nothing else owns it.
                    drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) });
                }
            }
        }
        self.release_or_keep(c, idx);
    }

    /// SIGTERM/SIGINT: stop accepting, close idle connections, let the rest finish.
    ///
    /// As the readiness engine does, the table takes in the connections already queued and
    /// shuts the listener ([`Table::begin_stop`]); the multishot accept is cancelled. The next
    /// wait runs the kernel's pending work, then [`Engine::close_idle`] closes what is idle.
    fn begin_stop(&mut self) {
        for (fd, _) in self.t.begin_stop(self.listener) {
            self.add_conn(fd);
        }
        if let Some(op) = self.accept {
            if !self.accept_cancelled && self.p.cancel(op, LISTENER).is_ok() {
                self.accept_cancelled = true;
            }
        }
        self.sweep = true;
    }

    /// The drain's sweep: closes every connection that owes nothing, holds no partial request
    /// and has nothing unread in its socket; every other one is answered first (`Connection:
    /// close`) and closed by [`Engine::settle`] once its response is out.
    ///
    /// A request may still be in a socket though its receive has completed nothing yet: the
    /// provided-buffer ring ran dry (the receive ended with `ENOBUFS` and is re-armed), or the
    /// kernel has not run the receive. Closing on "no completion yet" answered 30-60 of 1,000
    /// requests queued at SIGTERM; so the socket itself is asked (a peek). A receive that the
    /// kernel completes while the sockets are looked at is collected before anything closes.
    fn close_idle(&mut self, out: &mut Vec<Completion>) -> io::Result<()> {
        let mut idle = Vec::new();
        for idx in 0..self.t.slots() {
            let Some(mut c) = self.t.take_slot(idx) else { continue };
            if c.x.live() && c.drained() && !sys::has_input(c.x.fd()) {
                idle.push(c.token(idx));
            }
            self.t.put(idx, c);
        }
        out.clear();
        match self.p.complete(out, Some(Duration::ZERO)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        for c in out.drain(..) {
            self.on_completion(c)?;
        }
        for tok in idle {
            let Ok((idx, mut c)) = self.t.take(tok) else { continue };
            if c.x.live() && c.drained() {
                self.close(c, idx, Close::Done);
            } else {
                self.t.put(idx, c);
            }
        }
        Ok(())
    }
}
