//! The generator's event loop: one thread, one dispatcher (ioscale-dispatch, epoll by default),
//! every connection a small state machine.
//!
//! Arrivals follow the schedule whatever the server does (open loop); the latency of a request
//! is measured from the time the schedule *intended* to send it (wrk2's correction for
//! coordinated omission) and, apart, from the time it was actually sent. How late the loop
//! started each arrival is the schedule lag: when it grows, the generator was the bottleneck and
//! the run says INVALID instead of reporting the server's figures.

use crate::hdrlog::{HdrLog, IntervalHists};
use crate::http::{encode_incomplete, Feed, ResponseParser};
use crate::plan::{Arrival, Mode, Plan, WarmupFrom};
use crate::stats::{self, record_us, ErrorKind, PopStats};
use crate::sys;
use crate::tls::{Io, Tls};
use hdrhistogram::Histogram;
use ioscale_dispatch::{Dispatcher, Events, Interest, Token, Trigger};
use serde_json::{json, Value};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pop {
    Active,
    Idle,
    Inactive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Connecting,
    /// TLS: the TCP connection is up, the handshake is going on.
    Handshaking,
    Writing,
    Reading,
    Waiting,
    Holding,
}

struct Conn {
    fd: OwnedFd,
    /// The socket itself, or TLS over it.
    io: Io,
    pop: Pop,
    st: St,
    target: usize,
    calls_left: u32,
    intended: u64,
    sent: u64,
    started: u64,
    deadline: u64,
    wpos: usize,
    interest: Interest,
    parser: ResponseParser,
    rbuf: Vec<u8>,
    /// Idle connections: when the next request is due.
    next_send: u64,
    /// Requests sent (or queued to send) and not yet answered; `intended`/`sent` are the
    /// oldest one's, `later` holds the others' (allocated only when pipelining; boxed so a
    /// held connection stays small).
    inflight: u32,
    #[allow(clippy::box_collection)] // 8 bytes instead of 32 in every held connection
    later: Option<Box<VecDeque<(u64, u64)>>>,
    /// Bytes of queued requests not yet written (a suffix of the target's batch buffer).
    wleft: usize,
    /// Sessions: calls not yet sent.
    unsent: u32,
    /// Request-rate pool: whether the slot is in `pool_free`.
    pooled: bool,
}

/// The first word of an event line on stderr (`--events`): `ioscale-load-event {"event":NAME,
/// "t_s":SECONDS}`, seconds since the run's start.
pub const EVENT: &str = "ioscale-load-event";

/// What a run produced.
#[derive(Debug)]
pub struct Report {
    /// The JSON record (docs/load-json.md).
    pub record: Value,
    /// The human summary.
    pub summary: String,
    /// Whether the generator kept its schedule (and held what it was asked to hold).
    pub valid: bool,
}

struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Engine<'p> {
    plan: &'p Plan,
    d: Box<dyn Dispatcher>,
    slab: Vec<Option<Conn>>,
    free: Vec<usize>,
    gens: Vec<u32>,
    /// Per target: `pipeline` copies of the encoded request back to back (crate::request).
    requests: Vec<Vec<u8>>,
    /// Per target: the length of one request.
    req_len: Vec<usize>,
    /// Requests in flight per connection (--pipeline).
    pipeline: u32,
    /// Whether the method is HEAD (responses have no body).
    head: bool,
    /// https targets: the shared client configuration and each target's server name.
    tls: Option<Tls>,
    names: Vec<Option<rustls::pki_types::ServerName<'static>>>,
    incomplete: Vec<Vec<u8>>,
    wheel: Vec<usize>,
    wheel_pos: usize,
    t0: Instant,
    warm_end: u64,
    end: u64,
    timeout: u64,
    rng: Rng,
    source_i: usize,
    /// Source addresses, used round-robin (empty: the system's choice).
    sources: Vec<std::net::Ipv4Addr>,
    active: PopStats,
    idle: PopStats,
    inactive: PopStats,
    lag: Histogram<u64>,
    /// Active latencies recorded since the last series line (the series' per-second figures).
    tick_latency: Histogram<u64>,
    /// `--hdr-log`: the interval's histograms (None without a log: nothing recorded).
    hdr: Option<Box<IntervalHists>>,
    timers: BinaryHeap<Reverse<(u64, usize, u32)>>,
    /// Connect and response deadlines in order: (deadline, slot, generation).
    deadlines: VecDeque<(u64, u32, u32)>,
    retry: VecDeque<(u64, Pop)>,
    /// While re-opening held connections fails, one attempt per 100 ms: not before this time
    /// (0: not failing).
    retry_gate: u64,
    queue: VecDeque<u64>,
    pool_free: Vec<usize>,
    /// When the arrival clock starts (ns after t0): 0, or the --start-at instant.
    start: u64,
    started_in_window: u64,
    scheduling: bool,
    open: usize,
    /// Active connections open, and how many the descriptor budget allows (the process's
    /// limit less the held populations and a margin): an arrival beyond it is counted as "fd
    /// unavailable" at once, as httperf's fd-unavail, without a system call.
    open_active: usize,
    active_budget: usize,
    /// The open-loop arrival schedule.
    arr: Arrivals,
    level: bool,
    oneshot: bool,
}

/// The open-loop arrivals still to come: this process's share of the global schedule.
struct Arrivals {
    sched: crate::plan::Schedule,
    /// When the next one is due, ns after t0.
    next: f64,
    /// This process's rate (0: no open-loop arrivals).
    rate: f64,
    /// Requests per session.
    calls: u32,
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

impl<'p> Engine<'p> {
    fn now(&self) -> u64 {
        ns(self.t0.elapsed())
    }

    fn in_window(&self, t: u64) -> bool {
        t >= self.warm_end && t < self.end
    }

    fn stats(&mut self, pop: Pop) -> &mut PopStats {
        match pop {
            Pop::Active => &mut self.active,
            Pop::Idle => &mut self.idle,
            Pop::Inactive => &mut self.inactive,
        }
    }

    fn pick_target(&mut self) -> usize {
        let i = self.wheel[self.wheel_pos % self.wheel.len()];
        self.wheel_pos += 1;
        i
    }

    /// Opens a connection of population `pop`; returns its slot.
    fn open(&mut self, pop: Pop, calls: u32, intended: u64) -> Option<usize> {
        let target = self.pick_target();
        let src = if self.sources.is_empty() {
            0
        } else {
            self.source_i += 1;
            self.source_i % self.sources.len()
        };
        let now = self.now();
        let count = pop != Pop::Active || self.in_window(intended);
        if count {
            self.stats(pop).asked += 1;
        }
        let connected = if pop == Pop::Active && self.open_active >= self.active_budget {
            Err(io::Error::from_raw_os_error(libc::EMFILE))
        } else {
            sys::connect(self.sources.get(src).copied(), self.plan.targets[target].addr)
        };
        let fd = match connected {
            Ok(c) => c,
            Err(e) => {
                self.count_error(pop, ErrorKind::of(&e), 1, count);
                if self.held(pop) && self.scheduling {
                    self.retry.push_back((now + 100_000_000, pop));
                }
                return None;
            }
        };
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slab.push(None);
            self.gens.push(0);
            self.slab.len() - 1
        });
        self.gens[slot] = self.gens[slot].wrapping_add(1);
        if let Err(e) = self.d.register(fd.as_raw_fd(), Token(slot), Interest::WRITABLE) {
            self.free.push(slot);
            self.count_error(pop, ErrorKind::of(&e), 1, count);
            return None;
        }
        self.slab[slot] = Some(Conn {
            fd,
            io: Io::Plain,
            pop,
            st: St::Connecting,
            target,
            calls_left: calls,
            intended,
            sent: now,
            started: now,
            deadline: now + self.timeout,
            wpos: 0,
            interest: Interest::WRITABLE,
            parser: ResponseParser::new(self.head),
            rbuf: Vec::new(),
            next_send: 0,
            inflight: 0,
            later: None,
            wleft: 0,
            unsent: calls,
            pooled: false,
        });
        self.arm(slot);
        self.open += 1;
        if pop == Pop::Active {
            self.open_active += 1;
        }
        if pop == Pop::Active && self.in_window(intended) {
            self.active.sessions += 1;
        }
        Some(slot)
    }

    /// Counts `n` errors of `kind` for `pop`: in the population's totals when `counted` (the
    /// request or connection belongs to the window), and in the per-second series by when they
    /// happened (any error inside the window, whatever it belongs to: the server's figure for
    /// that second).
    fn count_error(&mut self, pop: Pop, kind: ErrorKind, n: u32, counted: bool) {
        let now = self.now();
        let second = self.window_second(now);
        let s = self.stats(pop);
        if counted {
            for _ in 0..n {
                s.error(kind);
            }
        }
        if let Some(i) = second {
            s.error_at(i, u64::from(n));
        }
    }

    /// The second of the measured window `t` falls in.
    fn window_second(&self, t: u64) -> Option<usize> {
        self.in_window(t).then(|| ((t - self.warm_end) / 1_000_000_000) as usize)
    }

    fn close(&mut self, slot: usize) -> Option<Conn> {
        let c = self.slab[slot].take()?;
        let _ = self.d.deregister(c.fd.as_raw_fd());
        self.free.push(slot);
        self.open -= 1;
        if c.pop == Pop::Active {
            self.open_active -= 1;
        }
        if c.pooled {
            self.pool_free.retain(|&s| s != slot);
        }
        Some(c)
    }

    fn set_interest(&mut self, slot: usize, want: Interest) {
        let Some(c) = self.slab[slot].as_mut() else { return };
        if c.interest != want || self.oneshot {
            c.interest = want;
            let fd = c.fd.as_raw_fd();
            let _ = self.d.reregister(fd, Token(slot), want);
        }
    }

    /// A connection failed: count it, end it, and replace it if its population holds
    /// connections.
    fn fail(&mut self, slot: usize, kind: ErrorKind) {
        let Some(c) = self.close(slot) else { return };
        let now = self.now();
        let count = match c.pop {
            Pop::Active => self.in_window(c.intended),
            _ => self.in_window(now),
        };
        self.count_error(c.pop, kind, c.inflight.max(1), count);
        if c.st == St::Connecting && self.held(c.pop) {
            // It never connected: re-opened through the retry queue and its gate, not at once
            // (at once, a dead server or an exhausted port range makes a connect() loop).
            if self.scheduling {
                self.retry.push_back((now + 100_000_000, c.pop));
                self.retry_gate = self.retry_gate.max(now + 100_000_000);
            }
            return;
        }
        self.replace(c, now);
    }

    /// Whether connections of `pop` are held (re-opened when they end): idle, inactive, and the
    /// active pool of the request-rate and peak modes.
    fn held(&self, pop: Pop) -> bool {
        pop != Pop::Active || matches!(self.plan.mode, Mode::Peak { .. } | Mode::RequestRate { .. })
    }

    /// Re-opens a held connection (idle, inactive, pool) that ended, while the run goes on.
    fn replace(&mut self, c: Conn, now: u64) {
        if !self.scheduling {
            return;
        }
        let pooled = matches!(self.plan.mode, Mode::Peak { .. } | Mode::RequestRate { .. })
            && c.pop == Pop::Active;
        if c.pop == Pop::Active && !pooled {
            return;
        }
        if self.in_window(now) {
            self.stats(c.pop).reconnects += 1;
        }
        if let Some(s) = self.open(c.pop, 0, now) {
            if let Some(n) = self.slab[s].as_mut() {
                n.next_send = c.next_send;
            }
        }
    }

    fn send(&mut self, slot: usize, intended: u64) {
        self.queue_request(slot, intended);
        self.write_some(slot);
    }

    /// Queues one request (written by the next `write_some`), intended at `intended`.
    fn queue_request(&mut self, slot: usize, intended: u64) {
        let now = self.now();
        let timeout = self.timeout;
        let Some(c) = self.slab[slot].as_mut() else { return };
        let first = c.inflight == 0;
        if first {
            c.intended = intended;
            c.sent = now;
            c.deadline = now + timeout;
            c.parser.reset();
        } else {
            c.later.get_or_insert_with(Box::default).push_back((intended, now));
        }
        c.inflight += 1;
        c.wleft += self.req_len[c.target];
        c.st = St::Writing;
        let pop = c.pop;
        if pop == Pop::Active
            && !matches!(self.plan.mode, Mode::Sessions { .. })
            && self.in_window(intended)
        {
            self.active.sessions += 1;
        }
        if self.in_window(intended) {
            self.stats(pop).requests += 1;
        }
        if first {
            self.arm(slot);
        }
    }

    /// Queues requests intended at `intended` until the connection has `pipeline` in flight
    /// (or, for a session, until its calls are all sent), then writes them at once.
    fn send_batch(&mut self, slot: usize, intended: u64, session: bool) {
        loop {
            let Some(c) = self.slab[slot].as_mut() else { return };
            if c.inflight >= self.pipeline || (session && c.unsent == 0) {
                break;
            }
            if session {
                c.unsent -= 1;
            }
            self.queue_request(slot, intended);
        }
        self.write_some(slot);
    }

    /// Request-rate pool: queues waiting arrivals up to the pipelining depth; offers the slot
    /// to new arrivals while it has room.
    fn fill_from_queue(&mut self, slot: usize) {
        while self.slab[slot].as_ref().is_some_and(|c| c.inflight < self.pipeline) {
            let Some(t) = self.queue.pop_front() else { break };
            self.queue_request(slot, t);
        }
        let Some(c) = self.slab[slot].as_mut() else { return };
        if c.inflight == 0 {
            self.park(slot);
        } else if c.inflight < self.pipeline && !c.pooled {
            c.pooled = true;
            self.pool_free.push(slot);
        }
    }

    /// A held connection closed with requests still unanswered: each is lost.
    fn lost(&mut self, pop: Pop, intended: u64, n: u32) {
        if n > 0 {
            let counted = self.in_window(intended);
            self.count_error(pop, ErrorKind::ClosedEarly, n, counted);
        }
    }

    fn write_some(&mut self, slot: usize) {
        let Some(c) = self.slab[slot].as_mut() else { return };
        let fd = c.fd.as_raw_fd();
        if c.st == St::Holding || c.pop == Pop::Inactive {
            let req = &self.incomplete[c.target];
            while c.wpos < req.len() {
                match c.io.write(fd, &req[c.wpos..]) {
                    Ok(n) => c.wpos += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.set_interest(slot, Interest::WRITABLE);
                        return;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.fail(slot, ErrorKind::of(&e));
                        return;
                    }
                }
            }
            c.st = St::Holding;
            c.deadline = 0;
            let want = if c.io.wants_write() { Interest::BOTH } else { Interest::READABLE };
            self.set_interest(slot, want);
            return;
        }
        // What is left of up to `pipeline` requests is a suffix of the batch buffer.
        let batch = &self.requests[c.target];
        while c.wleft > 0 {
            match c.io.write(fd, &batch[batch.len() - c.wleft..]) {
                Ok(n) => c.wleft -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Pipelining: keep reading replies while the rest waits for room, or
                    // both sides could block on full buffers.
                    let want = if c.inflight > 1 { Interest::BOTH } else { Interest::WRITABLE };
                    self.set_interest(slot, want);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(slot, ErrorKind::of(&e));
                    return;
                }
            }
        }
        if c.st == St::Writing {
            c.st = St::Reading;
        }
        // TLS: records the socket did not take yet wait for it to be writable.
        let want = if c.io.wants_write() { Interest::BOTH } else { Interest::READABLE };
        self.set_interest(slot, want);
    }

    fn connected(&mut self, slot: usize) {
        let now = self.now();
        let Some(c) = self.slab[slot].as_mut() else { return };
        let (pop, started, intended) = (c.pop, c.started, c.intended);
        c.deadline = 0;
        if self.held(pop) {
            self.retry_gate = 0;
        }
        let window = match pop {
            Pop::Active => self.in_window(intended),
            _ => true,
        };
        if window {
            let s = self.stats(pop);
            s.established += 1;
            record_us(&mut s.connect, (now - started) / 1000);
        }
        if let Some(tls) = &self.tls {
            let target = self.slab[slot].as_ref().map_or(0, |c| c.target);
            if let Some(name) = self.names[target].clone() {
                let conn = match tls.connect(name) {
                    Ok(t) => t,
                    Err(_) => return self.fail(slot, ErrorKind::Tls),
                };
                let timeout = self.timeout;
                if let Some(c) = self.slab[slot].as_mut() {
                    c.io = Io::Tls(Box::new(conn));
                    c.st = St::Handshaking;
                    c.sent = now; // the handshake's start, until a request is sent
                    c.deadline = now + timeout;
                }
                self.arm(slot);
                return self.handshake(slot);
            }
        }
        self.ready(slot);
    }

    /// TLS: advances the handshake; when it is done, records its time and goes on as a plain
    /// connection would after its connect.
    fn handshake(&mut self, slot: usize) {
        let Some(c) = self.slab[slot].as_mut() else { return };
        let Io::Tls(t) = &mut c.io else { return };
        match t.handshake(c.fd.as_raw_fd()) {
            Ok(false) => {
                let want = if t.wants_write() { Interest::BOTH } else { Interest::READABLE };
                self.set_interest(slot, want);
            }
            Ok(true) => {
                let resumed = t.resumed();
                let (pop, intended, hs_start) = (c.pop, c.intended, c.sent);
                c.deadline = 0;
                let now = self.now();
                if pop != Pop::Active || self.in_window(intended) {
                    let s = self.stats(pop);
                    s.tls_handshakes += 1;
                    s.tls_resumed += u64::from(resumed);
                    record_us(&mut s.handshake, (now - hs_start) / 1000);
                }
                self.ready(slot);
            }
            Err(e) => {
                let kind = match ErrorKind::of(&e) {
                    ErrorKind::Other => ErrorKind::Tls,
                    k => k,
                };
                self.fail(slot, kind);
            }
        }
    }

    /// The connection is ready for HTTP (connected, and for TLS, handshaken).
    fn ready(&mut self, slot: usize) {
        let now = self.now();
        let Some(c) = self.slab[slot].as_ref() else { return };
        let (pop, intended) = (c.pop, c.intended);
        match pop {
            Pop::Inactive => {
                if let Some(c) = self.slab[slot].as_mut() {
                    c.st = St::Holding;
                    c.wpos = 0;
                }
                self.write_some(slot);
            }
            Pop::Idle => {
                let period = ns(self.plan.idle_period);
                let next = if let Some(c) = self.slab[slot].as_ref().filter(|c| c.next_send > 0) {
                    c.next_send.max(now)
                } else {
                    now + (self.rng.next_f64() * period as f64) as u64
                };
                self.wait_idle(slot, next);
            }
            Pop::Active => match self.plan.mode {
                Mode::Sessions { .. } => self.send_batch(slot, intended, true),
                Mode::Peak { .. } if now < self.start => self.park(slot),
                Mode::Peak { .. } => self.send_batch(slot, now, false),
                Mode::RequestRate { .. } => {
                    self.fill_from_queue(slot);
                    self.write_some(slot);
                }
                Mode::None => {}
            },
        }
    }

    fn park(&mut self, slot: usize) {
        if let Some(c) = self.slab[slot].as_mut() {
            c.st = St::Waiting;
            c.deadline = 0;
            if c.pooled {
                self.set_interest(slot, Interest::READABLE);
                return;
            }
            c.pooled = true;
        }
        self.pool_free.push(slot);
        self.set_interest(slot, Interest::READABLE);
    }

    fn wait_idle(&mut self, slot: usize, at: u64) {
        if let Some(c) = self.slab[slot].as_mut() {
            c.st = St::Waiting;
            c.deadline = 0;
            c.next_send = at;
        }
        self.set_interest(slot, Interest::READABLE);
        self.timers.push(Reverse((at, slot, self.gens[slot])));
    }

    fn replied(&mut self, slot: usize, status: u16, keep_alive: bool, body_bytes: u64) {
        let now = self.now();
        let timeout = self.timeout;
        let Some(c) = self.slab[slot].as_mut() else { return };
        let (pop, intended, sent) = (c.pop, c.intended, c.sent);
        c.calls_left = c.calls_left.saturating_sub(1);
        let calls_left = c.calls_left;
        c.inflight = c.inflight.saturating_sub(1);
        let next = c.later.as_mut().and_then(|l| l.pop_front());
        if let Some((i, s)) = next {
            // The next pipelined request's reply is due: its own times, a fresh timeout.
            c.intended = i;
            c.sent = s;
            c.deadline = now + timeout;
        }
        let (inflight, unsent) = (c.inflight, c.unsent);
        if next.is_some() {
            self.arm(slot);
        }
        // The per-second series counts every reply received in each second of the window,
        // whenever its request was sent (httperf's reply rate: what the server delivered then).
        if let Some(i) = self.window_second(now) {
            self.stats(pop).reply_at(i);
        }
        if self.in_window(intended) {
            let s = self.stats(pop);
            s.reply(status);
            s.bytes += body_bytes;
            record_us(&mut s.latency, (now - intended) / 1000);
            record_us(&mut s.latency_actual, (now - sent) / 1000);
            if pop == Pop::Active {
                record_us(&mut self.tick_latency, (now - intended) / 1000);
            }
            if let Some(h) = self.hdr.as_deref_mut() {
                if pop == Pop::Active {
                    record_us(&mut h.active, (now - intended) / 1000);
                    record_us(&mut h.actual, (now - sent) / 1000);
                } else {
                    record_us(&mut h.idle, (now - intended) / 1000);
                }
            }
        }
        match (pop, self.plan.mode) {
            (Pop::Idle, _) => {
                if !keep_alive {
                    let c = self.close(slot);
                    if let Some(mut c) = c {
                        c.next_send = intended + self.idle_gap();
                        self.replace(c, now);
                    }
                    return;
                }
                let next = intended + self.idle_gap();
                self.wait_idle(slot, next.max(now));
            }
            (Pop::Active, Mode::Sessions { .. }) => {
                if calls_left > 0 && keep_alive {
                    if unsent > 0 {
                        if let Some(c) = self.slab[slot].as_mut() {
                            c.unsent -= 1;
                        }
                        self.queue_request(slot, now);
                    }
                } else {
                    if calls_left == 0 && self.in_window(intended) {
                        self.active.sessions_ok += 1;
                    } else if calls_left > 0 {
                        // The session ended early; pipelined requests still owed are lost.
                        let counted = self.in_window(intended);
                        self.count_error(pop, ErrorKind::ClosedEarly, inflight.max(1), counted);
                    }
                    self.close(slot);
                }
            }
            (Pop::Active, Mode::Peak { .. }) => {
                if !keep_alive {
                    if let Some(c) = self.close(slot) {
                        self.lost(pop, c.intended, inflight);
                        self.replace(c, now);
                    }
                } else if self.scheduling {
                    self.queue_request(slot, now);
                } else if inflight == 0 {
                    self.close(slot);
                }
            }
            (Pop::Active, Mode::RequestRate { .. }) => {
                if !keep_alive {
                    if let Some(c) = self.close(slot) {
                        self.lost(pop, c.intended, inflight);
                        self.replace(c, now);
                    }
                } else {
                    self.fill_from_queue(slot);
                }
            }
            _ => {}
        }
    }

    fn idle_gap(&mut self) -> u64 {
        let period = ns(self.plan.idle_period) as f64;
        (period * (0.9 + 0.2 * self.rng.next_f64())) as u64
    }

    fn readable(&mut self, slot: usize, scratch: &mut [u8]) {
        loop {
            let Some(c) = self.slab[slot].as_mut() else { return };
            let fd = c.fd.as_raw_fd();
            // A short read drains the socket only without TLS (rustls may hold more plaintext).
            let level = self.level && matches!(c.io, Io::Plain);
            match c.io.read(fd, scratch) {
                Ok(0) => {
                    let c = self.slab[slot].as_mut().expect("checked");
                    match c.st {
                        St::Holding | St::Waiting => {
                            // The server closed a held connection (its timeout): reconnect.
                            if let Some(c) = self.close(slot) {
                                let now = self.now();
                                self.replace(c, now);
                            }
                        }
                        St::Reading | St::Writing if c.parser.until_close() => {
                            let _ = c.parser.eof();
                            let mut taken = std::mem::take(&mut c.rbuf);
                            let bytes = taken.len() as u64;
                            taken.clear();
                            self.replied(slot, 200, false, bytes);
                            if self.slab[slot].is_some() {
                                self.close(slot);
                            }
                        }
                        _ => self.fail(slot, ErrorKind::ClosedEarly),
                    }
                    return;
                }
                Ok(n) => {
                    if c.st == St::Holding || c.st == St::Waiting {
                        // Data nobody asked for on a held connection (an error page after a
                        // timeout, for instance): drop it; EOF follows.
                        if n < scratch.len() && level {
                            return;
                        }
                        continue;
                    }
                    if !self.consume(slot, &scratch[..n]) {
                        return;
                    }
                    if n < scratch.len() && level {
                        return; // level-triggered: the dispatcher reports what is left
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(slot, ErrorKind::of(&e));
                    return;
                }
            }
        }
    }

    /// Feeds response bytes; returns false when the connection is gone.
    fn consume(&mut self, slot: usize, data: &[u8]) -> bool {
        let Some(c) = self.slab[slot].as_mut() else { return false };
        let joined: Vec<u8>;
        let buf: &[u8] = if c.rbuf.is_empty() {
            data
        } else {
            let mut v = std::mem::take(&mut c.rbuf);
            v.extend_from_slice(data);
            joined = v;
            &joined
        };
        let mut pos = 0;
        loop {
            let Some(c) = self.slab[slot].as_mut() else { return false };
            let rest = &buf[pos..];
            if c.inflight == 0 {
                if !rest.is_empty() {
                    // Bytes nobody asked for.
                    self.fail(slot, ErrorKind::BadResponse);
                    return false;
                }
                break;
            }
            let (used, f) = c.parser.feed(rest);
            match f {
                Feed::NeedMore => {
                    let left = &rest[used..];
                    if !left.is_empty() {
                        c.rbuf.extend_from_slice(left);
                    }
                    break;
                }
                Feed::Bad(_) => {
                    self.fail(slot, ErrorKind::BadResponse);
                    return false;
                }
                Feed::Done { consumed, status, keep_alive } => {
                    pos += consumed;
                    self.replied(slot, status, keep_alive, consumed as u64);
                    if pos >= buf.len() {
                        break;
                    }
                }
            }
        }
        // The requests the replies made room for go out in one write.
        match self.slab[slot].as_ref() {
            Some(c) if c.wleft > 0 => {
                self.write_some(slot);
                self.slab[slot].is_some()
            }
            Some(_) => true,
            None => false,
        }
    }

    fn event(&mut self, slot: usize, ev: &ioscale_dispatch::Event, scratch: &mut [u8]) {
        let Some(c) = self.slab[slot].as_mut() else { return };
        let tls = !matches!(c.io, Io::Plain);
        if let Io::Tls(t) = &mut c.io {
            // TLS records that waited for room in the socket go first.
            if ev.is_writable() && c.st != St::Handshaking && t.wants_write() {
                match t.flush(c.fd.as_raw_fd()) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return self.fail(slot, ErrorKind::of(&e)),
                }
            }
        }
        let Some(c) = self.slab[slot].as_ref() else { return };
        match c.st {
            St::Handshaking => self.handshake(slot),
            St::Connecting => {
                if !(ev.is_writable() || ev.is_error() || ev.is_hangup()) {
                    return;
                }
                match sys::socket_error(c.fd.as_raw_fd()) {
                    Ok(None) if !ev.is_error() => self.connected(slot),
                    Ok(None) => self.fail(slot, ErrorKind::Other),
                    Ok(Some(e)) | Err(e) => self.fail(slot, ErrorKind::of(&e)),
                }
            }
            St::Writing => {
                // Pipelining: replies may be read while the rest of the batch waits for room.
                if self.pipeline > 1 && ev.is_readable() {
                    self.readable(slot, scratch);
                }
                if self.slab[slot].as_ref().is_some_and(|c| c.st == St::Writing) {
                    self.write_some(slot);
                }
            }
            St::Reading | St::Holding | St::Waiting => {
                self.readable(slot, scratch);
                if self.oneshot {
                    if let Some(c) = self.slab[slot].as_ref() {
                        let i = c.interest;
                        self.set_interest(slot, i);
                    }
                }
            }
        }
        if tls {
            // Readable always; writable too while TLS records wait for the socket.
            if let Some(c) = self.slab[slot].as_ref() {
                if matches!(c.st, St::Reading | St::Holding | St::Waiting) {
                    let w = c.io.wants_write();
                    self.set_interest(slot, if w { Interest::BOTH } else { Interest::READABLE });
                }
            }
        }
    }

    /// Puts the connection's current deadline in the timeout queue. Every deadline is "now +
    /// the timeout", so the queue is in deadline order; an entry whose connection has since
    /// moved on (answered, closed, a later deadline of its own queued) is skipped when it
    /// comes up.
    fn arm(&mut self, slot: usize) {
        if let Some(c) = self.slab[slot].as_ref().filter(|c| c.deadline != 0) {
            self.deadlines.push_back((c.deadline, slot as u32, self.gens[slot]));
        }
    }

    /// Ends the connections past their deadline, each with a reset (so its descriptor, its port
    /// and the kernel's socket are free at once, and the server learns the client gave up), and
    /// counts as timeouts the request-rate arrivals that waited longer than the timeout for a
    /// free connection of the pool. The cost is per expired connection, never per open one, and
    /// due arrivals go out between expiries: a burst of thousands of timeouts (an overloaded
    /// server) must not hold up the schedule.
    fn expire(&mut self) {
        let mut done = 0u32;
        while let Some(&(at, slot, gen)) = self.deadlines.front() {
            let now = self.now();
            if at >= now {
                break;
            }
            self.deadlines.pop_front();
            let slot = slot as usize;
            let Some(c) = self.slab[slot].as_ref() else { continue };
            if self.gens[slot] != gen || c.deadline == 0 || c.deadline >= now {
                continue;
            }
            let kind = if matches!(c.st, St::Connecting | St::Handshaking) {
                ErrorKind::ConnectTimeout
            } else {
                ErrorKind::ResponseTimeout
            };
            sys::abort_on_close(c.fd.as_raw_fd());
            self.fail(slot, kind);
            done += 1;
            if done.is_multiple_of(32) {
                self.issue_arrivals();
            }
        }
        let now = self.now();
        while self.queue.front().is_some_and(|&t| now.saturating_sub(t) > self.timeout) {
            let t = self.queue.pop_front().expect("checked");
            let counted = self.in_window(t);
            if counted {
                self.active.requests += 1;
            }
            self.count_error(Pop::Active, ErrorKind::ResponseTimeout, 1, counted);
        }
    }

    /// Issues the open-loop arrivals that are due. How late each one is issued is the schedule
    /// lag: the generator's own lateness, whatever the server does (an arrival the server does
    /// not accept or answer in time is the server's result, counted as a timeout or error).
    fn issue_arrivals(&mut self) {
        if !self.scheduling || self.arr.rate <= 0.0 {
            return;
        }
        loop {
            let now = self.now();
            let t = self.arr.next as u64;
            if t > now
                || t >= self.end
                || self.plan.sessions.is_some_and(|s| self.arr.sched.index() >= s)
            {
                return;
            }
            if self.in_window(t) {
                record_us(&mut self.lag, (now - t) / 1000 + 1);
                if self.in_window(now) {
                    self.started_in_window += 1;
                }
            }
            match self.plan.mode {
                Mode::Sessions { .. } => {
                    self.open(Pop::Active, self.arr.calls, t);
                }
                Mode::RequestRate { .. } => {
                    if let Some(slot) = self.pool_free.pop() {
                        if let Some(c) = self.slab[slot].as_mut() {
                            c.pooled = false;
                        }
                        self.send(slot, t);
                        // Pipelining: the slot takes more arrivals while it has room.
                        if let Some(c) = self.slab[slot].as_mut() {
                            if c.inflight < self.pipeline && c.st != St::Waiting {
                                c.pooled = true;
                                self.pool_free.push(slot);
                            }
                        }
                    } else {
                        self.queue.push_back(t);
                    }
                }
                _ => {}
            }
            self.arr.sched.advance();
            self.arr.next = self.start as f64 + self.arr.sched.at();
        }
    }

    /// Pool connections (request-rate, peak) still connecting.
    fn pool_connecting(&self) -> usize {
        self.slab
            .iter()
            .flatten()
            .filter(|c| c.pop == Pop::Active && c.st == St::Connecting)
            .count()
    }

    fn in_flight(&self) -> usize {
        self.slab
            .iter()
            .flatten()
            .filter(|c| match c.pop {
                Pop::Active => {
                    matches!(c.st, St::Connecting | St::Handshaking | St::Writing | St::Reading)
                }
                // An idle connection's request sent before the end is waited for too: it was
                // counted, so its reply (or its timeout) must be.
                Pop::Idle => matches!(c.st, St::Writing | St::Reading),
                Pop::Inactive => false,
            })
            .count()
    }
}

/// Runs the plan. `progress` is called about once a second with the elapsed seconds and a line
/// of text; `series` gets one JSON line per second of the measured window.
pub fn run(
    plan: &Plan,
    progress: impl FnMut(f64, &str),
    series: Option<&mut dyn Write>,
) -> io::Result<Report> {
    run_with_log(plan, progress, series, None)
}

/// [`run`], also writing per-interval latency histograms to an HdrHistogram interval log.
pub fn run_with_log(
    plan: &Plan,
    mut progress: impl FnMut(f64, &str),
    mut series: Option<&mut dyn Write>,
    mut hdr: Option<&mut HdrLog>,
) -> io::Result<Report> {
    plan.validate().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.0))?;
    sys::install_signals()?;
    let nofile = ioscale_sys::limits::raise_nofile()?;
    let need = plan.held() as u64 + 64;
    if need > nofile {
        return Err(io::Error::other(format!(
            "the plan holds {} connections but this process may open {nofile} descriptors",
            plan.held()
        )));
    }
    // Fail fast with one sentence when nothing listens.
    if let Err(e) =
        std::net::TcpStream::connect_timeout(&plan.targets[0].addr.into(), Duration::from_secs(3))
    {
        return Err(io::Error::new(
            e.kind(),
            format!("cannot connect to {}: {e}", plan.targets[0].url),
        ));
    }
    // https targets: one configuration for the run, and one blocking handshake per target so a
    // certificate problem is one sentence naming the host and the reason.
    let tls = if plan.targets.iter().any(|t| t.tls) {
        let tls = Tls::new(&plan.tls).map_err(io::Error::other)?;
        for t in plan.targets.iter().filter(|t| t.tls) {
            tls.preflight(&t.url, &t.host, t.addr)?;
        }
        Some(tls)
    } else {
        None
    };
    let mut names = Vec::new();
    for t in &plan.targets {
        names.push(if t.tls {
            Some(Tls::server_name(&t.host).map_err(io::Error::other)?)
        } else {
            None
        });
    }
    let d = plan.dispatch.open(&ioscale_dispatch::Options::default())?;
    let trigger = d.trigger();
    let mut wheel = Vec::new();
    for (i, t) in plan.targets.iter().enumerate() {
        wheel.extend(std::iter::repeat_n(i, t.weight as usize));
    }
    // Each distinct request encoded once, here; sends only copy these bytes.
    let batches: Vec<(Vec<u8>, usize)> =
        plan.targets.iter().map(|t| plan.request.encode_batch(&t.host, &t.path)).collect();
    // A shared start instant (--start-at): the populations are set up before it, and the
    // arrival clock, the warm-up and the window start from it.
    let t0 = Instant::now();
    let start = plan
        .segment
        .start_at
        .map_or(0, |at| ns(at.duration_since(std::time::SystemTime::now()).unwrap_or_default()));
    // With --warmup-from held the window is placed once the held connections are up.
    let from_held = plan.warmup_from == WarmupFrom::Held;
    let warm = if from_held { u64::MAX } else { start + ns(plan.warmup) };
    let end = match plan.duration {
        Some(d) if !from_held => warm + ns(d),
        _ => u64::MAX,
    };
    let held_bound = start + ns(plan.held_bound());
    // This process's share of the rate; its arrivals are its segment of the global schedule.
    let rate = plan.segment_rate();
    let sources = plan.source_addrs();
    let mut e = Engine {
        plan,
        d,
        slab: Vec::new(),
        free: Vec::new(),
        gens: Vec::new(),
        requests: batches.iter().map(|b| b.0.clone()).collect(),
        req_len: batches.iter().map(|b| b.1).collect(),
        pipeline: plan.request.pipeline.max(1),
        head: plan.request.is_head(),
        tls,
        names,
        incomplete: plan.targets.iter().map(|t| encode_incomplete(&t.host, &t.path)).collect(),
        wheel,
        wheel_pos: 0,
        t0,
        warm_end: warm,
        end,
        timeout: ns(plan.timeout),
        rng: Rng((plan.seed ^ plan.segment.index.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1),
        source_i: 0,
        active: PopStats::default(),
        idle: PopStats::default(),
        inactive: PopStats::default(),
        lag: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds"),
        tick_latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds"),
        hdr: hdr.is_some().then(Box::default),
        timers: BinaryHeap::new(),
        deadlines: VecDeque::new(),
        retry: VecDeque::new(),
        retry_gate: 0,
        queue: VecDeque::new(),
        pool_free: Vec::new(),
        start,
        started_in_window: 0,
        scheduling: true,
        open: 0,
        open_active: 0,
        active_budget: (nofile.saturating_sub(64 + plan.held() as u64)) as usize,
        sources,
        arr: Arrivals {
            sched: crate::plan::Schedule::new(plan, rate * plan.segment.count as f64),
            next: 0.0,
            rate,
            calls: if let Mode::Sessions { calls, .. } = plan.mode { calls } else { 0 },
        },
        level: trigger == Trigger::Level,
        oneshot: trigger == Trigger::Oneshot,
    };
    let cpu0 = sys::cpu_time()?;
    let hdr_interval = hdr.as_ref().map_or(0, |h| ns(h.interval).max(1_000_000));
    // Intervals start when measuring does; timestamps count from the run's start (BaseTime).
    let mut hdr_from = warm;
    if let Some(h) = hdr.as_deref_mut() {
        let start = std::time::SystemTime::now() - e.t0.elapsed();
        h.begin(start, &format!("ioscale load {}: response times in microseconds; untagged: active from the intended send time, Tag=actual: from the actual send time, Tag=idle: idle population", env!("CARGO_PKG_VERSION")));
    }
    for _ in 0..plan.inactive {
        e.open(Pop::Inactive, 0, 0);
    }
    for _ in 0..plan.idle {
        e.open(Pop::Idle, 0, 0);
    }
    match plan.mode {
        Mode::Peak { connections } | Mode::RequestRate { connections, .. } => {
            for _ in 0..connections {
                e.open(Pop::Active, 0, 0);
            }
        }
        _ => {}
    }
    e.arr.next = start as f64 + e.arr.sched.at();
    let mut seg_start: Option<(std::time::SystemTime, bool)> = None;
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    let mut next_tick = 1_000_000_000u64;
    let mut last_series_second = 0usize;
    let mut drain_deadline = u64::MAX;
    let mut next_drain_check = 0u64;
    let mut interrupted = false;
    let mut held_at_window: Option<(u64, u64)> = None;
    let mut window_started = false;
    let event = |name: &str, at: u64| {
        if plan.events {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{EVENT} {}", json!({"event": name, "t_s": at as f64 / 1e9}));
            let _ = err.flush();
        }
    };
    loop {
        let now = e.now();
        if ioscale_sys::interrupt::requested() && e.scheduling {
            interrupted = true;
            e.warm_end = e.warm_end.min(now);
            e.end = e.end.min(now);
        }
        // When every held (idle, inactive) connection was first up at once.
        if held_at_window.is_none()
            && e.idle.established >= plan.idle as u64
            && e.inactive.established >= plan.inactive as u64
            && (plan.segment.start_at.is_none() || now >= e.start || e.pool_connecting() == 0)
        {
            held_at_window = Some((now, 0));
            event("held", now);
            if plan.segment.start_at.is_some() && now < e.start {
                crate::hosts::ready(plan);
            }
        }
        // --warmup-from held: the window is placed when they are up, or at the bound.
        if e.warm_end == u64::MAX && e.scheduling && (held_at_window.is_some() || now >= held_bound)
        {
            e.warm_end = now.max(e.start) + ns(plan.warmup);
            e.end = plan.duration.map_or(u64::MAX, |d| e.warm_end + ns(d));
            hdr_from = e.warm_end;
        }
        if !window_started && now >= e.warm_end {
            window_started = true;
            event("window_start", e.warm_end);
        }
        if e.scheduling && (now >= e.end || plan.sessions.is_some_and(|s| e.arr.sched.index() >= s))
        {
            e.scheduling = false;
            if e.end == u64::MAX {
                e.end = now;
            }
            if !window_started {
                // Interrupted, or a --sessions bound met, before the window began.
                window_started = true;
                event("window_start", e.warm_end.min(now));
            }
            event("window_end", e.end.min(now));
            drain_deadline = now + e.timeout;
        }
        if seg_start.is_none() && now >= e.start {
            // The arrival clock starts: note how far from the shared instant, and start the
            // closed loop's parked connections.
            seg_start = Some((std::time::SystemTime::now(), held_at_window.is_some()));
            if let Mode::Peak { .. } = plan.mode {
                for slot in std::mem::take(&mut e.pool_free) {
                    if let Some(c) = e.slab[slot].as_mut() {
                        c.pooled = false;
                    }
                    e.send_batch(slot, now, false);
                }
            }
        }
        // Draining: done when nothing is in flight (counted at most every 10 ms: the count
        // walks every connection) or when the drain time is up.
        if !e.scheduling && (now > drain_deadline || now >= next_drain_check && e.in_flight() == 0)
        {
            break;
        }
        if !e.scheduling && now >= next_drain_check {
            next_drain_check = now + 10_000_000;
        }
        e.issue_arrivals();
        // Idle connections due to send.
        while let Some(Reverse((at, slot, gen))) = e.timers.peek().copied() {
            if at > now {
                break;
            }
            e.timers.pop();
            if e.gens.get(slot) != Some(&gen) || !e.scheduling {
                continue;
            }
            if e.slab[slot].as_ref().is_some_and(|c| c.st == St::Waiting && c.pop == Pop::Idle) {
                e.send(slot, at);
            }
        }
        // Held connections whose re-opening failed are retried, but while connecting fails (no
        // port, no descriptor, nothing listening) one attempt per 100 ms for all of them: each
        // retrying on its own would spin on connect() (a connect that scans an exhausted port
        // range costs a millisecond of kernel time) and starve the schedule.
        while e.scheduling && now >= e.retry_gate && e.retry.front().is_some_and(|r| r.0 <= now) {
            let (_, pop) = e.retry.pop_front().expect("checked");
            let failing = e.retry_gate != 0;
            if e.open(pop, 0, now).is_none() || failing {
                // Failing: this was the one probe of the period; a connection that comes up
                // clears the gate (`connected`) and the rest follow at once.
                e.retry_gate = now + 100_000_000;
                break;
            }
        }
        if let (Some(h), Some(hist)) = (hdr.as_deref_mut(), e.hdr.as_deref_mut()) {
            while now >= hdr_from.saturating_add(hdr_interval) {
                let (from, len) =
                    (Duration::from_nanos(hdr_from), Duration::from_nanos(hdr_interval));
                h.write(hist, from, len, plan.idle > 0);
                hdr_from += hdr_interval;
            }
        }
        e.expire();
        if now >= next_tick {
            next_tick += 1_000_000_000;
            let s = now as f64 / 1e9;
            progress(
                s,
                &format!(
                    "{:.0}s  replies {}  open {}  errors {}",
                    s,
                    e.active.replies + e.idle.replies,
                    e.open,
                    e.active.error_total() + e.idle.error_total() + e.inactive.error_total()
                ),
            );
            if let Some(w) = series.as_deref_mut() {
                let sec = (now.saturating_sub(e.warm_end) / 1_000_000_000) as usize;
                while now > e.warm_end && last_series_second < sec {
                    let i = last_series_second;
                    let _ = writeln!(
                        w,
                        "{}",
                        json!({
                            "second": i,
                            "active_replies": e.active.per_second.get(i).copied().unwrap_or(0),
                            "idle_replies": e.idle.per_second.get(i).copied().unwrap_or(0),
                            "errors_total": e.active.error_total() + e.idle.error_total() + e.inactive.error_total(),
                            "open_connections": e.open,
                            "reconnects": e.inactive.reconnects + e.idle.reconnects,
                            "latency_ms": stats::percentiles_ms(&e.tick_latency),
                            "latency_us_histogram": stats::encode(&e.tick_latency),
                        })
                    );
                    e.tick_latency.reset();
                    last_series_second += 1;
                }
                // Line by line, so a soak or a plot can follow the run as it goes.
                let _ = w.flush();
            }
        }
        // Sleep until the next thing due.
        let mut due = next_tick;
        if let Some(d) = e.deadlines.front() {
            due = due.min(d.0 + 1);
        }
        if let Some(&t) = e.queue.front() {
            due = due.min(t + e.timeout + 1);
        }
        if e.scheduling && rate > 0.0 {
            due = due.min(e.arr.next as u64);
        }
        if let Some(Reverse((at, _, _))) = e.timers.peek() {
            due = due.min(*at);
        }
        if hdr.is_some() {
            due = due.min(hdr_from.saturating_add(hdr_interval));
        }
        if let Some(r) = e.retry.front() {
            due = due.min(r.0.max(e.retry_gate));
        }
        if e.scheduling {
            due = due.min(e.end);
            if e.warm_end == u64::MAX {
                due = due.min(held_bound);
            } else if !window_started {
                due = due.min(e.warm_end);
            }
        }
        if seg_start.is_none() {
            due = due.min(e.start);
        }
        let now = e.now();
        let wait = Duration::from_nanos(due.saturating_sub(now)).min(Duration::from_millis(250));
        let n = match e.d.wait(&mut events, Some(wait)) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => 0,
            Err(err) => return Err(err),
        };
        if n > 0 {
            for (i, ev) in events.iter().enumerate() {
                e.event(ev.token().0, ev, &mut scratch);
                // A long batch of events must not hold up the schedule.
                if i % 32 == 31 {
                    e.issue_arrivals();
                }
            }
        }
    }
    let wall = e.t0.elapsed();
    let cpu = sys::cpu_time()? - cpu0;
    // The last (partial) interval: replies drained after the window belong to the record too.
    if let (Some(h), Some(hist)) = (hdr, e.hdr.as_deref_mut()) {
        let end = ns(wall).max(hdr_from);
        h.write(
            hist,
            Duration::from_nanos(hdr_from),
            Duration::from_nanos(end - hdr_from),
            plan.idle > 0,
        );
    }
    let window_end = e.end.min(ns(wall));
    let window_s = window_end.saturating_sub(e.warm_end) as f64 / 1e9;
    // Requests still unanswered when the drain time ran out are timeouts: every request
    // counted ends as a reply or an error (they used to vanish between two timeout sweeps).
    for slot in 0..e.slab.len() {
        let Some(c) = e.slab[slot].as_ref() else { continue };
        let kind = match (c.pop, c.st) {
            (Pop::Active | Pop::Idle, St::Writing | St::Reading) => ErrorKind::ResponseTimeout,
            (Pop::Active, St::Connecting | St::Handshaking) => ErrorKind::ConnectTimeout,
            _ => continue,
        };
        if e.in_window(c.intended) {
            let (pop, n) = (c.pop, c.inflight.max(1));
            for _ in 0..n {
                e.stats(pop).error(kind);
            }
        }
    }
    // Close everything (idle and inactive connections included) before reporting.
    for slot in 0..e.slab.len() {
        e.close(slot);
    }
    let mut report = finish(plan, &e, window_s, wall, cpu, rate, interrupted, held_at_window);
    if plan.segment.count > 1 || plan.segment.start_at.is_some() {
        crate::hosts::annotate_segment(&mut report, plan, seg_start);
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn finish(
    plan: &Plan,
    e: &Engine<'_>,
    window_s: f64,
    wall: Duration,
    cpu: Duration,
    rate: f64,
    interrupted: bool,
    held_at_window: Option<(u64, u64)>,
) -> Report {
    let cpu_util = cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9);
    let achieved = if window_s > 0.0 { e.started_in_window as f64 / window_s } else { 0.0 };
    let lag_p99_ms =
        if e.lag.is_empty() { 0.0 } else { e.lag.value_at_quantile(0.99) as f64 / 1000.0 };
    let mut reasons: Vec<String> = Vec::new();
    let open_loop = rate > 0.0;
    if open_loop && lag_p99_ms > 10.0 {
        reasons.push(format!("schedule lag p99 {lag_p99_ms:.1} ms > 10 ms: the generator could not keep its schedule"));
    }
    if open_loop && achieved < 0.99 * rate && window_s >= 1.0 {
        reasons.push(format!("achieved {achieved:.1}/s < 99% of the target {rate:.1}/s"));
    }
    if open_loop && cpu_util > 0.95 {
        reasons
            .push(format!("generator CPU at {:.0}%: it may be the bottleneck", cpu_util * 100.0));
    }
    // Every held connection must have been up at once, and before measuring began when there
    // was a warm-up to open them in.
    match held_at_window {
        None => reasons.push(format!(
            "the {} idle and {} inactive connections asked for were never all established ({} and {} were)",
            plan.idle, plan.inactive, e.idle.established, e.inactive.established
        )),
        Some((at, _)) if e.warm_end > 0 && at > e.warm_end => reasons.push(format!(
            "the held connections were all established only {:.1} s after measuring began; use a longer --warmup",
            (at - e.warm_end) as f64 / 1e9
        )),
        Some(_) => {}
    }
    if interrupted {
        reasons.push("interrupted (SIGINT/SIGTERM) before the planned end".into());
    }
    let valid = reasons.is_empty();
    let mode = match plan.mode {
        Mode::Sessions { rate, calls } => json!({"kind": "sessions", "rate": rate, "calls": calls}),
        Mode::RequestRate { rate, connections } => {
            json!({"kind": "request-rate", "rate": rate, "connections": connections})
        }
        Mode::Peak { connections } => json!({"kind": "peak", "connections": connections}),
        Mode::None => json!({"kind": "none"}),
    };
    let active = stats::population_json(&e.active, window_s);
    let per_arrival = match plan.mode {
        Mode::Sessions { calls, .. } => f64::from(calls),
        _ => 1.0,
    };
    let server = stats::server_verdict(&active, rate * per_arrival * plan.segment.count as f64);
    let record = json!({
        "tool": "ioscale load",
        "version": env!("CARGO_PKG_VERSION"),
        "targets": plan.targets.iter().map(|t| json!({"url": t.url, "weight": t.weight})).collect::<Vec<_>>(),
        "mode": mode,
        "arrival": if plan.arrival == Arrival::Poisson { "poisson" } else { "fixed" },
        "dispatch": plan.dispatch.name(),
        "source_addrs": plan.source_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "warmup_s": plan.warmup.as_secs_f64(),
        "window_s": window_s,
        "wall_s": wall.as_secs_f64(),
        "valid": valid,
        "invalid_reasons": reasons,
        "reply_rate": active["reply_rate"],
        "target_rate": rate,
        "achieved_rate": achieved,
        "generator_cpu_util": cpu_util,
        "server": server,
        "self_check": {
            "target_rate": rate,
            "achieved_rate": achieved,
            "schedule_lag_ms": stats::percentiles_ms(&e.lag),
            "schedule_lag_us_histogram": stats::encode(&e.lag),
            "cpu_s": cpu.as_secs_f64(),
            "cpu_util": cpu_util,
            "cpu_us_per_reply": if e.active.replies + e.idle.replies > 0 { cpu.as_secs_f64() * 1e6 / (e.active.replies + e.idle.replies) as f64 } else { 0.0 },
            "cpu_us_per_arrival": if e.started_in_window > 0 { cpu.as_secs_f64() * 1e6 / e.started_in_window as f64 } else { 0.0 },
            "connections_asked": e.active.asked + e.idle.asked + e.inactive.asked,
            "connections_established": e.active.established + e.idle.established + e.inactive.established,
        },
        "active": active,
        "idle": stats::population_json(&e.idle, window_s),
        "inactive": stats::population_json(&e.inactive, window_s),
    });
    let summary = summary_text(&record);
    Report { record, summary, valid }
}

/// The httperf-like human summary of a record.
pub fn summary_text(r: &Value) -> String {
    let mut s = String::new();
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let _ = std::fmt::Write::write_fmt(
        &mut s,
        format_args!(
            "ioscale load: {} over {:.1} s measured ({} dispatch), mode {}\n",
            r["targets"]
                .as_array()
                .map(|t| t
                    .iter()
                    .map(|x| x["url"].as_str().unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join(" "))
                .unwrap_or_default(),
            f(&r["window_s"]),
            r["dispatch"].as_str().unwrap_or(""),
            r["mode"]["kind"].as_str().unwrap_or("")
        ),
    );
    for pop in ["active", "idle", "inactive"] {
        let p = &r[pop];
        if p["connections_asked"].as_u64().unwrap_or(0) == 0
            && p["requests"].as_u64().unwrap_or(0) == 0
        {
            continue;
        }
        let _ = std::fmt::Write::write_fmt(
            &mut s,
            format_args!(
                "{pop:>8}: sessions {} ok {}  requests {} replies {}  connections {}/{} reconnects {}\n\
                 {:>8}  reply rate [/s]: avg {:.1} min {:.0} max {:.0} stddev {:.1} ({} samples)\n\
                 {:>8}  response ms (from intended): p50 {:.3} p90 {:.3} p99 {:.3} max {:.3}; actual p50 {:.3} p99 {:.3}; connect p50 {:.3}\n\
                 {:>8}  errors {} = {:.1}% (connect timeout {}, response timeout {}, refused {}, reset {}, fd unavailable {}, addr unavailable {}, bad response {}, closed early {}, other {}, tls {})\n",
                p["sessions"], p["sessions_ok"], p["requests"], p["replies"], p["connections_established"], p["connections_asked"], p["reconnects"],
                "", f(&p["reply_rate"]["avg"]), f(&p["reply_rate"]["min"]), f(&p["reply_rate"]["max"]), f(&p["reply_rate"]["stddev"]), p["reply_rate"]["samples"],
                "", f(&p["latency_ms"]["p50"]), f(&p["latency_ms"]["p90"]), f(&p["latency_ms"]["p99"]), f(&p["latency_ms"]["max"]), f(&p["latency_actual_ms"]["p50"]), f(&p["latency_actual_ms"]["p99"]), f(&p["connect_ms"]["p50"]),
                "", p["errors"]["total"], f(&p["error_percent"]), p["errors"]["connect_timeout"], p["errors"]["response_timeout"], p["errors"]["refused"], p["errors"]["reset"], p["errors"]["fd_unavailable"], p["errors"]["addr_unavailable"], p["errors"]["bad_response"], p["errors"]["closed_early"], p["errors"]["other"], p["errors"]["tls"],
            ),
        );
        let t = &p["tls"];
        if t["handshakes"].as_u64().unwrap_or(0) > 0 {
            let _ = std::fmt::Write::write_fmt(
                &mut s,
                format_args!(
                    "{:>8}  TLS handshakes {} (resumed {}), handshake ms p50 {:.3} p99 {:.3}\n",
                    "",
                    t["handshakes"],
                    t["resumed"],
                    f(&t["handshake_ms"]["p50"]),
                    f(&t["handshake_ms"]["p99"])
                ),
            );
        }
    }
    let sv = &r["server"];
    if sv["kept_up"].as_bool() == Some(false) {
        let reasons: Vec<&str> =
            sv["reasons"].as_array().into_iter().flatten().filter_map(|x| x.as_str()).collect();
        s.push_str(&format!("server: did not keep up: {}\n", reasons.join("; ")));
    }
    let c = &r["self_check"];
    let _ = std::fmt::Write::write_fmt(
        &mut s,
        format_args!(
            "self-check: target {:.1}/s achieved {:.1}/s, schedule lag p50 {:.3} ms p99 {:.3} ms, generator CPU {:.1}% ({:.2} µs/reply)\n{}\n",
            f(&c["target_rate"]), f(&c["achieved_rate"]), f(&c["schedule_lag_ms"]["p50"]), f(&c["schedule_lag_ms"]["p99"]), f(&c["cpu_util"]) * 100.0, f(&c["cpu_us_per_reply"]),
            if r["valid"].as_bool() == Some(true) { "VALID".to_string() } else { format!("INVALID: {}", r["invalid_reasons"]) }
        ),
    );
    s
}
