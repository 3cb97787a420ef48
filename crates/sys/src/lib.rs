//! ioscale-sys: the system calls every ioscale crate needs, in one place, each turned into an
//! [`std::io::Result`].
//!
//! The other crates keep only their own facilities in their own `sys` module (epoll, RT
//! signals and io_uring in `ioscale-dispatch`; `sendfile` and `openat2` in the server; `fork`
//! of waiters in the herd), written with the [`syscall!`] macro and the helpers here. Together
//! these modules are the only places that call libc.
//!
//! | module | what |
//! | --- | --- |
//! | [`fd`] | owned descriptors from the kernel, pipes, socket pairs, `read`/`write`, duplicates |
//! | [`net`] | socket addresses to and from the kernel's, non-blocking connects, socket options |
//! | [`limits`] | `RLIMIT_*`: read, raise the open-file limit to the hard one |
//! | [`interrupt`] | a flag set by `SIGINT` or `SIGTERM`, so a run can stop cleanly |
//! | [`cpu`] | CPU time of a thread, this process (clock and `getrusage`) or another one (`schedstat`) |
//! | [`process`] | process ids, `kill`, `SIGPIPE` ignored |
//! | [`time`] | the system clock as a UTC calendar time (no time-zone database) |
//!
//! One error convention: every fallible call returns `io::Result` with the kernel's `errno`;
//! where a refusal needs explaining to a user, the error carries one sentence saying what was
//! refused and why.

#![deny(missing_docs)]
// `syscall!` expands its arguments inside its unsafe block by design: every use is a libc call
// whose arguments the caller vouches for, reviewed like an unsafe block.
#![allow(clippy::macro_metavars_in_unsafe)]

pub mod cpu;
pub mod fd;
pub mod interrupt;
pub mod limits;
pub mod net;
pub mod process;
pub mod time;

/// Calls a libc function and maps a `-1` return to the thread's `errno` as an `io::Error`;
/// any other value is returned as it is (`c_int`, `ssize_t` or `c_long`).
///
/// `syscall!(close(fd))`, or `syscall!(syscall(libc::SYS_openat2, …))` for calls the C library
/// has no wrapper for. The calling crate must depend on `libc`. The arguments must satisfy the
/// named function's contract (valid descriptors, pointers into live, correctly sized buffers):
/// the macro's own unsafe block relies on that, so every use is reviewed like an unsafe block.
#[macro_export]
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: every caller passes arguments that satisfy the named libc function's contract
        // (valid descriptors or -1, pointers into live, correctly sized buffers); the macro only
        // adds the errno check.
        #[allow(unused_unsafe)]
        let res = unsafe { ::libc::$fn($($arg),*) };
        if res == -1 {
            Err(::std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

/// Turns the return value of a `pthread_*` function (0, or an error number) into an
/// `io::Result`.
pub fn cvt_pthread(rc: libc::c_int) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(rc))
    }
}
