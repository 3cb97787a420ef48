//! Wrappers for the RT-signal mechanisms: signal masks, `sigtimedwait`, `signalfd`, the
//! `fcntl` commands that route a descriptor's `O_ASYNC` notices to a thread as a queued signal
//! (`F_SETSIG`, `F_SETOWN_EX`), and the per-process cap on queued signals
//! (`RLIMIT_SIGPENDING`).
//!
//! Each wrapper is one system call (two for [`arm_async`], which reads then writes the file
//! status flags), so the mechanisms can count their system calls honestly.

use ioscale_sys::fd::owned;
use ioscale_sys::{cvt_pthread, limits, syscall};
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::time::Duration;

/// `fcntl` command: the signal sent when I/O is possible (`F_SETSIG`, asm-generic value).
const F_SETSIG: libc::c_int = 10;
/// `fcntl` command: set the owner (thread, process or group) that receives the signals.
const F_SETOWN_EX: libc::c_int = 15;
/// `f_owner_ex.type`: the owner is one thread.
const F_OWNER_TID: libc::c_int = 0;

#[repr(C)]
struct FOwnerEx {
    kind: libc::c_int,
    pid: libc::pid_t,
}

pub use ioscale_sys::cpu::gettid;
pub use ioscale_sys::process::getpid;

/// The lowest real-time signal the C library leaves to applications (`SIGRTMIN`).
pub fn sigrtmin() -> libc::c_int {
    libc::SIGRTMIN()
}

/// The highest real-time signal (`SIGRTMAX`).
pub fn sigrtmax() -> libc::c_int {
    libc::SIGRTMAX()
}

/// A set of signals.
#[derive(Clone, Copy)]
pub struct SigSet(libc::sigset_t);

impl std::fmt::Debug for SigSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let members: Vec<i32> = (1..=sigrtmax()).filter(|&s| self.contains(s)).collect();
        write!(f, "SigSet({members:?})")
    }
}

impl SigSet {
    /// The set holding exactly `signals`.
    pub fn of(signals: &[libc::c_int]) -> SigSet {
        let mut raw = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the whole set it is given.
        unsafe { libc::sigemptyset(raw.as_mut_ptr()) };
        // SAFETY: initialised just above.
        let mut set = unsafe { raw.assume_init() };
        for &s in signals {
            // SAFETY: set is a valid sigset_t; an invalid number only makes sigaddset fail.
            unsafe { libc::sigaddset(&mut set, s) };
        }
        SigSet(set)
    }

    /// Whether `sig` is a member.
    pub fn contains(&self, sig: libc::c_int) -> bool {
        // SAFETY: self.0 is a valid, initialised sigset_t.
        unsafe { libc::sigismember(&self.0, sig) == 1 }
    }
}

/// Adds `set` to the calling thread's blocked mask; returns the mask as it was before.
pub fn block(set: &SigSet) -> io::Result<SigSet> {
    let mut old = SigSet::of(&[]);
    // SAFETY: both pointers are to valid sigset_t values.
    cvt_pthread(unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set.0, &mut old.0) })?;
    Ok(old)
}

/// Removes `set` from the calling thread's blocked mask.
pub fn unblock(set: &SigSet) -> io::Result<()> {
    // SAFETY: set points to a valid sigset_t; the old mask is not wanted (null).
    cvt_pthread(unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set.0, std::ptr::null_mut()) })
}

/// Whether the process's disposition for `sig` is the default one (no handler, not ignored).
pub fn disposition_is_default(sig: libc::c_int) -> io::Result<bool> {
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    syscall!(sigaction(sig, std::ptr::null(), old.as_mut_ptr()))?;
    // SAFETY: sigaction succeeded and filled `old`.
    let old = unsafe { old.assume_init() };
    Ok(old.sa_sigaction == libc::SIG_DFL)
}

/// One dequeued signal, reduced to what the `O_ASYNC` (`SIGPOLL`) notices carry.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The signal number.
    pub signo: libc::c_int,
    /// `si_code`: `POLL_IN` (1) … `POLL_HUP` (6) for I/O notices.
    pub code: libc::c_int,
    /// `si_fd`: the descriptor the notice is about (meaningful for I/O notices only).
    pub fd: RawFd,
    /// `si_band`: the poll bits of the event.
    pub band: i64,
    /// `si_pid` of a queued (`SI_QUEUE`) signal: the sender.
    pub pid: libc::pid_t,
    /// `si_value` of a queued (`SI_QUEUE`) signal.
    pub value: u64,
}

/// `si_code` of a signal sent with `sigqueue` / `rt_tgsigqueueinfo`.
pub const SI_QUEUE: libc::c_int = -1;

/// The kernel's `siginfo_t` laid out for `SIGPOLL`: three ints, then the union (aligned as a
/// long, as `__ARCH_SI_PREAMBLE_SIZE` has it) whose `_sigpoll` member is `{ long band; int fd }`.
#[repr(C)]
#[derive(Copy, Clone)]
struct PollInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    band: libc::c_long,
    fd: libc::c_int,
}

/// The same for `SI_QUEUE` signals: `_rt { pid_t pid; uid_t uid; sigval value }`.
#[repr(C)]
#[derive(Copy, Clone)]
struct QueueInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    pid: libc::pid_t,
    uid: libc::uid_t,
    value: usize,
}

#[repr(C)]
union RawSigInfo {
    poll: PollInfo,
    queue: QueueInfo,
    _size: [u64; 16],
}

const _: () = assert!(std::mem::size_of::<RawSigInfo>() == std::mem::size_of::<libc::siginfo_t>());

/// `sigtimedwait(set, timeout)`: dequeues one signal of `set` pending for the calling thread
/// (or the process). `Ok(None)` when the timeout passes first; `None` timeout waits forever.
pub fn sigtimedwait(set: &SigSet, timeout: Option<Duration>) -> io::Result<Option<Notice>> {
    let mut info = RawSigInfo { _size: [0; 16] };
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    let infop = (&mut info as *mut RawSigInfo).cast::<libc::siginfo_t>();
    match syscall!(sigtimedwait(&set.0, infop, tsp)) {
        Ok(_) => {
            // SAFETY: the kernel filled the siginfo; every bit pattern is a valid PollInfo.
            let p = unsafe { info.poll };
            // SAFETY: as above; the other view of the same kernel-filled bytes.
            let q = unsafe { info.queue };
            #[allow(clippy::unnecessary_cast)] // c_long is i32 on 32-bit targets
            let band = p.band as i64;
            Ok(Some(Notice {
                signo: p.signo,
                code: p.code,
                fd: p.fd,
                band,
                pid: q.pid,
                value: q.value as u64,
            }))
        }
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A non-blocking, close-on-exec `signalfd` for `set` (the set must be blocked in the threads
/// that read it; a read dequeues the *reading* thread's pending signals).
pub fn signalfd(set: &SigSet) -> io::Result<OwnedFd> {
    let fd = syscall!(signalfd(-1, &set.0, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC))?;
    // SAFETY: signalfd(-1, …) succeeded: `fd` is a new descriptor owned by nobody else.
    Ok(unsafe { owned(fd) })
}

/// An all-zero `signalfd_siginfo` for read buffers.
pub fn empty_siginfo() -> libc::signalfd_siginfo {
    // SAFETY: signalfd_siginfo is plain integers; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Reads as many pending signals as fit in `buf` from a signalfd; `Ok(0)` when none is pending.
pub fn read_signalfd(fd: RawFd, buf: &mut [libc::signalfd_siginfo]) -> io::Result<usize> {
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    match syscall!(read(fd, buf.as_mut_ptr().cast(), std::mem::size_of_val(buf))) {
        Ok(n) => Ok(n as usize / size),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e),
    }
}

/// Converts a signalfd record into a [`Notice`].
pub fn notice_of(s: &libc::signalfd_siginfo) -> Notice {
    Notice {
        signo: s.ssi_signo as i32,
        code: s.ssi_code,
        fd: s.ssi_fd,
        band: i64::from(s.ssi_band),
        pid: s.ssi_pid as libc::pid_t,
        value: s.ssi_ptr,
    }
}

/// Queues `signo` with `value` (`SI_QUEUE`) to thread `tid` of this process
/// (`rt_tgsigqueueinfo`). Fails with `EAGAIN` when the signal queue is full.
pub fn queue_to_thread(tid: libc::pid_t, signo: libc::c_int, value: u64) -> io::Result<()> {
    // SAFETY: getuid cannot fail.
    let (pid, uid) = (getpid(), unsafe { libc::getuid() });
    let mut info = RawSigInfo { _size: [0; 16] };
    info.queue = QueueInfo { signo, errno: 0, code: SI_QUEUE, pid, uid, value: value as usize };
    // `info` is a fully initialised, siginfo_t-sized buffer that outlives the call.
    syscall!(syscall(libc::SYS_rt_tgsigqueueinfo, pid, tid, signo, &info as *const RawSigInfo))
        .map(drop)
}

/// `fcntl(fd, F_SETSIG, sig)`: `O_ASYNC` notices for `fd` become queued `sig` signals carrying
/// the descriptor and the event band.
pub fn set_sig(fd: RawFd, sig: libc::c_int) -> io::Result<()> {
    syscall!(fcntl(fd, F_SETSIG, sig)).map(drop)
}

/// `fcntl(fd, F_SETOWN_EX, {F_OWNER_TID, tid})`: the notices of `fd`'s open file go to thread
/// `tid`; `tid == 0` removes the owner, so that no signal is sent at all (a one-call disarm).
pub fn set_owner_thread(fd: RawFd, tid: libc::pid_t) -> io::Result<()> {
    let owner = FOwnerEx { kind: F_OWNER_TID, pid: tid };
    syscall!(fcntl(fd, F_SETOWN_EX, &owner as *const FOwnerEx)).map(drop)
}

/// Sets `O_ASYNC | O_NONBLOCK` on `fd` (`F_GETFL` then `F_SETFL`: two calls).
pub fn arm_async(fd: RawFd) -> io::Result<()> {
    let flags = syscall!(fcntl(fd, libc::F_GETFL))?;
    syscall!(fcntl(fd, libc::F_SETFL, flags | libc::O_ASYNC | libc::O_NONBLOCK)).map(drop)
}

/// The soft and hard `RLIMIT_SIGPENDING` (how many signals may be queued for this process's
/// real user, counted over all of that user's processes).
pub fn sigpending_limit() -> io::Result<(u64, u64)> {
    limits::get(limits::SIGPENDING)
}

/// Sets the soft `RLIMIT_SIGPENDING` of this process to `soft` (at most the hard limit).
pub fn set_sigpending_limit(soft: u64) -> io::Result<()> {
    limits::set_soft(limits::SIGPENDING, soft)
}

/// `SigQ` from `/proc/self/status`: (signals queued now for this real user, the limit).
pub fn sigq() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with("SigQ:"))?;
    let (a, b) = line["SigQ:".len()..].trim().split_once('/')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}
