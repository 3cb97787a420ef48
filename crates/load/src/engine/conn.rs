//! The connection state machine: one [`Conn`] per socket, moved along by the engine's methods
//! here — connect (and TLS handshake), write the request(s), read and parse the reply, then the
//! next request, a wait (idle, pool), or the close; every failure counted once, by kind.
//!
//! States: `Connecting` → (`Handshaking`) → `Writing` ⇄ `Reading` → `Waiting` (idle, pool) or
//! closed; inactive connections go to `Holding` after their incomplete request.

use super::{ns, Engine};
use crate::http::{Feed, ResponseParser};
use crate::plan::Mode;
use crate::stats::{record_us, ErrorKind};
use crate::sys;
use crate::tls::Io;
use ioscale_dispatch::{Interest, Token};
use std::cmp::Reverse;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pop {
    Active,
    Idle,
    Inactive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum St {
    Connecting,
    /// TLS: the TCP connection is up, the handshake is going on.
    Handshaking,
    Writing,
    Reading,
    Waiting,
    Holding,
}

pub(super) struct Conn {
    pub(super) fd: OwnedFd,
    /// The socket itself, or TLS over it.
    pub(super) io: Io,
    pub(super) pop: Pop,
    pub(super) st: St,
    pub(super) target: usize,
    pub(super) calls_left: u32,
    pub(super) intended: u64,
    pub(super) sent: u64,
    pub(super) started: u64,
    pub(super) deadline: u64,
    pub(super) wpos: usize,
    pub(super) interest: Interest,
    pub(super) parser: ResponseParser,
    pub(super) rbuf: Vec<u8>,
    /// Idle connections: when the next request is due.
    pub(super) next_send: u64,
    /// Requests sent (or queued to send) and not yet answered; `intended`/`sent` are the
    /// oldest one's, `later` holds the others' (allocated only when pipelining; boxed so a
    /// held connection stays small).
    pub(super) inflight: u32,
    #[allow(clippy::box_collection)] // 8 bytes instead of 32 in every held connection
    pub(super) later: Option<Box<VecDeque<(u64, u64)>>>,
    /// Bytes of queued requests not yet written (a suffix of the target's batch buffer).
    pub(super) wleft: usize,
    /// Sessions: calls not yet sent.
    pub(super) unsent: u32,
    /// Request-rate pool: whether the slot is in `pool_free`.
    pub(super) pooled: bool,
    /// Sessions: a reply had a status `--expect` did not ask for (the session is not ok).
    pub(super) unexpected: bool,
}

impl Engine<'_> {
    /// Opens a connection of population `pop`; returns its slot.
    pub(super) fn open(&mut self, pop: Pop, calls: u32, intended: u64) -> Option<usize> {
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
            unexpected: false,
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

    pub(super) fn close(&mut self, slot: usize) -> Option<Conn> {
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
    pub(super) fn fail(&mut self, slot: usize, kind: ErrorKind) {
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

    /// Re-opens a held connection (idle, inactive, pool) that ended, while the run goes on.
    pub(super) fn replace(&mut self, c: Conn, now: u64) {
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

    pub(super) fn send(&mut self, slot: usize, intended: u64) {
        self.queue_request(slot, intended);
        self.write_some(slot);
    }

    /// Queues one request (written by the next `write_some`), intended at `intended`.
    pub(super) fn queue_request(&mut self, slot: usize, intended: u64) {
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
        if c.pop == Pop::Active && self.budget != u64::MAX {
            self.budget -= 1;
        }
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
    pub(super) fn send_batch(&mut self, slot: usize, intended: u64, session: bool) {
        loop {
            let Some(c) = self.slab[slot].as_mut() else { return };
            if c.inflight >= self.pipeline || (session && c.unsent == 0) || self.budget == 0 {
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

    pub(super) fn write_some(&mut self, slot: usize) {
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

    pub(super) fn connected(&mut self, slot: usize) {
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
        let expected = self.plan.expect.ok(status);
        c.unexpected |= !expected;
        let all_expected = !c.unexpected;
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
            self.stats(pop).reply_at(i, status, expected);
        }
        if self.in_window(intended) {
            let s = self.stats(pop);
            s.reply(status, expected);
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
                        // Ok: every call answered, each with a status --expect asked for.
                        self.active.sessions_ok += u64::from(all_expected);
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
                } else if self.scheduling && self.budget > 0 {
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

    pub(super) fn event(&mut self, slot: usize, ev: &ioscale_dispatch::Event, scratch: &mut [u8]) {
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
}
