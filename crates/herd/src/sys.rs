//! The only file of this crate that calls libc: thin wrappers that turn `-1`/`errno` into
//! `io::Result`.
//!
//! Most of them are also used by the forked waiters, which may run in a copy of a multi-threaded
//! process (the test harness): every wrapper marked *async-signal-safe* below makes exactly one
//! system call (or a few), allocates nothing and takes no lock, so a waiter may call it between
//! `fork` and `_exit`. `std::io::Error::last_os_error` only reads `errno` and allocates nothing.

#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// Calls a libc function and maps a `-1` return to the thread's `errno`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: every caller passes arguments that satisfy the named libc function's contract
        // (valid descriptors, pointers into live, correctly sized buffers); the macro only adds
        // the errno check.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

/// Wraps a descriptor the kernel just returned.
fn owned(fd: libc::c_int) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful system call that creates a descriptor, so
    // it is open and owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*addr.ip()).to_be() },
        sin_zero: [0; 8],
    }
}

const SIN_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;

// ---------------------------------------------------------------------------------------------
// processes

/// What [`fork`] returned in this process.
pub enum Forked {
    /// This is the new child.
    Child,
    /// This is the parent; the child has this process id.
    Parent(libc::pid_t),
}

/// `fork()`.
///
/// # Safety
///
/// If the calling process has other threads, the child may only call async-signal-safe functions
/// (the wrappers of this file marked so, no allocation, no locks, no panics) and must end with
/// [`exit_now`]: a lock another thread held at the fork stays locked forever in the child.
pub unsafe fn fork() -> io::Result<Forked> {
    match syscall!(fork())? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// `_exit(code)`: ends the process without running destructors or `atexit` handlers.
/// Async-signal-safe.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is async-signal-safe; no Rust state needs dropping in a
    // forked waiter.
    unsafe { libc::_exit(code) }
}

/// Prepares a forked waiter (async-signal-safe): default `SIGINT` (Ctrl-C reaches the whole
/// foreground group; a waiter should simply die), `SIGKILL` when the forking thread dies, and a
/// check that the parent `parent` did not die before that was set.
pub fn waiter_prepare(parent: libc::pid_t) -> io::Result<()> {
    // SAFETY: resetting a signal disposition to SIG_DFL is async-signal-safe.
    if unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    syscall!(prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0))?;
    // SAFETY: getppid cannot fail.
    if unsafe { libc::getppid() } != parent {
        return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the parent exited"));
    }
    Ok(())
}

/// This process's id.
pub fn getpid() -> libc::pid_t {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// The effective user id.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// `kill(pid, SIGKILL)`; an already-gone process is not an error.
pub fn kill(pid: libc::pid_t) -> io::Result<()> {
    match syscall!(kill(pid, libc::SIGKILL)) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        r => r.map(drop),
    }
}

/// `waitpid(pid)`, blocking unless `nohang`; returns the raw status once the child has ended
/// (`None` if `nohang` and it still runs). `EINTR` is retried.
pub fn waitpid(pid: libc::pid_t, nohang: bool) -> io::Result<Option<i32>> {
    let mut status = 0;
    let flags = if nohang { libc::WNOHANG } else { 0 };
    loop {
        match syscall!(waitpid(pid, &mut status, flags)) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(status)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Voluntary context switches of the calling process so far (`getrusage`, `ru_nvcsw`): each is
/// one sleep, so the difference over a period counts the wakeups that ended those sleeps.
/// Async-signal-safe.
pub fn voluntary_switches() -> io::Result<u64> {
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    syscall!(getrusage(libc::RUSAGE_SELF, &mut ru))?;
    Ok(ru.ru_nvcsw as u64)
}

/// CPU time consumed by the calling thread (`CLOCK_THREAD_CPUTIME_ID`): time it ran, excluding
/// time it was preempted.
pub fn thread_cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid, writable timespec; this clock always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

// ---------------------------------------------------------------------------------------------
// Ctrl-C

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs a `SIGINT` handler that only sets a flag (no `SA_RESTART`, so a blocked `poll`
/// returns `EINTR` and the caller sees the flag at once).
pub fn install_sigint_flag() -> io::Result<()> {
    // SAFETY: sigaction is plain old data; all-zero is a valid (empty) value.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: sa.sa_mask is a valid sigset_t owned by sa.
    unsafe { libc::sigemptyset(&mut sa.sa_mask) };
    syscall!(sigaction(libc::SIGINT, &sa, std::ptr::null_mut())).map(drop)
}

/// Whether `SIGINT` arrived since [`install_sigint_flag`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------------------------------------
// limits

/// Soft and hard limit of an `RLIMIT_*` resource (`u64::MAX` = unlimited).
pub fn getrlimit(resource: libc::__rlimit_resource_t) -> io::Result<(u64, u64)> {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    syscall!(getrlimit(resource, &mut r))?;
    Ok((r.rlim_cur, r.rlim_max))
}

/// `RLIMIT_NOFILE`.
pub const RLIMIT_NOFILE: libc::__rlimit_resource_t = libc::RLIMIT_NOFILE;
/// `RLIMIT_NPROC`.
pub const RLIMIT_NPROC: libc::__rlimit_resource_t = libc::RLIMIT_NPROC;
/// select's bitmap size: descriptor numbers must be below it.
pub const FD_SETSIZE: usize = libc::FD_SETSIZE;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let (soft, hard) = getrlimit(libc::RLIMIT_NOFILE)?;
    if soft < hard {
        let r = libc::rlimit { rlim_cur: hard, rlim_max: hard };
        syscall!(setrlimit(libc::RLIMIT_NOFILE, &r))?;
    }
    Ok(hard)
}

// ---------------------------------------------------------------------------------------------
// descriptors and sockets

/// A pipe with `O_CLOEXEC` (and `O_NONBLOCK` if asked): (read end, write end).
pub fn pipe(nonblocking: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut p = [0 as libc::c_int; 2];
    let flags = libc::O_CLOEXEC | if nonblocking { libc::O_NONBLOCK } else { 0 };
    syscall!(pipe2(p.as_mut_ptr(), flags))?;
    Ok((owned(p[0]), owned(p[1])))
}

/// `read(2)`. Async-signal-safe.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    syscall!(read(fd, buf.as_mut_ptr().cast(), buf.len())).map(|n| n as usize)
}

/// `write(2)` of the whole buffer in one call (callers write at most `PIPE_BUF` bytes to a pipe,
/// which the kernel writes atomically); `EINTR` is retried. Async-signal-safe.
pub fn write_all(fd: RawFd, buf: &[u8]) -> io::Result<()> {
    loop {
        match syscall!(write(fd, buf.as_ptr().cast(), buf.len())) {
            Ok(n) if n as usize == buf.len() => return Ok(()),
            Ok(_) => return Err(io::Error::new(io::ErrorKind::WriteZero, "short pipe write")),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `close(fd)` of a raw descriptor. Async-signal-safe.
pub fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd` and never uses the number again.
    unsafe { libc::close(fd) };
}

/// Closes every descriptor in `lo..=hi` (`close_range`, falling back to a loop over the open
/// ones below a bound if the kernel lacks it). Async-signal-safe.
pub fn close_range(lo: RawFd, hi: RawFd) {
    if lo > hi || lo < 0 {
        return;
    }
    // SAFETY: close_range only closes descriptors; the caller uses none of them again.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            lo as libc::c_uint,
            hi as libc::c_uint,
            0 as libc::c_uint,
        )
    };
    if rc != 0 {
        let end = hi.min(65_535);
        for fd in lo..=end {
            close(fd);
        }
    }
}

/// A non-blocking duplicate of `fd` numbered at least `min` (`fcntl(F_DUPFD_CLOEXEC)`).
/// Async-signal-safe; the raw number is returned so that a forked waiter need not drop anything.
pub fn dup_raw(fd: RawFd, min: RawFd) -> io::Result<RawFd> {
    syscall!(fcntl(fd, libc::F_DUPFD_CLOEXEC, min))
}

/// [`dup_raw`], owned (for the parent).
pub fn dup(fd: RawFd) -> io::Result<OwnedFd> {
    dup_raw(fd, 0).map(owned)
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
    let fd = syscall!(socket(
        libc::AF_INET,
        libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        0
    ))?;
    let setup = || -> io::Result<()> {
        let one: libc::c_int = 1;
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let opt = (&one as *const libc::c_int).cast();
        syscall!(setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, opt, len))?;
        if reuseport {
            syscall!(setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, opt, len))?;
        }
        let sin = sockaddr(addr);
        syscall!(bind(fd, (&sin as *const libc::sockaddr_in).cast(), SIN_LEN))?;
        if listen {
            syscall!(listen(fd, backlog))?;
        }
        Ok(())
    };
    match setup() {
        Ok(()) => Ok(fd),
        Err(e) => {
            close(fd);
            Err(e)
        }
    }
}

/// [`tcp_listener_raw`], owned (for the parent).
pub fn tcp_listener(
    addr: SocketAddrV4,
    reuseport: bool,
    listen: bool,
    backlog: i32,
) -> io::Result<OwnedFd> {
    tcp_listener_raw(addr, reuseport, listen, backlog).map(owned)
}

/// The IPv4 address a socket is bound to (`getsockname`).
pub fn local_addr(fd: &OwnedFd) -> io::Result<SocketAddrV4> {
    let mut sin = sockaddr(SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0));
    let mut len = SIN_LEN;
    syscall!(getsockname(fd.as_raw_fd(), (&mut sin as *mut libc::sockaddr_in).cast(), &mut len))?;
    Ok(SocketAddrV4::new(
        std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
        u16::from_be(sin.sin_port),
    ))
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
    let fd = syscall!(socket(
        libc::AF_INET,
        libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        0
    ))
    .map(owned)?;
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    let len = std::mem::size_of::<libc::linger>() as libc::socklen_t;
    syscall!(setsockopt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_LINGER,
        (&l as *const libc::linger).cast(),
        len
    ))?;
    Ok(fd)
}

/// `connect(fd, addr)` on a non-blocking socket: `EINPROGRESS` counts as success. Nothing else
/// happens in this call, so timing it times the kernel's connect path alone.
pub fn connect(fd: &OwnedFd, addr: SocketAddrV4) -> io::Result<()> {
    let sin = sockaddr(addr);
    match syscall!(connect(fd.as_raw_fd(), (&sin as *const libc::sockaddr_in).cast(), SIN_LEN)) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(()),
        Err(e) => Err(e),
    }
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
