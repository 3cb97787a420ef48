//! Processes: ids, signals to children, and `SIGPIPE`.

use crate::syscall;
use std::io;

/// `SIGINT`.
pub const SIGINT: i32 = libc::SIGINT;
/// `SIGTERM`.
pub const SIGTERM: i32 = libc::SIGTERM;
/// `SIGKILL`.
pub const SIGKILL: i32 = libc::SIGKILL;
/// SIGUSR2 (`ioscale serve` takes a counter snapshot).
pub const SIGUSR2: i32 = libc::SIGUSR2;

/// This process's id. Async-signal-safe.
pub fn getpid() -> libc::pid_t {
    // SAFETY: getpid takes no arguments and cannot fail.
    unsafe { libc::getpid() }
}

/// Sends `sig` to process `pid` (`ESRCH` when it is gone). A `pid` that is not a positive
/// process id is refused: `kill(0)` or `kill(-1)` would signal a group or everyone.
pub fn kill(pid: u32, sig: i32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no process {pid}")))?;
    syscall!(kill(pid, sig)).map(drop)
}

/// Ignores `SIGPIPE` for the whole process: a write to a reset connection is then an `EPIPE`
/// error, not a death.
pub fn ignore_sigpipe() -> io::Result<()> {
    // SAFETY: installing SIG_IGN for SIGPIPE has no memory-safety preconditions.
    let r = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    if r == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What [`fork`] returned in this process.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
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
/// (no allocation, no locks, no panics: the functions of this crate documented so) and must end
/// with [`exit_now`]: a lock another thread held at the fork stays locked forever in the child.
pub unsafe fn fork() -> io::Result<Forked> {
    match syscall!(fork())? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// `_exit(code)`: ends the process without running destructors or `atexit` handlers (what a
/// forked child does). Async-signal-safe.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is async-signal-safe; nothing of this process needs
    // dropping in a forked child.
    unsafe { libc::_exit(code) }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_refuses_group_pids_and_reports_a_missing_process() {
        assert_eq!(kill(0, 0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(kill(getpid() as u32, 0).ok(), Some(()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(kill(pid, 0).unwrap_err().raw_os_error(), Some(libc::ESRCH));
    }

    #[test]
    fn a_forked_child_exits_with_its_code() {
        // SAFETY: the child calls only exit_now (async-signal-safe).
        match unsafe { fork() }.unwrap() {
            Forked::Child => exit_now(7),
            Forked::Parent(pid) => {
                let status = waitpid(pid, false).unwrap().unwrap();
                assert!(libc::WIFEXITED(status));
                assert_eq!(libc::WEXITSTATUS(status), 7);
            }
        }
    }
}
