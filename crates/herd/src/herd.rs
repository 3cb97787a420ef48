//! The parent's side of one herd: fork the waiters, keep them in step, time the connects, collect
//! their counts, and reap every one of them whatever happens (`Drop` kills by PID and reaps).

use crate::waiter::{self, Plan, Record, RECORD_LEN};
use crate::{limits, sys, WaitIn};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Listen backlog of every listening socket (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

/// What to build: `waiters` processes blocked in `wait_in` on one listening socket (or, for
/// reuseport, on one socket each), each watching it under `1 + dups` descriptor numbers.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HerdSpec {
    /// Number of waiting processes.
    pub waiters: usize,
    /// How each waits.
    pub wait_in: WaitIn,
    /// Extra duplicates of the listening socket in each waiter's wait set (the article's 1019).
    pub dups: usize,
}

/// The summed counts of every waiter, read when the herd is stopped.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HerdCounts {
    /// Times a waiter was woken while a connection was pending, counted by the kernel (each
    /// waiter's voluntary context switches, minus the final stop wakeup): includes the waiters
    /// select/poll/epoll put back to sleep without returning because another one took the
    /// connection first.
    pub woken: u64,
    /// Times a wait call returned to a waiter with the listening socket ready.
    pub returned: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Accepts that failed with `EAGAIN`: a waiter woke for a connection another one took.
    pub eagain: u64,
    /// Accepts that failed otherwise.
    pub other_errors: u64,
    /// Connections accepted by the waiter that accepted most (fairness: with `EPOLLEXCLUSIVE` the
    /// kernel wakes the first idle registrant, so one waiter may take nearly all).
    pub busiest_accepted: u64,
    /// Waiters that accepted at least one connection.
    pub waiters_accepting: u64,
}

/// How long one `connect()` took.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ConnectTiming {
    /// Wall-clock duration of the call (includes being preempted by the waiters it woke).
    pub wall: Duration,
    /// CPU time the connecting thread spent in it (the kernel's own work: the handshake and the
    /// walk over the listener's wait queue).
    pub cpu: Duration,
}

/// A live herd. Dropping it kills (`SIGKILL`, by PID) and reaps every waiter still alive.
pub struct Herd {
    spec: HerdSpec,
    pids: Vec<i32>,
    reaped: Vec<bool>,
    addr: SocketAddrV4,
    ctrl_wr: Option<OwnedFd>,
    report_rd: OwnedFd,
    _listener: OwnedFd,
    _dups: Vec<OwnedFd>,
    partial: Vec<u8>,
    ready: usize,
    accepted: u64,
    reports: Vec<Option<Record>>,
    setup: Duration,
}

impl std::fmt::Debug for Herd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Herd").field("spec", &self.spec).field("pids", &self.pids.len()).finish()
    }
}

fn interrupted_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::Interrupted,
        "interrupted (Ctrl-C); every waiter was killed and reaped",
    )
}

/// `spec.dups` duplicates of the shared listener; with select, refused when a descriptor number
/// would not fit in an `fd_set` (`ctrl` is the control pipe's read end, also in the set).
fn dup_listener(listener: &OwnedFd, spec: &HerdSpec, ctrl: &OwnedFd) -> io::Result<Vec<OwnedFd>> {
    let mut dups = Vec::with_capacity(spec.dups);
    for _ in 0..spec.dups {
        let d = ioscale_sys::fd::dup_at_least(listener.as_raw_fd(), 0).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("could not duplicate the listening socket {} times: {e}", spec.dups),
            )
        })?;
        dups.push(d);
    }
    if spec.wait_in == WaitIn::Select {
        let top = dups
            .iter()
            .map(AsRawFd::as_raw_fd)
            .chain([listener.as_raw_fd(), ctrl.as_raw_fd()])
            .max()
            .unwrap_or(0);
        if top as usize >= sys::FD_SETSIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "--dups {} with select needs descriptor number {top}, but select's fd_set \
                     holds only numbers below FD_SETSIZE = {} in this process; use fewer dups",
                    spec.dups,
                    sys::FD_SETSIZE
                ),
            ));
        }
    }
    Ok(dups)
}

/// Everything a waiter needs, sized before the fork so that the child allocates nothing: the
/// descriptors it keeps, its listening descriptors (to be opened by the child with reuseport),
/// its pipes and its poll/epoll buffers.
fn waiter_plan(
    spec: &HerdSpec,
    ctrl_rd: &OwnedFd,
    report_wr: &OwnedFd,
    listener: &OwnedFd,
    dups: &[OwnedFd],
    addr: SocketAddrV4,
) -> Plan {
    let reuseport = spec.wait_in == WaitIn::Reuseport;
    let n_listen = 1 + spec.dups;
    let mut keep: Vec<RawFd> = vec![0, 1, 2, ctrl_rd.as_raw_fd(), report_wr.as_raw_fd()];
    let listen_fds: Vec<RawFd> = if reuseport {
        vec![-1; n_listen]
    } else {
        let mut v = vec![listener.as_raw_fd()];
        v.extend(dups.iter().map(AsRawFd::as_raw_fd));
        keep.extend_from_slice(&v);
        v
    };
    keep.sort_unstable();
    keep.dedup();
    Plan {
        wait_in: spec.wait_in,
        parent: sys::getpid(),
        keep,
        listen_fds,
        reuseport_addr: reuseport.then_some(addr),
        backlog: BACKLOG,
        ctrl: ctrl_rd.as_raw_fd(),
        report: report_wr.as_raw_fd(),
        pollfds: vec![sys::pollfd(-1); n_listen + 1],
        events: vec![sys::EPOLL_EVENT_ZERO; n_listen + 1],
    }
}

impl Herd {
    /// Checks the limits, opens the listening socket(s), forks the waiters and returns once every
    /// one of them is set up and asleep in its wait call.
    pub fn spawn(spec: HerdSpec) -> io::Result<Herd> {
        let t0 = Instant::now();
        limits::check(spec.waiters, spec.wait_in, spec.dups)?;
        let any = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
        let reuseport = spec.wait_in == WaitIn::Reuseport;
        // Reuseport: a bound, non-listening placeholder reserves the port; each waiter joins the
        // group with its own listening socket. Otherwise: the one shared listener.
        let listener = sys::tcp_listener(any, reuseport, !reuseport, BACKLOG)?;
        let addr = sys::local_addr(&listener)?;
        // The pipes first, so that their numbers stay low (select needs every number < 1024).
        let (ctrl_rd, ctrl_wr) = sys::pipe(false)?;
        let (report_rd, report_wr) = sys::pipe(false)?;
        let dups = if reuseport { Vec::new() } else { dup_listener(&listener, &spec, &ctrl_rd)? };
        let mut plan = waiter_plan(&spec, &ctrl_rd, &report_wr, &listener, &dups, addr);

        let mut herd = Herd {
            spec,
            pids: Vec::with_capacity(spec.waiters),
            reaped: Vec::with_capacity(spec.waiters),
            addr,
            ctrl_wr: Some(ctrl_wr),
            report_rd,
            _listener: listener,
            _dups: dups,
            partial: Vec::with_capacity(RECORD_LEN * 64),
            ready: 0,
            accepted: 0,
            reports: vec![None; spec.waiters],
            setup: Duration::ZERO,
        };
        herd.fork_waiters(&mut plan)?;
        drop(ctrl_rd);
        drop(report_wr);
        let deadline = Instant::now()
            + Duration::from_secs(20)
            + Duration::from_millis(5) * spec.waiters as u32;
        while herd.ready < spec.waiters {
            herd.pump(deadline, "set up", 100)?;
        }
        herd.wait_all_asleep(deadline)?;
        herd.setup = t0.elapsed();
        Ok(herd)
    }

    /// Forks one waiter per index into the herd; each runs `waiter::run(plan)` and never
    /// returns here. On an error the waiters forked so far are ended when the herd is dropped.
    fn fork_waiters(&mut self, plan: &mut Plan) -> io::Result<()> {
        for i in 0..self.spec.waiters {
            if ioscale_sys::interrupt::requested() {
                return Err(interrupted_error());
            }
            // SAFETY: the child runs only `waiter::run`, which calls async-signal-safe wrappers,
            // allocates nothing (the plan's buffers were sized before) and ends in `_exit`.
            match unsafe { sys::fork() } {
                Ok(sys::Forked::Child) => waiter::run(plan, i as u64),
                Ok(sys::Forked::Parent(pid)) => {
                    self.pids.push(pid);
                    self.reaped.push(false);
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "fork failed after {i} of {} waiters ({e}); the process limit is lower than checked",
                            self.spec.waiters
                        ),
                    ))
                }
            }
        }
        Ok(())
    }

    /// The address the waiters listen on.
    pub fn addr(&self) -> SocketAddrV4 {
        self.addr
    }

    /// The waiters' process ids.
    pub fn pids(&self) -> &[i32] {
        &self.pids
    }

    /// Time from the start of [`Herd::spawn`] until every waiter was asleep.
    pub fn setup_time(&self) -> Duration {
        self.setup
    }

    /// One measured connection: a non-blocking `connect()` (the only thing timed), then wait until
    /// a waiter has accepted it and every waiter is asleep again, so that each connection is a
    /// separate wakeup of a quiet herd. Returns the duration of the `connect()` call.
    pub fn connect_once(&mut self) -> io::Result<ConnectTiming> {
        let sock = sys::client_socket()?;
        let c = ioscale_sys::cpu::thread_time()?;
        let t = Instant::now();
        sys::connect(&sock, self.addr)?;
        let wall = t.elapsed();
        let cpu = ioscale_sys::cpu::thread_time()?.saturating_sub(c);
        let want = self.accepted + 1;
        let deadline = Instant::now()
            + Duration::from_secs(10)
            + Duration::from_millis(2) * self.spec.waiters as u32;
        while self.accepted < want {
            self.pump(deadline, "accept a connection", 100)?;
        }
        drop(sock);
        self.wait_all_asleep(deadline)?;
        Ok(ConnectTiming { wall, cpu })
    }

    /// Stops the herd (closing the control pipe wakes every waiter), collects every waiter's
    /// counts and reaps them all.
    pub fn finish(mut self) -> io::Result<HerdCounts> {
        drop(self.ctrl_wr.take());
        let deadline = Instant::now()
            + Duration::from_secs(20)
            + Duration::from_millis(5) * self.spec.waiters as u32;
        while self.reports.iter().any(Option::is_none) {
            self.pump(deadline, "report its counts", 100)?;
        }
        for i in 0..self.pids.len() {
            sys::waitpid(self.pids[i], false)?;
            self.reaped[i] = true;
        }
        let mut c = HerdCounts::default();
        for r in self.reports.iter().flatten() {
            c.returned += r.a;
            c.accepted += r.b;
            c.eagain += r.c;
            c.other_errors += r.d;
            c.busiest_accepted = c.busiest_accepted.max(r.b);
            c.waiters_accepting += u64::from(r.b > 0);
            // The last sleep of each waiter was ended by the stop, not by a connection.
            c.woken += r.e.saturating_sub(1);
        }
        Ok(c)
    }

    /// Reads whatever records are on the report pipe (waiting up to `wait_ms` for some); errors on a
    /// waiter's failure, on the deadline (naming `what` the waiters failed to do) or on Ctrl-C.
    fn pump(&mut self, deadline: Instant, what: &str, wait_ms: i32) -> io::Result<()> {
        if ioscale_sys::interrupt::requested() {
            return Err(interrupted_error());
        }
        if Instant::now() > deadline {
            let missing = self.reports.iter().filter(|r| r.is_none()).count();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "timed out waiting for the waiters to {what} ({} of {} ready, {} accepted, {missing} without a report)",
                    self.ready, self.spec.waiters, self.accepted
                ),
            ));
        }
        let mut pfd = [sys::pollfd(self.report_rd.as_raw_fd())];
        match sys::poll_timeout(&mut pfd, wait_ms) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let mut buf = [0u8; RECORD_LEN * 256];
        let n = sys::read(self.report_rd.as_raw_fd(), &mut buf)?;
        if n == 0 {
            if self.reports.iter().all(Option::is_some) {
                return Ok(());
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("every waiter exited before it could {what}"),
            ));
        }
        self.partial.extend_from_slice(&buf[..n]);
        let whole = self.partial.len() / RECORD_LEN * RECORD_LEN;
        let records: Vec<Record> =
            self.partial[..whole].chunks_exact(RECORD_LEN).map(Record::from_bytes).collect();
        self.partial.drain(..whole);
        for r in records {
            match r.kind {
                waiter::READY => self.ready += 1,
                waiter::ACCEPTED => self.accepted += 1,
                waiter::REPORT => {
                    if let Some(slot) = self.reports.get_mut(r.index as usize) {
                        *slot = Some(r);
                    }
                }
                waiter::FAILED => {
                    let err = io::Error::from_raw_os_error(r.b as i32);
                    return Err(io::Error::new(
                        err.kind(),
                        format!(
                            "waiter {} ({}, {} dups) could not {}: {err}",
                            r.index,
                            self.spec.wait_in,
                            self.spec.dups,
                            waiter::Step::describe(r.a)
                        ),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Waits until every waiter sleeps (`/proc/PID/stat` state `S`): then all are blocked in
    /// their wait call, the only place a waiter sleeps once it has reported ready.
    fn wait_all_asleep(&mut self, deadline: Instant) -> io::Result<()> {
        let mut pending: Vec<usize> = (0..self.pids.len()).collect();
        loop {
            let mut still = Vec::new();
            for &i in &pending {
                match proc_state(self.pids[i]) {
                    Some('S') => {}
                    Some('Z') | None => {
                        return Err(io::Error::other(format!(
                            "waiter {i} (pid {}) exited unexpectedly",
                            self.pids[i]
                        )))
                    }
                    Some(_) => still.push(i),
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            pending = still;
            // Keep draining the pipe so that no waiter blocks writing to it, and notice failures.
            let n = pending.len();
            self.pump(deadline, &format!("go back to sleep ({n} still running)"), 0).and_then(
                |()| {
                    if Instant::now() > deadline {
                        Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("{n} waiters never went back to sleep"),
                        ))
                    } else {
                        Ok(())
                    }
                },
            )?;
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// The scheduler state letter of a process (`R`, `S`, `D`, `Z`, ...), from `/proc/PID/stat`.
fn proc_state(pid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ..." — comm may contain spaces and parentheses; the state follows the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

impl Drop for Herd {
    fn drop(&mut self) {
        for (i, &pid) in self.pids.iter().enumerate() {
            if !self.reaped[i] {
                let _ = sys::kill(pid);
            }
        }
        for (i, &pid) in self.pids.iter().enumerate() {
            if !self.reaped[i] {
                let _ = sys::waitpid(pid, false);
                self.reaped[i] = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::proc_state;

    #[test]
    fn proc_state_reads_a_state_letter() {
        // The harness's main thread (whose state /proc/PID/stat shows) runs or sleeps.
        let s = proc_state(std::process::id() as i32);
        assert!(matches!(s, Some('R' | 'S')), "{s:?}");
        assert_eq!(proc_state(-1), None);
    }
}
