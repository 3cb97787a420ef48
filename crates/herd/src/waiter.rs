//! One waiter: a forked process that blocks on the listening socket (and its duplicates) in
//! select, poll or epoll, accepts once per wakeup and counts what happened.
//!
//! It runs between `fork` and `_exit` in a copy of a process that may have other threads (the
//! test harness), so it calls only the async-signal-safe wrappers of [`crate::sys`], allocates
//! nothing (every buffer was sized by the parent before the fork) and never panics on purpose.
//!
//! Messages to the parent are fixed-size [`Record`]s written to one shared pipe; each is far below
//! `PIPE_BUF`, so the writes of different waiters never interleave.

use crate::sys;
use crate::WaitIn;
use std::net::SocketAddrV4;
use std::os::fd::RawFd;

/// Size of one record on the report pipe.
pub(crate) const RECORD_LEN: usize = 8 * 8;

/// What a waiter tells the parent.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Record {
    pub kind: u64,
    pub index: u64,
    pub a: u64,
    pub b: u64,
    pub c: u64,
    pub d: u64,
    pub e: u64,
    pub f: u64,
}

/// Set up and blocked (about to be): `a` = 0.
pub(crate) const READY: u64 = 1;
/// Accepted one connection.
pub(crate) const ACCEPTED: u64 = 2;
/// Final counts: `a` returns with the listener ready, `b` accepts, `c` EAGAIN accepts, `d` other
/// accept errors, `e` voluntary context switches during the run (sleeps = wakeups + 1).
pub(crate) const REPORT: u64 = 3;
/// Setup failed: `a` = step (see [`Step`]), `b` = errno.
pub(crate) const FAILED: u64 = 4;

impl Record {
    pub(crate) fn to_bytes(self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        let words = [self.kind, self.index, self.a, self.b, self.c, self.d, self.e, self.f];
        for (i, w) in words.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&w.to_ne_bytes());
        }
        out
    }

    pub(crate) fn from_bytes(b: &[u8]) -> Record {
        let w = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_ne_bytes(x)
        };
        Record { kind: w(0), index: w(1), a: w(2), b: w(3), c: w(4), d: w(5), e: w(6), f: w(7) }
    }
}

/// The setup step a waiter failed at (sent as a number, named by the parent).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum Step {
    Prepare = 1,
    Listen = 2,
    Dup = 3,
    FdSetSize = 4,
    EpollCreate = 5,
    EpollAdd = 6,
    EpollAddExclusive = 7,
    Rusage = 8,
    Wait = 9,
}

impl Step {
    pub(crate) fn describe(n: u64) -> &'static str {
        match n {
            1 => "prepare itself (parent gone?)",
            2 => "open its SO_REUSEPORT listening socket",
            3 => "duplicate the listening socket",
            4 => "fit its descriptors in select's fd_set (numbers must be below FD_SETSIZE = 1024)",
            5 => "create its epoll instance",
            6 => "add the listening socket to epoll",
            7 => "add the listening socket to epoll with EPOLLEXCLUSIVE (needs Linux 4.5)",
            8 => "read its resource usage",
            9 => "wait",
            _ => "do an unknown step",
        }
    }
}

/// Everything a waiter needs, prepared by the parent before forking so that the child allocates
/// nothing.
pub(crate) struct Plan {
    pub wait_in: WaitIn,
    pub parent: i32,
    /// Descriptors the child keeps (sorted); everything else inherited is closed.
    pub keep: Vec<RawFd>,
    /// The parent's listening socket followed by its duplicates (shared modes), or `-1`s to be
    /// filled by the child (reuseport).
    pub listen_fds: Vec<RawFd>,
    /// Reuseport: the address of the group.
    pub reuseport_addr: Option<SocketAddrV4>,
    pub backlog: i32,
    pub ctrl: RawFd,
    pub report: RawFd,
    pub pollfds: Vec<sys::PollFd>,
    pub events: Vec<sys::EpollEvent>,
}

fn send(report: RawFd, r: Record) {
    // A failed report cannot be reported; the parent notices the missing record.
    let _ = sys::write_all(report, &r.to_bytes());
}

fn fail(plan: &Plan, index: u64, step: Step, err: &std::io::Error) -> ! {
    let errno = err.raw_os_error().unwrap_or(0) as u64;
    send(
        plan.report,
        Record { kind: FAILED, index, a: step as u64, b: errno, ..Record::default() },
    );
    sys::exit_now(1)
}

/// The waiter's whole life. Never returns.
pub(crate) fn run(plan: &mut Plan, index: u64) -> ! {
    if let Err(e) = sys::waiter_prepare(plan.parent) {
        fail(plan, index, Step::Prepare, &e);
    }
    close_inherited(&plan.keep);
    if let Some(addr) = plan.reuseport_addr {
        open_reuseport(plan, index, addr);
    }
    let ws = wait_set(plan, index);
    send(plan.report, Record { kind: READY, index, ..Record::default() });
    let switches0 = match sys::voluntary_switches() {
        Ok(n) => n,
        Err(e) => fail(plan, index, Step::Rusage, &e),
    };
    let c = serve_wakeups(plan, index, &ws);
    let switches = sys::voluntary_switches().unwrap_or(switches0).saturating_sub(switches0);
    send(
        plan.report,
        Record {
            kind: REPORT,
            index,
            a: c.returned,
            b: c.accepted,
            c: c.eagain,
            d: c.other,
            e: switches,
            ..Record::default()
        },
    );
    sys::exit_now(0)
}

/// Closes what the waiter inherited but must not hold — other herds' pipes (a test thread's),
/// the parent's ends of its own pipes, stray sockets — keeping only `keep` (sorted).
fn close_inherited(keep: &[RawFd]) {
    let mut lo: RawFd = 0;
    for &k in keep {
        sys::close_range(lo, k - 1);
        lo = k + 1;
    }
    sys::close_range(lo, RawFd::MAX);
}

/// Reuseport: the waiter's own socket in the group at `addr`; the duplicates (if any) are of it.
fn open_reuseport(plan: &mut Plan, index: u64, addr: SocketAddrV4) {
    let fd = match sys::tcp_listener_raw(addr, true, true, plan.backlog) {
        Ok(fd) => fd,
        Err(e) => fail(plan, index, Step::Listen, &e),
    };
    plan.listen_fds[0] = fd;
    for i in 1..plan.listen_fds.len() {
        match sys::dup_raw(fd, 0) {
            Ok(d) => plan.listen_fds[i] = d,
            Err(e) => fail(plan, index, Step::Dup, &e),
        }
    }
}

/// What the waiter blocks on: the control pipe and the listening descriptors, in the
/// structure of its `wait_in` (the poll array lives in the plan).
struct WaitSet {
    /// Select: the read set and its `nfds`.
    set: sys::FdSet,
    nfds: RawFd,
    /// The epoll modes: the instance (`-1` otherwise).
    ep: RawFd,
}

/// Builds the wait set (a failure is reported to the parent and ends the waiter).
fn wait_set(plan: &mut Plan, index: u64) -> WaitSet {
    let mut ws = WaitSet { set: sys::FdSet::new(), nfds: 0, ep: -1 };
    match plan.wait_in {
        WaitIn::Select => {
            let mut ok = ws.set.insert(plan.ctrl);
            for &fd in &plan.listen_fds {
                ok &= ws.set.insert(fd);
                ws.nfds = ws.nfds.max(fd + 1);
            }
            ws.nfds = ws.nfds.max(plan.ctrl + 1);
            if !ok {
                fail(plan, index, Step::FdSetSize, &std::io::ErrorKind::InvalidInput.into());
            }
        }
        WaitIn::Poll => {
            plan.pollfds[0] = sys::pollfd(plan.ctrl);
            for (i, &fd) in plan.listen_fds.iter().enumerate() {
                plan.pollfds[i + 1] = sys::pollfd(fd);
            }
        }
        WaitIn::Epoll
        | WaitIn::EpollExclusive
        | WaitIn::EpollExclusiveRotate
        | WaitIn::Reuseport => {
            ws.ep = match sys::epoll_create_raw() {
                Ok(ep) => ep,
                Err(e) => fail(plan, index, Step::EpollCreate, &e),
            };
            if let Err(e) = sys::epoll_add(ws.ep, plan.ctrl, false, u64::MAX) {
                fail(plan, index, Step::EpollAdd, &e);
            }
            let exclusive =
                matches!(plan.wait_in, WaitIn::EpollExclusive | WaitIn::EpollExclusiveRotate);
            for i in 0..plan.listen_fds.len() {
                if let Err(e) = sys::epoll_add(ws.ep, plan.listen_fds[i], exclusive, i as u64) {
                    let step = if exclusive { Step::EpollAddExclusive } else { Step::EpollAdd };
                    fail(plan, index, step, &e);
                }
            }
        }
    }
    ws
}

/// What the waiter saw, for its final report.
#[derive(Default)]
struct Counts {
    /// Returns from the wait with a listener ready.
    returned: u64,
    /// Connections accepted.
    accepted: u64,
    /// Accepts that found nothing (`EAGAIN`): woke, returned, lost the race.
    eagain: u64,
    /// Accepts that failed otherwise.
    other: u64,
}

/// Waits, accepts once per wakeup and counts, until the parent says stop.
fn serve_wakeups(plan: &mut Plan, index: u64, ws: &WaitSet) -> Counts {
    let mut c = Counts::default();
    loop {
        // Which listening descriptor came back ready (-1: none), and whether to stop.
        let (ready, stop) = match wait_once(plan, ws) {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => fail(plan, index, Step::Wait, &e),
        };
        if stop {
            return c;
        }
        if ready < 0 {
            continue;
        }
        c.returned += 1;
        // One accept per wakeup: a waiter that lost the race gets EAGAIN, the herd's waste.
        match sys::accept_raw(ready) {
            Ok(conn) => {
                sys::close(conn);
                c.accepted += 1;
                send(plan.report, Record { kind: ACCEPTED, index, ..Record::default() });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => c.eagain += 1,
            Err(_) => c.other += 1,
        }
        if plan.wait_in == WaitIn::EpollExclusiveRotate {
            // Go to the back of the listener's wait queue: a new registration is queued last,
            // and exclusive wakeups go to the first idle registration in queue order.
            for i in 0..plan.listen_fds.len() {
                let fd = plan.listen_fds[i];
                if let Err(e) = sys::epoll_del(ws.ep, fd)
                    .and_then(|()| sys::epoll_add(ws.ep, fd, true, i as u64))
                {
                    fail(plan, index, Step::EpollAddExclusive, &e);
                }
            }
        }
    }
}

/// Blocks once; returns (a ready listening descriptor or -1, stop requested).
fn wait_once(plan: &mut Plan, ws: &WaitSet) -> std::io::Result<(RawFd, bool)> {
    match plan.wait_in {
        WaitIn::Select => {
            let mut r = ws.set;
            sys::select_forever(ws.nfds, &mut r)?;
            if r.contains(plan.ctrl) {
                return Ok((-1, true));
            }
            Ok((plan.listen_fds.iter().copied().find(|&fd| r.contains(fd)).unwrap_or(-1), false))
        }
        WaitIn::Poll => {
            sys::poll_forever(&mut plan.pollfds)?;
            if sys::poll_ready(&plan.pollfds[0]) {
                return Ok((-1, true));
            }
            Ok((plan.pollfds[1..].iter().find(|p| sys::poll_ready(p)).map_or(-1, |p| p.fd), false))
        }
        WaitIn::Epoll
        | WaitIn::EpollExclusive
        | WaitIn::EpollExclusiveRotate
        | WaitIn::Reuseport => {
            let n = sys::epoll_wait_forever(ws.ep, &mut plan.events)?;
            let mut ready = -1;
            for ev in &plan.events[..n] {
                let data = sys::epoll_data(ev);
                if data == u64::MAX {
                    return Ok((-1, true));
                }
                if ready < 0 {
                    ready = plan.listen_fds.get(data as usize).copied().unwrap_or(-1);
                }
            }
            Ok((ready, false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_bytes() {
        let r = Record { kind: REPORT, index: 7, a: 1, b: 2, c: 3, d: 4, e: u64::MAX, f: 0 };
        assert_eq!(Record::from_bytes(&r.to_bytes()), r);
        // Far below PIPE_BUF (4096), so concurrent writers never interleave.
        const { assert!(RECORD_LEN <= 512) };
    }

    #[test]
    fn every_step_has_a_description() {
        for n in 1..=9 {
            assert_ne!(Step::describe(n), "do an unknown step", "step {n}");
        }
    }
}
