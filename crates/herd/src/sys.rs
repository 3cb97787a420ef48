//! The herd's own system calls (the waiters' three ways to wait, their listeners and
//! duplicates); what every crate needs comes from `ioscale-sys`, re-exported here.
//!
//! Most of them are also used by the forked waiters, which may run in a copy of a multi-threaded
//! process (the test harness): every wrapper marked *async-signal-safe* below makes exactly one
//! system call (or a few), allocates nothing and takes no lock, so a waiter may call it between
//! `fork` and `_exit`. `std::io::Error::last_os_error` only reads `errno` and allocates nothing.

#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

use ioscale_sys::syscall;
use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};

pub use ioscale_sys::fd::{close_range, close_raw as close, pipe, read};
pub use ioscale_sys::process::{exit_now, fork, getpid, waitpid, Forked};

// ---------------------------------------------------------------------------------------------
// processes

/// Prepares a forked waiter (async-signal-safe): default `SIGINT` and `SIGTERM` (Ctrl-C reaches
/// the whole foreground group; a waiter should simply die), `SIGKILL` when the forking thread
/// dies, and a check that the parent `parent` did not die before that was set.
pub fn waiter_prepare(parent: libc::pid_t) -> io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: resetting a signal disposition to SIG_DFL is async-signal-safe.
        if unsafe { libc::signal(sig, libc::SIG_DFL) } == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    syscall!(prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0))?;
    // SAFETY: getppid cannot fail.
    if unsafe { libc::getppid() } != parent {
        return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the parent exited"));
    }
    Ok(())
}

/// The effective user id.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// `kill(pid, SIGKILL)`; an already-gone process is not an error.
pub fn kill(pid: libc::pid_t) -> io::Result<()> {
    match ioscale_sys::process::kill(pid as u32, libc::SIGKILL) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        r => r,
    }
}

/// Voluntary context switches of the calling process so far (`getrusage`, `ru_nvcsw`): each is
/// one sleep, so the difference over a period counts the wakeups that ended those sleeps.
/// Async-signal-safe.
pub fn voluntary_switches() -> io::Result<u64> {
    ioscale_sys::cpu::usage().map(|u| u.voluntary_switches)
}

/// select's bitmap size: descriptor numbers must be below it.
pub const FD_SETSIZE: usize = libc::FD_SETSIZE;

// ---------------------------------------------------------------------------------------------
// descriptors and sockets

/// `write(2)` of the whole buffer in one call (callers write at most `PIPE_BUF` bytes to a pipe,
/// which the kernel writes atomically); `EINTR` is retried. Async-signal-safe.
pub fn write_all(fd: RawFd, buf: &[u8]) -> io::Result<()> {
    loop {
        match ioscale_sys::fd::write(fd, buf) {
            Ok(n) if n == buf.len() => return Ok(()),
            Ok(_) => return Err(io::Error::new(io::ErrorKind::WriteZero, "short pipe write")),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A non-blocking duplicate of `fd` numbered at least `min` (`fcntl(F_DUPFD_CLOEXEC)`).
/// Async-signal-safe; the raw number is returned so that a forked waiter need not drop anything.
pub fn dup_raw(fd: RawFd, min: RawFd) -> io::Result<RawFd> {
    syscall!(fcntl(fd, libc::F_DUPFD_CLOEXEC, min))
}

/// A non-blocking TCP listening socket on `addr` (async-signal-safe; returns the raw number).
/// With `reuseport`, `SO_REUSEPORT` is set so that several such sockets share the port, each with
/// its own accept queue and its own waiters. With `listen == false` the socket is only bound
/// (a placeholder that reserves the port for a reuseport group without joining it).
pub fn tcp_listener_raw(
    addr: SocketAddrV4,
    reuseport: bool,
    listen: bool,
    backlog: i32,
) -> io::Result<RawFd> {
    tcp_listener(addr, reuseport, listen, backlog).map(IntoRawFd::into_raw_fd)
}

/// [`tcp_listener_raw`], owned (for the parent).
pub fn tcp_listener(
    addr: SocketAddrV4,
    reuseport: bool,
    listen: bool,
    backlog: i32,
) -> io::Result<OwnedFd> {
    ioscale_sys::net::listener(addr.into(), reuseport, listen.then_some(backlog))
}

/// The IPv4 address a socket is bound to (`getsockname`).
pub fn local_addr(fd: &OwnedFd) -> io::Result<SocketAddrV4> {
    match ioscale_sys::net::local_addr(fd.as_raw_fd())? {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(a) => Err(io::Error::other(format!("{a} is not an IPv4 address"))),
    }
}

/// `accept4(fd, SOCK_NONBLOCK)`; returns the raw number of the new connection (the waiter closes
/// it at once). Async-signal-safe.
pub fn accept_raw(fd: RawFd) -> io::Result<RawFd> {
    syscall!(accept4(
        fd,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC
    ))
}

/// A non-blocking TCP socket with `SO_LINGER {1, 0}` (its close sends a reset, so thousands of
/// measured connects leave no `TIME_WAIT` behind to exhaust the ephemeral ports).
pub fn client_socket() -> io::Result<OwnedFd> {
    let fd = ioscale_sys::net::tcp_socket(&SocketAddr::from(([127, 0, 0, 1], 0)))?;
    ioscale_sys::net::set_linger_zero(fd.as_raw_fd())?;
    Ok(fd)
}

/// `connect(fd, addr)` on a non-blocking socket: `EINPROGRESS` counts as success. Nothing else
/// happens in this call, so timing it times the kernel's connect path alone.
pub fn connect(fd: &OwnedFd, addr: SocketAddrV4) -> io::Result<()> {
    ioscale_sys::net::connect(fd.as_raw_fd(), addr.into())
}

// ---------------------------------------------------------------------------------------------
// the three ways to wait

/// Readable-interest `pollfd`.
pub type PollFd = libc::pollfd;

/// A `pollfd` asking for readability of `fd`.
pub const fn pollfd(fd: RawFd) -> PollFd {
    libc::pollfd { fd, events: libc::POLLIN, revents: 0 }
}

/// Whether a `pollfd` came back readable (or hung up / in error, which a read reports).
pub const fn poll_ready(p: &PollFd) -> bool {
    p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

/// `poll(fds, -1)`: blocks until one is ready. Async-signal-safe.
pub fn poll_forever(fds: &mut [PollFd]) -> io::Result<usize> {
    syscall!(poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1)).map(|n| n as usize)
}

/// `poll(fds, timeout_ms)` (for the parent's bounded waits).
pub fn poll_timeout(fds: &mut [PollFd], timeout_ms: i32) -> io::Result<usize> {
    syscall!(poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms)).map(|n| n as usize)
}

/// select's `fd_set` bitmap.
#[derive(Copy, Clone)]
pub struct FdSet(libc::fd_set);

impl FdSet {
    /// An empty set. Async-signal-safe.
    pub fn new() -> FdSet {
        let mut raw = std::mem::MaybeUninit::<libc::fd_set>::uninit();
        // SAFETY: FD_ZERO initialises every byte of the set it is given.
        unsafe { libc::FD_ZERO(raw.as_mut_ptr()) };
        // SAFETY: FD_ZERO above initialised it.
        FdSet(unsafe { raw.assume_init() })
    }

    /// Adds `fd`; false (and nothing done) if it is outside `0..FD_SETSIZE`.
    pub fn insert(&mut self, fd: RawFd) -> bool {
        if !(0..FD_SETSIZE as RawFd).contains(&fd) {
            return false;
        }
        // SAFETY: fd is within the bitmap (checked above).
        unsafe { libc::FD_SET(fd, &mut self.0) };
        true
    }

    /// Whether `fd` is in the set.
    pub fn contains(&self, fd: RawFd) -> bool {
        if !(0..FD_SETSIZE as RawFd).contains(&fd) {
            return false;
        }
        // SAFETY: fd is within the bitmap (checked above).
        unsafe { libc::FD_ISSET(fd, &self.0) }
    }
}

impl Default for FdSet {
    fn default() -> Self {
        Self::new()
    }
}

/// `select(nfds, read, NULL, NULL, NULL)`: blocks until a descriptor of `read` is readable;
/// `read` is overwritten with the ready ones. Async-signal-safe.
pub fn select_forever(nfds: RawFd, read: &mut FdSet) -> io::Result<usize> {
    syscall!(select(
        nfds,
        &mut read.0,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut()
    ))
    .map(|n| n as usize)
}

/// An epoll result entry.
pub type EpollEvent = libc::epoll_event;

/// An empty epoll result entry (to size buffers before forking).
pub const EPOLL_EVENT_ZERO: EpollEvent = libc::epoll_event { events: 0, u64: 0 };

/// `epoll_create1(EPOLL_CLOEXEC)`; the raw number. Async-signal-safe (a single system call that
/// takes no user-space lock).
pub fn epoll_create_raw() -> io::Result<RawFd> {
    syscall!(epoll_create1(libc::EPOLL_CLOEXEC))
}

/// `epoll_ctl(ep, ADD, fd, EPOLLIN [| EPOLLEXCLUSIVE], data)`. Async-signal-safe as above.
pub fn epoll_add(ep: RawFd, fd: RawFd, exclusive: bool, data: u64) -> io::Result<()> {
    let mut events = libc::EPOLLIN as u32;
    if exclusive {
        events |= libc::EPOLLEXCLUSIVE as u32;
    }
    let mut ev = libc::epoll_event { events, u64: data };
    syscall!(epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev)).map(drop)
}

/// `epoll_ctl(ep, DEL, fd)`. Async-signal-safe as above.
pub fn epoll_del(ep: RawFd, fd: RawFd) -> io::Result<()> {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    syscall!(epoll_ctl(ep, libc::EPOLL_CTL_DEL, fd, &mut ev)).map(drop)
}

/// `epoll_wait(ep, buf, -1)`: blocks until an event; returns how many entries were filled.
/// Async-signal-safe as above.
pub fn epoll_wait_forever(ep: RawFd, buf: &mut [EpollEvent]) -> io::Result<usize> {
    let max = buf.len().min(i32::MAX as usize) as libc::c_int;
    syscall!(epoll_wait(ep, buf.as_mut_ptr(), max, -1)).map(|n| n as usize)
}

/// The data word of an epoll result entry.
pub fn epoll_data(ev: &EpollEvent) -> u64 {
    ev.u64
}
