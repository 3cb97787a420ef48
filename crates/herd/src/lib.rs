//! ioscale-herd: the thundering-herd experiment (`ioscale herd`).
//!
//! Majkowski's blog post "Select is fundamentally broken" (2017) forks N processes that all block
//! in select() on one listening socket (optionally with the socket dup'ed ~1000 times in each
//! one's wait set) and times a non-blocking `connect()` to it over loopback. Loopback processes
//! the handshake inside the `connect()` call, so its duration includes the kernel waking every
//! process waiting on the socket: it grows linearly with the waiters (35 ms at 16k processes,
//! 1.5 s with 1019 dups each). `EPOLLEXCLUSIVE` (Linux 4.5) is named as the band-aid; one
//! `SO_REUSEPORT` socket per process is the other way out.
//!
//! This crate rebuilds that experiment with every way to wait:
//!
//! | `--wait-in` | each waiter blocks in | on | expected wakeups per connection |
//! | --- | --- | --- | --- |
//! | `select` | select(2) | the shared listener (+ dups) | all waiters |
//! | `poll` | poll(2) | the shared listener (+ dups) | all waiters |
//! | `epoll` | epoll_wait, its own epoll instance | the shared listener (+ dups) | all waiters |
//! | `epoll-exclusive` | epoll_wait, registered with `EPOLLEXCLUSIVE` | the shared listener (+ dups) | one (nearly always the same) |
//! | `epoll-exclusive-rotate` | the same, re-registered after each wakeup | the shared listener (+ dups) | one, in turn |
//! | `reuseport` | epoll_wait | its own `SO_REUSEPORT` socket of one group (+ dups of it) | one |
//!
//! and reports, per point, the median and p99 `connect()` duration, the processes woken per
//! connection (counted by the kernel: each waiter's voluntary context switches), the wait calls
//! that returned with the socket ready, and the accepts that failed with `EAGAIN` (the herd's
//! wasted work).
//!
//! Waiters are forked processes that only make system calls between `fork` and `_exit`
//! (the waiter code is async-signal-safe and allocates nothing), so a herd may be started from a
//! multi-threaded process such as the test harness. Every connection is made to a quiet herd: the
//! next `connect()` starts only once a waiter has accepted the previous connection and every
//! waiter is asleep again (`/proc/PID/stat` state `S`). A [`Herd`] kills (by PID) and reaps its
//! waiters when dropped, so an error or Ctrl-C (see [`install_interrupt_handler`]) leaves no
//! process behind.

#![deny(missing_docs)]

mod herd;
mod limits;
pub mod sys;
mod waiter;

pub use herd::{ConnectTiming, Herd, HerdCounts, HerdSpec};
pub use limits::{check as check_limits, max_select_dups, Machine};

use std::fmt;
use std::io;
use std::str::FromStr;
use std::time::Duration;

/// How each waiter waits for the listening socket.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaitIn {
    /// select(2) on the shared listener.
    Select,
    /// poll(2) on the shared listener.
    Poll,
    /// Level-triggered epoll on the shared listener (one epoll instance per waiter).
    Epoll,
    /// epoll with `EPOLLEXCLUSIVE` on the shared listener.
    EpollExclusive,
    /// `EPOLLEXCLUSIVE`, and after each wakeup the waiter deletes and re-adds its registration,
    /// moving itself to the tail of the listener's wait queue: the kernel wakes the first idle
    /// exclusive waiter in queue order, so without this the first registrant takes nearly every
    /// connection (the unfairness nginx met); with it the connections go round.
    EpollExclusiveRotate,
    /// epoll on the waiter's own `SO_REUSEPORT` listening socket.
    Reuseport,
}

impl WaitIn {
    /// Every way to wait, in table order.
    pub const ALL: [WaitIn; 6] = [
        WaitIn::Select,
        WaitIn::Poll,
        WaitIn::Epoll,
        WaitIn::EpollExclusive,
        WaitIn::EpollExclusiveRotate,
        WaitIn::Reuseport,
    ];

    /// The command-line name.
    pub const fn name(self) -> &'static str {
        match self {
            WaitIn::Select => "select",
            WaitIn::Poll => "poll",
            WaitIn::Epoll => "epoll",
            WaitIn::EpollExclusive => "epoll-exclusive",
            WaitIn::EpollExclusiveRotate => "epoll-exclusive-rotate",
            WaitIn::Reuseport => "reuseport",
        }
    }

    /// Whether the waiters wait in epoll (and so count against `fs.epoll.max_user_watches`).
    pub const fn uses_epoll(self) -> bool {
        !matches!(self, WaitIn::Select | WaitIn::Poll)
    }

    /// Whether one connection should wake about one waiter (rather than all of them).
    pub const fn wakes_one(self) -> bool {
        matches!(self, WaitIn::EpollExclusive | WaitIn::EpollExclusiveRotate | WaitIn::Reuseport)
    }
}

impl fmt::Display for WaitIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--wait-in` value that names no way to wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseWaitInError(String);

impl fmt::Display for ParseWaitInError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = WaitIn::ALL.iter().map(|w| w.name()).collect();
        write!(f, "unknown wait mechanism `{}`: expected one of {}", self.0, names.join(", "))
    }
}

impl std::error::Error for ParseWaitInError {}

impl FromStr for WaitIn {
    type Err = ParseWaitInError;
    fn from_str(s: &str) -> Result<WaitIn, ParseWaitInError> {
        WaitIn::ALL
            .iter()
            .copied()
            .find(|w| w.name() == s.trim())
            .ok_or_else(|| ParseWaitInError(s.to_string()))
    }
}

/// A whole run: every combination of waiters × wait mechanism × dups.
#[derive(Clone, Debug)]
pub struct Config {
    /// Herd sizes.
    pub waiters: Vec<usize>,
    /// Ways to wait.
    pub wait_in: Vec<WaitIn>,
    /// Duplicates of the listening socket per waiter.
    pub dups: Vec<usize>,
    /// Timed connections per point.
    pub connects: usize,
    /// Untimed connections before them (their wakeups still count).
    pub warmup: usize,
}

/// One measured point.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Point {
    /// Waiting processes.
    pub waiters: usize,
    /// How they waited.
    pub wait_in: WaitIn,
    /// Duplicates of the listening socket in each waiter's wait set.
    pub dups: usize,
    /// Timed connections.
    pub connects: usize,
    /// Untimed warm-up connections before them.
    pub warmup: usize,
    /// Median `connect()` duration, µs.
    pub connect_p50_us: f64,
    /// 99th percentile (nearest rank) `connect()` duration, µs.
    pub connect_p99_us: f64,
    /// Mean `connect()` duration, µs.
    pub connect_mean_us: f64,
    /// Longest `connect()`, µs.
    pub connect_max_us: f64,
    /// Median CPU time of the connecting thread in `connect()`, µs (the kernel's work without
    /// the time the woken waiters preempted it).
    pub connect_cpu_p50_us: f64,
    /// 99th percentile of that CPU time, µs.
    pub connect_cpu_p99_us: f64,
    /// Waiters woken per connection (kernel count; includes those put back to sleep).
    pub woken_per_connect: f64,
    /// Wait calls that returned with the socket ready, per connection.
    pub returned_per_connect: f64,
    /// The summed counts of all waiters over all (warm-up and timed) connections.
    pub counts: HerdCounts,
    /// `EAGAIN` accepts per connection.
    pub eagain_per_connect: f64,
    /// Share of all connections accepted by the busiest waiter (1.0: one waiter took them all).
    pub busiest_share: f64,
    /// Time to fork the herd and see every waiter asleep, ms.
    pub setup_ms: f64,
    /// When the point was measured (UTC, RFC 3339).
    pub date: String,
    /// The machine.
    pub machine: Machine,
}

/// Percentile (nearest rank) of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn us(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1000.0
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let t = ioscale_sys::time::UtcTime::now();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// Measures one point: spawns the herd, makes `warmup` then `connects` spaced connections,
/// stops and reaps the herd.
pub fn measure(spec: HerdSpec, connects: usize, warmup: usize) -> io::Result<Point> {
    if connects == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--connects 0: at least one connection is needed",
        ));
    }
    let mut herd = Herd::spawn(spec)?;
    let setup = herd.setup_time();
    for _ in 0..warmup {
        herd.connect_once()?;
    }
    let mut samples = Vec::with_capacity(connects);
    let mut cpu = Vec::with_capacity(connects);
    for _ in 0..connects {
        let t = herd.connect_once()?;
        samples.push(t.wall);
        cpu.push(t.cpu);
    }
    let counts = herd.finish()?;
    samples.sort_unstable();
    cpu.sort_unstable();
    let total = (connects + warmup) as f64;
    let mean = samples.iter().sum::<Duration>() / connects as u32;
    Ok(Point {
        waiters: spec.waiters,
        wait_in: spec.wait_in,
        dups: spec.dups,
        connects,
        warmup,
        connect_p50_us: us(percentile(&samples, 50.0)),
        connect_p99_us: us(percentile(&samples, 99.0)),
        connect_mean_us: us(mean),
        connect_max_us: us(*samples.last().unwrap_or(&Duration::ZERO)),
        connect_cpu_p50_us: us(percentile(&cpu, 50.0)),
        connect_cpu_p99_us: us(percentile(&cpu, 99.0)),
        woken_per_connect: counts.woken as f64 / total,
        returned_per_connect: counts.returned as f64 / total,
        eagain_per_connect: counts.eagain as f64 / total,
        busiest_share: counts.busiest_accepted as f64 / counts.accepted.max(1) as f64,
        counts,
        setup_ms: setup.as_secs_f64() * 1000.0,
        date: utc_now(),
        machine: Machine::read(),
    })
}

/// Checks a whole run's plan before anything starts (every point's limits), so a bad value fails
/// at once with one sentence.
pub fn validate(cfg: &Config) -> io::Result<()> {
    let bad = |m: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, m.to_string()));
    if cfg.waiters.is_empty() {
        return bad("--waiters needs at least one count, e.g. --waiters 1,16,64");
    }
    if cfg.wait_in.is_empty() {
        return bad(
            "--wait-in needs at least one of select, poll, epoll, epoll-exclusive, reuseport",
        );
    }
    if cfg.dups.is_empty() {
        return bad("--dups needs at least one count, e.g. --dups 0");
    }
    if cfg.connects == 0 {
        return bad("--connects 0: at least one connection is needed");
    }
    for &d in &cfg.dups {
        for &w in &cfg.waiters {
            for &m in &cfg.wait_in {
                limits::check(w, m, d)?;
            }
        }
    }
    Ok(())
}

/// Runs every point (for each dups count, for each herd size, every wait mechanism in turn, so
/// that the mechanisms of one size are measured close together in time).
pub fn run(cfg: &Config, mut progress: impl FnMut(&str)) -> io::Result<Vec<Point>> {
    validate(cfg)?;
    let total = cfg.dups.len() * cfg.waiters.len() * cfg.wait_in.len();
    let mut points = Vec::with_capacity(total);
    for &dups in &cfg.dups {
        for &waiters in &cfg.waiters {
            for &wait_in in &cfg.wait_in {
                progress(&format!(
                    "[{}/{total}] {waiters} waiters in {wait_in}, {dups} dups",
                    points.len() + 1
                ));
                let spec = HerdSpec { waiters, wait_in, dups };
                match measure(spec, cfg.connects, cfg.warmup) {
                    Ok(p) => points.push(p),
                    // Ctrl-C also kills the waiters (same process group); report the interruption,
                    // not the dead waiter it caused.
                    Err(_) if ioscale_sys::interrupt::requested() => {
                        return Err(io::Error::new(
                            io::ErrorKind::Interrupted,
                            "interrupted (Ctrl-C); every waiter was killed and reaped",
                        ))
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(points)
}

/// The points as a text table.
pub fn table(points: &[Point]) -> String {
    let mut s = format!(
        "{:>7} {:<16} {:>5} {:>11} {:>11} {:>11} {:>10} {:>12} {:>8} {:>8} {:>8}\n",
        "waiters",
        "wait-in",
        "dups",
        "connect p50",
        "connect p99",
        "cpu p50",
        "woken/conn",
        "returns/conn",
        "accepts",
        "EAGAIN",
        "busiest"
    );
    s.push_str(&format!(
        "{:>7} {:<16} {:>5} {:>11} {:>11} {:>11} {:>10} {:>12} {:>8} {:>8} {:>8}\n",
        "", "", "", "µs", "µs", "µs", "", "", "", "accepts", "waiter"
    ));
    for p in points {
        s.push_str(&format!(
            "{:>7} {:<16} {:>5} {:>11.1} {:>11.1} {:>11.1} {:>10.2} {:>12.2} {:>8} {:>8} {:>7.0}%\n",
            p.waiters,
            p.wait_in.name(),
            p.dups,
            p.connect_p50_us,
            p.connect_p99_us,
            p.connect_cpu_p50_us,
            p.woken_per_connect,
            p.returned_per_connect,
            p.counts.accepted,
            p.counts.eagain,
            p.busiest_share * 100.0
        ));
    }
    s
}

/// Installs the Ctrl-C handler for a herd run: `SIGINT` (or `SIGTERM`) only sets a flag; the
/// running herd sees it within ~100 ms, returns an `Interrupted` error, and its `Drop` kills and
/// reaps every waiter.
pub fn install_interrupt_handler() -> io::Result<()> {
    ioscale_sys::interrupt::install()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_micros(50));
        assert_eq!(percentile(&v, 99.0), Duration::from_micros(99));
        assert_eq!(percentile(&v[..1], 99.0), Duration::from_micros(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn utc_now_is_rfc3339_shaped() {
        let s = utc_now();
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.starts_with("20") && s.ends_with('Z') && &s[10..11] == "T", "{s}");
    }

    #[test]
    fn a_bad_plan_is_refused_before_anything_runs() {
        let cfg = Config {
            waiters: vec![],
            wait_in: WaitIn::ALL.to_vec(),
            dups: vec![0],
            connects: 10,
            warmup: 0,
        };
        assert!(validate(&cfg).unwrap_err().to_string().contains("--waiters"));
        let cfg = Config { waiters: vec![4], connects: 0, ..cfg };
        assert!(validate(&cfg).unwrap_err().to_string().contains("--connects 0"));
    }
}
