//! Resource limits (`getrlimit`/`setrlimit`), above all the open-file limit every server, client
//! and benchmark of this project raises before it opens thousands of sockets.

use crate::syscall;
use std::io;

/// A resource `RLIMIT_*` (e.g. `libc::RLIMIT_NOFILE`).
pub type Resource = libc::__rlimit_resource_t;

/// `RLIMIT_NOFILE`: one more than the highest descriptor number a process may open.
pub const NOFILE: Resource = libc::RLIMIT_NOFILE;
/// `RLIMIT_NPROC`: processes (threads) of the real user.
pub const NPROC: Resource = libc::RLIMIT_NPROC;
/// `RLIMIT_SIGPENDING`: signals that may be queued for the real user.
pub const SIGPENDING: Resource = libc::RLIMIT_SIGPENDING;

/// The soft and hard limit of `resource` (`u64::MAX` means unlimited).
pub fn get(resource: Resource) -> io::Result<(u64, u64)> {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    syscall!(getrlimit(resource, &mut r))?;
    Ok((r.rlim_cur, r.rlim_max))
}

/// Sets the soft limit of `resource`, keeping the hard one. A soft limit above the hard one is
/// refused with a sentence naming both.
pub fn set_soft(resource: Resource, soft: u64) -> io::Result<()> {
    let (_, hard) = get(resource)?;
    if soft > hard {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a soft limit of {soft} is above this system's hard limit of {hard}"),
        ));
    }
    let r = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    syscall!(setrlimit(resource, &r)).map(drop)
}

/// The soft and hard `RLIMIT_NOFILE`.
pub fn nofile() -> io::Result<(u64, u64)> {
    get(NOFILE)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (if it is below); returns the soft limit
/// now in force.
pub fn raise_nofile() -> io::Result<u64> {
    let (soft, hard) = nofile()?;
    if soft < hard {
        set_soft(NOFILE, hard)?;
    }
    Ok(hard.max(soft))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_the_open_file_limit_reaches_the_hard_limit() {
        let (_, hard) = nofile().unwrap();
        assert_eq!(raise_nofile().unwrap(), hard);
        assert_eq!(nofile().unwrap().0, hard);
    }

    #[test]
    fn a_soft_limit_above_the_hard_one_is_refused_with_a_sentence() {
        let (_, hard) = get(SIGPENDING).unwrap();
        if hard == u64::MAX {
            eprintln!("SKIPPED: RLIMIT_SIGPENDING is unlimited here");
            return;
        }
        let e = set_soft(SIGPENDING, hard + 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains(&hard.to_string()), "{e}");
    }
}
