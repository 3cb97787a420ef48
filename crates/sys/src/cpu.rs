//! CPU time: of the calling thread or process (clocks and `getrusage`), and of another process
//! from the kernel's scheduler statistics.

use crate::syscall;
use std::io;
use std::time::Duration;

fn clock(id: libc::clockid_t) -> io::Result<Duration> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    syscall!(clock_gettime(id, &mut ts))?;
    Ok(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// CPU time the calling thread has run (`CLOCK_THREAD_CPUTIME_ID`), not counting time it was
/// preempted.
pub fn thread_time() -> io::Result<Duration> {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// `CLOCK_MONOTONIC` now: time since an arbitrary start, never set back, the same clock in
/// every process of the machine.
pub fn monotonic() -> io::Result<Duration> {
    clock(libc::CLOCK_MONOTONIC)
}

/// CPU time of the whole process, all threads (`CLOCK_PROCESS_CPUTIME_ID`).
pub fn process_time() -> io::Result<Duration> {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// What `getrusage(RUSAGE_SELF)` reports that this project reads.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// User CPU time, all threads.
    pub user: Duration,
    /// System CPU time, all threads.
    pub system: Duration,
    /// Voluntary context switches (each one a sleep: a wait that blocked).
    pub voluntary_switches: u64,
    /// Involuntary context switches (preemptions).
    pub involuntary_switches: u64,
}

impl Usage {
    /// User plus system time.
    pub fn total(&self) -> Duration {
        self.user + self.system
    }
}

/// This process's resource usage so far. Async-signal-safe (one system call, no allocation).
pub fn usage() -> io::Result<Usage> {
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    syscall!(getrusage(libc::RUSAGE_SELF, &mut ru))?;
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    Ok(Usage {
        user: tv(ru.ru_utime),
        system: tv(ru.ru_stime),
        voluntary_switches: ru.ru_nvcsw as u64,
        involuntary_switches: ru.ru_nivcsw as u64,
    })
}

/// Nanoseconds process `pid` has spent on a CPU: the sum of the first field of
/// `/proc/PID/task/*/schedstat` (the kernel's own accounting). Threads that have exited are not
/// counted, so read it while the threads that matter are alive.
pub fn schedstat_ns(pid: u32) -> io::Result<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = entry?.path().join("schedstat");
        if let Ok(s) = std::fs::read_to_string(path) {
            total += s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Ok(total)
}

/// The calling thread's kernel id (`gettid`).
pub fn gettid() -> libc::pid_t {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// A thread's voluntary and involuntary context switches, from `/proc/self/task/TID/status`.
pub fn thread_switches(tid: libc::pid_t) -> io::Result<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))?;
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| io::Error::other(format!("/proc/self/task/{tid}/status has no {name}")))
    };
    Ok((field("voluntary_ctxt_switches:")?, field("nonvoluntary_ctxt_switches:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_clock_advances_while_this_thread_spins() {
        let (t0, p0, u0) = (thread_time().unwrap(), process_time().unwrap(), usage().unwrap());
        let s0 = schedstat_ns(std::process::id()).unwrap();
        let mut x = 0u64;
        while thread_time().unwrap() - t0 < Duration::from_millis(30) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(process_time().unwrap() > p0);
        assert!(usage().unwrap().total() >= u0.total());
        assert!(schedstat_ns(std::process::id()).unwrap() > s0);
        let (vol, invol) = thread_switches(gettid()).unwrap();
        assert!(vol + invol < u64::MAX);
    }

    #[test]
    fn a_process_that_does_not_exist_is_an_error() {
        assert!(schedstat_ns(u32::MAX).is_err());
    }
}
