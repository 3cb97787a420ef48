//! POSIX real-time signals as an event queue: `rtsig`, `rtsig-batch` and `rtsig-perfd`.
//!
//! This is the mechanism phhttpd introduced and both papers measured (Provos & Lever §2,
//! Chandra & Mosberger §2.2): every registered descriptor gets `F_SETSIG` (its notices become
//! queued real-time signals carrying `si_fd` and `si_band`), `F_SETOWN_EX` to the *waiting
//! thread* and `O_ASYNC | O_NONBLOCK`; the signal is blocked in that thread and dequeued
//! synchronously, so no handler ever runs.
//!
//! | variant | dequeue | system calls per notice (steady state) |
//! | --- | --- | --- |
//! | `rtsig` | `sigtimedwait`, one signal per call (phhttpd, C&M's server) | 1 |
//! | `rtsig-batch` | a `signalfd` read, up to the event buffer's capacity per call (the `sigtimedwait4` Provos & Lever proposed) | 1 per batch (3 when it has to block: empty read, `poll` on the signalfd, read) |
//! | `rtsig-perfd` | `sigtimedwait`, with signal-per-fd emulated (below) | 1 dequeue + 1 disarm `fcntl`, then at the next wait 1 `poll` over the disarmed descriptors and, for each found idle, 1 re-arm `fcntl` and a share of 1 confirming `poll` |
//!
//! Registration costs 4 `fcntl` calls (`F_SETSIG`, `F_SETOWN_EX`, `F_GETFL`, `F_SETFL`),
//! deregistration 1 (`F_SETOWN_EX` to nobody), `reregister` none (the interest filter is applied
//! in user space; a reregistered descriptor is re-checked with the next wait's `poll`). All of
//! these are counted in `interest_syscalls`, together with the readiness checks below.
//!
//! # The interest set in user space, overflow and recovery
//!
//! The interest set is kept in user space at all times, as a `pollfd` array beside the
//! registrations — the re-architecture Provos & Lever (§6) asked of phhttpd, where the overflow
//! recovery runs in the same thread as the signal loop and needs no rebuilding. When the signal
//! queue is full the kernel cannot queue the RT signal and raises plain `SIGIO` instead (one
//! pending bit, no payload); it is blocked and waited for together with the RT signal, and
//! since it has the lower number it is dequeued first. On `SIGIO` the dispatcher (1) counts an
//! overflow, (2) flushes the stale queue (signalfd reads until it is empty, counted in
//! `flush_reads`, not `dequeue_calls`; the notices are dropped), then (3) makes *one* `poll`
//! over the whole set (counted in `recoveries`) and reports every ready descriptor, keeping
//! those beyond the event buffer in a user-space backlog for the next waits. The order matters: a descriptor that became ready before the flush is
//! seen by the poll, one that becomes ready after it queues a new signal (or overflows again,
//! which raises `SIGIO` again). Nothing is lost; a notice may be repeated (notices are hints).
//!
//! # Stale notices under a reused descriptor number
//!
//! A queued signal carries only `si_fd`. If a descriptor is deregistered while a notice for it
//! is queued and its number is reused by a new registration, that notice must not be reported
//! under the new one. Each registration records the current *epoch*; a notice for a
//! registration whose epoch is not yet known to be "mature" may predate it, so it is validated
//! with a zero-timeout `poll` of that descriptor and reported only if the descriptor really is
//! ready for the registration's interest. Registrations mature when the dispatcher observes the
//! queue empty (a `sigtimedwait` that times out, a signalfd read that returns less than it
//! asked for, a flush): every later notice postdates them. Because a one-at-a-time
//! `sigtimedwait` loop under sustained load may never see the queue empty, `rtsig` and
//! `rtsig-perfd` also queue a *marker* after new registrations (one `rt_tgsigqueueinfo` of
//! their own signal, `SI_QUEUE`, carrying the epoch, at the next wait): RT signals of one
//! number come out in order, so when the marker is dequeued every notice older than those
//! registrations is gone, and they mature. Markers are internal and never reported.
//! A `reregister` gives the descriptor the current epoch too
//! (so a queued notice of the old interest is filtered), and every `register`/`reregister` puts
//! the descriptor on a check list polled (one `poll` for all of them) at the next wait, because
//! an `O_ASYNC` signal is only sent on a *change*: a descriptor already ready when armed would
//! otherwise never be reported.
//!
//! # Signal-per-fd emulation (`rtsig-perfd`)
//!
//! Chandra & Mosberger §3.4 propose that the kernel queue at most one signal per descriptor, so
//! the queue cannot overflow if its limit is at least the number of descriptors. Linux never
//! took the patch. The emulation: when a descriptor is reported it is *disarmed* (`F_SETOWN_EX`
//! to nobody), so it queues nothing while the caller handles it; when the caller comes back
//! (the next `wait`) the disarmed descriptors are polled together: those still ready are
//! reported again at once (still disarmed), the others are re-armed and polled once more to
//! catch an event that fell between the first poll and the re-arm. Notices dequeued for a
//! disarmed descriptor are dropped as duplicates. What user space cannot emulate: between its
//! arming and the dequeue of its first notice, an armed descriptor that changes state several
//! times still queues several signals (the kernel patch would coalesce them at enqueue). The
//! bound is therefore one queued signal per descriptor *per arming*, plus the state changes
//! that happen before its first notice is dequeued. The price is the system calls in the table.
//!
//! # Threads
//!
//! Signals are routed to one thread (`F_OWNER_TID`) and must be blocked there. [`RtSig::open`]
//! blocks the signal and `SIGIO` in the *calling* thread, so a dispatcher should be waited on
//! from the thread that opened it. If `wait` finds itself on another thread it re-targets: it
//! blocks the signals there, points every armed descriptor at the new thread (one `fcntl`
//! each) and recovers with one full `poll` (signals already queued to the old thread stay there
//! until that thread exits). The signal number is chosen per thread: `Options::rtsig_signal`,
//! or by default the lowest real-time signal that has no handler in the process and is not used
//! by another RT-signal dispatcher on the same thread. `SIGIO` is shared by the dispatchers of a
//! thread: whichever dequeues it tells the others (a per-thread overflow epoch), and each
//! recovers. When the last RT-signal dispatcher of a thread is dropped on that thread, the
//! signals it blocked are flushed and unblocked again.
//!
//! Limits: `O_ASYNC` works for sockets, pipes, FIFOs and terminals; files whose type has no
//! `fasync` support (eventfd, timerfd, regular files) are accepted by the kernel but never
//! signal. Two descriptors for one open file share one owner and one `si_fd` (the last
//! registered), as in the papers' servers. `RLIMIT_SIGPENDING` counts the signals queued for
//! the process's real user over *all* its processes; `Options::sigqueue_max` sets this
//! process's soft limit at open (for experiments and tests).

use super::poll::{interest_events, revents_flags};
use super::{
    already_registered, check_fd, not_registered, Dispatcher, FdTable, Mechanism, Options, Trigger,
};
use crate::sys::{self, signal as sig};
use crate::{Counters, Event, Events, Interest, Token};
use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How notices are taken off the queue.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Dequeue {
    /// `sigtimedwait`, one signal per call.
    One,
    /// `signalfd` reads, many per call.
    Batch,
}

/// What an RT-signal dispatcher does once its signal queue overflowed (`SIGIO`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Recovery {
    /// Flush the queue, recover with one poll over the interest set kept up to date, and return
    /// to signals at once (the re-architecture Provos & Lever §6 asked of phhttpd).
    #[default]
    Repoll,
    /// Chandra & Mosberger's server (§4.2, Table 1): serve from a scan of the whole interest
    /// set (their multi-accept select; here a poll) and try to go back to signals when a scan
    /// finds nothing ready and, while every scan finds work, every 100 ms. The way back is a
    /// dequeue: where the queue overflowed while the scans served, it is the `SIGIO`, and the
    /// server stays on its fallback (the stale queue flushed; a blocking scan if nothing was
    /// ready); else it flushes the queue and polls once more, so nothing that became ready
    /// meanwhile is lost. Under overload an attempt ends in `SIGIO` whenever the queue
    /// overflowed again since the last one.
    Fallback,
}

impl Recovery {
    /// Every policy, by its command-line name.
    pub const ALL: [(Recovery, &'static str); 2] =
        [(Recovery::Repoll, "repoll"), (Recovery::Fallback, "fallback")];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(r, _)| *r == self).map_or("repoll", |(_, n)| n)
    }
}

impl std::str::FromStr for Recovery {
    type Err = String;
    fn from_str(s: &str) -> Result<Recovery, String> {
        Self::ALL.iter().find(|(_, n)| *n == s).map(|(r, _)| *r).ok_or_else(|| {
            format!("unknown RT-signal recovery policy '{s}': expected repoll or fallback")
        })
    }
}

impl std::fmt::Display for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What [`Core::collect`] does when it dequeues `SIGIO`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum OnOverflow {
    /// Flush the queue and poll the whole set (rtsig).
    Recover,
    /// Stop and tell the caller (the hybrid switches to epoll instead).
    Report,
}

/// What one [`Core::collect`] saw.
#[derive(Copy, Clone, Debug, Default)]
pub(crate) struct Collected {
    /// RT signals dequeued by this wait (the hybrid's load measure).
    pub dequeued: usize,
    /// `SIGIO` was dequeued (and, under [`OnOverflow::Report`], not yet handled).
    pub overflow: bool,
}

/// The most signal records one read asks for.
const MAX_BATCH: usize = 1024;
/// Records per read while flushing.
const FLUSH_BATCH: usize = 256;
/// Under [`Recovery::Fallback`], while every scan finds work: how often the server tries to go
/// back to signals. Chandra & Mosberger do not say when their server tried; past the knee their
/// Table 1 shows 13-40 dequeues per run, every one a SIGIO, nearly flat as the rate rises (40 to
/// 39 with 252 idle, 16 to 13 with 6,000), so it tried while overloaded, not only once the load
/// subsided. 100 ms bounds the time spent on the dearer scans once the load falls but
/// never leaves a scan empty, and an attempt costs one dequeue and a flush.
const FALLBACK_RETRY: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct Reg {
    token: Token,
    interest: Interest,
    /// Bumped by every register and reregister; backlog and check entries carry it.
    gen: u64,
    /// The drain epoch when it was (re)registered; equal to the current one = "young".
    epoch: u64,
    /// Whether its notices are routed to the waiting thread right now.
    armed: bool,
    /// Index in the pollfd array.
    slot: usize,
}

// ---------------------------------------------------------------------------------------------
// Which signal numbers each thread uses, and what to unblock when the last user goes.

struct ThreadUse {
    tid: libc::pid_t,
    signos: Vec<libc::c_int>,
    /// Signals this registry blocked that were not blocked before.
    restore: Vec<libc::c_int>,
}

static USES: Mutex<Vec<ThreadUse>> = Mutex::new(Vec::new());

thread_local! {
    /// Overflows (`SIGIO`) dequeued on this thread by any RT-signal dispatcher.
    static SIGIO_EPOCH: Cell<u64> = const { Cell::new(0) };
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Picks (or checks) the signal for a dispatcher on the calling thread, records it and blocks it
/// together with `SIGIO` in this thread.
fn claim(wanted: Option<libc::c_int>) -> io::Result<libc::c_int> {
    let (min, max) = (sig::sigrtmin(), sig::sigrtmax());
    if let Some(s) = wanted {
        if !(min..=max).contains(&s) {
            return Err(invalid(format!(
                "signal {s} is not a real-time signal: expected {min} (SIGRTMIN) to {max} (SIGRTMAX)"
            )));
        }
    }
    let tid = sig::gettid();
    let mut uses = USES.lock().unwrap_or_else(|e| e.into_inner());
    let idx = match uses.iter().position(|u| u.tid == tid) {
        Some(i) => i,
        None => {
            uses.push(ThreadUse { tid, signos: Vec::new(), restore: Vec::new() });
            uses.len() - 1
        }
    };
    let candidates: Vec<libc::c_int> = match wanted {
        Some(s) => vec![s],
        None => (min..=max).collect(),
    };
    let mut chosen = None;
    for s in candidates {
        if uses[idx].signos.contains(&s) {
            if wanted.is_some() {
                return Err(invalid(format!(
                    "signal {s} is already used by another RT-signal dispatcher on this thread; choose another real-time signal"
                )));
            }
            continue;
        }
        if !sig::disposition_is_default(s)? {
            if wanted.is_some() {
                return Err(invalid(format!(
                    "signal {s} already has a handler (or is ignored) in this process, so it is not free for I/O notices; choose another real-time signal"
                )));
            }
            continue;
        }
        chosen = Some(s);
        break;
    }
    let Some(s) = chosen else {
        if uses[idx].signos.is_empty() {
            uses.remove(idx);
        }
        return Err(invalid(format!(
            "no free real-time signal on this thread: {min} to {max} are all handled or used by other dispatchers"
        )));
    };
    let old = sig::block(&sig::SigSet::of(&[s, libc::SIGIO]))?;
    let u = &mut uses[idx];
    u.signos.push(s);
    for x in [s, libc::SIGIO] {
        if !old.contains(x) && !u.restore.contains(&x) {
            u.restore.push(x);
        }
    }
    Ok(s)
}

/// Forgets `signo` on thread `tid`; on that thread, when it was the last, unblocks what
/// [`claim`] blocked (the caller has flushed the pending signals first).
fn release(tid: libc::pid_t, signo: libc::c_int) {
    let mut uses = USES.lock().unwrap_or_else(|e| e.into_inner());
    let Some(i) = uses.iter().position(|u| u.tid == tid) else { return };
    uses[i].signos.retain(|&s| s != signo);
    if uses[i].signos.is_empty() {
        let u = uses.remove(i);
        if tid == sig::gettid() && !u.restore.is_empty() {
            let _ = sig::unblock(&sig::SigSet::of(&u.restore));
        }
    }
}

/// Applies `Options::sigqueue_max` (the soft `RLIMIT_SIGPENDING` of this process).
pub(crate) fn apply_queue_limit(max: Option<u64>) -> io::Result<()> {
    let Some(max) = max else { return Ok(()) };
    let (_, hard) = sig::sigpending_limit()?;
    if max == 0 || max > hard {
        return Err(invalid(format!(
            "signal queue limit {max} is out of range: expected 1 to {hard} (this process's hard RLIMIT_SIGPENDING)"
        )));
    }
    sig::set_sigpending_limit(max)
}

/// Event flags of an I/O notice's `si_code` (`POLL_IN` … `POLL_HUP`); 0 for other codes.
fn code_flags(code: libc::c_int) -> u8 {
    // The SIGPOLL si_codes of <asm-generic/siginfo.h>.
    const POLL_IN: libc::c_int = 1;
    const POLL_OUT: libc::c_int = 2;
    const POLL_MSG: libc::c_int = 3;
    const POLL_ERR: libc::c_int = 4;
    const POLL_PRI: libc::c_int = 5;
    const POLL_HUP: libc::c_int = 6;
    match code {
        POLL_IN | POLL_MSG | POLL_PRI => Event::READABLE,
        POLL_OUT => Event::WRITABLE,
        POLL_ERR => Event::ERROR,
        POLL_HUP => Event::HANGUP,
        _ => 0,
    }
}

/// The flags a registration with `interest` is told about (errors and hangups always).
fn wanted(interest: Interest) -> u8 {
    let mut w = Event::HANGUP | Event::ERROR;
    if interest.is_readable() {
        w |= Event::READABLE;
    }
    if interest.is_writable() {
        w |= Event::WRITABLE;
    }
    w
}

fn is_ready(p: &libc::pollfd) -> bool {
    p.revents & (p.events | libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
}

// ---------------------------------------------------------------------------------------------
// The engine shared by the three variants and the hybrid.

/// Registrations, arming, dequeue, validation, backlog and recovery.
pub(crate) struct Core {
    signo: libc::c_int,
    set: sig::SigSet,
    sfd: OwnedFd,
    tid: libc::pid_t,
    dequeue: Dequeue,
    perfd: bool,
    /// Whether registrations are armed (false while the hybrid is in epoll mode).
    signals_on: bool,
    regs: FdTable<Reg>,
    pollfds: Vec<libc::pollfd>,
    check: Vec<(RawFd, u64)>,
    backlog: VecDeque<(RawFd, u64, u8)>,
    disarmed: Vec<RawFd>,
    validate: Vec<(RawFd, u64)>,
    /// This wait's results (descriptor, flags), deduplicated through `stamp`.
    out: Vec<(RawFd, u8)>,
    cap: usize,
    stamp: Vec<(u64, u32)>,
    seq: u64,
    /// The current registration epoch (see "Stale notices" in the module docs).
    epoch: u64,
    /// Registrations with an epoch below this are trusted ("mature").
    mature_upto: u64,
    /// A registration was made since the last marker or observed drain.
    need_marker: bool,
    pid: libc::pid_t,
    next_gen: u64,
    sigio_seen: u64,
    sbuf: Vec<libc::signalfd_siginfo>,
    scratch: Vec<libc::pollfd>,
    pub(crate) counters: Counters,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("signo", &self.signo)
            .field("tid", &self.tid)
            .field("dequeue", &self.dequeue)
            .field("perfd", &self.perfd)
            .field("registered", &self.regs.len())
            .finish_non_exhaustive()
    }
}

impl Core {
    pub(crate) fn open(options: &Options, dequeue: Dequeue, perfd: bool) -> io::Result<Core> {
        apply_queue_limit(options.sigqueue_max)?;
        let signo = claim(options.rtsig_signal)?;
        let tid = sig::gettid();
        let set = sig::SigSet::of(&[signo, libc::SIGIO]);
        let sfd = match sig::signalfd(&set) {
            Ok(fd) => fd,
            Err(e) => {
                release(tid, signo);
                return Err(e);
            }
        };
        let mut core = Core {
            signo,
            set,
            sfd,
            tid,
            dequeue,
            perfd,
            signals_on: true,
            regs: FdTable::new(),
            pollfds: Vec::new(),
            check: Vec::new(),
            backlog: VecDeque::new(),
            disarmed: Vec::new(),
            validate: Vec::new(),
            out: Vec::new(),
            cap: 1,
            stamp: Vec::new(),
            seq: 0,
            epoch: 0,
            mature_upto: 0,
            need_marker: false,
            pid: sig::getpid(),
            next_gen: 1,
            sigio_seen: SIGIO_EPOCH.with(Cell::get),
            sbuf: Vec::new(),
            scratch: Vec::new(),
            counters: Counters::default(),
        };
        // Leftovers queued to this thread before we existed are nobody's notices now.
        core.flush()?;
        core.counters = Counters::default();
        Ok(core)
    }

    pub(crate) fn signo(&self) -> libc::c_int {
        self.signo
    }

    pub(crate) fn len(&self) -> usize {
        self.regs.len()
    }

    pub(crate) fn register(
        &mut self,
        fd: RawFd,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        check_fd(fd)?;
        if self.regs.get(fd).is_some() {
            return Err(already_registered(fd));
        }
        self.counters.interest_syscalls += 4;
        sig::set_sig(fd, self.signo)?;
        sig::set_owner_thread(fd, if self.signals_on { self.tid } else { 0 })?;
        sig::arm_async(fd)?;
        let gen = self.next_gen;
        self.next_gen += 1;
        let slot = self.pollfds.len();
        self.regs.insert(
            fd,
            Reg { token, interest, gen, epoch: self.epoch, armed: self.signals_on, slot },
        );
        self.pollfds.push(libc::pollfd { fd, events: interest_events(interest), revents: 0 });
        if self.signals_on {
            self.check.push((fd, gen));
        }
        self.need_marker = true;
        Ok(())
    }

    pub(crate) fn reregister(
        &mut self,
        fd: RawFd,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        let gen = self.next_gen;
        let epoch = self.epoch;
        self.need_marker = true;
        let reg = self.regs.get_mut(fd).ok_or_else(|| not_registered(fd))?;
        self.next_gen += 1;
        reg.token = token;
        reg.interest = interest;
        reg.gen = gen;
        reg.epoch = epoch;
        self.pollfds[reg.slot].events = interest_events(interest);
        if self.signals_on {
            self.check.push((fd, gen));
        }
        Ok(())
    }

    pub(crate) fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        let reg = self.regs.remove(fd).ok_or_else(|| not_registered(fd))?;
        self.counters.interest_syscalls += 1;
        // A descriptor closed before its deregistration (EBADF) sends nothing any more.
        match sig::set_owner_thread(fd, 0) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => {}
            Err(e) => return Err(e),
        }
        self.pollfds.swap_remove(reg.slot);
        if let Some(moved) = self.pollfds.get(reg.slot) {
            let mfd = moved.fd;
            if let Some(m) = self.regs.get_mut(mfd) {
                m.slot = reg.slot;
            }
        }
        Ok(())
    }

    fn token_of(&self, fd: RawFd) -> Option<Token> {
        self.regs.get(fd).map(|r| r.token)
    }

    /// Starts a wait: a fresh result list for at most `cap` events.
    pub(crate) fn begin(&mut self, cap: usize) {
        self.seq += 1;
        self.out.clear();
        self.cap = cap.max(1);
    }

    pub(crate) fn is_full(&self) -> bool {
        self.out.len() >= self.cap
    }

    pub(crate) fn has_results(&self) -> bool {
        !self.out.is_empty()
    }

    pub(crate) fn result_count(&self) -> usize {
        self.out.len()
    }

    /// Adds a ready descriptor to this wait's results (merging with an earlier one for the same
    /// descriptor), or to the backlog when the buffer is full. `flags` are filtered by the
    /// registration's interest; unknown descriptors are ignored.
    pub(crate) fn push_ready(&mut self, fd: RawFd, flags: u8) {
        let Some(reg) = self.regs.get(fd) else { return };
        let flags = flags & wanted(reg.interest);
        if flags == 0 {
            return;
        }
        let (gen, armed) = (reg.gen, reg.armed);
        let i = fd as usize;
        if i >= self.stamp.len() {
            self.stamp.resize(i + 1, (0, 0));
        }
        let (s, idx) = self.stamp[i];
        if s == self.seq {
            self.out[idx as usize].1 |= flags;
            return;
        }
        if self.out.len() >= self.cap {
            self.backlog.push_back((fd, gen, flags));
            return;
        }
        self.stamp[i] = (self.seq, self.out.len() as u32);
        self.out.push((fd, flags));
        if self.perfd && armed && self.signals_on {
            self.disarm(fd);
        }
    }

    /// perfd: stop `fd`'s notices until the caller comes back.
    fn disarm(&mut self, fd: RawFd) {
        self.counters.interest_syscalls += 1;
        if sig::set_owner_thread(fd, 0).is_ok() {
            if let Some(r) = self.regs.get_mut(fd) {
                r.armed = false;
            }
            self.disarmed.push(fd);
        }
    }

    /// Turns this wait's results into events.
    pub(crate) fn emit(&mut self, events: &mut Events) -> usize {
        for k in 0..self.out.len() {
            let (fd, flags) = self.out[k];
            if let Some(token) = self.token_of(fd) {
                events.push(Event::new(token, flags));
            }
        }
        self.counters.events += events.len() as u64;
        events.len()
    }

    /// One wait's work in signal mode, up to dequeuing (see the module docs). Results are left
    /// in `out` for [`Core::emit`].
    pub(crate) fn collect(
        &mut self,
        timeout: Option<Duration>,
        on_overflow: OnOverflow,
    ) -> io::Result<Collected> {
        let mut got = Collected::default();
        self.ensure_thread()?;
        if SIGIO_EPOCH.with(Cell::get) != self.sigio_seen {
            // Another dispatcher on this thread dequeued the shared SIGIO.
            self.sigio_seen = SIGIO_EPOCH.with(Cell::get);
            got.overflow = true;
            if on_overflow == OnOverflow::Report {
                return Ok(got);
            }
            self.recover()?;
        }
        // Older results first, so that a small event buffer starves nobody.
        self.pop_backlog();
        if self.perfd && !self.disarmed.is_empty() && !self.is_full() {
            self.recheck_disarmed()?;
        }
        if !self.check.is_empty() {
            self.run_checks()?;
        }
        if self.is_full() {
            return Ok(got);
        }
        if self.need_marker && self.dequeue == Dequeue::One {
            self.send_marker();
        }
        let t = if self.has_results() { Some(Duration::ZERO) } else { timeout };
        let overflow = match self.dequeue {
            Dequeue::One => self.dequeue_one(t, &mut got)?,
            Dequeue::Batch => self.dequeue_batch(t, &mut got)?,
        };
        if !self.validate.is_empty() {
            self.run_validation()?;
        }
        if overflow {
            got.overflow = true;
            self.count_sigio();
            if on_overflow == OnOverflow::Recover {
                self.recover()?;
                self.pop_backlog();
            }
        }
        Ok(got)
    }

    /// Handles one dequeued record; returns true for `SIGIO`.
    fn handle_notice(&mut self, n: sig::Notice) -> bool {
        if n.signo == libc::SIGIO {
            return true;
        }
        if n.signo != self.signo {
            return false;
        }
        if n.code == sig::SI_QUEUE && n.pid == self.pid {
            // Our marker: registrations of its epoch and before are mature.
            self.mature_upto = self.mature_upto.max(n.value + 1);
            return false;
        }
        self.counters.signals += 1;
        let flags = code_flags(n.code);
        if flags == 0 {
            return false;
        }
        let Some(reg) = self.regs.get(n.fd) else { return false };
        if !reg.armed || flags & wanted(reg.interest) == 0 {
            return false;
        }
        if reg.epoch >= self.mature_upto {
            self.validate.push((n.fd, reg.gen));
            return false;
        }
        self.push_ready(n.fd, flags);
        false
    }

    fn dequeue_one(&mut self, t: Option<Duration>, got: &mut Collected) -> io::Result<bool> {
        let deadline = t.map(|d| std::time::Instant::now() + d);
        // A marker is internal: take the next signal instead (a few times at most).
        for _ in 0..4 {
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            self.counters.wait_calls += 1;
            self.counters.dequeue_calls += 1;
            match sig::sigtimedwait(&self.set, left) {
                Ok(Some(n)) => {
                    if n.signo == self.signo && n.code == sig::SI_QUEUE && n.pid == self.pid {
                        self.handle_notice(n);
                        continue;
                    }
                    if n.signo == self.signo {
                        got.dequeued += 1;
                    }
                    return Ok(self.handle_notice(n));
                }
                Ok(None) => {
                    self.observed_drain();
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    self.counters.interrupted += 1;
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    fn read_batch(&mut self, want: usize, got: &mut Collected) -> io::Result<(usize, bool)> {
        if self.sbuf.len() < want {
            self.sbuf.resize(want, sig::empty_siginfo());
        }
        self.counters.wait_calls += 1;
        self.counters.dequeue_calls += 1;
        let n = sig::read_signalfd(self.sfd.as_raw_fd(), &mut self.sbuf[..want])?;
        let mut overflow = false;
        for k in 0..n {
            let notice = sig::notice_of(&self.sbuf[k]);
            if notice.signo == self.signo {
                got.dequeued += 1;
            }
            overflow |= self.handle_notice(notice);
        }
        if n < want {
            self.observed_drain();
        }
        Ok((n, overflow))
    }

    fn dequeue_batch(&mut self, t: Option<Duration>, got: &mut Collected) -> io::Result<bool> {
        let want = (self.cap - self.out.len()).clamp(1, MAX_BATCH);
        let (n, overflow) = self.read_batch(want, got)?;
        if n > 0 || t == Some(Duration::ZERO) {
            return Ok(overflow);
        }
        // Nothing queued: block on the signalfd (it is readable while this thread has one of
        // the signals pending), then read.
        self.counters.wait_calls += 1;
        let mut p = [libc::pollfd { fd: self.sfd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        match sys::poll(&mut p, sys::timeout_ms(t)) {
            Ok(0) => return Ok(false),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.counters.interrupted += 1;
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        let (_, overflow) = self.read_batch(want, got)?;
        Ok(overflow)
    }

    /// Polls the notices of young registrations; reports those really ready.
    fn run_validation(&mut self) -> io::Result<()> {
        let list = std::mem::take(&mut self.validate);
        self.poll_list(&list)?;
        for k in 0..self.scratch.len() {
            let p = self.scratch[k];
            if is_ready(&p) {
                self.push_ready(p.fd, revents_flags(p.revents));
            }
        }
        self.validate = list;
        self.validate.clear();
        Ok(())
    }

    /// Fills `scratch` with the live entries of `list` and polls them (zero timeout).
    fn poll_list(&mut self, list: &[(RawFd, u64)]) -> io::Result<()> {
        self.scratch.clear();
        for &(fd, gen) in list {
            if let Some(r) = self.regs.get(fd) {
                if r.gen == gen {
                    self.scratch.push(libc::pollfd {
                        fd,
                        events: interest_events(r.interest),
                        revents: 0,
                    });
                }
            }
        }
        if self.scratch.is_empty() {
            return Ok(());
        }
        self.counters.interest_syscalls += 1;
        sys::poll(&mut self.scratch, 0)?;
        Ok(())
    }

    /// Newly (re)registered descriptors: report those already ready when armed.
    fn run_checks(&mut self) -> io::Result<()> {
        let list = std::mem::take(&mut self.check);
        self.poll_list(&list)?;
        for k in 0..self.scratch.len() {
            let p = self.scratch[k];
            if is_ready(&p) {
                self.push_ready(p.fd, revents_flags(p.revents));
            }
        }
        self.check = list;
        self.check.clear();
        Ok(())
    }

    fn pop_backlog(&mut self) {
        while !self.is_full() {
            let Some((fd, gen, flags)) = self.backlog.pop_front() else { break };
            if self.regs.get(fd).is_some_and(|r| r.gen == gen) {
                self.push_ready(fd, flags);
            }
        }
    }

    /// perfd: the caller is back; poll what was disarmed, report what is still ready, re-arm
    /// the rest and poll those once more (an event between the first poll and the re-arm sent
    /// no signal).
    fn recheck_disarmed(&mut self) -> io::Result<()> {
        let list = std::mem::take(&mut self.disarmed);
        let mut pairs: Vec<(RawFd, u64)> = Vec::with_capacity(list.len());
        for &fd in &list {
            if let Some(r) = self.regs.get(fd) {
                if !r.armed && !pairs.iter().any(|&(f, _)| f == fd) {
                    pairs.push((fd, r.gen));
                }
            }
        }
        self.poll_list(&pairs)?;
        let mut idle = Vec::new();
        let polled = std::mem::take(&mut self.scratch);
        for p in &polled {
            if is_ready(p) {
                // Still ready: report it (it stays disarmed); with the buffer full it simply
                // stays on the list and is polled again next time.
                if !self.is_full() {
                    self.push_ready(p.fd, revents_flags(p.revents));
                }
                self.disarmed.push(p.fd);
            } else {
                idle.push(p.fd);
            }
        }
        self.scratch = polled;
        let mut rearmed = Vec::with_capacity(idle.len());
        for fd in idle {
            self.counters.interest_syscalls += 1;
            sig::set_owner_thread(fd, self.tid)?;
            if let Some(r) = self.regs.get_mut(fd) {
                r.armed = true;
                rearmed.push((fd, r.gen));
            }
        }
        self.poll_list(&rearmed)?;
        for k in 0..self.scratch.len() {
            let p = self.scratch[k];
            if is_ready(&p) {
                self.push_ready(p.fd, revents_flags(p.revents));
            }
        }
        Ok(())
    }

    /// Dequeues and drops everything queued for this thread's signal and `SIGIO`.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if self.sbuf.len() < FLUSH_BATCH {
            self.sbuf.resize(FLUSH_BATCH, sig::empty_siginfo());
        }
        // Bounded: the queue holds at most RLIMIT_SIGPENDING entries, but a flood could refill
        // it as fast as it drains; a later SIGIO then triggers another recovery.
        for _ in 0..4096 {
            self.counters.flush_reads += 1;
            let n = sig::read_signalfd(self.sfd.as_raw_fd(), &mut self.sbuf[..FLUSH_BATCH])?;
            for k in 0..n {
                let s = self.sbuf[k].ssi_signo as libc::c_int;
                if s == self.signo && self.sbuf[k].ssi_code != sig::SI_QUEUE {
                    self.counters.signals += 1;
                } else if s == libc::SIGIO {
                    // The queue overflowed again while it drained: the poll that follows every
                    // flush covers it, so it is no new overflow of this dispatcher's (overflows
                    // counts the dequeues that ended in SIGIO), but the others must hear of it.
                    self.share_sigio();
                }
            }
            if n < FLUSH_BATCH {
                break;
            }
        }
        self.observed_drain();
        Ok(())
    }

    /// The queue was seen empty: every later notice postdates every registration made so far.
    fn observed_drain(&mut self) {
        self.epoch += 1;
        self.mature_upto = self.epoch;
        self.need_marker = false;
    }

    /// `rtsig`, `rtsig-perfd`: a `sigtimedwait` loop under load may never see the queue empty,
    /// so young registrations are matured by a marker instead: a signal of our own number
    /// queued (`SI_QUEUE`, value = the epoch) behind every notice queued so far. RT signals of
    /// one number are dequeued in order, so when the marker comes out, the notices older than
    /// the registrations of that epoch are gone. One system call per wait that follows new
    /// registrations; if the queue is full the marker waits for a later wait.
    fn send_marker(&mut self) {
        self.counters.interest_syscalls += 1;
        if sig::queue_to_thread(self.tid, self.signo, self.epoch).is_ok() {
            self.epoch += 1;
            self.need_marker = false;
        }
    }

    /// The fallback policy's scan: older results first, then one poll over the whole
    /// interest set (nothing is flushed: the queue may stay overflowed meanwhile), waiting up to
    /// `timeout` when there is nothing older to report (the paper's select, blocking).
    fn fallback_scan(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.counters.wait_calls += 1;
        self.counters.fallback_scans += 1;
        self.pop_backlog();
        if self.is_full() || self.pollfds.is_empty() {
            return Ok(());
        }
        let t = if self.has_results() { Some(Duration::ZERO) } else { timeout };
        self.poll_all(t)
    }

    /// The fallback policy's way back to signals, as C&M's server went back: one dequeue of
    /// `SIGIO` alone (a zero-timeout `sigtimedwait`), which finds it pending when the queue
    /// overflowed while the scans served. Returns whether it did (counted as a dequeue and an
    /// overflow).
    fn take_sigio(&mut self) -> io::Result<bool> {
        self.counters.dequeue_calls += 1;
        let got = sig::sigtimedwait(&sig::SigSet::of(&[libc::SIGIO]), Some(Duration::ZERO))?;
        if got.is_none() {
            return Ok(false);
        }
        self.count_sigio();
        Ok(true)
    }

    /// Counts a dequeued `SIGIO`: one overflow, and news for the other RT-signal dispatchers of
    /// this thread (they share the one `SIGIO` and each must recover).
    fn count_sigio(&mut self) {
        self.counters.overflows += 1;
        self.share_sigio();
    }

    /// Tells the other RT-signal dispatchers of this thread that `SIGIO` was dequeued.
    fn share_sigio(&mut self) {
        self.sigio_seen = SIGIO_EPOCH.with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
    }

    /// Overflow recovery: flush, then one poll over the whole user-space interest set.
    fn recover(&mut self) -> io::Result<()> {
        self.flush()?;
        self.backlog.clear();
        self.validate.clear();
        self.check.clear();
        self.counters.recoveries += 1;
        if self.pollfds.is_empty() {
            return Ok(());
        }
        self.poll_all(Some(Duration::ZERO))
    }

    /// One `poll` over the whole user-space interest set, waiting up to `timeout`; every ready
    /// descriptor is queued (the scan both the fallback and the overflow recovery end with).
    fn poll_all(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        sys::poll(&mut self.pollfds, sys::timeout_ms(timeout))?;
        for k in 0..self.pollfds.len() {
            let p = self.pollfds[k];
            if is_ready(&p) {
                self.push_ready(p.fd, revents_flags(p.revents));
            }
        }
        Ok(())
    }

    /// If called from a thread other than the owner, routes everything to this thread.
    fn ensure_thread(&mut self) -> io::Result<()> {
        let tid = sig::gettid();
        if tid == self.tid {
            return Ok(());
        }
        let signo = claim(Some(self.signo)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("this RT-signal dispatcher was opened on thread {} and waited on from thread {tid}, which cannot take its signal: {e}", self.tid),
            )
        })?;
        release(self.tid, self.signo);
        debug_assert_eq!(signo, self.signo);
        self.tid = tid;
        for k in 0..self.pollfds.len() {
            let fd = self.pollfds[k].fd;
            if self.regs.get(fd).is_some_and(|r| r.armed) {
                self.counters.interest_syscalls += 1;
                sig::set_owner_thread(fd, tid)?;
            }
        }
        self.sigio_seen = SIGIO_EPOCH.with(Cell::get);
        self.recover()
    }

    /// Hybrid: stops every notice (one `fcntl` per armed descriptor).
    pub(crate) fn disarm_all(&mut self) -> io::Result<()> {
        for k in 0..self.pollfds.len() {
            let fd = self.pollfds[k].fd;
            if self.regs.get(fd).is_some_and(|r| r.armed) {
                self.counters.interest_syscalls += 1;
                sig::set_owner_thread(fd, 0)?;
                if let Some(r) = self.regs.get_mut(fd) {
                    r.armed = false;
                }
            }
        }
        self.signals_on = false;
        self.check.clear();
        self.backlog.clear();
        self.disarmed.clear();
        Ok(())
    }

    /// Hybrid: routes every descriptor's notices to this thread again (one `fcntl` each). The
    /// caller then reports what is already ready (no signal is sent for a standing state).
    pub(crate) fn arm_all(&mut self) -> io::Result<()> {
        self.ensure_thread()?;
        for k in 0..self.pollfds.len() {
            let fd = self.pollfds[k].fd;
            self.counters.interest_syscalls += 1;
            sig::set_owner_thread(fd, self.tid)?;
            if let Some(r) = self.regs.get_mut(fd) {
                r.armed = true;
            }
        }
        self.signals_on = true;
        // The queue was flushed when the signals were turned off and nothing was routed here
        // since: every notice from now on postdates every registration.
        self.observed_drain();
        self.sigio_seen = SIGIO_EPOCH.with(Cell::get);
        Ok(())
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        for p in &self.pollfds {
            let _ = sig::set_owner_thread(p.fd, 0);
        }
        if sig::gettid() == self.tid {
            let _ = self.flush();
        }
        release(self.tid, self.signo);
    }
}

// ---------------------------------------------------------------------------------------------

/// An RT-signal dispatcher: `rtsig`, `rtsig-batch` or `rtsig-perfd` (see the module docs).
#[derive(Debug)]
pub struct RtSig {
    core: Core,
    kind: Mechanism,
    recovery: Recovery,
    /// Under [`Recovery::Fallback`]: since when it serves from scans, if it does.
    fallback_since: Option<Instant>,
    /// Under [`Recovery::Fallback`]: the last attempt to go back to signals (or the switch to
    /// the fallback).
    tried: Instant,
}

impl RtSig {
    /// Opens `kind` (one of [`Mechanism::RtSig`], [`Mechanism::RtSigBatch`],
    /// [`Mechanism::RtSigPerFd`]) on the calling thread, which should be the one that waits.
    pub fn open(kind: Mechanism, options: &Options) -> io::Result<RtSig> {
        let (dequeue, perfd) = match kind {
            Mechanism::RtSig => (Dequeue::One, false),
            Mechanism::RtSigBatch => (Dequeue::Batch, false),
            Mechanism::RtSigPerFd => (Dequeue::One, true),
            other => {
                let why =
                    "is not an RT-signal mechanism: expected rtsig, rtsig-batch or rtsig-perfd";
                return Err(invalid(format!("{other} {why}")));
            }
        };
        Ok(RtSig {
            core: Core::open(options, dequeue, perfd)?,
            kind,
            recovery: options.rtsig_recovery,
            fallback_since: None,
            tried: Instant::now(),
        })
    }

    /// The real-time signal this dispatcher's descriptors raise.
    pub fn signal(&self) -> libc::c_int {
        self.core.signo()
    }
}

impl Dispatcher for RtSig {
    fn mechanism(&self) -> Mechanism {
        self.kind
    }

    fn register(&mut self, fd: RawFd, token: Token, interest: Interest) -> io::Result<()> {
        self.core.register(fd, token, interest)
    }

    fn reregister(&mut self, fd: RawFd, token: Token, interest: Interest) -> io::Result<()> {
        self.core.reregister(fd, token, interest)
    }

    fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        self.core.deregister(fd)
    }

    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        events.clear();
        self.core.begin(events.capacity());
        if let Some(since) = self.fallback_since {
            self.core.fallback_scan(Some(Duration::ZERO))?;
            let busy = self.core.has_results();
            if busy && self.tried.elapsed() < FALLBACK_RETRY {
                return Ok(self.core.emit(events));
            }
            // The way back to signals is tried when a scan finds nothing (the load may have
            // subsided) and, while every scan finds work, every FALLBACK_RETRY. It is a dequeue,
            // and SIGIO comes out first where the queue overflowed while the scans served: then
            // the server stays on its fallback (Table 1: at 3,400 req/s 40 dequeues, every one a
            // SIGIO), dropping the stale notices so that a later attempt can succeed, and, if
            // nothing was ready, blocks in a scan.
            self.tried = Instant::now();
            if self.core.take_sigio()? {
                self.core.flush()?;
                if !busy {
                    self.core.fallback_scan(timeout)?;
                }
                return Ok(self.core.emit(events));
            }
            // Back to signals: flush what queued meanwhile, then poll once more for what became
            // ready before the flush.
            self.core.counters.fallback_ns += since.elapsed().as_nanos() as u64;
            self.fallback_since = None;
            self.core.recover()?;
            if self.core.has_results() {
                return Ok(self.core.emit(events));
            }
        }
        let on = match self.recovery {
            Recovery::Repoll => OnOverflow::Recover,
            Recovery::Fallback => OnOverflow::Report,
        };
        let got = self.core.collect(timeout, on)?;
        if got.overflow && self.recovery == Recovery::Fallback {
            let now = Instant::now();
            self.fallback_since = Some(now);
            self.tried = now;
            self.core.fallback_scan(Some(Duration::ZERO))?;
        }
        Ok(self.core.emit(events))
    }

    fn trigger(&self) -> Trigger {
        Trigger::Edge
    }

    fn len(&self) -> usize {
        self.core.len()
    }

    fn counters(&self) -> Counters {
        let mut c = self.core.counters;
        if let Some(since) = self.fallback_since {
            c.fallback_ns += since.elapsed().as_nanos() as u64;
        }
        c
    }
}
