//! The server's only libc calls: sockets, sends, sendfile, `openat2`, limits, signals, CPU time.
//!
//! Each wrapper is one system call turned into an `io::Result`, so the syscalls per request the
//! benchmarks talk about are exactly the ones the engine calls.

#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

use std::ffi::CString;
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: every caller passes arguments that satisfy the named libc function's contract
        // (valid descriptors, pointers into live and correctly sized buffers); the macro only
        // adds the errno check.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

fn owned(fd: libc::c_int) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful system call that creates a descriptor, so
    // it is open and owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6 and suitably aligned.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::new(IpAddr::V6(ip), u16::from_be(sin6.sin6_port)))
        }
        _ => None,
    }
}

fn set_int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
    syscall!(setsockopt(
        fd,
        level,
        name,
        (&v as *const libc::c_int).cast(),
        size_of::<libc::c_int>() as libc::socklen_t
    ))
    .map(drop)
}

/// A non-blocking listening TCP socket with `SO_REUSEADDR` (and `SO_REUSEPORT` if asked).
pub fn listen(addr: SocketAddr, reuseport: bool, backlog: i32) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    let fd = owned(syscall!(socket(
        family,
        libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        0
    ))?);
    set_int_opt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if reuseport {
        set_int_opt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    let (ss, len) = sockaddr(addr);
    syscall!(bind(fd.as_raw_fd(), (&ss as *const libc::sockaddr_storage).cast(), len))?;
    syscall!(listen(fd.as_raw_fd(), backlog))?;
    Ok(fd)
}

/// The address a socket is bound to.
pub fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: plain old data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    syscall!(getsockname(fd, (&mut ss as *mut libc::sockaddr_storage).cast(), &mut len))?;
    from_sockaddr(&ss).ok_or_else(|| io::Error::other("unknown address family"))
}

/// `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)`: the connection and whether the peer is loopback.
pub fn accept(fd: RawFd) -> io::Result<(OwnedFd, bool)> {
    accept_from(fd).map(|(c, ip)| (c, ip.is_some_and(|ip| ip.is_loopback())))
}

/// `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)`: the connection and its peer's address.
pub fn accept_from(fd: RawFd) -> io::Result<(OwnedFd, Option<IpAddr>)> {
    // SAFETY: plain old data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let c = syscall!(accept4(
        fd,
        (&mut ss as *mut libc::sockaddr_storage).cast(),
        &mut len,
        libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC
    ))?;
    Ok((owned(c), from_sockaddr(&ss).map(|a| canonical(a.ip()))))
}

/// The address of a connected socket's peer (`getpeername`).
pub fn peer_ip(fd: RawFd) -> Option<IpAddr> {
    // SAFETY: plain old data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    syscall!(getpeername(fd, (&mut ss as *mut libc::sockaddr_storage).cast(), &mut len)).ok()?;
    from_sockaddr(&ss).map(|a| canonical(a.ip()))
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether the peer of a connected socket is on a loopback address (`getpeername`).
pub fn peer_is_loopback(fd: RawFd) -> bool {
    // SAFETY: plain old data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    if syscall!(getpeername(fd, (&mut ss as *mut libc::sockaddr_storage).cast(), &mut len)).is_err()
    {
        return false;
    }
    from_sockaddr(&ss).is_some_and(|a| match a.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    })
}

/// `read(2)`.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    syscall!(read(fd, buf.as_mut_ptr().cast(), buf.len())).map(|n| n as usize)
}

/// `sendmsg(2)` of up to two slices with `MSG_NOSIGNAL` (a reset peer is an error, never a
/// SIGPIPE) and `MSG_MORE` when more data follows (a sendfile'd body).
pub fn send2(fd: RawFd, a: &[u8], b: &[u8], more: bool) -> io::Result<usize> {
    let iov = [
        libc::iovec { iov_base: a.as_ptr() as *mut libc::c_void, iov_len: a.len() },
        libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() },
    ];
    // SAFETY: msghdr is plain old data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = if b.is_empty() { 1 } else { 2 };
    let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    syscall!(sendmsg(fd, &msg, flags)).map(|n| n as usize)
}

/// `sendfile(2)` from `file` at `offset` (the file position is not used, so one descriptor can
/// serve many connections at once).
pub fn sendfile(sock: RawFd, file: RawFd, offset: u64, count: usize) -> io::Result<usize> {
    let mut off = offset as libc::off_t;
    syscall!(sendfile(sock, file, &mut off, count)).map(|n| n as usize)
}

/// `shutdown(fd, SHUT_WR)`: our side is done (lingering close).
pub fn shutdown_write(fd: RawFd) -> io::Result<()> {
    syscall!(shutdown(fd, libc::SHUT_WR)).map(drop)
}

/// `shutdown(fd, SHUT_RD)` on a listening socket: Linux stops listening — connections still in
/// the accept queue are reset, new ones refused (ECONNREFUSED) — while the descriptor stays open.
pub fn shutdown_read(fd: RawFd) -> io::Result<()> {
    syscall!(shutdown(fd, libc::SHUT_RD)).map(drop)
}

/// Opens `path` (relative) for reading strictly beneath the directory `root` with
/// `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`: the kernel refuses (`EXDEV`) any `..` or
/// symlink that would leave the root. `ENOSYS` where the kernel predates Linux 5.6.
pub fn open_beneath(root: RawFd, path: &[u8]) -> io::Result<OwnedFd> {
    let c = CString::new(if path.is_empty() { &b"."[..] } else { path })
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open_how is plain old data; all-zero is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `c` is NUL-terminated and `how` lives across the call with its true size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root,
            c.as_ptr(),
            &how as *const libc::open_how,
            size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(owned(fd as libc::c_int))
}

/// Raises the soft open-file limit to the hard one; returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    syscall!(getrlimit(libc::RLIMIT_NOFILE, &mut r))?;
    if r.rlim_cur < r.rlim_max {
        r.rlim_cur = r.rlim_max;
        syscall!(setrlimit(libc::RLIMIT_NOFILE, &r))?;
    }
    Ok(r.rlim_cur)
}

/// Sets this process's queued-signal limit (`RLIMIT_SIGPENDING`, the RT-signal queue length the
/// signal mechanisms overflow).
pub fn set_sigpending_limit(n: u64) -> io::Result<()> {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    syscall!(getrlimit(libc::RLIMIT_SIGPENDING, &mut r))?;
    if n > r.rlim_max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--sigqueue-max {n} is above this system's hard limit {}", r.rlim_max),
        ));
    }
    r.rlim_cur = n;
    syscall!(setrlimit(libc::RLIMIT_SIGPENDING, &r)).map(drop)
}

/// Ignores SIGPIPE for the whole process (sends use MSG_NOSIGNAL anyway; sendfile does not).
pub fn ignore_sigpipe() -> io::Result<()> {
    // SAFETY: installing SIG_IGN for SIGPIPE has no memory-safety preconditions.
    let r = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    if r == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    // SAFETY: initialised just above.
    let mut set = unsafe { set.assume_init() };
    for s in signals {
        // SAFETY: `set` is a valid, initialised sigset and `s` a valid signal number.
        unsafe { libc::sigaddset(&mut set, *s) };
    }
    set
}

/// The signals the signal thread takes: stop (SIGINT, SIGTERM), reopen the access log
/// (SIGUSR1), take a counter snapshot (SIGUSR2).
const CONTROL_SIGNALS: [libc::c_int; 4] =
    [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1, libc::SIGUSR2];

/// Blocks the control signals (SIGINT, SIGTERM, SIGUSR1, SIGUSR2) in the calling thread (threads spawned later inherit the
/// mask), so that only the thread in [`wait_termination`] receives them.
pub fn block_termination() -> io::Result<()> {
    let set = sigset(&CONTROL_SIGNALS);
    // SAFETY: `set` is valid; the old mask is not wanted.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Blocks every signal in this thread, then waits for a control signal (SIGINT, SIGTERM,
/// SIGUSR1, SIGUSR2); returns its number.
pub fn wait_termination() -> io::Result<libc::c_int> {
    let mut all = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset initialises the set.
    unsafe { libc::sigfillset(all.as_mut_ptr()) };
    // SAFETY: initialised just above.
    let all = unsafe { all.assume_init() };
    // SAFETY: `all` is valid; this thread takes no signal asynchronously (RT signals meant for
    // the workers are never delivered here).
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut()) };
    let set = sigset(&CONTROL_SIGNALS);
    let mut sig: libc::c_int = 0;
    // SAFETY: both pointers are valid for the call.
    let r = unsafe { libc::sigwait(&set, &mut sig) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(sig)
}

/// The process's user and system CPU time so far (all threads).
pub fn process_cpu() -> (Duration, Duration) {
    // SAFETY: rusage is plain old data; all-zero is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// The calling thread's kernel id.
pub fn gettid() -> u64 {
    // SAFETY: gettid takes no arguments and cannot fail.
    let t = unsafe { libc::gettid() };
    t as u64
}

/// A thread's voluntary and involuntary context switches, from `/proc/self/task/TID/status`.
/// Each voluntary switch of an event-loop thread is one sleep in its wait: counted across the
/// workers they show how many were woken, as the herd waiters count theirs with `getrusage`.
pub fn thread_switches(tid: u64) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).ok()?;
    let field = |name: &str| {
        s.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((field("voluntary_ctxt_switches:")?, field("nonvoluntary_ctxt_switches:")?))
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; the clocks named here exist on every Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(ts.tv_nsec as u64)
}

/// `CLOCK_MONOTONIC` now, in nanoseconds (the clock of the counter snapshots; the same as
/// Python's `time.monotonic_ns()` and `clock_gettime(CLOCK_MONOTONIC)` in any other process).
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// The calling thread's CPU time so far, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}
