//! The only place in this crate that calls libc: the mechanisms' own system calls (epoll, poll,
//! select, RT signals in [`signal`], io_uring in [`uring`]) as thin wrappers that turn
//! `-1`/`errno` into `io::Result`, written with `ioscale_sys::syscall!`.
//!
//! What every crate needs (descriptors, limits, CPU time, socket addresses) is in
//! `ioscale-sys`; the rest of this crate names libc only for its constants (event bits, errno
//! values). Each wrapper is a direct system call with no hidden work, which keeps the syscall
//! counts the mechanisms report honest.

#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

pub mod signal;
pub mod uring;

use ioscale_sys::fd::owned;
use ioscale_sys::{process, syscall};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

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

// ---------------------------------------------------------------------------------------------
// epoll

/// `epoll_create1(EPOLL_CLOEXEC)`.
pub fn epoll_create() -> io::Result<OwnedFd> {
    let ep = syscall!(epoll_create1(libc::EPOLL_CLOEXEC))?;
    // SAFETY: epoll_create1 succeeded: `ep` is a new descriptor owned by nobody else.
    Ok(unsafe { owned(ep) })
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
    // `buf` is valid for `max` entries and outlives the call; `tsp` is null or points to a
    // timespec on this stack frame; a null signal mask makes the kernel ignore the size.
    syscall!(syscall(
        libc::SYS_epoll_pwait2,
        ep,
        buf.as_mut_ptr(),
        max,
        tsp,
        std::ptr::null::<libc::sigset_t>(),
        0usize
    ))
    .map(|n| n as usize)
}

// ---------------------------------------------------------------------------------------------
// poll and select

/// `poll(fds, timeout)`; returns the number of entries with a non-zero `revents`.
pub fn poll(fds: &mut [libc::pollfd], timeout: libc::c_int) -> io::Result<usize> {
    syscall!(poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout)).map(|n| n as usize)
}

/// The C library's `FD_SETSIZE`: the size of its `fd_set` type (1024 on glibc). The kernel has no
/// such limit — `select(2)` reads `nfds` bits from each bitmap, however many that is — so
/// [`FdSet`] is sized at run time for the highest descriptor and select goes past it.
pub const FD_SETSIZE: usize = libc::FD_SETSIZE;

const WORD_BITS: usize = libc::c_ulong::BITS as usize;

/// A bitmap select(2) reads and overwrites, laid out as the kernel reads an `fd_set` (bit `fd %
/// W` of word `fd / W`, W the bits of a `long`), but as long as the highest descriptor needs:
/// Chandra & Mosberger's select server ran 6,000 and 15,000 descriptors.
#[derive(Clone, Debug, Default)]
pub struct FdSet {
    words: Vec<libc::c_ulong>,
}

impl FdSet {
    /// An empty set with room for descriptors below `FD_SETSIZE` (it grows on [`FdSet::insert`]).
    pub fn new() -> Self {
        FdSet { words: vec![0; FD_SETSIZE / WORD_BITS] }
    }

    /// Empties the set, keeping its room.
    pub fn clear(&mut self) {
        self.words.fill(0);
    }

    /// Makes room for descriptors below `nfds` (never less than `FD_SETSIZE`).
    fn reserve(&mut self, nfds: usize) {
        let words = nfds.max(FD_SETSIZE).div_ceil(WORD_BITS);
        if self.words.len() < words {
            self.words.resize(words, 0);
        }
    }

    /// Adds `fd` (a negative one is ignored), growing the set if it is beyond its room.
    pub fn insert(&mut self, fd: RawFd) {
        let Ok(fd) = usize::try_from(fd) else { return };
        self.reserve(fd + 1);
        self.words[fd / WORD_BITS] |= 1 << (fd % WORD_BITS);
    }

    /// Whether `fd` is in the set.
    pub fn contains(&self, fd: RawFd) -> bool {
        let Ok(fd) = usize::try_from(fd) else { return false };
        self.words.get(fd / WORD_BITS).is_some_and(|w| w & (1 << (fd % WORD_BITS)) != 0)
    }

    fn as_mut_ptr(&mut self) -> *mut libc::fd_set {
        self.words.as_mut_ptr().cast()
    }
}

/// `select(nfds, r, w, e, timeout)`; returns the number of bits left set. Each set is first given
/// room for `nfds` bits (the kernel reads and writes that many, rounded up to whole words).
pub fn select(
    nfds: RawFd,
    read: &mut FdSet,
    write: &mut FdSet,
    except: &mut FdSet,
    timeout: Option<Duration>,
) -> io::Result<usize> {
    let n = usize::try_from(nfds).unwrap_or(0);
    for set in [&mut *read, &mut *write, &mut *except] {
        set.reserve(n);
    }
    let mut tv = timeout.map(|d| libc::timeval {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    });
    let tvp = tv.as_mut().map_or(std::ptr::null_mut(), |t| t as *mut libc::timeval);
    // Each bitmap holds at least `nfds` bits in whole words (reserved above), which is all the
    // kernel reads or writes; the pointers are to live vectors this call borrows mutably.
    syscall!(select(nfds, read.as_mut_ptr(), write.as_mut_ptr(), except.as_mut_ptr(), tvp))
        .map(|n| n as usize)
}

// ---------------------------------------------------------------------------------------------
// processes

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
        let _ = process::waitpid(self.pid, false);
    }
}

/// Forks a child that opens `count` TCP connections to `addr` (an IPv4 loopback listener the
/// caller owns and will accept on), then holds them, idle, until the returned [`Holder`] is
/// dropped. The peers live in another process so that the caller's descriptor budget goes to
/// the side being measured. Returns once the child has *started* connecting; the caller accepts.
///
/// The child calls only async-signal-safe functions (close_range, socket, connect, read,
/// _exit), so forking from a multi-threaded process is sound.
pub fn fork_holder(addr: std::net::SocketAddrV4, count: usize) -> io::Result<Holder> {
    let (rd, wr) = ioscale_sys::fd::pipe(false)?;
    let sin = ioscale_sys::net::sockaddr_in(addr);
    let sin_len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: the child below calls only async-signal-safe functions and ends with _exit.
    match unsafe { process::fork() }? {
        process::Forked::Child => {
            // Close every inherited descriptor but the pipe's read end, so that the parent's
            // sockets and other holders' pipes are not kept open.
            ioscale_sys::fd::close_all_but(rd.as_raw_fd());
            std::mem::forget(wr);
            let mut failed = 0;
            for _ in 0..count {
                // Blocking sockets: a full accept queue makes connect wait, not fail.
                let s = syscall!(socket(libc::AF_INET, libc::SOCK_STREAM, 0));
                let ok = s.and_then(|s| {
                    syscall!(connect(s, (&sin as *const libc::sockaddr_in).cast(), sin_len))
                });
                if ok.is_err() {
                    failed += 1;
                }
            }
            // Blocks until the parent drops the write end (EOF).
            let _ = ioscale_sys::fd::read(rd.as_raw_fd(), &mut [0u8; 1]);
            process::exit_now(if failed > 0 { 1 } else { 0 })
        }
        process::Forked::Parent(pid) => {
            drop(rd);
            Ok(Holder { pid, release: Some(wr) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_sets_grow_past_fd_setsize_and_keep_the_kernel_layout() {
        let mut s = FdSet::new();
        assert_eq!(s.words.len() * WORD_BITS, FD_SETSIZE);
        for fd in [0, 63, 64, 1023, 1024, 15_000] {
            assert!(!s.contains(fd));
            s.insert(fd);
            assert!(s.contains(fd), "{fd}");
        }
        assert!(!s.contains(1025) && !s.contains(-1) && !s.contains(1 << 30));
        assert_eq!(s.words[1024 / WORD_BITS] & 1, 1);
        assert!(s.words.len() * WORD_BITS > 15_000);
        s.clear();
        assert!(!s.contains(15_000));
    }
}
