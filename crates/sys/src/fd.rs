//! Descriptors: owning what the kernel returns, pipes, socket pairs, reads and writes.

use crate::syscall;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Wraps a descriptor the kernel just returned.
///
/// # Safety
///
/// `fd` must be an open descriptor that nothing else owns or will close: the value a successful
/// system call that creates a descriptor (socket, accept, pipe, dup, …) has just returned.
pub unsafe fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller guarantees `fd` is open and owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A close-on-exec pipe (non-blocking if asked): (read end, write end).
pub fn pipe(nonblocking: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut p = [0 as libc::c_int; 2];
    let flags = libc::O_CLOEXEC | if nonblocking { libc::O_NONBLOCK } else { 0 };
    syscall!(pipe2(p.as_mut_ptr(), flags))?;
    // SAFETY: pipe2 succeeded, so both numbers are new descriptors owned by nobody else.
    Ok(unsafe { (owned(p[0]), owned(p[1])) })
}

/// A non-blocking, close-on-exec `AF_UNIX` stream socket pair.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    syscall!(socketpair(
        libc::AF_UNIX,
        libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        0,
        fds.as_mut_ptr()
    ))?;
    // SAFETY: socketpair succeeded, so both numbers are new descriptors owned by nobody else.
    Ok(unsafe { (owned(fds[0]), owned(fds[1])) })
}

/// `read(2)` into `buf`. Async-signal-safe (one system call, no allocation on success or on an
/// `errno` error).
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    syscall!(read(fd, buf.as_mut_ptr().cast(), buf.len())).map(|n| n as usize)
}

/// `write(2)` from `buf`. Async-signal-safe, as [`read`].
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    syscall!(write(fd, buf.as_ptr().cast(), buf.len())).map(|n| n as usize)
}

/// Sets `O_NONBLOCK` on `fd` (`F_GETFL`, then `F_SETFL` if it was not set).
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    let flags = syscall!(fcntl(fd, libc::F_GETFL))?;
    if flags & libc::O_NONBLOCK == 0 {
        syscall!(fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK))?;
    }
    Ok(())
}

/// A close-on-exec duplicate of `fd` numbered at least `min` (`fcntl(F_DUPFD_CLOEXEC)`).
pub fn dup_at_least(fd: RawFd, min: RawFd) -> io::Result<OwnedFd> {
    let d = syscall!(fcntl(fd, libc::F_DUPFD_CLOEXEC, min))?;
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) succeeded: `d` is a new descriptor owned by nobody else.
    Ok(unsafe { owned(d) })
}

/// Makes the caller-owned descriptor number `target` refer to `src`'s open file (`dup3`),
/// atomically closing what `target` referred to. The number stays the caller's throughout, so
/// this is how a test reuses a descriptor number without racing other threads for it.
pub fn dup_onto(src: RawFd, target: &OwnedFd) -> io::Result<()> {
    syscall!(dup3(src, target.as_raw_fd(), libc::O_CLOEXEC)).map(drop)
}

/// `shutdown(fd, SHUT_WR)`: this side is done sending (the peer reads end of file).
pub fn shutdown_write(fd: RawFd) -> io::Result<()> {
    syscall!(shutdown(fd, libc::SHUT_WR)).map(drop)
}

/// `shutdown(fd, SHUT_RD)`. On a listening socket Linux stops listening: connections still in
/// the accept queue are reset, new ones refused, while the descriptor stays open.
pub fn shutdown_read(fd: RawFd) -> io::Result<()> {
    syscall!(shutdown(fd, libc::SHUT_RD)).map(drop)
}

/// `close(fd)` of a raw descriptor the caller owns and never uses again (a forked child's
/// inherited ones, say). Async-signal-safe; errors are ignored, as after `close` the number is
/// gone whatever it returned.
pub fn close_raw(fd: RawFd) {
    // SAFETY: the caller owns `fd` and never uses the number again.
    unsafe { libc::close(fd) };
}

/// Closes every descriptor numbered `lo..=hi` (`close_range`, falling back to a loop of
/// `close` up to 65,535 where the kernel lacks it). Async-signal-safe.
pub fn close_range(lo: RawFd, hi: RawFd) {
    if lo > hi || lo < 0 {
        return;
    }
    let r = syscall!(syscall(
        libc::SYS_close_range,
        lo as libc::c_uint,
        hi as libc::c_uint,
        0 as libc::c_uint
    ));
    if r.is_err() {
        for fd in lo..=hi.min(65_535) {
            close_raw(fd);
        }
    }
}

/// Closes every descriptor but `keep` (a forked child keeping only its own pipe).
/// Async-signal-safe.
pub fn close_all_but(keep: RawFd) {
    if keep > 0 {
        close_range(0, keep - 1);
    }
    close_range(keep + 1, RawFd::MAX);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_carries_bytes_and_reports_would_block_when_empty() {
        let (r, w) = pipe(true).unwrap();
        assert_eq!(write(w.as_raw_fd(), b"abc").unwrap(), 3);
        let mut buf = [0u8; 8];
        assert_eq!(read(r.as_raw_fd(), &mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"abc");
        let e = read(r.as_raw_fd(), &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn dup_at_least_honours_its_floor_and_dup_onto_keeps_the_number() {
        let (a, b) = socketpair().unwrap();
        let high = dup_at_least(a.as_raw_fd(), 500).unwrap();
        assert!(high.as_raw_fd() >= 500);
        dup_onto(b.as_raw_fd(), &high).unwrap();
        assert_eq!(write(a.as_raw_fd(), b"x").unwrap(), 1);
        let mut buf = [0u8; 1];
        // `high` now refers to b's end: it receives what a sent.
        assert_eq!(read(high.as_raw_fd(), &mut buf).unwrap(), 1);
    }

    #[test]
    fn a_bad_descriptor_is_an_errno_error() {
        let e = read(-1, &mut [0u8; 1]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
    }
}
