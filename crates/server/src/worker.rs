//! One worker's event loop: a dispatcher, a listener, the connections, the timer wheel, the
//! file cache, and two scratch buffers shared by all its connections.
//!
//! Mechanism-neutral by construction: it asks the dispatcher only `trigger()` (re-arm one-shot
//! registrations after each notice) and `events_are_hints()` (then every read, write and accept
//! goes on until `EAGAIN`). On a level-triggered mechanism it reads once per notice unless the
//! buffer filled: the next wait reports what is left, and the `EAGAIN` read is saved.

use crate::respond::{Body, Peer, Responder};
use crate::shed::Shedder;
use crate::stats::{bump, ServerError, WorkerStats};
use crate::wheel::Wheel;
use crate::{sys, Config, Shared};
use ioscale_dispatch::{Dispatcher, Events, Interest, Token, Trigger, Waker};
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
/// How long a refused connection is drained before it is closed (nginx's lingering close: a
/// close with unread input would reset the connection and could destroy the error response).
const LINGER: Duration = Duration::from_secs(2);
/// How long the listener rests when no descriptor can be had even for shedding.
const ACCEPT_PAUSE: Duration = Duration::from_millis(200);

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Header,
    Send,
    Linger,
}

#[derive(Debug)]
struct Conn {
    fd: OwnedFd,
    gen: u32,
    http: Connection,
    pending_in: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    body: Body,
    interest: Interest,
    phase: Phase,
    deadline: Instant,
    filed: Option<Instant>,
    timer_seq: u32,
    loopback: bool,
    addr: Option<IpAddr>,
    read_closed: bool,
    rejected: bool,
}

impl Conn {
    fn has_output(&self) -> bool {
        self.out_pos < self.out.len() || !matches!(self.body, Body::None)
    }
}

/// Why a connection closes.
#[derive(Copy, Clone, Debug)]
enum Close {
    Done,
    Reset,
    Io,
}

struct Worker<'a> {
    id: usize,
    cfg: &'a Config,
    shared: &'a Shared,
    st: &'a WorkerStats,
    d: Box<dyn Dispatcher>,
    listener: RawFd,
    listening: bool,
    paused_until: Option<Instant>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    open: usize,
    next_gen: u32,
    wheel: Wheel,
    expired: Vec<u64>,
    wbuf: Vec<u8>,
    resp: Responder<'a>,
    hints: bool,
    oneshot: bool,
    shed: Shedder,
    now: Instant,
    waker: Arc<Waker>,
    stopping: Option<Instant>,
    switches_seen: u64,
}

fn token_of(idx: usize, gen: u32) -> Token {
    Token((gen as usize) << 32 | idx)
}

/// Runs worker `id` until the server stops.
pub(crate) fn run(
    id: usize,
    mechanism: ioscale_dispatch::Mechanism,
    cfg: &Config,
    shared: &Shared,
    listener: RawFd,
) -> io::Result<()> {
    // Opened here, in the worker's own thread: the RT-signal mechanisms direct their signals to
    // the thread that opened them.
    let mut d = mechanism.open(&cfg.dispatch_options())?;
    let waker = Arc::new(Waker::new(&mut *d, WAKER)?);
    shared.wakers.lock().map_err(|_| io::Error::other("poisoned"))?.push(waker.clone());
    let now = Instant::now();
    let st = &shared.stats.workers[id];
    st.tid.store(ioscale_sys::cpu::gettid() as u64, Ordering::Relaxed);
    let resp = Responder::new(cfg, shared, st)?;
    let mut w = Worker {
        id,
        cfg,
        shared,
        st,
        hints: d.events_are_hints(),
        oneshot: d.trigger() == Trigger::Oneshot,
        d,
        listener,
        listening: false,
        paused_until: None,
        conns: Vec::new(),
        free: Vec::new(),
        open: 0,
        next_gen: 1,
        wheel: Wheel::new(now),
        expired: Vec::new(),
        wbuf: Vec::with_capacity(WBUF_HIGH * 2),
        resp,
        shed: Shedder::new(),
        now,
        waker,
        stopping: None,
        switches_seen: 0,
    };
    w.listen()?;
    // Scratch input: a whole head plus room, shared by every connection of this worker.
    let mut rbuf = vec![0u8; cfg.limits.max_head + 16 * 1024].into_boxed_slice();
    let mut events = Events::with_capacity(1024);
    let result = w.main_loop(&mut events, &mut rbuf);
    for idx in 0..w.conns.len() {
        if let Some(c) = w.conns[idx].take() {
            w.close(c, idx, Close::Done);
        }
    }
    if w.listening {
        let _ = w.d.deregister(listener);
    }
    let _ = w.d.deregister(w.waker.as_raw_fd());
    w.st.publish(&w.d.counters());
    result
}

impl Worker<'_> {
    fn listen(&mut self) -> io::Result<()> {
        if self.cfg.exclusive {
            self.d.register_exclusive(self.listener, LISTENER, Interest::READABLE)?;
        } else {
            self.d.register(self.listener, LISTENER, Interest::READABLE)?;
        }
        self.listening = true;
        Ok(())
    }

    fn main_loop(&mut self, events: &mut Events, rbuf: &mut [u8]) -> io::Result<()> {
        loop {
            // ops hook: counter snapshots (SIGUSR2), one relaxed load per pass.
            self.shared.stats.poll_snapshot(self.id, self.st);
            if self.stopping.is_none() && self.shared.stop.load(Ordering::Relaxed) {
                self.begin_stop(rbuf);
            }
            if let Some(until) = self.stopping {
                if self.open == 0 || self.now >= until {
                    return Ok(());
                }
            }
            if let Some(t) = self.paused_until {
                if self.now >= t && self.stopping.is_none() {
                    self.paused_until = None;
                    self.listen()?;
                }
            }
            let mut timeout = self.wheel.timeout(self.now);
            for t in [self.paused_until, self.stopping].into_iter().flatten() {
                let d = t.saturating_duration_since(self.now) + Duration::from_millis(1);
                timeout = Some(timeout.map_or(d, |x| x.min(d)));
            }
            match self.d.wait(events, timeout) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            self.now = Instant::now();
            self.resp.date.update(SystemTime::now());
            self.resp.tick(self.now);
            let counters = self.d.counters();
            self.st.publish(&counters);
            if counters.mode_switches != self.switches_seen {
                self.switches_seen = counters.mode_switches;
                if let Ok(mut s) = self.st.switches.lock() {
                    *s = self.d.switches();
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_ready(),
                    WAKER => self.waker.reset(&mut *self.d)?,
                    Token(t) => {
                        let idx = t & 0xffff_ffff;
                        let gen = (t >> 32) as u32;
                        let Some(mut c) = self.conns.get_mut(idx).and_then(Option::take) else {
                            continue;
                        };
                        if c.gen != gen {
                            self.conns[idx] = Some(c);
                            continue;
                        }
                        let r = if c.phase == Phase::Linger {
                            self.linger(&mut c, rbuf)
                        } else {
                            self.drive(&mut c, ev.is_readable(), rbuf)
                        };
                        self.settle(c, idx, r);
                    }
                }
            }
            self.expire(rbuf);
        }
    }

    // -----------------------------------------------------------------------------------------
    // accepting

    fn accept_ready(&mut self) {
        if !self.listening || self.stopping.is_some() {
            return;
        }
        // Hints (edge, signals) must be drained: no further notice comes for what is queued.
        let multi = self.cfg.multi_accept || self.hints;
        bump(&self.st.listener_notices, 1);
        let mut first = true;
        let mut took = false;
        loop {
            let r = sys::accept_from(self.listener);
            if first {
                first = false;
                if matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
                    bump(&self.st.accept_eagain, 1);
                }
            }
            match r {
                Ok((fd, addr)) => {
                    took = true;
                    self.shed.accepted(self.id);
                    self.add_conn(fd, addr);
                    if !multi {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ECONNABORTED | libc::EPROTO | libc::EPERM)
                    ) =>
                {
                    continue
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) =>
                {
                    self.shed(&e);
                    break;
                }
                // Stopping: another worker shut the shared listener down (EINVAL).
                Err(_) if self.shared.stop.load(Ordering::Relaxed) => break,
                Err(e) => {
                    self.st.error(ServerError::AcceptFailed);
                    eprintln!("ioscale serve: worker {}: accept failed: {e}", self.id);
                    self.pause_listener();
                    break;
                }
            }
        }
        if took && self.cfg.exclusive_rotate && self.listening {
            // Back of the kernel's wait queue: the next connection wakes another worker.
            let _ = self.d.deregister(self.listener);
            if let Err(e) = self.d.register_exclusive(self.listener, LISTENER, Interest::READABLE) {
                eprintln!(
                    "ioscale serve: worker {}: cannot re-register the listener: {e}",
                    self.id
                );
                self.listening = false;
                self.pause_listener();
            }
        } else if self.oneshot && self.listening {
            if let Err(e) = self.d.reregister(self.listener, LISTENER, Interest::READABLE) {
                eprintln!("ioscale serve: worker {}: cannot re-arm the listener: {e}", self.id);
                self.pause_listener();
            }
        }
    }

    /// Out of descriptors: sheds what is queued ([`Shedder`]); pauses accepting when nothing could
    /// be shed.
    fn shed(&mut self, e: &io::Error) {
        if self.shed.shed(self.id, self.listener, self.st, e) {
            self.pause_listener();
        }
    }

    fn pause_listener(&mut self) {
        if self.listening {
            let _ = self.d.deregister(self.listener);
            self.listening = false;
        }
        self.paused_until = Some(self.now + ACCEPT_PAUSE);
    }

    fn add_conn(&mut self, fd: OwnedFd, addr: Option<IpAddr>) {
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
        if let Err(e) = self.d.register(fd.as_raw_fd(), token_of(idx, gen), Interest::READABLE) {
            self.shared.open.fetch_sub(1, Ordering::Relaxed);
            self.free.push(idx);
            self.st.error(ServerError::RegisterFailed);
            if self.st.server_errors[ServerError::RegisterFailed as usize].load(Ordering::Relaxed)
                == 1
            {
                eprintln!(
                    "ioscale serve: worker {}: connection refused by {}: {e}",
                    self.id, self.cfg.engine
                );
            }
            return;
        }
        bump(&self.st.accepted, 1);
        self.open += 1;
        let deadline = self.now + self.cfg.idle_timeout;
        let c = Conn {
            fd,
            gen,
            http: Connection::new(self.cfg.limits),
            pending_in: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            body: Body::None,
            interest: Interest::READABLE,
            phase: Phase::Idle,
            deadline,
            filed: Some(deadline),
            timer_seq: 0,
            loopback: addr.is_some_and(|a| a.is_loopback()),
            addr,
            read_closed: false,
            rejected: false,
        };
        self.wheel.insert(wheel_key(idx, gen, 0), deadline);
        self.conns[idx] = Some(c);
    }

    // -----------------------------------------------------------------------------------------
    // connections

    /// Moves bytes: flush what is owed, read, answer every complete request, flush again.
    /// `Ok` keeps the connection; `Err` closes it.
    fn drive(&mut self, c: &mut Conn, readable: bool, rbuf: &mut [u8]) -> Result<(), Close> {
        let mut want_read = readable || self.hints;
        loop {
            if c.has_output() {
                let (sent, done) =
                    write_out(self.st, c.fd.as_raw_fd(), &c.out[c.out_pos..], &mut c.body)?;
                c.out_pos += sent;
                if !done {
                    return Ok(());
                }
                c.out = Vec::new();
                c.out_pos = 0;
                want_read |= self.hints;
            }
            if c.http.is_closing() {
                return self.finish_closing(c);
            }
            // Input: what was left over, then what the socket has.
            let mut len = c.pending_in.len();
            rbuf[..len].copy_from_slice(&c.pending_in);
            c.pending_in = Vec::new();
            let mut filled = false;
            if want_read && !c.read_closed {
                want_read = false;
                loop {
                    if len == rbuf.len() {
                        filled = true;
                        break;
                    }
                    match sys::read(c.fd.as_raw_fd(), &mut rbuf[len..]) {
                        Ok(0) => {
                            c.read_closed = true;
                            c.http.peer_closed();
                            break;
                        }
                        Ok(n) => {
                            bump(&self.st.bytes_in, n as u64);
                            len += n;
                            if !self.hints && len < rbuf.len() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(io_close(self.st, &e)),
                    }
                }
            }
            let (used, early) = self.process(c, &rbuf[..len]);
            if used < len {
                c.pending_in = rbuf[used..len].to_vec();
            }
            if !self.wbuf.is_empty() || c.has_output() {
                let r = write_out(self.st, c.fd.as_raw_fd(), &self.wbuf, &mut c.body);
                let (sent, done) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        self.wbuf.clear();
                        return Err(e);
                    }
                };
                if !done {
                    c.out = self.wbuf[sent..].to_vec();
                    c.out_pos = 0;
                }
                self.wbuf.clear();
                if !done {
                    return Ok(());
                }
            }
            if c.http.is_closing() {
                return self.finish_closing(c);
            }
            if c.read_closed {
                // The peer sent everything it will; an incomplete request never completes.
                if early {
                    continue;
                }
                return Err(Close::Done);
            }
            if early || filled {
                want_read = filled;
                continue;
            }
            return Ok(());
        }
    }

    /// Output sent and no more requests: close, or drain a refused client before closing.
    fn finish_closing(&mut self, c: &mut Conn) -> Result<(), Close> {
        if c.rejected && !c.read_closed {
            let _ = sys::shutdown_write(c.fd.as_raw_fd());
            c.phase = Phase::Linger;
            c.deadline = self.now + LINGER;
            return Ok(());
        }
        Err(Close::Done)
    }

    /// Reads and drops input of a lingering connection until the peer closes.
    fn linger(&mut self, c: &mut Conn, rbuf: &mut [u8]) -> Result<(), Close> {
        for _ in 0..16 {
            match sys::read(c.fd.as_raw_fd(), rbuf) {
                Ok(0) => return Err(Close::Done),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Close::Done),
            }
        }
        Ok(())
    }

    /// Answers the complete requests in `input` into the write buffer. Returns the bytes used
    /// and whether it stopped early (output to send first) with input left.
    fn process(&mut self, c: &mut Conn, input: &[u8]) -> (usize, bool) {
        let mut pos = 0;
        // The first request completed here began in an earlier pass if a head was pending.
        let mut waited = c.phase == Phase::Header;
        loop {
            if self.wbuf.len() >= WBUF_HIGH || !matches!(c.body, Body::None) {
                return (pos, pos < input.len());
            }
            let at = pos;
            let (used, step) = c.http.step(&input[pos..]);
            pos += used;
            match step {
                Step::NeedMore | Step::Close => return (pos, false),
                Step::Request(req) => {
                    bump(&self.st.requests, 1);
                    let ka = c.http.keep_alive();
                    let peer = Peer {
                        keep_alive: ka,
                        loopback: c.loopback,
                        addr: c.addr,
                        head: &input[at..pos],
                    };
                    if waited {
                        waited = false;
                        self.resp.head_waited(c.deadline, self.now);
                    }
                    c.body = self.resp.serve(&req, peer, self.now, &mut self.wbuf);
                }
                Step::Reject(e) => {
                    self.resp.reject(&e, &mut self.wbuf);
                    c.rejected = true;
                    return (input.len(), false);
                }
            }
        }
    }

    /// Puts a connection back with the interest and timer its state needs, or closes it.
    fn settle(&mut self, mut c: Conn, idx: usize, r: Result<(), Close>) {
        if let Err(why) = r {
            return self.close(c, idx, why);
        }
        // Draining: a connection whose last response is out and that holds no partial request
        // is done (its response said keep-alive if it began before the stop).
        if self.stopping.is_some()
            && c.phase != Phase::Linger
            && !c.has_output()
            && c.http.drain(c.pending_in.len())
        {
            return self.close(c, idx, Close::Done);
        }
        let interest = if c.has_output() { Interest::WRITABLE } else { Interest::READABLE };
        if interest != c.interest || self.oneshot {
            if let Err(_e) = self.d.reregister(c.fd.as_raw_fd(), token_of(idx, c.gen), interest) {
                return self.close(c, idx, Close::Io);
            }
            c.interest = interest;
        }
        // Timers: a request head must complete within the header timeout of its first byte
        // (not of its last: slowloris), a send must progress within the idle timeout.
        let phase = if c.phase == Phase::Linger {
            Phase::Linger
        } else if c.has_output() {
            c.deadline = self.now + self.cfg.idle_timeout;
            Phase::Send
        } else if c.http.timer(c.pending_in.len()) == Timer::Header {
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

    fn close(&mut self, c: Conn, idx: usize, why: Close) {
        let _ = self.d.deregister(c.fd.as_raw_fd());
        match why {
            Close::Done => {}
            Close::Reset => self.st.error(ServerError::Reset),
            Close::Io => self.st.error(ServerError::Io),
        }
        drop(c);
        self.free.push(idx);
        self.open -= 1;
        self.shared.open.fetch_sub(1, Ordering::Relaxed);
        bump(&self.st.closed, 1);
    }

    /// Acts on the timers that are due.
    fn expire(&mut self, rbuf: &mut [u8]) {
        let _ = rbuf;
        let mut due = std::mem::take(&mut self.expired);
        self.wheel.expire(self.now, &mut due);
        for &key in &due {
            let (idx, gen, seq) = split_key(key);
            let Some(c) = self.conns.get_mut(idx).and_then(Option::as_mut) else { continue };
            if (c.gen & 0xfffff) != gen || (c.timer_seq & 0xfff) != seq {
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
                    if let Some(e) = c.http.timed_out(c.pending_in.len()) {
                        self.st.http_error(e.kind());
                        self.st.response(408);
                        let mut out = Vec::new();
                        write_error(&mut out, e.status(), &self.resp.date, false, false);
                        let _ = sys::send2(c.fd.as_raw_fd(), &out, &[], false);
                    }
                }
                Phase::Idle => self.st.error(ServerError::TimeoutIdle),
                Phase::Send => self.st.error(ServerError::TimeoutSend),
                Phase::Linger => {}
            }
            c.body = Body::None;
            self.close(c, idx, Close::Done);
        }
        due.clear();
        self.expired = due;
    }

    /// SIGTERM/SIGINT: stop accepting, close idle connections, let the rest finish.
    ///
    /// Connections the kernel has already completed are taken in first (their clients have sent,
    /// or are sending, a request), then the listener is shut down: a queued connection would
    /// otherwise wait unanswered until the process exits, and a new one is refused at once
    /// instead of timing out. An idle connection is read once before it is closed, so a request
    /// already in its socket is answered (with `Connection: close`) rather than dropped.
    fn begin_stop(&mut self, rbuf: &mut [u8]) {
        for _ in 0..4096 {
            match sys::accept_from(self.listener) {
                Ok((fd, addr)) => self.add_conn(fd, addr),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.stopping = Some(self.now + self.cfg.drain_timeout);
        if self.listening {
            let _ = self.d.deregister(self.listener);
            self.listening = false;
        }
        let _ = sys::shutdown_read(self.listener);
        self.paused_until = None;
        for idx in 0..self.conns.len() {
            let Some(mut c) = self.conns[idx].take() else { continue };
            let idle =
                !c.has_output() && c.http.drain(c.pending_in.len()) && c.phase != Phase::Linger;
            if idle {
                let r = self.drive(&mut c, true, rbuf);
                self.settle(c, idx, r);
            } else {
                self.conns[idx] = Some(c);
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

fn io_close(st: &WorkerStats, e: &io::Error) -> Close {
    let _ = st;
    match e.raw_os_error() {
        Some(libc::ECONNRESET | libc::EPIPE | libc::ETIMEDOUT) => Close::Reset,
        _ => Close::Io,
    }
}

/// Sends `head` then the body; returns head bytes sent and whether everything went.
fn write_out(
    st: &WorkerStats,
    fd: RawFd,
    head: &[u8],
    body: &mut Body,
) -> Result<(usize, bool), Close> {
    let mut sent = 0;
    loop {
        let rest = &head[sent..];
        let r = match body {
            Body::None if rest.is_empty() => return Ok((sent, true)),
            Body::None => sys::send2(fd, rest, &[], false).map(|n| {
                sent += n;
                bump(&st.bytes_out, n as u64);
            }),
            Body::Memory(m, pos, end) => {
                if rest.is_empty() && *pos >= *end {
                    *body = Body::None;
                    return Ok((sent, true));
                }
                sys::send2(fd, rest, &m[*pos..*end], false).map(|n| {
                    let h = n.min(rest.len());
                    sent += h;
                    *pos += n - h;
                    bump(&st.bytes_out, n as u64);
                })
            }
            Body::File(f, off, end) => {
                if !rest.is_empty() {
                    sys::send2(fd, rest, &[], true).map(|n| {
                        sent += n;
                        bump(&st.bytes_out, n as u64);
                    })
                } else if *off >= *end {
                    *body = Body::None;
                    return Ok((sent, true));
                } else {
                    let want = usize::try_from(*end - *off).unwrap_or(usize::MAX).min(1 << 20);
                    match sys::sendfile(fd, f.as_raw_fd(), *off, want) {
                        // The file shrank under us: the promised length cannot be sent.
                        Ok(0) => return Err(Close::Io),
                        Ok(n) => {
                            *off += n as u64;
                            bump(&st.bytes_out, n as u64);
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
            }
        };
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((sent, false)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_close(st, &e)),
        }
        if matches!(body, Body::None) && sent == head.len() {
            return Ok((sent, true));
        }
    }
}
