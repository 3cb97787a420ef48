//! The machine a herd runs on: its facts (for the record) and the limits that bound a herd
//! (checked before anything is forked, so that an impossible request fails with one sentence
//! instead of half a herd).

use crate::{sys, WaitIn};
use std::io;

/// Facts about the machine, recorded with every measured point.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Machine {
    /// `uname -r`.
    pub kernel: String,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Cores this process may run on.
    pub cores: usize,
    /// Soft and hard `RLIMIT_NOFILE` (after raising the soft one to the hard one).
    pub rlimit_nofile: (u64, u64),
    /// Soft and hard `RLIMIT_NPROC` (`u64::MAX` = unlimited).
    pub rlimit_nproc: (u64, u64),
    /// Whether `RLIMIT_NPROC` applies (it does not to root).
    pub nproc_enforced: bool,
    /// `kernel.pid_max`.
    pub pid_max: u64,
    /// `kernel.threads-max`.
    pub threads_max: u64,
    /// Tasks (threads) running on the machine when the facts were read.
    pub tasks_running: u64,
    /// The largest herd the limits allow now (processes).
    pub max_waiters: u64,
    /// `fs.epoll.max_user_watches`: epoll registrations one user may hold in all.
    pub epoll_max_user_watches: u64,
    /// select's `FD_SETSIZE`.
    pub fd_setsize: usize,
    /// `net.core.somaxconn`.
    pub somaxconn: u64,
    /// `MemTotal` in MiB.
    pub mem_total_mib: u64,
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn read_u64(path: &str) -> Option<u64> {
    read_trim(path)?.parse().ok()
}

fn meminfo_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `fs.file-nr`: open files system-wide and `fs.file-max`.
fn file_nr() -> Option<(u64, u64)> {
    let s = read_trim("/proc/sys/fs/file-nr")?;
    let v: Vec<u64> = s.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    (v.len() == 3).then(|| (v[0], v[2]))
}

/// Tasks (threads) on the machine, and those of user `uid`: each takes a pid and counts toward
/// `RLIMIT_NPROC`.
fn count_tasks(uid: u32) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut all, mut mine) = (0, 0);
    let Ok(dir) = std::fs::read_dir("/proc") else { return (0, 0) };
    for e in dir.flatten() {
        if !e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let threads = std::fs::read_dir(e.path().join("task")).map_or(1, |d| d.count() as u64);
        all += threads;
        if e.metadata().is_ok_and(|m| m.uid() == uid) {
            mine += threads;
        }
    }
    (all, mine)
}

/// Tasks the rest of the machine may still need (a shell, builds running beside us).
const TASK_MARGIN: u64 = 256;

impl Machine {
    /// Reads the facts now (raising the soft descriptor limit to the hard one first, as a herd
    /// run does).
    pub fn read() -> Machine {
        let _ = ioscale_sys::limits::raise_nofile();
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        let uid = sys::geteuid();
        let (all, mine) = count_tasks(uid);
        let rlimit_nproc =
            ioscale_sys::limits::get(ioscale_sys::limits::NPROC).unwrap_or((u64::MAX, u64::MAX));
        let nproc_enforced = uid != 0;
        let pid_max = read_u64("/proc/sys/kernel/pid_max").unwrap_or(32_768);
        let threads_max = read_u64("/proc/sys/kernel/threads-max").unwrap_or(u64::MAX);
        let mut max = pid_max.min(threads_max).saturating_sub(all + TASK_MARGIN);
        if nproc_enforced {
            max = max.min(rlimit_nproc.0.saturating_sub(mine + 16));
        }
        Machine {
            kernel: read_trim("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into()),
            cpu_model,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            rlimit_nofile: ioscale_sys::limits::nofile().unwrap_or((0, 0)),
            rlimit_nproc,
            nproc_enforced,
            pid_max,
            threads_max,
            tasks_running: all,
            max_waiters: max,
            epoll_max_user_watches: read_u64("/proc/sys/fs/epoll/max_user_watches")
                .unwrap_or(u64::MAX),
            fd_setsize: sys::FD_SETSIZE,
            somaxconn: read_u64("/proc/sys/net/core/somaxconn").unwrap_or(0),
            mem_total_mib: meminfo_kib("MemTotal:").unwrap_or(0) / 1024,
        }
    }
}

/// Descriptors a waiter holds besides the listening socket and its duplicates: stdio, the two
/// pipe ends, an epoll instance, an accepted connection, and a little slack.
pub const WAITER_OVERHEAD_FDS: u64 = 10;

/// The most duplicates select can take: every number must stay below `FD_SETSIZE`.
pub fn max_select_dups() -> usize {
    sys::FD_SETSIZE - WAITER_OVERHEAD_FDS as usize - 1
}

/// Checks that a herd of `waiters` processes waiting in `wait_in` with `dups` duplicates each fits
/// this machine's limits; the error is one sentence naming the value and the limit.
pub fn check(waiters: usize, wait_in: WaitIn, dups: usize) -> io::Result<()> {
    let bad = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
    if waiters == 0 {
        return bad("--waiters 0: a herd needs at least one waiter".into());
    }
    let nofile = ioscale_sys::limits::raise_nofile()?;
    let per_waiter = 1 + dups as u64 + WAITER_OVERHEAD_FDS;
    if per_waiter > nofile {
        return bad(format!(
            "--dups {dups} needs {per_waiter} descriptors per process but RLIMIT_NOFILE is {nofile}; use --dups {} or fewer",
            nofile.saturating_sub(1 + WAITER_OVERHEAD_FDS)
        ));
    }
    if wait_in == WaitIn::Select && dups > max_select_dups() {
        return bad(format!(
            "--dups {dups} with select: every descriptor number must be below FD_SETSIZE = {}, so at most {} dups fit",
            sys::FD_SETSIZE,
            max_select_dups()
        ));
    }
    let m = Machine::read();
    if waiters as u64 > m.max_waiters {
        let why = if m.nproc_enforced && m.rlimit_nproc.0 < m.pid_max.min(m.threads_max) {
            format!("RLIMIT_NPROC is {} for this user", m.rlimit_nproc.0)
        } else {
            format!(
                "kernel.pid_max is {} and threads-max {} with {} tasks already running",
                m.pid_max, m.threads_max, m.tasks_running
            )
        };
        return bad(format!(
            "--waiters {waiters} exceeds what this machine allows ({why}); use --waiters {} or fewer",
            m.max_waiters
        ));
    }
    // System-wide open files: each waiter opens an epoll instance and, for reuseport, a socket
    // (dups share the open file, so they do not count here).
    if let Some((used, max)) = file_nr() {
        let files = waiters as u64 * 2 + 16;
        if used + files > max {
            return bad(format!(
                "--waiters {waiters} needs about {files} more open files but fs.file-max is {max} with {used} open"
            ));
        }
    }
    if wait_in.uses_epoll() {
        // Each waiter registers the listener, its dups and the control pipe.
        let watches = waiters as u64 * (dups as u64 + 2);
        if watches > m.epoll_max_user_watches {
            return bad(format!(
                "--waiters {waiters} with --dups {dups} in {wait_in} needs {watches} epoll registrations but fs.epoll.max_user_watches is {}",
                m.epoll_max_user_watches
            ));
        }
    }
    // Memory per waiter, measured here (6.18): ~60 KiB (task, stacks, page tables, touched
    // pages) and ~100 B (select) to ~200 B (epoll) per watched descriptor; allow about twice.
    let need_mib = waiters as u64 * (128 * 1024 + (1 + dups as u64) * 320) / (1024 * 1024);
    let avail_mib = meminfo_kib("MemAvailable:").unwrap_or(u64::MAX / 1024) / 1024;
    if need_mib > avail_mib / 2 {
        return bad(format!(
            "--waiters {waiters} with --dups {dups} would take about {need_mib} MiB of memory, more than half of the {avail_mib} MiB available"
        ));
    }
    Ok(())
}
