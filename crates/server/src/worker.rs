//! One worker's readiness event loop: a dispatcher, a listener, the connection table
//! ([`Table`]: slots, timers, admission, drain), the file cache, and two scratch buffers shared
//! by all its connections.
//!
//! Mechanism-neutral by construction: it asks the dispatcher only `trigger()` (re-arm one-shot
//! registrations after each notice) and `events_are_hints()` (then every read, write and accept
//! goes on until `EAGAIN`). On a level-triggered mechanism it reads once per notice unless the
//! buffer filled: the next wait reports what is left, and the `EAGAIN` read is saved.

use crate::conns::{
    answer, write_out, AcceptFailure, Close, Io, Phase, Table, LISTENER, WAKER, WBUF_HIGH,
};
use crate::respond::Responder;
use crate::stats::{bump, WorkerStats};
use crate::{sys, Config, Shared};
use ioscale_dispatch::{Dispatcher, Events, Interest, Trigger, Waker};
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// The readiness engine's own per-connection state.
#[derive(Debug)]
struct Ready {
    fd: OwnedFd,
    /// Output that did not fit the socket, from `out_pos`.
    out: Vec<u8>,
    out_pos: usize,
    /// The interest registered.
    interest: Interest,
}

impl Io for Ready {
    #[inline]
    fn busy(&self) -> bool {
        self.out_pos < self.out.len()
    }

    #[inline]
    fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

type Conn = crate::conns::Conn<Ready>;

struct Worker<'a> {
    t: Table<'a, Ready>,
    st: &'a WorkerStats,
    d: Box<dyn Dispatcher>,
    listener: RawFd,
    listening: bool,
    wbuf: Vec<u8>,
    resp: Responder<'a>,
    hints: bool,
    oneshot: bool,
    waker: Arc<Waker>,
    switches_seen: u64,
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
    let t = Table::new(id, cfg, shared, Instant::now());
    t.st.tid.store(ioscale_sys::cpu::gettid() as u64, Ordering::Relaxed);
    let resp = Responder::new(cfg, shared, t.st)?;
    let mut w = Worker {
        st: t.st,
        t,
        hints: d.events_are_hints(),
        oneshot: d.trigger() == Trigger::Oneshot,
        d,
        listener,
        listening: false,
        wbuf: Vec::with_capacity(WBUF_HIGH * 2),
        resp,
        waker,
        switches_seen: 0,
    };
    w.listen()?;
    // Scratch input: a whole head plus room, shared by every connection of this worker.
    let mut rbuf = vec![0u8; cfg.limits.max_head + 16 * 1024].into_boxed_slice();
    let mut events = Events::with_capacity(1024);
    let result = w.main_loop(&mut events, &mut rbuf);
    for idx in 0..w.t.slots() {
        if let Some(c) = w.t.take_slot(idx) {
            w.close(c, idx, Close::Done);
        }
    }
    w.unlisten();
    let _ = w.d.deregister(w.waker.as_raw_fd());
    w.st.publish(&w.d.counters());
    result
}

impl Worker<'_> {
    fn listen(&mut self) -> io::Result<()> {
        if self.t.cfg.exclusive {
            self.d.register_exclusive(self.listener, LISTENER, Interest::READABLE)?;
        } else {
            self.d.register(self.listener, LISTENER, Interest::READABLE)?;
        }
        self.listening = true;
        Ok(())
    }

    fn unlisten(&mut self) {
        if self.listening {
            let _ = self.d.deregister(self.listener);
            self.listening = false;
        }
    }

    fn main_loop(&mut self, events: &mut Events, rbuf: &mut [u8]) -> io::Result<()> {
        loop {
            // ops hook: counter snapshots (SIGUSR2), one relaxed load per pass.
            self.t.shared.stats.poll_snapshot(self.t.id, self.st);
            if self.t.stopping.is_none() && self.t.shared.stop.load(Ordering::Relaxed) {
                self.begin_stop(rbuf);
            }
            if self.t.drain_over() {
                return Ok(());
            }
            if self.t.resume_due() {
                self.listen()?;
            }
            match self.d.wait(events, self.t.wait_timeout(self.resp.next_tick())) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            self.t.now = self.resp.wake();
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
                    tok => {
                        let Ok((idx, mut c)) = self.t.take(tok) else { continue };
                        let r = if c.phase == Phase::Linger {
                            self.linger(&mut c, rbuf)
                        } else {
                            self.drive(&mut c, ev.is_readable(), rbuf)
                        };
                        self.settle(c, idx, r);
                    }
                }
            }
            self.t.collect_due();
            while let Some((idx, c)) = self.t.next_expired(&mut self.resp) {
                self.close(c, idx, Close::Done);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // accepting

    fn accept_ready(&mut self) {
        if !self.listening || self.t.stopping.is_some() {
            return;
        }
        // Hints (edge, signals) must be drained: no further notice comes for what is queued.
        let multi = self.t.cfg.multi_accept || self.hints;
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
            let e = match r {
                Ok((fd, addr)) => {
                    took = true;
                    self.t.accepted();
                    self.add_conn(fd, addr);
                    if !multi {
                        break;
                    }
                    continue;
                }
                Err(e) => e,
            };
            match self.t.accept_failure(&e) {
                AcceptFailure::Transient => continue,
                AcceptFailure::Empty | AcceptFailure::Stopped => {}
                AcceptFailure::NoDescriptors => {
                    if self.t.shed(self.listener, &e) {
                        self.unlisten();
                    }
                }
                AcceptFailure::Failed => {
                    self.t.accept_failed(&e);
                    self.unlisten();
                }
            }
            break;
        }
        if took && self.t.cfg.exclusive_rotate && self.listening {
            // Back of the kernel's wait queue: the next connection wakes another worker.
            let _ = self.d.deregister(self.listener);
            if let Err(e) = self.d.register_exclusive(self.listener, LISTENER, Interest::READABLE) {
                crate::error_log::error!(
                    "worker {}: cannot re-register the listener: {e}",
                    self.t.id
                );
                self.listening = false;
                self.t.pause();
            }
        } else if self.oneshot && self.listening {
            if let Err(e) = self.d.reregister(self.listener, LISTENER, Interest::READABLE) {
                crate::error_log::error!("worker {}: cannot re-arm the listener: {e}", self.t.id);
                self.unlisten();
                self.t.pause();
            }
        }
    }

    fn add_conn(&mut self, fd: OwnedFd, addr: Option<IpAddr>) {
        let Some((idx, tok)) = self.t.admit() else { return };
        if let Err(e) = self.d.register(fd.as_raw_fd(), tok, Interest::READABLE) {
            let what = format!("connection refused by {}", self.t.cfg.engine);
            return self.t.refuse(idx, &what, &e);
        }
        let x = Ready { fd, out: Vec::new(), out_pos: 0, interest: Interest::READABLE };
        self.t.install(idx, tok, Some(addr), x);
    }

    // -----------------------------------------------------------------------------------------
    // connections

    /// Moves bytes: flush what is owed, read, answer every complete request, flush again.
    /// `Ok` keeps the connection; `Err` closes it.
    fn drive(&mut self, c: &mut Conn, readable: bool, rbuf: &mut [u8]) -> Result<(), Close> {
        let mut want_read = readable || self.hints;
        loop {
            if c.has_output() {
                let x = &mut c.x;
                let (sent, done) =
                    write_out(self.st, x.fd.as_raw_fd(), &x.out[x.out_pos..], &mut c.body)?;
                x.out_pos += sent;
                if !done {
                    return Ok(());
                }
                x.out = Vec::new();
                x.out_pos = 0;
                want_read |= self.hints;
            }
            if c.http.is_closing() {
                return self.t.finish_closing(c);
            }
            // Input: what was left over, then what the socket has.
            let mut len = c.pending.len();
            rbuf[..len].copy_from_slice(&c.pending);
            c.pending = Vec::new();
            let mut filled = false;
            if want_read && !c.read_closed {
                want_read = false;
                loop {
                    if len == rbuf.len() {
                        filled = true;
                        break;
                    }
                    match sys::read(c.x.fd.as_raw_fd(), &mut rbuf[len..]) {
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
                        Err(e) => return Err(Close::of(&e)),
                    }
                }
            }
            let (used, early) =
                answer(&mut self.resp, &mut self.wbuf, self.st, self.t.now, c, &rbuf[..len]);
            if used < len {
                c.pending = rbuf[used..len].to_vec();
            }
            if !self.wbuf.is_empty() || c.has_output() {
                let r = write_out(self.st, c.x.fd.as_raw_fd(), &self.wbuf, &mut c.body);
                let (sent, done) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        self.wbuf.clear();
                        return Err(e);
                    }
                };
                if !done {
                    c.x.out = self.wbuf[sent..].to_vec();
                    c.x.out_pos = 0;
                }
                self.wbuf.clear();
                if !done {
                    return Ok(());
                }
            }
            if c.http.is_closing() {
                return self.t.finish_closing(c);
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

    /// Reads and drops input of a lingering connection until the peer closes.
    fn linger(&mut self, c: &mut Conn, rbuf: &mut [u8]) -> Result<(), Close> {
        for _ in 0..16 {
            match sys::read(c.x.fd.as_raw_fd(), rbuf) {
                Ok(0) => return Err(Close::Done),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Close::Done),
            }
        }
        Ok(())
    }

    /// Puts a connection back with the interest and timer its state needs, or closes it.
    fn settle(&mut self, mut c: Conn, idx: usize, r: Result<(), Close>) {
        if let Some(why) = self.t.must_close(&mut c, r) {
            return self.close(c, idx, why);
        }
        let interest = if c.has_output() { Interest::WRITABLE } else { Interest::READABLE };
        if interest != c.x.interest || self.oneshot {
            if self.d.reregister(c.x.fd.as_raw_fd(), c.token(idx), interest).is_err() {
                return self.close(c, idx, Close::Io);
            }
            c.x.interest = interest;
        }
        self.t.file_timer(idx, &mut c);
        self.t.put(idx, c);
    }

    fn close(&mut self, c: Conn, idx: usize, why: Close) {
        let _ = self.d.deregister(c.x.fd.as_raw_fd());
        self.t.closed(why);
        drop(c);
        self.t.release(idx);
    }

    /// SIGTERM/SIGINT: stop accepting, close idle connections, let the rest finish.
    ///
    /// The table takes in the connections already queued and shuts the listener
    /// ([`Table::begin_stop`]). An idle connection is read once before it is closed, so a
    /// request already in its socket is answered (with `Connection: close`) rather than dropped.
    fn begin_stop(&mut self, rbuf: &mut [u8]) {
        for (fd, addr) in self.t.begin_stop(self.listener) {
            self.add_conn(fd, addr);
        }
        self.unlisten();
        for idx in 0..self.t.slots() {
            let Some(mut c) = self.t.take_slot(idx) else { continue };
            if c.drained() {
                let r = self.drive(&mut c, true, rbuf);
                self.settle(c, idx, r);
            } else {
                self.t.put(idx, c);
            }
        }
    }
}
