//! Dispatch overhead without HTTP: the cost of one wait-and-dispatch cycle as idle descriptors
//! grow — the central claim of Chandra & Mosberger §3 and Provos & Lever §3.
//!
//! Setup: `N` idle TCP connections on loopback, their peers held by a forked child so that the
//! measured process spends its descriptors on the side being measured, plus one active
//! connection doing ping-pong. One *cycle* is: the peer writes one byte, the dispatcher waits and
//! returns the active descriptor's event, the byte is read (and a one-shot registration re-armed).
//! The write and read cost the same at every `N`, so the growth of the cycle cost with `N` is the
//! mechanism's. CPU time is the measuring thread's own (`CLOCK_THREAD_CPUTIME_ID`); each round
//! reports nanoseconds per cycle and the median of the rounds is the figure. Mechanisms are
//! interleaved within each round so that drift in the machine's speed hits all of them alike.

use crate::{sys, Dispatcher, Events, Interest, Mechanism, Options, Token};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// What to measure.
#[derive(Clone, Debug)]
pub struct Config {
    /// The mechanisms, measured interleaved.
    pub mechanisms: Vec<Mechanism>,
    /// Idle connection counts, measured in ascending order.
    pub idle: Vec<usize>,
    /// Rounds per (mechanism, idle count); the median is reported.
    pub rounds: usize,
    /// How long one round runs cycles (CPU time is what is measured, wall time bounds it).
    pub round_time: Duration,
    /// Options passed to every mechanism.
    pub options: Options,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mechanisms: vec![
                Mechanism::Epoll,
                Mechanism::Poll,
                Mechanism::Select,
                Mechanism::Devpoll,
            ],
            idle: vec![0, 100, 1000, 10_000],
            rounds: 5,
            round_time: Duration::from_millis(200),
            options: Options::default(),
        }
    }
}

/// One measured (mechanism, idle count).
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Point {
    /// The mechanism's name.
    pub mechanism: String,
    /// Idle connections registered beside the active one.
    pub idle: usize,
    /// Median CPU nanoseconds per cycle over the rounds (absent when the point could not run).
    pub ns_per_cycle: Option<f64>,
    /// Every round's nanoseconds per cycle.
    pub rounds: Vec<f64>,
    /// Cycles measured, summed over rounds.
    pub cycles: u64,
    /// Wait system calls per event returned.
    pub waits_per_event: Option<f64>,
    /// Interest-change system calls per cycle (non-zero for one-shot re-arming and the like).
    pub interest_syscalls_per_cycle: Option<f64>,
    /// `ns_per_cycle` divided by the same mechanism's figure at the smallest idle count measured.
    pub ratio_to_smallest: Option<f64>,
    /// Why the point could not be measured (e.g. more idle descriptors than RLIMIT_NOFILE allows).
    pub error: Option<String>,
    /// The mechanism's counters at the end of the last round (signals, overflows, …).
    pub counters: crate::Counters,
}

const ACTIVE: Token = Token(usize::MAX - 1);

/// The idle connections, their holders, and the active pair.
struct Rig {
    listener: TcpListener,
    idle: Vec<TcpStream>,
    holders: Vec<sys::Holder>,
    active: TcpStream,
    peer: TcpStream,
}

impl Rig {
    fn new() -> io::Result<Rig> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let peer = TcpStream::connect(listener.local_addr()?)?;
        let (active, _) = listener.accept()?;
        active.set_nonblocking(true)?;
        peer.set_nodelay(true)?;
        Ok(Rig { listener, idle: Vec::new(), holders: Vec::new(), active, peer })
    }

    fn grow_to(&mut self, n: usize) -> io::Result<()> {
        if n <= self.idle.len() {
            return Ok(());
        }
        let need = n - self.idle.len();
        let (soft, _) = ioscale_sys::limits::nofile()?;
        let budget = soft.saturating_sub(64) as usize;
        if n > budget {
            return Err(io::Error::other(format!(
                "{n} idle connections need about {} descriptors; this process may open {soft} (RLIMIT_NOFILE)",
                n + 64
            )));
        }
        let addr = match self.listener.local_addr()? {
            std::net::SocketAddr::V4(a) => a,
            std::net::SocketAddr::V6(_) => SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
        };
        self.holders.push(sys::fork_holder(addr, need)?);
        for _ in 0..need {
            let (s, _) = self.listener.accept()?;
            self.idle.push(s);
        }
        Ok(())
    }
}

/// Runs one round: opens a dispatcher, registers `idle` idle descriptors and the active one,
/// and cycles for `round_time`. Returns (ns per cycle, cycles, counters during cycles).
fn round(
    mech: Mechanism,
    options: &Options,
    idle: &[TcpStream],
    active: &TcpStream,
    peer: &mut TcpStream,
    round_time: Duration,
) -> io::Result<(f64, u64, crate::Counters)> {
    let mut d = mech.open(options)?;
    // The active descriptor first.
    let afd = active.as_raw_fd();
    d.register(afd, ACTIVE, Interest::READABLE)?;
    for (i, s) in idle.iter().enumerate() {
        d.register(s.as_raw_fd(), Token(i), Interest::READABLE)?;
    }
    let mut events = Events::with_capacity(64);
    // Warm up (and drain anything left from a previous round).
    for _ in 0..200 {
        cycle(&mut *d, afd, peer, &mut events)?;
    }
    let before = d.counters();
    let (ns, cycles) = timed(round_time, || cycle(&mut *d, afd, peer, &mut events))?;
    let after = d.counters();
    let diff = crate::Counters {
        wait_calls: after.wait_calls - before.wait_calls,
        events: after.events - before.events,
        interest_syscalls: after.interest_syscalls - before.interest_syscalls,
        ..after
    };
    Ok((ns, cycles, diff))
}

/// Repeats `cycle` in batches of 64 until `round_time` has passed (or 2,000,000 cycles), and
/// returns (thread CPU ns per cycle, cycles): the timed part of a round, for both models.
fn timed(
    round_time: Duration,
    mut cycle: impl FnMut() -> io::Result<()>,
) -> io::Result<(f64, u64)> {
    let wall = Instant::now();
    let cpu0 = ioscale_sys::cpu::thread_time()?;
    let mut cycles = 0u64;
    loop {
        for _ in 0..64 {
            cycle()?;
        }
        cycles += 64;
        if wall.elapsed() >= round_time || cycles >= 2_000_000 {
            break;
        }
    }
    let cpu = ioscale_sys::cpu::thread_time()? - cpu0;
    Ok((cpu.as_nanos() as f64 / cycles as f64, cycles))
}

/// One ping-pong: the peer writes a byte; wait until the active descriptor reports it; read it.
fn cycle(
    d: &mut dyn Dispatcher,
    afd: RawFd,
    peer: &mut TcpStream,
    events: &mut Events,
) -> io::Result<()> {
    peer.write_all(b"x")?;
    let mut got = false;
    let mut spins = 0u32;
    while !got {
        d.wait(events, Some(Duration::from_secs(5)))?;
        for ev in events.iter() {
            if ev.token() == ACTIVE {
                let mut buf = [0u8; 64];
                match ioscale_sys::fd::read(afd, &mut buf) {
                    Ok(n) if n > 0 => got = true,
                    Ok(_) => return Err(io::Error::other("the active connection closed")),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if d.trigger() == crate::Trigger::Oneshot {
                    d.reregister(afd, ACTIVE, Interest::READABLE)?;
                }
            }
        }
        spins += 1;
        if spins > 1000 {
            return Err(io::Error::other(format!(
                "{}: the active descriptor was not reported after 1000 waits",
                d.mechanism()
            )));
        }
    }
    Ok(())
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 })
}

/// Runs the measurement. `progress` is told what is being measured.
/// The completion model (`uring-completion`) in `cfg.mechanisms` is measured after the readiness
/// mechanisms by [`run_completion`], at the same idle counts.
pub fn run(cfg: &Config, mut progress: impl FnMut(&str)) -> io::Result<Vec<Point>> {
    let readiness = Config {
        mechanisms: cfg.mechanisms.iter().copied().filter(|m| !m.is_completion_based()).collect(),
        ..cfg.clone()
    };
    let mut points = if readiness.mechanisms.is_empty() {
        Vec::new()
    } else {
        run_readiness(&readiness, &mut progress)?
    };
    if cfg.mechanisms.iter().any(|m| m.is_completion_based()) {
        points.extend(run_completion(&cfg.idle, cfg.rounds, cfg.round_time, progress)?);
    }
    Ok(points)
}

fn run_readiness(cfg: &Config, progress: &mut dyn FnMut(&str)) -> io::Result<Vec<Point>> {
    let _ = ioscale_sys::limits::raise_nofile();
    let mut idle_counts = cfg.idle.clone();
    idle_counts.sort_unstable();
    idle_counts.dedup();
    let mut rig = Rig::new()?;
    // Hold the largest count first (or as many as the limits allow), then measure every count
    // interleaved within each round: only the number *registered* differs between points, and
    // drift in the machine's speed hits every point alike.
    let mut held_error: Option<(usize, String)> = None;
    for &n in &idle_counts {
        progress(&format!("holding {n} idle connections"));
        if let Err(e) = rig.grow_to(n) {
            held_error = Some((n, e.to_string()));
            break;
        }
    }
    let runnable: Vec<usize> =
        idle_counts.iter().copied().filter(|&n| n <= rig.idle.len()).collect();
    type Acc = (Vec<f64>, u64, Option<crate::Counters>, Option<String>);
    let mut per: Vec<Vec<Acc>> = runnable
        .iter()
        .map(|_| cfg.mechanisms.iter().map(|_| (Vec::new(), 0, None, None)).collect())
        .collect();
    let Rig { idle, active, peer, .. } = &mut rig;
    for r in 0..cfg.rounds.max(1) {
        for (k, &n) in runnable.iter().enumerate() {
            for (i, &m) in cfg.mechanisms.iter().enumerate() {
                if per[k][i].3.is_some() {
                    continue;
                }
                progress(&format!("round {}/{}: {m} with {n} idle", r + 1, cfg.rounds));
                // Drain any byte a failed round left behind.
                let mut sink = [0u8; 256];
                while let Ok(got) = (&*active).read(&mut sink) {
                    if got == 0 {
                        break;
                    }
                }
                match round(m, &cfg.options, &idle[..n], active, peer, cfg.round_time) {
                    Ok((ns, cycles, c)) => {
                        per[k][i].0.push(ns);
                        per[k][i].1 += cycles;
                        per[k][i].2 = Some(c);
                    }
                    Err(e) => {
                        per[k][i].3 = Some(format!("{m} cannot run with {n} idle descriptors: {e}"))
                    }
                }
            }
        }
    }
    let mut points: Vec<Point> = Vec::new();
    for (k, &n) in runnable.iter().enumerate() {
        for (i, m) in cfg.mechanisms.iter().enumerate() {
            let (rounds, cycles, counters, error) = per[k][i].clone();
            if let Some(e) = error {
                points.push(failed(m, n, e));
                continue;
            }
            let c = counters.unwrap_or_default();
            let mut sorted = rounds.clone();
            points.push(Point {
                mechanism: m.name().to_string(),
                idle: n,
                ns_per_cycle: median(&mut sorted),
                rounds,
                cycles,
                waits_per_event: (c.events > 0).then(|| c.wait_calls as f64 / c.events as f64),
                interest_syscalls_per_cycle: (c.events > 0)
                    .then(|| c.interest_syscalls as f64 / c.events as f64),
                ratio_to_smallest: None,
                error: None,
                counters: c,
            });
        }
    }
    if let Some((n, e)) = held_error {
        for &bad in idle_counts.iter().filter(|&&x| x >= n) {
            for m in &cfg.mechanisms {
                points.push(failed(m, bad, e.clone()));
            }
        }
    }
    // Ratios to each mechanism's smallest measured idle count.
    for m in &cfg.mechanisms {
        let base = points.iter().filter(|p| p.mechanism == m.name()).find_map(|p| p.ns_per_cycle);
        if let Some(b) = base {
            for p in points.iter_mut().filter(|p| p.mechanism == m.name()) {
                p.ratio_to_smallest = p.ns_per_cycle.map(|x| x / b);
            }
        }
    }
    drop(rig);
    Ok(points)
}

/// The completion model in `ioscale overhead` (`--completion`): the same cycle as
/// [`run`] — `N` idle loopback connections (peers held by a forked child) plus one
/// active connection doing one-byte ping-pong — but every connection, idle or not, has a
/// multishot receive in flight, and one cycle is the peer's write, the completion that carries
/// the byte (already received, in a provided buffer), and the buffer's recycling. Reported as
/// points named `uring-completion`, with `io_uring_enter` calls per completion in the
/// waits-per-event column. Rounds are interleaved over the idle counts; the median is the figure.
pub fn run_completion(
    idle_counts: &[usize],
    rounds: usize,
    round_time: Duration,
    mut progress: impl FnMut(&str),
) -> io::Result<Vec<Point>> {
    use crate::completion::{Completion, Proactor, Value};
    use std::net::SocketAddr;
    let name = crate::Mechanism::UringCompletion.name();
    const ACTIVE: Token = Token(usize::MAX - 1);
    let _ = ioscale_sys::limits::raise_nofile();
    let mut counts = idle_counts.to_vec();
    counts.sort_unstable();
    counts.dedup();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let mut peer = TcpStream::connect(listener.local_addr()?)?;
    peer.set_nodelay(true)?;
    let (active, _) = listener.accept()?;
    active.set_nonblocking(true)?;
    let addr = match listener.local_addr()? {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
    };
    let mut idle: Vec<TcpStream> = Vec::new();
    let mut holders = Vec::new();
    let mut held_error = None;
    let (soft, _) = ioscale_sys::limits::nofile()?;
    for &n in &counts {
        if n <= idle.len() {
            continue;
        }
        if n + 64 > soft as usize {
            held_error = Some((n, format!(
                "{n} idle connections need about {} descriptors; this process may open {soft} (RLIMIT_NOFILE)",
                n + 64
            )));
            break;
        }
        progress(&format!("holding {n} idle connections"));
        holders.push(crate::sys::fork_holder(addr, n - idle.len())?);
        while idle.len() < n {
            idle.push(listener.accept()?.0);
        }
    }
    let runnable: Vec<usize> = counts.iter().copied().filter(|&n| n <= idle.len()).collect();
    // Per idle count: rounds' ns/cycle, cycles, enters, completions, error.
    type Acc = (Vec<f64>, u64, u64, u64, Option<String>);
    let mut per: Vec<Acc> = runnable.iter().map(|_| (Vec::new(), 0, 0, 0, None)).collect();
    // One cycle: write, collect until the active connection's byte arrives, recycle.
    let cycle = |p: &mut Proactor,
                 peer: &mut TcpStream,
                 out: &mut Vec<Completion>|
     -> io::Result<()> {
        peer.write_all(b"x")?;
        for _ in 0..1000 {
            out.clear();
            p.complete(out, Some(Duration::from_secs(5)))?;
            let mut got = false;
            for c in out.drain(..) {
                if c.token != ACTIVE {
                    continue;
                }
                if !c.more {
                    p.recv_multi(active.as_raw_fd(), ACTIVE)?;
                }
                match c.result {
                    Ok(Value::Received(b)) => {
                        p.recycle(b);
                        got = true;
                    }
                    Ok(Value::Eof) => return Err(io::Error::other("the active connection closed")),
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                    Err(e) => return Err(e),
                }
            }
            if got {
                return Ok(());
            }
        }
        Err(io::Error::other("the active connection's byte was not completed after 1000 waits"))
    };
    for r in 0..rounds.max(1) {
        for (k, &n) in runnable.iter().enumerate() {
            if per[k].4.is_some() {
                continue;
            }
            progress(&format!("round {}/{}: {name} with {n} idle", r + 1, rounds));
            let res = (|| -> io::Result<(f64, u64, u64, u64)> {
                let mut p = Proactor::new()?;
                p.recv_multi(active.as_raw_fd(), ACTIVE)?;
                for (i, s) in idle[..n].iter().enumerate() {
                    p.recv_multi(s.as_raw_fd(), Token(i))?;
                }
                let mut out = Vec::new();
                for _ in 0..200 {
                    cycle(&mut p, &mut peer, &mut out)?;
                }
                let before = p.counters();
                let (ns, cycles) = timed(round_time, || cycle(&mut p, &mut peer, &mut out))?;
                let after = p.counters();
                Ok((
                    ns,
                    cycles,
                    after.enter_calls - before.enter_calls,
                    after.completions - before.completions,
                ))
            })();
            match res {
                Ok((ns, cycles, enters, completions)) => {
                    per[k].0.push(ns);
                    per[k].1 += cycles;
                    per[k].2 += enters;
                    per[k].3 += completions;
                }
                Err(e) => {
                    per[k].4 = Some(format!("{name} cannot run with {n} idle descriptors: {e}"))
                }
            }
        }
    }
    drop(holders);
    let mut points = Vec::new();
    let mut base = None;
    for (k, &n) in runnable.iter().enumerate() {
        let (rounds_ns, cycles, enters, completions, error) = per[k].clone();
        let median = median(&mut rounds_ns.clone());
        if base.is_none() {
            base = median;
        }
        points.push(Point {
            mechanism: name.to_string(),
            idle: n,
            ns_per_cycle: if error.is_some() { None } else { median },
            rounds: rounds_ns,
            cycles,
            waits_per_event: (completions > 0).then(|| enters as f64 / completions as f64),
            interest_syscalls_per_cycle: Some(0.0),
            ratio_to_smallest: match (median, base) {
                (Some(m), Some(b)) if error.is_none() => Some(m / b),
                _ => None,
            },
            error,
            counters: crate::Counters::default(),
        });
    }
    if let Some((n, e)) = held_error {
        for &bad in counts.iter().filter(|&&x| x >= n) {
            points.push(failed(&Mechanism::UringCompletion, bad, e.clone()));
        }
    }
    Ok(points)
}

fn failed(m: &Mechanism, n: usize, error: String) -> Point {
    Point {
        mechanism: m.name().to_string(),
        idle: n,
        ns_per_cycle: None,
        rounds: Vec::new(),
        cycles: 0,
        waits_per_event: None,
        interest_syscalls_per_cycle: None,
        ratio_to_smallest: None,
        error: Some(error),
        counters: crate::Counters::default(),
    }
}

/// Renders points as a plain table, one row per point.
pub fn table(points: &[Point]) -> String {
    let mut out = format!(
        "{:<14} {:>7} {:>12} {:>9} {:>12} {:>10}\n",
        "mechanism", "idle", "ns/cycle", "ratio", "waits/event", "ctl/cycle"
    );
    for p in points {
        match (&p.error, p.ns_per_cycle) {
            (Some(e), _) => out.push_str(&format!("{:<14} {:>7} {e}\n", p.mechanism, p.idle)),
            (None, Some(ns)) => out.push_str(&format!(
                "{:<14} {:>7} {:>12.0} {:>8.2}x {:>12.3} {:>10.2}\n",
                p.mechanism,
                p.idle,
                ns,
                p.ratio_to_smallest.unwrap_or(f64::NAN),
                p.waits_per_event.unwrap_or(f64::NAN),
                p.interest_syscalls_per_cycle.unwrap_or(f64::NAN),
            )),
            (None, None) => {
                out.push_str(&format!("{:<14} {:>7} (no rounds)\n", p.mechanism, p.idle))
            }
        }
    }
    out
}
