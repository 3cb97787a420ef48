//! The server's own system calls: accept, scatter sends, sendfile, `openat2`, the signal thread's
//! mask and wait. What every crate needs (descriptors, limits, CPU time, socket addresses) comes
//! from `ioscale-sys`, re-exported here where the engines use it.
//!
//! Each wrapper is one system call turned into an `io::Result`, so the syscalls per request the
//! benchmarks talk about are exactly the ones the engine calls.

#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

use ioscale_sys::fd::owned;
use ioscale_sys::net::from_sockaddr;
use ioscale_sys::{cvt_pthread, syscall};
use std::ffi::CString;
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::IpAddr;
use std::os::fd::{OwnedFd, RawFd};

pub use ioscale_sys::fd::{read, shutdown_read, shutdown_write};

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
    // SAFETY: accept4 succeeded: `c` is a new descriptor owned by nobody else.
    let c = unsafe { owned(c) };
    Ok((c, from_sockaddr(&ss).map(|a| canonical(a.ip()))))
}

/// The address of a connected socket's peer (`getpeername`).
pub fn peer_ip(fd: RawFd) -> Option<IpAddr> {
    ioscale_sys::net::peer_addr(fd).ok().map(|a| canonical(a.ip()))
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
    peer_ip(fd).is_some_and(|ip| ip.is_loopback())
}

/// Whether bytes wait unread in a connected socket's receive queue (`recv` with `MSG_PEEK |
/// MSG_DONTWAIT`; `false` at end of stream or on an error).
pub fn has_input(fd: RawFd) -> bool {
    let mut b = [0u8; 1];
    syscall!(recv(fd, b.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT))
        .is_ok_and(|n| n > 0)
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
    // `c` is NUL-terminated and `how` lives across the call with its true size.
    let fd = syscall!(syscall(
        libc::SYS_openat2,
        root,
        c.as_ptr(),
        &how as *const libc::open_how,
        size_of::<libc::open_how>()
    ))?;
    // SAFETY: openat2 succeeded: `fd` is a new descriptor owned by nobody else.
    Ok(unsafe { owned(fd as RawFd) })
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

/// The signals the signal thread takes: drain and stop (SIGINT, SIGTERM, SIGQUIT), reload
/// (SIGHUP), reopen the logs (SIGUSR1), take a counter snapshot (SIGUSR2).
const CONTROL_SIGNALS: [libc::c_int; 6] =
    [libc::SIGINT, libc::SIGTERM, libc::SIGQUIT, libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2];

/// Blocks the control signals (SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2) in the
/// calling thread (threads spawned later inherit the mask), so that only the thread in
/// [`wait_termination`] receives them.
pub fn block_termination() -> io::Result<()> {
    let set = sigset(&CONTROL_SIGNALS);
    // SAFETY: `set` is valid; the old mask is not wanted.
    cvt_pthread(unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) })
}

/// Blocks every signal in this thread, then waits for a control signal (SIGINT, SIGTERM,
/// SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2); returns its number.
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
    cvt_pthread(unsafe { libc::sigwait(&set, &mut sig) })?;
    Ok(sig)
}

/// `CLOCK_MONOTONIC` now, in nanoseconds (the clock of the counter snapshots; the same as
/// Python's `time.monotonic_ns()` and `clock_gettime(CLOCK_MONOTONIC)` in any other process);
/// 0 in the impossible case that the clock is missing.
pub fn monotonic_ns() -> u64 {
    ioscale_sys::cpu::monotonic().map_or(0, |d| d.as_nanos() as u64)
}

/// The calling thread's CPU time so far, in nanoseconds (0 if the clock is missing).
pub fn thread_cpu_ns() -> u64 {
    ioscale_sys::cpu::thread_time().map_or(0, |d| d.as_nanos() as u64)
}

/// Whether [`ticks`] reads the TSC (set once by [`ticks_per_second`]).
static TSC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A cheap clock for per-request durations: the CPU's time-stamp counter where it runs at a
/// constant rate in every state and on every CPU (`constant_tsc` and `nonstop_tsc`: one
/// instruction, no system call, no vDSO), else `CLOCK_MONOTONIC` in nanoseconds. Its rate is
/// [`ticks_per_second`], which must have been called once before (the server does at start).
#[inline]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    if TSC.load(std::sync::atomic::Ordering::Relaxed) {
        // SAFETY: RDTSC has no preconditions and is available on every x86_64 CPU.
        return unsafe { core::arch::x86_64::_rdtsc() };
    }
    monotonic_ns()
}

/// The rate of [`ticks`], measured once against `CLOCK_MONOTONIC` over 20 ms (the first call
/// sleeps that long; later calls return the same value).
pub fn ticks_per_second() -> f64 {
    static RATE: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *RATE.get_or_init(|| {
        let stable = std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|t| {
            let flags = t.lines().find(|l| l.starts_with("flags")).unwrap_or("");
            let has = |f: &str| flags.split_whitespace().any(|w| w == f);
            has("constant_tsc") && has("nonstop_tsc")
        });
        if !cfg!(target_arch = "x86_64") || !stable {
            return 1e9;
        }
        TSC.store(true, std::sync::atomic::Ordering::Relaxed);
        let (t0, n0) = (ticks(), monotonic_ns());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (t1, n1) = (ticks(), monotonic_ns());
        if n1 <= n0 || t1 <= t0 {
            TSC.store(false, std::sync::atomic::Ordering::Relaxed);
            return 1e9;
        }
        (t1 - t0) as f64 * 1e9 / (n1 - n0) as f64
    })
}

/// `sysconf(name)`, or `None` when the system does not say.
fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf only reads a configuration value.
    let v = unsafe { libc::sysconf(name) };
    (v > 0).then_some(v as u64)
}

/// The memory page size in bytes.
pub fn page_size() -> u64 {
    sysconf(libc::_SC_PAGESIZE).unwrap_or(4096)
}

/// The kernel's clock ticks per second (the unit of `/proc/PID/stat`'s times).
pub fn clock_ticks() -> u64 {
    sysconf(libc::_SC_CLK_TCK).unwrap_or(100)
}
