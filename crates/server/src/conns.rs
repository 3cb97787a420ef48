//! The connection table both engines own: slots and generations, the timer wheel with the phase
//! and deadline policy, admission under `--max-conns`, shedding at the descriptor limit, the
//! drain's bookkeeping, and the loop that turns received bytes into responses.
//!
//! What differs between the engines is only how bytes move. The readiness worker (`worker.rs`)
//! registers each connection with a dispatcher and reads and writes itself; the completion engine
//! (`completion_engine.rs`) arms a multishot receive and queues sends in its ring. Each keeps its
//! own per-connection state `X` (the descriptor, the output in flight) inside a [`Conn`], and
//! tells the table what it needs through [`Io`].
//!
//! | concern | policy |
//! | --- | --- |
//! | slots | a vector of `Option<Conn>` and a free list; a slot's generation is in every token, so an event or completion for an earlier connection in the same slot is never acted on |
//! | admission | the server-wide open count against `--max-conns` (over: accepted and closed at once, counted as `shed_max_conns`); the engine then registers the socket or arms its receive, and a refusal gives the slot back |
//! | timers | a request head must complete within the header timeout of its *first* byte (slowloris), a send must progress and an idle keep-alive connection must speak within the idle timeout; one entry per connection in the coarse [`Wheel`], re-filed only when the deadline moves earlier |
//! | expiry | a header timeout answers 408 before the close; idle, send and linger timeouts close |
//! | drain | at the stop: the connections already in the accept queue are taken in, the listener is shut; a connection is closed once it owes nothing and holds no partial request |
//! | shedding | at `EMFILE` the reserve descriptor sheds what is queued ([`Shedder`]) |

use crate::peer::Peer;
use crate::respond::{Body, Responder};
use crate::shed::Shedder;
use crate::stats::{bump, ServerError, WorkerStats};
use crate::wheel::Wheel;
use crate::{sys, Config, Shared};
use ioscale_dispatch::Token;
use ioscale_http::{Connection, Step, Timer};
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The listener's token.
pub(crate) const LISTENER: Token = Token(usize::MAX);
/// The waker's token.
pub(crate) const WAKER: Token = Token(usize::MAX - 1);
/// Responses are batched into the write buffer up to this size (pipelining).
pub(crate) const WBUF_HIGH: usize = 64 * 1024;
/// How long a refused connection is drained before it is closed (nginx's lingering close: a
/// close with unread input would reset the connection and could destroy the error response).
const LINGER: Duration = Duration::from_secs(2);
/// How long the listener rests when no descriptor can be had even for shedding.
const ACCEPT_PAUSE: Duration = Duration::from_millis(200);
/// Most queued connections taken in at the stop.
const STOP_ACCEPT_MAX: usize = 4096;

/// Where a connection is in its exchange: what its deadline means.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Between requests (the idle timeout).
    Idle,
    /// A request head has begun (the header timeout, from its first byte).
    Header,
    /// Output is owed (the idle timeout, renewed by each send).
    Send,
    /// Refused: our side is shut, the client's input is read and dropped until it closes.
    Linger,
}

/// Why a connection closes.
#[derive(Copy, Clone, Debug)]
pub(crate) enum Close {
    /// The exchange is over (or a timeout, counted by the expiry).
    Done,
    /// The peer reset the connection.
    Reset,
    /// Any other I/O error.
    Io,
}

impl Close {
    /// The close an I/O error calls for.
    pub fn of(e: &io::Error) -> Close {
        match e.raw_os_error() {
            Some(libc::ECONNRESET | libc::EPIPE | libc::ETIMEDOUT | libc::ECANCELED) => {
                Close::Reset
            }
            _ => Close::Io,
        }
    }
}

/// What the table asks of an engine's own per-connection state.
pub(crate) trait Io {
    /// Output (besides [`Conn::body`]) is waiting or in flight.
    fn busy(&self) -> bool;
    /// The socket (-1 once the engine has handed it to its close).
    fn fd(&self) -> RawFd;
    /// The connection may be acted on (the completion engine keeps a closing connection in its
    /// slot until its last operation completes).
    fn live(&self) -> bool {
        true
    }
}

/// One connection: the lifecycle both engines share, and the engine's own state `x`.
#[derive(Debug)]
pub(crate) struct Conn<X> {
    gen: u32,
    /// The HTTP state machine.
    pub http: Connection,
    /// Input not consumed yet (a partial head, or pipelined requests waiting for output).
    pub pending: Vec<u8>,
    /// What must follow the output in flight.
    pub body: Body,
    /// What the deadline means.
    pub phase: Phase,
    /// When the connection times out.
    pub deadline: Instant,
    /// The deadline its newest wheel entry was filed under.
    filed: Option<Instant>,
    timer_seq: u32,
    /// Whether the peer is on a loopback address: known since the accept (readiness), or learnt
    /// on the first request that needs it (the stats endpoint; completion).
    pub loopback: Option<bool>,
    /// The peer's address is known or not needed (it is for the access log); `loopback` is
    /// learnt apart, on the first request for one of the server's own endpoints.
    peer_known: bool,
    /// The peer's address: known at accept (readiness) or learnt on the first request when the
    /// access log is on.
    pub addr: Option<IpAddr>,
    /// The peer shut down its side.
    pub read_closed: bool,
    /// A request was refused: the connection closes (lingering) after the error response.
    pub rejected: bool,
    /// The engine's own state.
    pub x: X,
}

impl<X: Io> Conn<X> {
    /// Whether anything is owed to the peer.
    #[inline]
    pub fn has_output(&self) -> bool {
        self.x.busy() || !matches!(self.body, Body::None)
    }

    /// While the server drains: whether the connection owes nothing and holds no partial
    /// request (and tells its state machine that the server is draining, so that a response
    /// still to come says `Connection: close`).
    pub fn drained(&mut self) -> bool {
        self.phase != Phase::Linger && !self.has_output() && self.http.drain(self.pending.len())
    }

    /// The token the connection's events or operations carry.
    #[inline]
    pub fn token(&self, idx: usize) -> Token {
        token_of(idx, self.gen)
    }
}

/// Why `accept` failed, and what to do about it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum AcceptFailure {
    /// Nothing queued (`EAGAIN`): done for now.
    Empty,
    /// One connection failed, the next may not (`EINTR`, `ECONNABORTED`, `EPROTO`, `EPERM`).
    Transient,
    /// Out of descriptors or memory: shed.
    NoDescriptors,
    /// The server is stopping and another worker shut the shared listener (`EINVAL`).
    Stopped,
    /// Anything else: count, say it once per occurrence, pause the listener.
    Failed,
}

/// The table of one worker.
pub(crate) struct Table<'a, X> {
    /// Worker number.
    pub id: usize,
    /// The configuration.
    pub cfg: &'a Config,
    /// What the workers share (the stop flag, the server-wide open count).
    pub shared: &'a Shared,
    /// This worker's counters.
    pub st: &'a WorkerStats,
    slots: Vec<Option<Conn<X>>>,
    free: Vec<usize>,
    /// Connections open in this worker (closing ones excluded).
    pub open: usize,
    next_gen: u32,
    wheel: Wheel,
    due: Vec<u64>,
    shed: Shedder,
    /// The loop's clock, read once per wait.
    pub now: Instant,
    /// Set at the stop: when the drain gives up.
    pub stopping: Option<Instant>,
    /// Set when accepting pauses: when it resumes.
    pub paused_until: Option<Instant>,
}

fn token_of(idx: usize, gen: u32) -> Token {
    Token((gen as usize) << 32 | idx)
}

/// Wheel keys: 32 bits of slot, 20 of generation, 12 of timer sequence.
fn wheel_key(idx: usize, gen: u32, seq: u32) -> u64 {
    (idx as u64) | (u64::from(gen & 0xfffff) << 32) | (u64::from(seq & 0xfff) << 52)
}

fn split_key(k: u64) -> (usize, u32, u32) {
    ((k & 0xffff_ffff) as usize, ((k >> 32) & 0xfffff) as u32, (k >> 52) as u32)
}

impl<'a, X: Io> Table<'a, X> {
    /// An empty table for worker `id`.
    pub fn new(id: usize, cfg: &'a Config, shared: &'a Shared, now: Instant) -> Self {
        Table {
            id,
            cfg,
            shared,
            st: &shared.stats.workers[id],
            slots: Vec::new(),
            free: Vec::new(),
            open: 0,
            next_gen: 1,
            wheel: Wheel::new(now),
            due: Vec::new(),
            shed: Shedder::new(),
            now,
            stopping: None,
            paused_until: None,
        }
    }

    // -----------------------------------------------------------------------------------------
    // the loop

    /// Whether the drain is over: nothing open, or the drain timeout passed.
    #[inline]
    pub fn drain_over(&self) -> bool {
        self.stopping.is_some_and(|until| self.open == 0 || self.now >= until)
    }

    /// Whether a pause of the listener has run out (then it is cleared).
    #[inline]
    pub fn resume_due(&mut self) -> bool {
        match self.paused_until {
            Some(t) if self.now >= t && self.stopping.is_none() => {
                self.paused_until = None;
                true
            }
            _ => false,
        }
    }

    /// How long the next wait may last: until the next tick of the wheel, the end of a pause,
    /// the drain timeout, or `also` (the responder's next chore: the file cache's idle entries).
    #[inline]
    pub fn wait_timeout(&self, also: Option<Instant>) -> Option<Duration> {
        let mut timeout = self.wheel.timeout(self.now);
        for t in [self.paused_until, self.stopping, also].into_iter().flatten() {
            let d = t.saturating_duration_since(self.now) + Duration::from_millis(1);
            timeout = Some(timeout.map_or(d, |x| x.min(d)));
        }
        timeout
    }

    // -----------------------------------------------------------------------------------------
    // accepting

    /// What an `accept` error calls for.
    pub fn accept_failure(&self, e: &io::Error) -> AcceptFailure {
        match e.raw_os_error() {
            Some(libc::EAGAIN) => AcceptFailure::Empty,
            Some(libc::EINTR | libc::ECONNABORTED | libc::EPROTO | libc::EPERM) => {
                AcceptFailure::Transient
            }
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                AcceptFailure::NoDescriptors
            }
            _ if self.shared.stop.load(Ordering::Relaxed) => AcceptFailure::Stopped,
            _ => AcceptFailure::Failed,
        }
    }

    /// Counts and reports an accept that failed for no known reason, and pauses accepting.
    pub fn accept_failed(&mut self, e: &io::Error) {
        self.st.error(ServerError::AcceptFailed);
        crate::error_log::error!("worker {}: accept failed: {e}", self.id);
        self.pause();
    }

    /// A connection was accepted (ends a shedding episode).
    #[inline]
    pub fn accepted(&mut self) {
        self.shed.accepted(self.id);
    }

    /// Out of descriptors: sheds what `listener` has queued ([`Shedder`]); returns whether the
    /// listener must pause (then the pause is set).
    pub fn shed(&mut self, listener: RawFd, e: &io::Error) -> bool {
        let pause = self.shed.shed(self.id, listener, self.st, e);
        if pause {
            self.pause();
        }
        pause
    }

    /// Pauses accepting for a while.
    pub fn pause(&mut self) {
        self.paused_until = Some(self.now + ACCEPT_PAUSE);
    }

    /// Admission: a slot and its token for a new connection, unless `--max-conns` are open
    /// (then counted as shed, and the caller drops the socket).
    pub fn admit(&mut self) -> Option<(usize, Token)> {
        if self.shared.open.fetch_add(1, Ordering::Relaxed) >= self.cfg.max_conns {
            self.shared.open.fetch_sub(1, Ordering::Relaxed);
            self.st.error(ServerError::ShedMaxConns);
            return None;
        }
        let idx = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1).max(1);
        Some((idx, token_of(idx, gen)))
    }

    /// The engine could not register an admitted connection (`what` failed with `e`): the slot
    /// goes back, the refusal is counted, and the first one is reported.
    pub fn refuse(&mut self, idx: usize, what: &str, e: &io::Error) {
        self.shared.open.fetch_sub(1, Ordering::Relaxed);
        self.free.push(idx);
        self.st.error(ServerError::RegisterFailed);
        if self.st.server_errors[ServerError::RegisterFailed as usize].load(Ordering::Relaxed) == 1
        {
            crate::error_log::error!("worker {}: {what}: {e}; connection closed", self.id);
        }
    }

    /// Puts an admitted, registered connection in its slot: idle, with the idle timeout filed.
    pub fn install(&mut self, idx: usize, tok: Token, peer: Option<Option<IpAddr>>, x: X) {
        bump(&self.st.accepted, 1);
        self.open += 1;
        let gen = (tok.0 >> 32) as u32;
        let deadline = self.now + self.cfg.idle_timeout;
        self.wheel.insert(wheel_key(idx, gen, 0), deadline);
        let (peer_known, loopback, addr) = match peer {
            Some(addr) => (true, Some(addr.is_some_and(|a| a.is_loopback())), addr),
            None => (self.shared.access_log.is_none(), None, None),
        };
        self.slots[idx] = Some(Conn {
            gen,
            http: Connection::new(self.cfg.limits),
            pending: Vec::new(),
            body: Body::None,
            phase: Phase::Idle,
            deadline,
            filed: Some(deadline),
            timer_seq: 0,
            loopback,
            peer_known,
            addr,
            read_closed: false,
            rejected: false,
            x,
        });
    }

    // -----------------------------------------------------------------------------------------
    // slots

    /// Takes the connection `tok` names out of its slot: `Err(())` when the slot is empty or
    /// holds a later connection (an event or completion for one that is gone).
    #[inline]
    pub fn take(&mut self, tok: Token) -> Result<(usize, Conn<X>), ()> {
        let idx = tok.0 & 0xffff_ffff;
        let gen = (tok.0 >> 32) as u32;
        let Some(c) = self.slots.get_mut(idx).and_then(Option::take) else { return Err(()) };
        if c.gen != gen {
            self.slots[idx] = Some(c);
            return Err(());
        }
        Ok((idx, c))
    }

    /// Takes whatever is in slot `idx` (to visit every connection).
    pub fn take_slot(&mut self, idx: usize) -> Option<Conn<X>> {
        self.slots.get_mut(idx).and_then(Option::take)
    }

    /// The number of slots (to visit every connection).
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Whether a connection an engine has just acted on (with result `r`) must close, and why:
    /// its exchange failed or ended, or the server drains and it has nothing left to do (its
    /// last response said keep-alive if it began before the stop).
    #[inline]
    pub fn must_close(&self, c: &mut Conn<X>, r: Result<(), Close>) -> Option<Close> {
        match r {
            Err(why) => Some(why),
            Ok(()) if self.stopping.is_some() && c.drained() => Some(Close::Done),
            Ok(()) => None,
        }
    }

    /// Puts a connection back in its slot.
    #[inline]
    pub fn put(&mut self, idx: usize, c: Conn<X>) {
        self.slots[idx] = Some(c);
    }

    /// Sets the deadline of `c` (in slot `idx`) as its state calls for and files it in the
    /// wheel; the engine then puts it back ([`Table::put`]).
    ///
    /// A request head must complete within the header timeout of its first byte (not of its
    /// last: slowloris), a send must progress within the idle timeout, and an idle connection
    /// must speak within it; a lingering connection keeps its linger deadline.
    #[inline]
    pub fn file_timer(&mut self, idx: usize, c: &mut Conn<X>) {
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
    }

    /// Counts a close: the connection is no longer open (its slot is freed by [`Table::release`]
    /// once the engine is done with it).
    pub fn closed(&mut self, why: Close) {
        match why {
            Close::Done => {}
            Close::Reset => self.st.error(ServerError::Reset),
            Close::Io => self.st.error(ServerError::Io),
        }
        self.open -= 1;
        self.shared.open.fetch_sub(1, Ordering::Relaxed);
        bump(&self.st.closed, 1);
    }

    /// Frees slot `idx` (empty now) for the next connection.
    pub fn release(&mut self, idx: usize) {
        self.free.push(idx);
    }

    /// The request is refused or the exchange is over and all output is sent: close, or, for a
    /// refused client still sending, shut our side and drain its input before closing.
    pub fn finish_closing(&self, c: &mut Conn<X>) -> Result<(), Close> {
        if c.rejected && !c.read_closed {
            let _ = sys::shutdown_write(c.x.fd());
            c.phase = Phase::Linger;
            c.deadline = self.now + LINGER;
            c.pending = Vec::new();
            return Ok(());
        }
        Err(Close::Done)
    }

    // -----------------------------------------------------------------------------------------
    // timers

    /// Moves the wheel's due entries into the table's list for [`Table::next_expired`].
    #[inline]
    pub fn collect_due(&mut self) {
        self.wheel.expire(self.now, &mut self.due);
    }

    /// The next connection whose deadline has passed, taken out of its slot for the engine to
    /// close; its timeout is counted, and a header timeout is answered with 408 first. Entries
    /// for gone connections are dropped and early ones re-filed on the way.
    #[inline]
    pub fn next_expired(&mut self, resp: &mut Responder<'_>) -> Option<(usize, Conn<X>)> {
        if self.due.is_empty() {
            return None;
        }
        self.next_due(resp)
    }

    fn next_due(&mut self, resp: &mut Responder<'_>) -> Option<(usize, Conn<X>)> {
        while let Some(key) = self.due.pop() {
            let (idx, gen, seq) = split_key(key);
            let Some(c) = self.slots.get_mut(idx).and_then(Option::as_mut) else { continue };
            if (c.gen & 0xfffff) != gen || (c.timer_seq & 0xfff) != seq || !c.x.live() {
                continue; // a stale entry: a newer one is filed
            }
            if c.deadline > self.now {
                c.timer_seq = c.timer_seq.wrapping_add(1);
                c.filed = Some(c.deadline);
                let (deadline, k) = (c.deadline, wheel_key(idx, c.gen, c.timer_seq));
                self.wheel.insert(k, deadline);
                continue;
            }
            let mut c = self.slots[idx].take()?;
            match c.phase {
                Phase::Header => {
                    self.st.error(ServerError::TimeoutHeader);
                    if let Some(e) = c.http.timed_out(c.pending.len()) {
                        if !c.peer_known {
                            learn_peer(&mut c, b"", resp.logging());
                        }
                        let mut out = Vec::new();
                        resp.reject(&e, c.addr, &c.pending, self.now, &mut out);
                        // Nothing else is being sent (the header phase has no output), so a
                        // direct non-blocking send cannot interleave with an engine's own.
                        let _ = sys::send2(c.x.fd(), &out, &[], false);
                    }
                }
                Phase::Idle => self.st.error(ServerError::TimeoutIdle),
                Phase::Send => self.st.error(ServerError::TimeoutSend),
                Phase::Linger => {}
            }
            return Some((idx, c));
        }
        None
    }

    // -----------------------------------------------------------------------------------------
    // the stop

    /// SIGTERM/SIGINT: takes in the connections the kernel has already completed on `listener`
    /// (their clients have sent, or are sending, a request) for the engine to add, sets the
    /// drain's deadline, and shuts the listener: a queued connection would otherwise wait
    /// unanswered until the process exits, and a new one is refused at once instead of timing
    /// out.
    pub fn begin_stop(&mut self, listener: RawFd) -> Vec<(OwnedFd, Option<IpAddr>)> {
        let mut queued = Vec::new();
        while queued.len() < STOP_ACCEPT_MAX {
            match sys::accept_from(listener) {
                Ok(c) => queued.push(c),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.stopping = Some(self.now + self.cfg.drain_timeout);
        self.paused_until = None;
        let _ = sys::shutdown_read(listener);
        queued
    }
}

/// Learns what the request loop needs about the peer of `c` and was not told at the accept:
/// whether it is on a loopback address, if `target` is one of the server's own endpoints (stats
/// and its kin: the only answers that depend on it), and its address when `logging`. Each is a
/// `getpeername`, made once per connection and only when needed.
#[cold]
#[inline(never)]
fn learn_peer<X: Io>(c: &mut Conn<X>, target: &[u8], logging: bool) {
    const OWN_PREFIX: &[u8] = b"/.ioscale/";
    let fd = c.x.fd();
    if logging && c.addr.is_none() {
        c.addr = sys::peer_ip(fd);
    }
    c.peer_known = c.addr.is_some() || !logging;
    if c.loopback.is_none() && target.starts_with(OWN_PREFIX) {
        c.loopback = Some(sys::peer_is_loopback(fd));
    }
}

/// Answers the complete requests in `input` into `wbuf` with `resp`. Returns the bytes used and
/// whether it stopped early (output to send first) with input left.
pub(crate) fn answer<X: Io>(
    resp: &mut Responder<'_>,
    wbuf: &mut Vec<u8>,
    st: &WorkerStats,
    now: Instant,
    c: &mut Conn<X>,
    input: &[u8],
) -> (usize, bool) {
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
                if !c.peer_known || (c.loopback.is_none() && req.target.get(1) == Some(&b'.')) {
                    learn_peer(c, req.target, resp.logging());
                }
                let ka = c.http.keep_alive();
                let peer = Peer {
                    keep_alive: ka,
                    loopback: c.loopback == Some(true),
                    addr: c.addr,
                    head: &input[at..pos],
                };
                if waited {
                    waited = false;
                    resp.head_waited(c.deadline, now);
                }
                c.body = resp.serve(&req, peer, now, wbuf);
            }
            Step::Reject(e) => {
                if !c.peer_known {
                    learn_peer(c, b"", resp.logging());
                }
                resp.reject(&e, c.addr, &input[at..], now, wbuf);
                c.rejected = true;
                return (input.len(), false);
            }
        }
    }
}

/// Sends `head` then the body on the non-blocking socket `fd` until everything went or the
/// socket is full: a cached body rides with the head in one `sendmsg`, a file follows it with
/// `sendfile` (the head sent with `MSG_MORE`, so the two leave in full segments). Returns the
/// head bytes sent and whether everything went. The readiness engine writes everything so;
/// the completion engine writes responses with a body so (no copy of a file in user memory).
pub(crate) fn write_out(
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
            Err(e) => return Err(Close::of(&e)),
        }
        if matches!(body, Body::None) && sent == head.len() {
            return Ok((sent, true));
        }
    }
}
