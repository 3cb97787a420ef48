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
//! | bodies | cached bodies up to 16 KiB ride with the head; larger cached ones are a second send straight from the cache (`Arc`, no copy); files are read through the ring in 64 KiB chunks, each sent when its read completes |
//! | short sends | the send's buffer comes back advanced; the rest is sent again |
//! | pipelining | input that arrives while a response is in flight waits in the connection's buffer (bounded: past it the receive is cancelled, and re-armed once the output drains) |
//! | buffer ring exhaustion | a receive ends with `ENOBUFS` (counted); buffers are never held across a wait, so re-arming it is always safe and the data is still in the socket |
//! | multishot ended by the kernel | any last completion (`more == false`) of a receive or accept re-arms it |
//! | timeouts | the readiness engine's coarse timer wheel; the wait's own timeout (`IORING_ENTER_EXT_ARG`) is the next tick, so no timeout operation per connection |
//! | close with operations in flight | cancel-then-close linked in the ring; the connection's slot stays taken until its last operation completes, and every token carries the slot's generation, so no completion is ever acted on for a reused descriptor or slot |
//! | `EMFILE` | a multishot accept ending with `EMFILE`/`ENFILE`: the reserve descriptor is freed, queued connections are accepted and closed, the accept re-armed (or paused 200 ms if nothing could be shed): no spin |
//! | shutdown | queued connections are taken in, the accept cancelled and the listener shut; idle connections are closed after one more short wait (a request already in a socket is answered), the rest once their response is out (up to the drain timeout) |

use crate::respond::{Body, Peer, Responder};
use crate::shed::Shedder;
use crate::stats::{bump, ServerError, WorkerStats};
use crate::wheel::Wheel;
use crate::{sys, Config, Shared};
use ioscale_dispatch::completion::{
    BufId, Completion, CompletionConfig, OpId, OpKind, Proactor, SendBuf, Value,
};
use ioscale_dispatch::{Token, Waker};
use ioscale_http::response::write_error;
use ioscale_http::{Connection, Step, Timer};
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);
/// Responses are batched into the write buffer up to this size (pipelining).
const WBUF_HIGH: usize = 64 * 1024;
/// File bodies go out in chunks of this size (one read and one send each).
const CHUNK: usize = 64 * 1024;
/// Spare output buffers kept for reuse.
const POOL_MAX: usize = 256;
/// A spare buffer larger than this is freed rather than kept.
const POOL_KEEP_CAP: usize = 256 * 1024;
/// How long a refused connection is drained before it is closed (see `worker.rs`).
const LINGER: Duration = Duration::from_secs(2);
/// How long the listener rests when no descriptor can be had even for shedding.
const ACCEPT_PAUSE: Duration = Duration::from_millis(200);
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

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Header,
    Send,
    Linger,
}

/// Why a connection closes.
#[derive(Copy, Clone, Debug)]
enum Close {
    Done,
    Reset,
    Io,
}

#[derive(Debug)]
struct Conn {
    /// `None` once the close is submitted.
    fd: Option<OwnedFd>,
    gen: u32,
    http: Connection,
    /// Input not consumed yet (a partial head, or pipelined requests waiting for output).
    pending: Vec<u8>,
    /// What must follow the output in flight.
    body: Body,
    /// A send or a file read is in flight (one at a time: responses go out in order).
    out_busy: bool,
    /// The armed multishot receive.
    recv: Option<OpId>,
    /// That receive was cancelled because input piled up.
    recv_cancelled: bool,
    /// Operations submitted under this connection's token and not yet finished.
    inflight: u32,
    phase: Phase,
    deadline: Instant,
    filed: Option<Instant>,
    timer_seq: u32,
    /// Learnt on the first request that needs it (the stats endpoint).
    loopback: Option<bool>,
    /// Learnt on the first request when the access log is on (a getpeername).
    addr: Option<IpAddr>,
    read_closed: bool,
    rejected: bool,
    closing: bool,
}

impl Conn {
    fn has_output(&self) -> bool {
        self.out_busy || !matches!(self.body, Body::None)
    }

    fn raw(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, |f| f.as_raw_fd())
    }
}

fn token_of(idx: usize, gen: u32) -> Token {
    Token((gen as usize) << 32 | idx)
}

struct Engine<'a> {
    id: usize,
    cfg: &'a Config,
    shared: &'a Shared,
    st: &'a WorkerStats,
    p: Proactor,
    listener: RawFd,
    accept: Option<OpId>,
    accept_cancelled: bool,
    paused_until: Option<Instant>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    open: usize,
    next_gen: u32,
    wheel: Wheel,
    expired: Vec<u64>,
    wbuf: Vec<u8>,
    pool: Vec<Vec<u8>>,
    resp: Responder<'a>,
    shed: Shedder,
    now: Instant,
    waker: Arc<Waker>,
    wake_armed: bool,
    stopping: Option<Instant>,
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
    let now = Instant::now();
    let st = &shared.stats.workers[id];
    let resp = Responder::new(cfg, shared, st)?;
    let mut e = Engine {
        id,
        cfg,
        shared,
        st,
        p,
        listener,
        accept: None,
        accept_cancelled: false,
        paused_until: None,
        conns: Vec::new(),
        free: Vec::new(),
        open: 0,
        next_gen: 1,
        wheel: Wheel::new(now),
        expired: Vec::new(),
        wbuf: Vec::with_capacity(8192),
        pool: Vec::new(),
        resp,
        shed: Shedder::new(),
        now,
        waker,
        wake_armed: false,
        stopping: None,
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
            self.shared.stats.poll_snapshot(self.id, self.st);
            if self.stopping.is_none() && self.shared.stop.load(Ordering::Relaxed) {
                self.begin_stop();
            }
            if let Some(until) = self.stopping {
                if self.open == 0 || self.now >= until {
                    return Ok(());
                }
            }
            if let Some(t) = self.paused_until {
                if self.now >= t && self.stopping.is_none() {
                    self.paused_until = None;
                    if self.accept.is_none() {
                        self.arm_accept()?;
                    }
                }
            }
            let mut timeout = self.wheel.timeout(self.now);
            for t in [self.paused_until, self.stopping].into_iter().flatten() {
                let d = t.saturating_duration_since(self.now) + Duration::from_millis(1);
                timeout = Some(timeout.map_or(d, |x| x.min(d)));
            }
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
            self.now = Instant::now();
            self.resp.date.update(SystemTime::now());
            self.resp.tick(self.now);
            for c in out.drain(..) {
                self.on_completion(c)?;
            }
            if self.sweep {
                self.sweep = false;
                self.close_idle();
            }
            self.st.publish_completion(&self.p.counters());
            self.expire();
        }
    }

    /// After the loop: closes what is left and lets the ring finish its operations (bounded),
    /// so that no operation outlives the descriptors and buffers it uses.
    fn finish(&mut self, out: &mut Vec<Completion>) {
        for idx in 0..self.conns.len() {
            if let Some(c) = self.conns[idx].take() {
                if c.closing {
                    self.conns[idx] = Some(c);
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
                    if self.stopping.is_none() || self.open > 0 {
                        self.arm_wake()?;
                    }
                }
                Ok(())
            }
            Token(t) => {
                let idx = t & 0xffff_ffff;
                let gen = (t >> 32) as u32;
                let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
                    return self.stray(c);
                };
                if conn.gen != gen {
                    // A completion for an earlier connection in this slot: never acted on.
                    self.conns[idx] = Some(conn);
                    return self.stray(c);
                }
                if !c.more {
                    conn.inflight = conn.inflight.saturating_sub(1);
                }
                if conn.closing {
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

    /// A completion nobody can act on: give back what it carries.
    fn stray(&mut self, c: Completion) -> io::Result<()> {
        self.drop_result(c);
        Ok(())
    }

    fn drop_result(&mut self, c: Completion) {
        if let Ok(Value::Received(b)) = c.result {
            self.p.recycle(b);
        }
        if let Some(v) = c.buffer.and_then(SendBuf::into_vec) {
            self.give_back(v);
        }
    }

    fn release_or_keep(&mut self, conn: Conn, idx: usize) {
        if conn.inflight == 0 {
            drop(conn);
            self.free.push(idx);
        } else {
            self.conns[idx] = Some(conn);
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
                self.shed.accepted(self.id);
                self.add_conn(fd);
            }
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                ) =>
            {
                self.shed(&e);
                if c.more && !self.accept_cancelled {
                    // The kernel would keep failing on the same queued connection: stop it;
                    // its last completion re-arms (or the pause does).
                    if let Some(op) = self.accept {
                        self.p.cancel(op, LISTENER)?;
                        self.accept_cancelled = true;
                    }
                }
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(
                        libc::ECONNABORTED
                            | libc::EPROTO
                            | libc::EPERM
                            | libc::EINTR
                            | libc::EAGAIN
                    )
                ) => {}
            Err(e) => {
                self.st.error(ServerError::AcceptFailed);
                eprintln!("ioscale serve: worker {}: accept failed: {e}", self.id);
                self.paused_until = Some(self.now + ACCEPT_PAUSE);
            }
        }
        if self.accept.is_none() && self.stopping.is_none() && self.paused_until.is_none() {
            self.arm_accept()?;
        }
        Ok(())
    }

    /// Out of descriptors: sheds what is queued ([`Shedder`]); pauses accepting when nothing could
    /// be shed.
    fn shed(&mut self, e: &io::Error) {
        if self.shed.shed(self.id, self.listener, self.st, e) {
            self.paused_until = Some(self.now + ACCEPT_PAUSE);
        }
    }

    fn add_conn(&mut self, fd: OwnedFd) {
        if self.shared.open.fetch_add(1, Ordering::Relaxed) >= self.cfg.max_conns {
            self.shared.open.fetch_sub(1, Ordering::Relaxed);
            self.st.error(ServerError::ShedMaxConns);
            return;
        }
        let idx = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1).max(1);
        let recv = match self.p.recv_multi(fd.as_raw_fd(), token_of(idx, gen)) {
            Ok(op) => op,
            Err(e) => {
                self.shared.open.fetch_sub(1, Ordering::Relaxed);
                self.free.push(idx);
                self.st.error(ServerError::RegisterFailed);
                if self.st.server_errors[ServerError::RegisterFailed as usize]
                    .load(Ordering::Relaxed)
                    == 1
                {
                    eprintln!(
                        "ioscale serve: worker {}: cannot arm a receive: {e}; connection closed",
                        self.id
                    );
                }
                return;
            }
        };
        bump(&self.st.accepted, 1);
        self.open += 1;
        let deadline = self.now + self.cfg.idle_timeout;
        self.wheel.insert(wheel_key(idx, gen, 0), deadline);
        self.conns[idx] = Some(Conn {
            fd: Some(fd),
            gen,
            http: Connection::new(self.cfg.limits),
            pending: Vec::new(),
            body: Body::None,
            out_busy: false,
            recv: Some(recv),
            recv_cancelled: false,
            inflight: 1,
            phase: Phase::Idle,
            deadline,
            filed: Some(deadline),
            timer_seq: 0,
            loopback: None,
            addr: None,
            read_closed: false,
            rejected: false,
            closing: false,
        });
    }

    // -----------------------------------------------------------------------------------------
    // connections

    /// Acts on one completion of a live connection. `Err` closes it.
    fn on_conn(&mut self, conn: &mut Conn, idx: usize, c: Completion) -> Result<(), Close> {
        let tok = token_of(idx, conn.gen);
        match c.kind {
            OpKind::RecvMulti | OpKind::Recv => {
                if !c.more {
                    conn.recv = None;
                    conn.recv_cancelled = false;
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
                    Err(e) if conn.phase == Phase::Linger => {
                        let _ = e;
                        Err(Close::Done)
                    }
                    Err(e) => Err(io_close(&e)),
                }
            }
            OpKind::Send => {
                conn.out_busy = false;
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
                        Err(io_close(&e))
                    }
                }
            }
            OpKind::Read => {
                conn.out_busy = false;
                match (c.result, c.buffer) {
                    (Ok(Value::Read(n)), Some(b)) if n > 0 => {
                        if let Body::File(_, off, _) = &mut conn.body {
                            *off += n as u64;
                        }
                        self.send(conn, tok, b)
                    }
                    // The file shrank under us: the promised length cannot be sent.
                    (_, b) => {
                        if let Some(v) = b.and_then(SendBuf::into_vec) {
                            self.give_back(v);
                        }
                        Err(Close::Io)
                    }
                }
            }
            OpKind::Cancel | OpKind::Close | OpKind::Timeout => Ok(()),
            OpKind::Accept | OpKind::AcceptMulti => Ok(()),
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
                if conn.pending.len() > self.pending_max && !conn.recv_cancelled {
                    // Input piles up behind output the peer does not read: stop receiving.
                    if let Some(op) = conn.recv {
                        self.p.cancel(op, tok).map_err(|_| Close::Io)?;
                        conn.inflight += 1;
                        conn.recv_cancelled = true;
                    }
                }
                return Ok(());
            }
            return self.pump(conn, tok);
        }
        // The hot path: parse and answer from the kernel's buffer.
        let data = self.p.buffer(&b);
        let (used, _) = process(&mut self.resp, &mut self.wbuf, self.st, self.now, conn, data);
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
            if conn.out_busy {
                return Ok(());
            }
            if conn.http.is_closing() {
                return self.finish_closing(conn);
            }
            if conn.pending.is_empty() {
                break;
            }
            let input = std::mem::take(&mut conn.pending);
            let (used, _) =
                process(&mut self.resp, &mut self.wbuf, self.st, self.now, conn, &input);
            if used < input.len() {
                conn.pending = input;
                conn.pending.drain(..used);
            }
            if self.wbuf.is_empty() && matches!(conn.body, Body::None) {
                if conn.http.is_closing() {
                    return self.finish_closing(conn);
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

    /// Starts the next output: the write buffer, else the rest of the body.
    fn flush(&mut self, conn: &mut Conn, tok: Token) -> Result<(), Close> {
        if conn.out_busy {
            return Ok(());
        }
        if !self.wbuf.is_empty() {
            let spare = self.pool.pop().unwrap_or_else(|| Vec::with_capacity(8192));
            let v = std::mem::replace(&mut self.wbuf, spare);
            return self.send(conn, tok, SendBuf::from_vec(v));
        }
        match &mut conn.body {
            Body::None => Ok(()),
            Body::Memory(m, pos, end) => {
                let b = SendBuf::shared(m.clone(), *pos..*end);
                conn.body = Body::None;
                self.send(conn, tok, b)
            }
            Body::File(f, off, end) => {
                if *off >= *end {
                    conn.body = Body::None;
                    return Ok(());
                }
                let want = usize::try_from(*end - *off).unwrap_or(usize::MAX).min(CHUNK);
                let (fd, at) = (f.as_raw_fd(), *off);
                let mut v = self.pool.pop().unwrap_or_default();
                v.resize(want, 0);
                // The file stays open: the connection holds its `Arc` until the read completes
                // (a closing connection keeps its slot, and its body, until then).
                self.p.read_at(fd, v, at, tok).map_err(|_| Close::Io)?;
                conn.inflight += 1;
                conn.out_busy = true;
                Ok(())
            }
        }
    }

    fn send(&mut self, conn: &mut Conn, tok: Token, b: SendBuf) -> Result<(), Close> {
        self.p.send(conn.raw(), b, tok).map_err(|_| Close::Io)?;
        conn.inflight += 1;
        conn.out_busy = true;
        Ok(())
    }

    /// Output sent and no more requests: close, or drain a refused client before closing.
    fn finish_closing(&mut self, conn: &mut Conn) -> Result<(), Close> {
        if conn.rejected && !conn.read_closed {
            let _ = sys::shutdown_write(conn.raw());
            conn.phase = Phase::Linger;
            conn.deadline = self.now + LINGER;
            conn.pending = Vec::new();
            return Ok(());
        }
        Err(Close::Done)
    }

    /// Puts a connection back with the receive and timer its state needs, or closes it.
    fn settle(&mut self, mut c: Conn, idx: usize, r: Result<(), Close>) {
        if let Err(why) = r {
            return self.close(c, idx, why);
        }
        // Draining: a connection whose last response is out and that holds no partial request
        // is done (its response said keep-alive if it began before the stop).
        if self.stopping.is_some() && self.idle_for_drain(&mut c) {
            return self.close(c, idx, Close::Done);
        }
        // Keep a receive armed unless the peer is done or input piles up behind output.
        if c.recv.is_none() && !c.read_closed && c.pending.len() <= self.pending_max {
            match self.p.recv_multi(c.raw(), token_of(idx, c.gen)) {
                Ok(op) => {
                    c.recv = Some(op);
                    c.inflight += 1;
                }
                Err(_) => return self.close(c, idx, Close::Io),
            }
        }
        let phase = if c.phase == Phase::Linger {
            Phase::Linger
        } else if c.has_output() {
            c.deadline = self.now + self.cfg.idle_timeout;
            Phase::Send
        } else if c.http.timer(c.pending.len()) == Timer::Header {
            if c.phase != Phase::Header {
                c.deadline = self.now + self.cfg.header_timeout;
            }
            Phase::Header
        } else {
            c.deadline = self.now + self.cfg.idle_timeout;
            Phase::Idle
        };
        c.phase = phase;
        if !matches!(c.filed, Some(f) if f <= c.deadline) {
            c.timer_seq = c.timer_seq.wrapping_add(1);
            self.wheel.insert(wheel_key(idx, c.gen, c.timer_seq), c.deadline);
            c.filed = Some(c.deadline);
        }
        self.conns[idx] = Some(c);
    }

    /// Closes through the ring: a plain close when nothing is in flight, else cancel-then-close.
    /// The slot stays taken until the connection's last operation has completed.
    fn close(&mut self, mut c: Conn, idx: usize, why: Close) {
        match why {
            Close::Done => {}
            Close::Reset => self.st.error(ServerError::Reset),
            Close::Io => self.st.error(ServerError::Io),
        }
        self.open -= 1;
        self.shared.open.fetch_sub(1, Ordering::Relaxed);
        bump(&self.st.closed, 1);
        c.closing = true;
        c.pending = Vec::new();
        if !c.out_busy {
            c.body = Body::None;
        }
        let tok = token_of(idx, c.gen);
        if let Some(fd) = c.fd.take() {
            let raw = fd.as_raw_fd();
            let queued = if c.inflight == 0 {
                self.p.close(fd, tok).map(|_| 1)
            } else {
                self.p.cancel_and_close(fd, tok).map(|_| 2)
            };
            match queued {
                Ok(n) => c.inflight += n,
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

    /// Acts on the timers that are due.
    fn expire(&mut self) {
        let mut due = std::mem::take(&mut self.expired);
        self.wheel.expire(self.now, &mut due);
        for &key in &due {
            let (idx, gen, seq) = split_key(key);
            let Some(c) = self.conns.get_mut(idx).and_then(Option::as_mut) else { continue };
            if (c.gen & 0xfffff) != gen || (c.timer_seq & 0xfff) != seq || c.closing {
                continue; // a stale entry: a newer one is filed
            }
            if c.deadline > self.now {
                c.timer_seq = c.timer_seq.wrapping_add(1);
                c.filed = Some(c.deadline);
                let (deadline, k) = (c.deadline, wheel_key(idx, c.gen, c.timer_seq));
                self.wheel.insert(k, deadline);
                continue;
            }
            let Some(mut c) = self.conns[idx].take() else { continue };
            match c.phase {
                Phase::Header => {
                    self.st.error(ServerError::TimeoutHeader);
                    if let Some(e) = c.http.timed_out(c.pending.len()) {
                        self.st.http_error(e.kind());
                        self.st.response(408);
                        let mut out = Vec::new();
                        write_error(&mut out, e.status(), &self.resp.date, false, false);
                        // Nothing else is being sent (the header phase has no output), so a
                        // direct non-blocking send cannot interleave with the ring's.
                        let _ = sys::send2(c.raw(), &out, &[], false);
                    }
                }
                Phase::Idle => self.st.error(ServerError::TimeoutIdle),
                Phase::Send => self.st.error(ServerError::TimeoutSend),
                Phase::Linger => {}
            }
            self.close(c, idx, Close::Done);
        }
        due.clear();
        self.expired = due;
    }

    /// SIGTERM/SIGINT: stop accepting, close idle connections, let the rest finish.
    ///
    /// As the readiness engine does: connections the kernel has already completed are taken in
    /// first, then the listener is shut (a new connect is refused at once instead of waiting
    /// unanswered). Idle connections are closed after one more short wait, so a request already
    /// in their sockets is answered (with `Connection: close`) rather than dropped.
    fn begin_stop(&mut self) {
        for _ in 0..4096 {
            match sys::accept(self.listener) {
                Ok((fd, _)) => self.add_conn(fd),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.stopping = Some(self.now + self.cfg.drain_timeout);
        self.paused_until = None;
        if let Some(op) = self.accept {
            if !self.accept_cancelled && self.p.cancel(op, LISTENER).is_ok() {
                self.accept_cancelled = true;
            }
        }
        let _ = sys::shutdown_read(self.listener);
        self.sweep = true;
    }

    /// Whether a connection has nothing left to do while the server drains (and tells its
    /// state machine that the server is draining).
    fn idle_for_drain(&self, c: &mut Conn) -> bool {
        c.phase != Phase::Linger && !c.has_output() && c.http.drain(c.pending.len())
    }

    /// Closes every connection with nothing left to do (the drain's sweep).
    fn close_idle(&mut self) {
        for idx in 0..self.conns.len() {
            let Some(mut c) = self.conns[idx].take() else { continue };
            if !c.closing && self.idle_for_drain(&mut c) {
                self.close(c, idx, Close::Done);
            } else {
                self.conns[idx] = Some(c);
            }
        }
    }
}

/// Answers the complete requests in `input` into the write buffer. Returns the bytes used and
/// whether it stopped early (output to send first) with input left.
fn process(
    resp: &mut Responder<'_>,
    wbuf: &mut Vec<u8>,
    st: &WorkerStats,
    now: Instant,
    c: &mut Conn,
    input: &[u8],
) -> (usize, bool) {
    // The server's own endpoints (stats and its kin) are the only answers that depend on it.
    const OWN_PREFIX: &[u8] = b"/.ioscale/";
    let mut pos = 0;
    // The first request completed here began in an earlier pass if a head was pending.
    let mut waited = c.phase == Phase::Header;
    loop {
        if wbuf.len() >= WBUF_HIGH || !matches!(c.body, Body::None) {
            return (pos, pos < input.len());
        }
        let at = pos;
        let (used, step) = c.http.step(&input[pos..]);
        pos += used;
        match step {
            Step::NeedMore | Step::Close => return (pos, false),
            Step::Request(req) => {
                bump(&st.requests, 1);
                // Only the stats endpoint asks where the client is: learnt once, when needed
                // (a getpeername), instead of with every accept.
                let loopback = if req.path().starts_with(OWN_PREFIX) {
                    let fd = c.raw();
                    *c.loopback.get_or_insert_with(|| sys::peer_is_loopback(fd))
                } else {
                    c.loopback.unwrap_or(false)
                };
                if c.addr.is_none() && resp.logging() {
                    c.addr = sys::peer_ip(c.raw());
                }
                let ka = c.http.keep_alive();
                let peer = Peer { keep_alive: ka, loopback, addr: c.addr, head: &input[at..pos] };
                if waited {
                    waited = false;
                    resp.head_waited(c.deadline, now);
                }
                c.body = resp.serve(&req, peer, now, wbuf);
            }
            Step::Reject(e) => {
                resp.reject(&e, wbuf);
                c.rejected = true;
                return (input.len(), false);
            }
        }
    }
}

/// Wheel keys: 32 bits of slot, 20 of generation, 12 of timer sequence.
fn wheel_key(idx: usize, gen: u32, seq: u32) -> u64 {
    (idx as u64) | (u64::from(gen & 0xfffff) << 32) | (u64::from(seq & 0xfff) << 52)
}

fn split_key(k: u64) -> (usize, u32, u32) {
    ((k & 0xffff_ffff) as usize, ((k >> 32) & 0xfffff) as u32, (k >> 52) as u32)
}

fn io_close(e: &io::Error) -> Close {
    match e.raw_os_error() {
        Some(libc::ECONNRESET | libc::EPIPE | libc::ETIMEDOUT | libc::ECANCELED) => Close::Reset,
        _ => Close::Io,
    }
}
