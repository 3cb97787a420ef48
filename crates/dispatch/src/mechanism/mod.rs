//! The contract every mechanism implements, and the table that names them.
//!
//! # The contract
//!
//! * `register(fd, token, interest)` declares interest in a descriptor the caller owns and keeps
//!   open; a descriptor is registered at most once (a second register is `AlreadyExists`).
//! * `reregister(fd, token, interest)` replaces the token and interest of a registered descriptor
//!   (and re-arms a one-shot registration).
//! * `deregister(fd)` removes it. The caller deregisters *before* it closes the descriptor.
//! * `wait(events, timeout)` clears `events`, blocks until at least one event, the timeout
//!   (`None` = forever, `Some(0)` = just look) or an interruption, and fills `events` with at most
//!   its capacity. Returning early with no events is allowed (EINTR, a wake); callers loop.
//! * An event is only reported for a registration that is live when `wait` returns, under the
//!   token of *that* registration: a notice queued for a descriptor that was deregistered (or
//!   closed) never reaches the caller under a later registration that reuses the number (nginx's
//!   instance bit, libev's generation counter). Within one returned batch, the caller handles
//!   the order of its own deregistrations.
//! * Where [`Dispatcher::events_are_hints`] is true, a notice may be stale or spurious (edge
//!   triggers, signals); the caller reads or writes until `EAGAIN` and treats `EAGAIN` as normal.
//!   Every caller should do so anyway.
//!
//! A mechanism that cannot do something returns `InvalidInput` with a sentence saying why; it
//! never degrades silently.

pub mod devpoll;
pub mod epoll;
pub mod hybrid;
pub mod poll;
pub mod rtsig;
pub mod select;
pub mod uring;

use crate::{Counters, Events, Interest, Token};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::str::FromStr;
use std::time::Duration;

/// How a mechanism reports a descriptor that stays ready.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum Trigger {
    /// Reported on every wait while ready.
    Level,
    /// Reported when it becomes ready (a hint; drain until `EAGAIN`).
    Edge,
    /// Reported once, then disarmed until `reregister`.
    Oneshot,
}

/// A switch between modes, for mechanisms that have modes (the hybrid).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ModeSwitch {
    /// Time since the dispatcher was opened.
    pub at: Duration,
    /// The mode switched to.
    pub to: &'static str,
    /// Why (e.g. "signal queue overflow", "batch above threshold").
    pub reason: &'static str,
}

/// The readiness contract (see the module docs).
pub trait Dispatcher: Send {
    /// Which mechanism this is.
    fn mechanism(&self) -> Mechanism;

    /// Declares interest in `fd` under `token` (by number: for callers that keep descriptor
    /// numbers in their own tables; [`Dispatcher::register_fd`] takes a borrowed one).
    ///
    /// The descriptor must stay open while registered, and be deregistered before it is closed:
    /// a closed number may be reused by another descriptor, whose events would then arrive
    /// under this token (a logic error, never undefined behaviour).
    fn register(&mut self, fd: RawFd, token: Token, interest: Interest) -> io::Result<()>;

    /// Replaces the token and interest of a registered `fd` (and re-arms a one-shot one).
    fn reregister(&mut self, fd: RawFd, token: Token, interest: Interest) -> io::Result<()>;

    /// Removes `fd` from the interest set.
    fn deregister(&mut self, fd: RawFd) -> io::Result<()>;

    /// [`Dispatcher::register`] for a descriptor the caller holds, e.g. `stream.as_fd()`.
    fn register_fd(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.register(fd.as_raw_fd(), token, interest)
    }

    /// [`Dispatcher::reregister`] for a descriptor the caller holds.
    fn reregister_fd(
        &mut self,
        fd: BorrowedFd<'_>,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.reregister(fd.as_raw_fd(), token, interest)
    }

    /// [`Dispatcher::deregister`] for a descriptor the caller holds.
    fn deregister_fd(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.deregister(fd.as_raw_fd())
    }

    /// Waits for events (see the module docs); returns how many were stored in `events`.
    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize>;

    /// Registers a listening socket so that one ready connection wakes one waiter among the
    /// processes or threads sharing it (`EPOLLEXCLUSIVE`). Only epoll can; the rest refuse.
    fn register_exclusive(
        &mut self,
        fd: RawFd,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        let _ = (fd, token, interest);
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} cannot register a descriptor exclusively: EPOLLEXCLUSIVE exists only for epoll",
                self.mechanism()
            ),
        ))
    }

    /// How notices are triggered.
    fn trigger(&self) -> Trigger;

    /// Whether a notice may be stale or spurious, so the caller must read until `EAGAIN`.
    fn events_are_hints(&self) -> bool {
        self.trigger() != Trigger::Level
    }

    /// The largest descriptor *number* plus one this mechanism accepts, if it has such a limit.
    fn max_fds(&self) -> Option<usize> {
        None
    }

    /// How many descriptors are registered.
    fn len(&self) -> usize;

    /// Whether nothing is registered.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What it has done so far.
    fn counters(&self) -> Counters;

    /// Mode switches so far, oldest first (empty for mechanisms without modes).
    fn switches(&self) -> Vec<ModeSwitch> {
        Vec::new()
    }
}

/// Options some mechanisms read; the rest ignore them.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Options {
    /// `devpoll`: a record for a registered descriptor ORs its events into the interest (as
    /// Solaris does) instead of replacing it.
    pub devpoll_or: bool,
    /// `rtsig`, `rtsig-batch`, `rtsig-perfd`, `hybrid`: the real-time signal the descriptors
    /// raise. `None` takes the lowest one with no handler in the process and not used by
    /// another RT-signal dispatcher on the opening thread; a given one is checked likewise.
    pub rtsig_signal: Option<i32>,
    /// RT-signal mechanisms: set this process's soft `RLIMIT_SIGPENDING` (the signal queue's
    /// length) to this at open, for experiments (`--sigqueue-max`); `None` leaves it alone.
    pub sigqueue_max: Option<u64>,
    /// `hybrid`: when to switch between signals and epoll.
    pub hybrid: hybrid::HybridConfig,
    /// `rtsig`, `rtsig-batch`, `rtsig-perfd`: what to do after the signal queue overflowed.
    pub rtsig_recovery: rtsig::Recovery,
}

macro_rules! mechanisms {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $facility:literal; )*) => {
        /// Every mechanism, by the name the command line uses: the readiness mechanisms and
        /// the completion model. This table is the only source of the names.
        #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
        pub enum Mechanism {
            $( $(#[$doc])* $variant, )*
        }

        impl Mechanism {
            /// All of them, in table order (the completion model last).
            pub const ALL: &'static [Mechanism] = &[$(Mechanism::$variant),*];

            /// The command-line name.
            pub const fn name(self) -> &'static str {
                match self { $(Mechanism::$variant => $name,)* }
            }

            /// The kernel facility it is built on.
            pub const fn facility(self) -> &'static str {
                match self { $(Mechanism::$variant => $facility,)* }
            }
        }
    };
}

mechanisms! {
    /// select(2) with the `fd_set` rebuilt every call.
    Select = "select", "select(2)";
    /// poll(2) with the `pollfd` array kept in user space and passed whole.
    Poll = "poll", "poll(2)";
    /// The `/dev/poll` programming model over an in-kernel interest set (epoll).
    Devpoll = "devpoll", "/dev/poll model (write + DP_POLL) on epoll";
    /// epoll, level-triggered.
    Epoll = "epoll", "epoll (level)";
    /// epoll, edge-triggered.
    EpollEt = "epoll-et", "epoll (EPOLLET)";
    /// epoll, one-shot.
    EpollOneshot = "epoll-oneshot", "epoll (EPOLLONESHOT)";
    /// io_uring, one multishot poll request per descriptor, notices read from the completion ring.
    Uring = "uring", "io_uring multishot poll";
    /// RT signals (`F_SETSIG`, `O_ASYNC`), one dequeued per `sigtimedwait` (phhttpd).
    RtSig = "rtsig", "POSIX RT signals, sigtimedwait";
    /// RT signals dequeued in batches through a signalfd (Provos & Lever's `sigtimedwait4`).
    RtSigBatch = "rtsig-batch", "POSIX RT signals, signalfd batches";
    /// RT signals with signal-per-fd emulated (Chandra & Mosberger §3.4).
    RtSigPerFd = "rtsig-perfd", "POSIX RT signals, signal-per-fd emulation";
    /// RT signals while light, epoll while heavy (Provos & Lever's imagined hybrid).
    Hybrid = "hybrid", "POSIX RT signals + epoll (level)";
    /// The completion (proactor) model on io_uring: the kernel accepts, receives and sends
    /// itself ([`crate::completion::Proactor`]); not a readiness [`Dispatcher`].
    UringCompletion = "uring-completion", "io_uring operations (multishot accept and receive, send, close) completed by the kernel";
}

impl Mechanism {
    /// The readiness mechanisms: every one [`Mechanism::open`] opens (all but the completion
    /// model), in table order.
    pub const READINESS: &'static [Mechanism] = &[
        Mechanism::Select,
        Mechanism::Poll,
        Mechanism::Devpoll,
        Mechanism::Epoll,
        Mechanism::EpollEt,
        Mechanism::EpollOneshot,
        Mechanism::Uring,
        Mechanism::RtSig,
        Mechanism::RtSigBatch,
        Mechanism::RtSigPerFd,
        Mechanism::Hybrid,
    ];

    /// Opens a dispatcher of this kind. The completion model is refused with `InvalidInput`: it
    /// has no readiness contract (open a [`crate::completion::Proactor`]).
    pub fn open(self, options: &Options) -> io::Result<Box<dyn Dispatcher>> {
        Ok(match self {
            Mechanism::Select => Box::new(select::Select::new()),
            Mechanism::Poll => Box::new(poll::Poll::new()),
            Mechanism::Devpoll => Box::new(devpoll::DevPoll::open(options.devpoll_or)?),
            Mechanism::Epoll => Box::new(epoll::Epoll::new(Trigger::Level)?),
            Mechanism::EpollEt => Box::new(epoll::Epoll::new(Trigger::Edge)?),
            Mechanism::EpollOneshot => Box::new(epoll::Epoll::new(Trigger::Oneshot)?),
            Mechanism::Uring => Box::new(uring::Uring::new()?),
            Mechanism::RtSig | Mechanism::RtSigBatch | Mechanism::RtSigPerFd => {
                Box::new(rtsig::RtSig::open(self, options)?)
            }
            Mechanism::Hybrid => Box::new(hybrid::Hybrid::open(options)?),
            Mechanism::UringCompletion => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "uring-completion is the completion (proactor) model, not a readiness mechanism: open it as a completion::Proactor",
                ))
            }
        })
    }

    /// Whether this is a completion (proactor) interface rather than a readiness one.
    pub const fn is_completion_based(self) -> bool {
        matches!(self, Mechanism::UringCompletion)
    }

    /// Checks that this kernel supports the mechanism right now, by opening it once.
    pub fn probe(self) -> io::Result<()> {
        match self {
            Mechanism::UringCompletion => crate::completion::Proactor::new().map(drop),
            m => m.open(&Options::default()).map(drop),
        }
    }

    /// The names, comma-separated, for error messages.
    pub fn names() -> String {
        Self::ALL.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a name that is not a mechanism.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownMechanism(pub String);

impl fmt::Display for UnknownMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown mechanism '{}': expected one of {}", self.0, Mechanism::names())
    }
}

impl std::error::Error for UnknownMechanism {}

impl FromStr for Mechanism {
    type Err = UnknownMechanism;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mechanism::ALL
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownMechanism(s.to_string()))
    }
}

/// A table indexed by descriptor number, for the mechanisms that map descriptors to their own
/// records in user space. Descriptors are small dense integers, so a vector beats a hash map.
#[derive(Debug)]
pub(crate) struct FdTable<T> {
    slots: Vec<Option<T>>,
    len: usize,
}

impl<T> FdTable<T> {
    pub(crate) fn new() -> Self {
        FdTable { slots: Vec::new(), len: 0 }
    }

    pub(crate) fn get(&self, fd: RawFd) -> Option<&T> {
        usize::try_from(fd).ok().and_then(|i| self.slots.get(i)).and_then(Option::as_ref)
    }

    pub(crate) fn get_mut(&mut self, fd: RawFd) -> Option<&mut T> {
        usize::try_from(fd).ok().and_then(|i| self.slots.get_mut(i)).and_then(Option::as_mut)
    }

    /// Inserts; returns the previous value.
    pub(crate) fn insert(&mut self, fd: RawFd, value: T) -> Option<T> {
        let i = usize::try_from(fd).expect("negative descriptor");
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        let old = self.slots[i].replace(value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub(crate) fn remove(&mut self, fd: RawFd) -> Option<T> {
        let old =
            usize::try_from(fd).ok().and_then(|i| self.slots.get_mut(i)).and_then(Option::take);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// Checks a descriptor number before it is registered.
pub(crate) fn check_fd(fd: RawFd) -> io::Result<()> {
    if fd < 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid descriptor {fd}"),
        ));
    }
    Ok(())
}

pub(crate) fn already_registered(fd: RawFd) -> io::Error {
    io::Error::new(io::ErrorKind::AlreadyExists, format!("descriptor {fd} is already registered"))
}

pub(crate) fn not_registered(fd: RawFd) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("descriptor {fd} is not registered"))
}
