//! A flag set by `SIGINT` (Ctrl-C) or `SIGTERM`, so that a long run (a load, a lab, a herd
//! sweep) stops at the next point it checks and still writes what it measured.
//!
//! The handler only stores to an atomic (async-signal-safe). It is installed without
//! `SA_RESTART`, so a blocking `read`, `waitpid` or `poll` returns `EINTR` and the caller sees
//! the flag at once rather than when the call would have ended.

use crate::syscall;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs the handler for `SIGINT` and `SIGTERM` (process-wide; installing twice is harmless).
pub fn install() -> io::Result<()> {
    // SAFETY: sigaction is plain old data; all-zero is a valid (empty) value.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: sa.sa_mask is a valid sigset_t owned by `sa`.
    unsafe { libc::sigemptyset(&mut sa.sa_mask) };
    for sig in [libc::SIGINT, libc::SIGTERM] {
        syscall!(sigaction(sig, &sa, std::ptr::null_mut()))?;
    }
    Ok(())
}

/// Whether `SIGINT` or `SIGTERM` arrived since [`install`] (or [`request`] was called).
pub fn requested() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Sets the flag from code, as the signal would (e.g. a coordinator stopping its own run).
pub fn request() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigterm_to_this_process_sets_the_flag_instead_of_killing_it() {
        install().unwrap();
        // SAFETY: raise only delivers a signal to this thread; the handler above catches it.
        let rc = unsafe { libc::raise(libc::SIGTERM) };
        assert_eq!(rc, 0);
        assert!(requested());
    }
}
