//! The only place that calls libc: thin wrappers that turn `-1`/`errno` into `io::Result`.
//!
//! Every mechanism works through these functions, so the unsafe surface of the crate is this
//! folder and nothing else. Each wrapper is a direct system call with no hidden work, which keeps
//! the syscall counts the mechanisms report honest.

#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

pub mod signal;
pub mod uring;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Calls a libc function and maps a `-1` return to the thread's `errno`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: every caller passes arguments that satisfy the named libc function's contract
        // (valid descriptors or -1, pointers into live, correctly sized buffers); the macro only
        // adds the errno check.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}
#[allow(unused_imports)]
pub(crate) use syscall;

/// Converts an optional timeout into milliseconds for poll/epoll, rounding a sub-millisecond
/// remainder *up* so that a short timeout never turns into a busy loop (the 1 ms precision
/// of poll and epoll, a pitfall the blog "select / poll / epoll: practical difference for system
/// architects" warns of).
pub fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_millis();
            let ms = if d.as_nanos() % 1_000_000 != 0 { ms + 1 } else { ms };
            ms.min(libc::c_int::MAX as u128) as libc::c_int
        }
    }
}

/// Wraps a descriptor the kernel just returned.
fn owned(fd: libc::c_int) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful system call that creates a descriptor, so
    // it is open and owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

// ---------------------------------------------------------------------------------------------
// epoll

/// `epoll_create1(EPOLL_CLOEXEC)`.
pub fn epoll_create() -> io::Result<OwnedFd> {
    syscall!(epoll_create1(libc::EPOLL_CLOEXEC)).map(owned)
}

/// `epoll_ctl(ep, op, fd, {events, data})`.
pub fn epoll_ctl(ep: RawFd, op: libc::c_int, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    syscall!(epoll_ctl(ep, op, fd, &mut ev)).map(drop)
}

/// `epoll_wait` into `buf`; returns how many entries were filled.
pub fn epoll_wait(
    ep: RawFd,
    buf: &mut [libc::epoll_event],
    timeout: libc::c_int,
) -> io::Result<usize> {
    let max = buf.len().min(libc::c_int::MAX as usize) as libc::c_int;
    syscall!(epoll_wait(ep, buf.as_mut_ptr(), max, timeout)).map(|n| n as usize)
}

/// `epoll_pwait2` (Linux 5.11): `epoll_wait` with a nanosecond timeout, so a timer due in 300 µs
/// wakes in 300 µs rather than the next whole millisecond (the precision complaint of the blog "select / poll /
/// epoll: practical difference for system architects").
/// No signal mask is passed. `ENOSYS` on older kernels: the caller falls back to [`epoll_wait`].
pub fn epoll_pwait2(
    ep: RawFd,
    buf: &mut [libc::epoll_event],
    timeout: Option<Duration>,
) -> io::Result<usize> {
    let max = buf.len().min(libc::c_int::MAX as usize) as libc::c_int;
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    });
    let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `buf` is valid for `max` entries and outlives the call; `tsp` is null or points to
    // a timespec on this stack frame; a null signal mask makes the kernel ignore the size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_epoll_pwait2,
            ep,
            buf.as_mut_ptr(),
            max,
            tsp,
            std::ptr::null::<libc::sigset_t>(),
            0usize,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

// ---------------------------------------------------------------------------------------------
// poll and select

/// `poll(fds, timeout)`; returns the number of entries with a non-zero `revents`.
pub fn poll(fds: &mut [libc::pollfd], timeout: libc::c_int) -> io::Result<usize> {
    syscall!(poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout)).map(|n| n as usize)
}

/// A `fd_set`, the bitmap select(2) reads and overwrites.
pub struct FdSet(libc::fd_set);

impl FdSet {
    /// An empty set.
    pub fn new() -> Self {
        let mut raw = std::mem::MaybeUninit::<libc::fd_set>::uninit();
        // SAFETY: FD_ZERO initialises every byte of the set it is given.
        unsafe { libc::FD_ZERO(raw.as_mut_ptr()) };
        // SAFETY: FD_ZERO above initialised it.
        FdSet(unsafe { raw.assume_init() })
    }

    /// Empties the set.
    pub fn clear(&mut self) {
        // SAFETY: the set is a valid, initialised fd_set owned by self.
        unsafe { libc::FD_ZERO(&mut self.0) };
    }

    /// Adds `fd`; the caller guarantees `0 <= fd < FD_SETSIZE`.
    pub fn insert(&mut self, fd: RawFd) {
        assert!((0..libc::FD_SETSIZE as RawFd).contains(&fd), "fd {fd} outside fd_set");
        // SAFETY: fd is within the bitmap (asserted above).
        unsafe { libc::FD_SET(fd, &mut self.0) };
    }

    /// Whether `fd` is in the set.
    pub fn contains(&self, fd: RawFd) -> bool {
        if !(0..libc::FD_SETSIZE as RawFd).contains(&fd) {
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

/// `select(nfds, r, w, e, timeout)`; returns the number of bits left set.
pub fn select(
    nfds: RawFd,
    read: &mut FdSet,
    write: &mut FdSet,
    except: &mut FdSet,
    timeout: Option<Duration>,
) -> io::Result<usize> {
    let mut tv = timeout.map(|d| libc::timeval {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    });
    let tvp = tv.as_mut().map_or(std::ptr::null_mut(), |t| t as *mut libc::timeval);
    syscall!(select(nfds, &mut read.0, &mut write.0, &mut except.0, tvp)).map(|n| n as usize)
}

// ---------------------------------------------------------------------------------------------
// descriptors

/// `eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)`.
pub fn eventfd() -> io::Result<OwnedFd> {
    syscall!(eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)).map(owned)
}

/// A non-blocking, close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut p = [0 as libc::c_int; 2];
    syscall!(pipe2(p.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC))?;
    Ok((owned(p[0]), owned(p[1])))
}

/// `read(2)` into `buf`.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    syscall!(read(fd, buf.as_mut_ptr().cast(), buf.len())).map(|n| n as usize)
}

/// `write(2)` from `buf`.
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    syscall!(write(fd, buf.as_ptr().cast(), buf.len())).map(|n| n as usize)
}

/// Sets `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    let flags = syscall!(fcntl(fd, libc::F_GETFL))?;
    if flags & libc::O_NONBLOCK == 0 {
        syscall!(fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK))?;
    }
    Ok(())
}

/// Whether `fd` is an open descriptor (`fcntl(F_GETFD)` succeeds).
pub fn is_open(fd: RawFd) -> bool {
    syscall!(fcntl(fd, libc::F_GETFD)).is_ok()
}

/// A non-blocking, close-on-exec `AF_UNIX` stream socketpair.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    syscall!(socketpair(
        libc::AF_UNIX,
        libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        0,
        fds.as_mut_ptr()
    ))?;
    Ok((owned(fds[0]), owned(fds[1])))
}

/// `shutdown(fd, SHUT_WR)`.
pub fn shutdown_write(fd: RawFd) -> io::Result<()> {
    syscall!(shutdown(fd, libc::SHUT_WR)).map(drop)
}

/// Sets `SO_LINGER {on, 0}` so that a later close sends a reset instead of a FIN.
pub fn set_linger_zero(fd: RawFd) -> io::Result<()> {
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    let len = std::mem::size_of::<libc::linger>() as libc::socklen_t;
    syscall!(setsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_LINGER,
        (&l as *const libc::linger).cast(),
        len
    ))
    .map(drop)
}

/// Returns and clears the pending socket error (`SO_ERROR`).
pub fn take_socket_error(fd: RawFd) -> io::Result<Option<io::Error>> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    syscall!(getsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_ERROR,
        (&mut err as *mut libc::c_int).cast(),
        &mut len
    ))?;
    Ok((err != 0).then(|| io::Error::from_raw_os_error(err)))
}

// ---------------------------------------------------------------------------------------------
// processes, limits and time

/// CPU time consumed by the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_time() -> Duration {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time consumed by the whole process (`CLOCK_PROCESS_CPUTIME_ID`).
pub fn process_cpu_time() -> Duration {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid, writable timespec; the clock ids used here always exist on Linux.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The soft and hard limits of `RLIMIT_NOFILE`.
pub fn nofile_limit() -> io::Result<(u64, u64)> {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    syscall!(getrlimit(libc::RLIMIT_NOFILE, &mut r))?;
    Ok((r.rlim_cur, r.rlim_max))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let (_, hard) = nofile_limit()?;
    let r = libc::rlimit { rlim_cur: hard, rlim_max: hard };
    syscall!(setrlimit(libc::RLIMIT_NOFILE, &r))?;
    Ok(hard)
}

/// A process created by [`fork_holder`]: it holds `count` TCP connections to a listener until
/// it is dropped (the pipe closes and the child exits).
pub struct Holder {
    pid: libc::pid_t,
    release: Option<OwnedFd>,
}

impl Holder {
    /// The child's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.release.take());
        let mut status = 0;
        // SAFETY: pid is our own child; waitpid with a valid status pointer reaps it.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
    }
}

/// Forks a child that opens `count` TCP connections to `addr` (an IPv4 loopback listener the
/// caller owns and will accept on), then holds them, idle, until the returned [`Holder`] is
/// dropped. The peers live in another process so that the caller's descriptor budget goes to
/// the side being measured. Returns once the child has *started* connecting; the caller accepts.
///
/// The child calls only async-signal-safe functions (socket, connect, read, _exit), so forking
/// from a multi-threaded process is sound.
pub fn fork_holder(addr: std::net::SocketAddrV4, count: usize) -> io::Result<Holder> {
    let mut p = [0 as libc::c_int; 2];
    syscall!(pipe2(p.as_mut_ptr(), libc::O_CLOEXEC))?;
    let (rd, wr) = (owned(p[0]), owned(p[1]));
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*addr.ip()).to_be() },
        sin_zero: [0; 8],
    };
    let pid = syscall!(fork())?;
    if pid == 0 {
        // Child: async-signal-safe calls only. Close every inherited descriptor but the pipe's
        // read end, so that the parent's sockets and other holders' pipes are not kept open.
        let keep = rd.as_raw_fd() as libc::c_uint;
        // SAFETY: close_range only closes descriptors; none of them is used again in the child.
        unsafe {
            if keep > 0 {
                libc::syscall(
                    libc::SYS_close_range,
                    0 as libc::c_uint,
                    keep - 1,
                    0 as libc::c_uint,
                );
            }
            libc::syscall(libc::SYS_close_range, keep + 1, libc::c_uint::MAX, 0 as libc::c_uint);
        }
        std::mem::forget(wr);
        let mut failed = 0;
        for _ in 0..count {
            // SAFETY: plain socket creation.
            let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            // SAFETY: sin is a valid sockaddr_in of the given length.
            let rc = unsafe {
                libc::connect(
                    s,
                    (&sin as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            if s < 0 || rc < 0 {
                failed += 1;
            }
        }
        let mut b = [0u8; 1];
        // Blocks until the parent drops the write end (EOF).
        // SAFETY: b is a valid one-byte buffer; rd is open.
        unsafe { libc::read(rd.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
        // SAFETY: _exit ends the child without running the parent's atexit handlers.
        unsafe { libc::_exit(if failed > 0 { 1 } else { 0 }) };
    }
    drop(rd);
    Ok(Holder { pid, release: Some(wr) })
}

// ---------------------------------------------------------------------------------------------
// helpers for tests and benchmarks

/// Starts a non-blocking TCP connect to `addr`; returns the socket while the connect may still
/// be in progress (`EINPROGRESS`), so that writability signals its completion.
pub fn connect_nonblocking(addr: std::net::SocketAddrV4) -> io::Result<OwnedFd> {
    let fd = syscall!(socket(
        libc::AF_INET,
        libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        0
    ))
    .map(owned)?;
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*addr.ip()).to_be() },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    match syscall!(connect(fd.as_raw_fd(), (&sin as *const libc::sockaddr_in).cast(), len)) {
        Ok(_) => Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(fd),
        Err(e) => Err(e),
    }
}

/// A duplicate of `fd` numbered at least `min` (`fcntl(F_DUPFD_CLOEXEC)`).
pub fn dup_at_least(fd: RawFd, min: RawFd) -> io::Result<OwnedFd> {
    syscall!(fcntl(fd, libc::F_DUPFD_CLOEXEC, min)).map(owned)
}

/// Makes the caller-owned descriptor number `target` refer to `src`'s open file (`dup3`),
/// atomically closing what `target` referred to. The number stays the caller's throughout, so
/// this is how a test reuses a descriptor number without racing other threads for it.
pub fn dup_onto(src: RawFd, target: &OwnedFd) -> io::Result<()> {
    syscall!(dup3(src, target.as_raw_fd(), libc::O_CLOEXEC)).map(drop)
}
