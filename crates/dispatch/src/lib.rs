//! ioscale-dispatch: one event-dispatch contract, every Linux mechanism behind it, chosen at run
//! time by name.
//!
//! The contract is the one every mechanism in the classic studies shares: *declare interest* in a
//! descriptor (`register`, `reregister`, `deregister`) and *wait for the next events* (`wait`)
//! into a caller-owned [`Events`] buffer. Each mechanism implements [`Dispatcher`]; a
//! [`Mechanism`] names one and opens it, so a server or a benchmark can be written once and run on
//! all of them (Chandra & Mosberger's "micro web servers identical but for the dispatch
//! mechanism").
//!
//! | name | kernel facility | interest set lives in | notices are |
//! | --- | --- | --- | --- |
//! | `select` | select(2), `fd_set` rebuilt every call | user space | level |
//! | `poll` | poll(2), `pollfd` array passed whole every call | user space | level |
//! | `devpoll` | the Solaris / Provos–Lever `/dev/poll` model (write records, `DP_POLL`) built on epoll | kernel | level |
//! | `epoll` | epoll, level-triggered | kernel | level |
//! | `epoll-et` | epoll with `EPOLLET` | kernel | edge (hints: drain until `EAGAIN`) |
//! | `epoll-oneshot` | epoll with `EPOLLONESHOT`, re-armed by `reregister` | kernel | one notice per arm |
//! | `uring` | io_uring, a multishot poll per descriptor, notices read from the completion ring | kernel | edge (hints) |
//! | `rtsig` | POSIX RT signals (`F_SETSIG`, `O_ASYNC`), one per `sigtimedwait`; overflow recovered with one poll | user space | edge (hints) |
//! | `rtsig-batch` | the same signals, many per signalfd read | user space | edge (hints) |
//! | `rtsig-perfd` | RT signals with signal-per-fd emulated (disarm after a notice) | user space | edge (hints) |
//! | `hybrid` | RT signals while light, epoll while heavy | user space + kernel | edge (hints) |
//!
//! Beside the readiness contract, [`completion::Proactor`] is the completion (proactor) model on
//! io_uring: the kernel performs accept, receive and send itself and reports results. What this
//! kernel supports of each is listed by [`probe::describe`].
//!
//! Every mechanism keeps [`Counters`] (wait calls, events, interest-change system calls, and the
//! signal and ring figures of the mechanisms that have them) that can be read at any time.
//!
//! Cargo features, both off by default: `serde` (`Serialize` for the counters, mechanism names,
//! probe results and overhead points) and `overhead` (the dispatch-overhead benchmark harness,
//! `overhead` (readiness and completion models), behind `ioscale overhead`).
//!
//! ```
//! use ioscale_dispatch::{Events, Interest, Mechanism, Options, Token};
//! use std::os::fd::AsFd;
//!
//! let mut d = Mechanism::Epoll.open(&Options::default())?;
//! let (a, b) = std::os::unix::net::UnixStream::pair()?;
//! d.register_fd(a.as_fd(), Token(7), Interest::READABLE)?;
//! std::io::Write::write_all(&mut &b, b"x")?;
//! let mut events = Events::with_capacity(16);
//! d.wait(&mut events, Some(std::time::Duration::from_secs(1)))?;
//! assert_eq!(events.iter().next().map(|e| e.token()), Some(Token(7)));
//! # Ok::<(), std::io::Error>(())
//! ```

#![deny(missing_docs)]

pub mod completion;
pub mod mechanism;
#[cfg(feature = "overhead")]
pub mod overhead;
pub mod probe;
pub mod sys;

use std::io;
use std::ops::BitOr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

pub use mechanism::{Dispatcher, Mechanism, ModeSwitch, Options, Trigger};

/// The caller's name for a registration; returned with each of its events.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub usize);

/// What a registration waits for: readable, writable, or both.
#[derive(Copy, Clone, PartialEq, Eq, Hash)]
pub struct Interest(u8);

impl Interest {
    /// Wake when the descriptor can be read without blocking (or has hung up).
    pub const READABLE: Interest = Interest(1);
    /// Wake when the descriptor can be written without blocking.
    pub const WRITABLE: Interest = Interest(2);
    /// Both.
    pub const BOTH: Interest = Interest(3);

    /// Whether readable notices are wanted.
    pub const fn is_readable(self) -> bool {
        self.0 & 1 != 0
    }

    /// Whether writable notices are wanted.
    pub const fn is_writable(self) -> bool {
        self.0 & 2 != 0
    }
}

impl BitOr for Interest {
    type Output = Interest;
    fn bitor(self, rhs: Interest) -> Interest {
        Interest(self.0 | rhs.0)
    }
}

impl std::fmt::Debug for Interest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.is_readable(), self.is_writable()) {
            (true, true) => f.write_str("READABLE | WRITABLE"),
            (true, false) => f.write_str("READABLE"),
            (false, true) => f.write_str("WRITABLE"),
            (false, false) => f.write_str("(none)"),
        }
    }
}

/// One notice from [`Dispatcher::wait`].
#[derive(Copy, Clone, PartialEq, Eq)]
pub struct Event {
    token: Token,
    flags: u8,
}

impl Event {
    /// The descriptor can be read (or a read will report end of file or an error).
    pub const READABLE: u8 = 1;
    /// The descriptor can be written.
    pub const WRITABLE: u8 = 2;
    /// The peer hung up (or shut down its write side): a read will return 0 once drained.
    pub const HANGUP: u8 = 4;
    /// An error is pending on the descriptor (e.g. a reset); the next read or write reports it.
    pub const ERROR: u8 = 8;

    /// Builds an event from a token and `Event::*` flag bits.
    pub const fn new(token: Token, flags: u8) -> Event {
        Event { token, flags }
    }

    /// The registration's token.
    pub const fn token(&self) -> Token {
        self.token
    }

    /// The raw `Event::*` flag bits.
    pub const fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether a read can make progress.
    pub const fn is_readable(&self) -> bool {
        self.flags & (Self::READABLE | Self::HANGUP | Self::ERROR) != 0
    }

    /// Whether a write can make progress.
    pub const fn is_writable(&self) -> bool {
        self.flags & (Self::WRITABLE | Self::ERROR) != 0
    }

    /// Whether the peer hung up. Mechanisms that cannot tell (select) report only readable; the
    /// read then returns 0.
    pub const fn is_hangup(&self) -> bool {
        self.flags & Self::HANGUP != 0
    }

    /// Whether an error is pending.
    pub const fn is_error(&self) -> bool {
        self.flags & Self::ERROR != 0
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names = Vec::new();
        for (bit, name) in [
            (Self::READABLE, "readable"),
            (Self::WRITABLE, "writable"),
            (Self::HANGUP, "hangup"),
            (Self::ERROR, "error"),
        ] {
            if self.flags & bit != 0 {
                names.push(name);
            }
        }
        write!(f, "Event({:?}, {})", self.token, names.join("|"))
    }
}

/// The caller-owned buffer that [`Dispatcher::wait`] fills; at most `capacity` events per call.
#[derive(Debug)]
pub struct Events {
    list: Vec<Event>,
    cap: usize,
}

impl Events {
    /// A buffer that holds up to `cap` events per wait (at least one).
    pub fn with_capacity(cap: usize) -> Events {
        let cap = cap.max(1);
        Events { list: Vec::with_capacity(cap), cap }
    }

    /// How many events one wait may return.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The events of the last wait.
    pub fn iter(&self) -> std::slice::Iter<'_, Event> {
        self.list.iter()
    }

    /// How many events the last wait returned.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the last wait returned nothing.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Empties the buffer (every `wait` does this first).
    pub fn clear(&mut self) {
        self.list.clear();
    }

    /// Whether another event fits.
    pub fn is_full(&self) -> bool {
        self.list.len() >= self.cap
    }

    /// Appends an event; returns `false` (dropping nothing the caller asked for) when full.
    /// Mechanisms call this; callers normally do not.
    pub fn push(&mut self, ev: Event) -> bool {
        if self.is_full() {
            return false;
        }
        self.list.push(ev);
        true
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = &'a Event;
    type IntoIter = std::slice::Iter<'a, Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

/// What a mechanism has done since it was opened. Fields a mechanism has no use for stay 0.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Counters {
    /// Calls that waited for events (select, poll, epoll_wait, sigtimedwait, signalfd read,
    /// io_uring_enter with a wait).
    pub wait_calls: u64,
    /// Events returned to the caller.
    pub events: u64,
    /// System calls made to change the interest set (epoll_ctl, fcntl, /dev/poll writes, ring
    /// submissions for registrations). select and poll keep the set in user space: 0.
    pub interest_syscalls: u64,
    /// RT signals dequeued.
    pub signals: u64,
    /// System calls that dequeued signals to dispatch them (sigtimedwait or signalfd reads; for
    /// `rtsig --rtsig-recovery fallback`, also each attempt to go back to signals). The reads
    /// that drop a stale queue after an overflow are [`Counters::flush_reads`].
    pub dequeue_calls: u64,
    /// Reads that drained the signal queue after an overflow (the repoll recovery's flush, the
    /// fallback's dropped stale queue): their notices are dropped, not dispatched.
    pub flush_reads: u64,
    /// Signal-queue overflows: dequeues that ended in `SIGIO` (a `SIGIO` a flush drains with
    /// the stale queue is covered by the poll that follows it and not counted again); or
    /// completion-ring overflows.
    pub overflows: u64,
    /// Recoveries from an overflow (a full poll over the interest set).
    pub recoveries: u64,
    /// Switches between modes (the hybrid).
    pub mode_switches: u64,
    /// Waits that were interrupted (EINTR) and returned early with no events.
    pub interrupted: u64,
    /// `rtsig` with the `fallback` recovery policy: scans of the whole interest set made while
    /// serving from the fallback (Chandra & Mosberger's select after an overflow).
    pub fallback_scans: u64,
    /// `rtsig` with the `fallback` recovery policy: nanoseconds spent serving from the fallback.
    pub fallback_ns: u64,
}

/// Wakes a thread blocked in [`Dispatcher::wait`] from any other thread.
///
/// It is a pipe whose read end is registered like any other descriptor, so it works on every
/// mechanism with no mechanism-specific code (a pipe, unlike an eventfd, also delivers `O_ASYNC`
/// signals, which the RT-signal mechanisms need): [`Waker::wake`] makes it readable; the waiting
/// thread sees an event with the waker's token and calls [`Waker::reset`].
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
    tx: OwnedFd,
    token: Token,
}

impl Waker {
    /// Creates the pipe and registers its read end on `dispatcher` under `token`.
    pub fn new(dispatcher: &mut dyn Dispatcher, token: Token) -> io::Result<Waker> {
        let (fd, tx) = ioscale_sys::fd::pipe(true)?;
        dispatcher.register(fd.as_raw_fd(), token, Interest::READABLE)?;
        Ok(Waker { fd, tx, token })
    }

    /// A waker registered nowhere, over a socket pair rather than a pipe: the owner watches
    /// [`Waker::as_raw_fd`] itself (the completion engine keeps a multishot receive on it in
    /// its ring; io_uring receives need a socket).
    pub fn detached(token: Token) -> io::Result<Waker> {
        let (fd, tx) = ioscale_sys::fd::socketpair()?;
        Ok(Waker { fd, tx, token })
    }

    /// Makes the waker readable; safe to call from any thread, any number of times.
    pub fn wake(&self) -> io::Result<()> {
        match ioscale_sys::fd::write(self.tx.as_raw_fd(), &[1u8]) {
            Ok(_) => Ok(()),
            // The pipe is full: it is readable already.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Consumes pending wakes and, on mechanisms that disarm after a notice, re-arms.
    pub fn reset(&self, dispatcher: &mut dyn Dispatcher) -> io::Result<()> {
        let mut b = [0u8; 64];
        loop {
            match ioscale_sys::fd::read(self.fd.as_raw_fd(), &mut b) {
                Ok(n) if n == b.len() => continue,
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if dispatcher.trigger() == Trigger::Oneshot {
            dispatcher.reregister(self.fd.as_raw_fd(), self.token, Interest::READABLE)?;
        }
        Ok(())
    }

    /// The registered (read) end's descriptor.
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Waker {
    /// The registered (read) end.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
