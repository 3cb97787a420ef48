//! The validated, typed plan of a run: raw arguments become this once ([`crate::cli`]), and the
//! engine works only from it.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, SystemTime};

/// One target URL, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// Where to connect (IPv4 or IPv6).
    pub addr: SocketAddr,
    /// The Host header value.
    pub host: String,
    /// Path and query.
    pub path: String,
    /// Relative weight for the choice among targets.
    pub weight: u32,
    /// `https://`: TLS over the connection (crate::tls).
    pub tls: bool,
}

/// How the active load is offered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Open loop: new sessions (connections) at `rate` per second, `calls` requests each.
    Sessions {
        /// Sessions per second.
        rate: f64,
        /// Requests per session, one after another.
        calls: u32,
    },
    /// Open loop: requests at `rate` per second over `connections` persistent connections.
    RequestRate {
        /// Requests per second.
        rate: f64,
        /// Pool size.
        connections: usize,
    },
    /// Closed loop: `connections` connections each sending its next request on each reply.
    Peak {
        /// Connections.
        connections: usize,
    },
    /// No active load (only background populations).
    None,
}

/// Fixed or Poisson inter-arrival times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Evenly spaced.
    Fixed,
    /// Exponential inter-arrival times (a Poisson process).
    Poisson,
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Targets, chosen round-robin by weight.
    pub targets: Vec<Target>,
    /// The active load.
    pub mode: Mode,
    /// Spacing of arrivals.
    pub arrival: Arrival,
    /// How long the measured part lasts (after the warm-up).
    pub duration: Option<Duration>,
    /// Stop after this many sessions (or requests) have started.
    pub sessions: Option<u64>,
    /// Stop after exactly this many active requests (`-n`), warm-up included: a bound on the
    /// arrivals in the open loops, a budget the connections draw from in the closed loop.
    pub requests: Option<u64>,
    /// Excluded from the statistics.
    pub warmup: Duration,
    /// Inactive connections (incomplete request, reconnect when closed).
    pub inactive: usize,
    /// Idle persistent connections.
    pub idle: usize,
    /// One request every this long per idle connection (jittered ±10%).
    pub idle_period: Duration,
    /// Connect and response timeout.
    pub timeout: Duration,
    /// Source addresses, used round-robin.
    pub sources: Vec<Ipv4Addr>,
    /// The dispatch mechanism the generator runs on.
    pub dispatch: ioscale_dispatch::Mechanism,
    /// Seed of the generator's random numbers (Poisson arrivals, idle phases).
    pub seed: u64,
    /// The request sent (method, headers, body, version, pipelining depth).
    pub request: crate::request::RequestSpec,
    /// What `https://` targets trust (--cacert, --insecure).
    pub tls: crate::tls::TlsOptions,
    /// This process's share of a run split over several hosts, and its shared start instant.
    pub segment: Segment,
    /// When the warm-up starts counting.
    pub warmup_from: WarmupFrom,
    /// Write the run's events (held, window_start, window_end) to stderr as they happen.
    pub events: bool,
    /// The status codes the replies should have (`--expect`; default 2xx and 3xx).
    pub expect: crate::expect::Expect,
    /// Generator threads (`--threads`), each its own event loop on its own core.
    pub threads: usize,
}

/// When the warm-up starts counting (`--warmup-from`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WarmupFrom {
    /// At the start of the run (after `--start-at` with several hosts).
    #[default]
    Start,
    /// When every held (idle, inactive) connection is first established at once, or, if they
    /// are not all up by [`Plan::held_bound`], then (and the run is INVALID if they come up
    /// only after measuring began).
    Held,
}

impl Plan {
    /// How long a run with `--warmup-from held` waits for its held connections before it starts
    /// the warm-up anyway: 5 s plus 1 s per 1,000 held connections (opening one takes well
    /// under a millisecond on this machine, even against a busy server).
    pub fn held_bound(&self) -> Duration {
        Duration::from_secs(5) + Duration::from_millis(self.held() as u64)
    }
}

pub use crate::error::PlanError;

/// Parses a target URL, `http://HOST[:PORT]/PATH` or `https://...` (optionally `URL@WEIGHT`),
/// through the `url` crate (WHATWG parsing): IPv4 and IPv6 literals (`http://[::1]:8080/`),
/// names (an IPv4 address preferred when a name has both), default ports, the path and query
/// as sent (spaces percent-encoded); user information is refused and a fragment dropped.
pub fn parse_target(s: &str) -> Result<Target, PlanError> {
    let (given, weight) = match s.rsplit_once('@') {
        Some((u, w)) if !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit() || b == b'-') => {
            let w: u32 = w.parse().ok().filter(|w| *w > 0).ok_or_else(|| {
                PlanError(format!(
                    "invalid weight '{w}' in '{s}': expected a positive integer after '@'"
                ))
            })?;
            (u, w)
        }
        _ => (s, 1),
    };
    let expected = "expected http://HOST:PORT/PATH or https://HOST:PORT/PATH";
    let u = url::Url::parse(given).map_err(|e| {
        PlanError(match e {
            url::ParseError::InvalidPort => {
                format!("invalid port in '{given}': expected 1-65535")
            }
            e => format!("invalid URL '{given}': {e}; {expected}"),
        })
    })?;
    let tls = match u.scheme() {
        "http" => false,
        "https" => true,
        _ => return Err(PlanError(format!("invalid URL '{given}': {expected}"))),
    };
    if !u.username().is_empty() || u.password().is_some() {
        return Err(PlanError(format!(
            "invalid URL '{given}': user information (USER:PASSWORD@) is not sent; give credentials as a header, e.g. -H 'Authorization: Basic ...'"
        )));
    }
    let port = u.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
    if port == 0 {
        return Err(PlanError(format!("invalid port '0' in '{given}': expected 1-65535")));
    }
    let addr = match u.host() {
        Some(url::Host::Ipv4(ip)) => SocketAddr::new(ip.into(), port),
        Some(url::Host::Ipv6(ip)) => SocketAddr::new(ip.into(), port),
        Some(url::Host::Domain(name)) if !name.is_empty() => {
            let all: Vec<SocketAddr> = (name, port)
                .to_socket_addrs()
                .map_err(|e| PlanError(format!("cannot resolve '{name}' in '{given}': {e}")))?
                .collect();
            all.iter()
                .find(|a| a.is_ipv4())
                .or(all.first())
                .copied()
                .ok_or_else(|| PlanError(format!("'{name}' in '{given}' has no address")))?
        }
        _ => return Err(PlanError(format!("invalid URL '{given}': no host; {expected}"))),
    };
    let host_str = u.host_str().unwrap_or_default();
    let host = match u.port() {
        Some(p) => format!("{host_str}:{p}"),
        None => host_str.to_string(),
    };
    let path = &u[url::Position::BeforePath..url::Position::AfterQuery];
    Ok(Target {
        url: given.to_string(),
        addr,
        host,
        path: if path.is_empty() { "/".into() } else { path.to_string() },
        weight,
        tls,
    })
}

/// Parses `--source-addrs`: a count N (127.0.0.1 … 127.0.0.N) or a comma list of 127/8
/// addresses.
pub fn parse_sources(s: &str) -> Result<Vec<Ipv4Addr>, PlanError> {
    if let Ok(n) = s.parse::<u32>() {
        if !(1..=254).contains(&n) {
            return Err(PlanError(format!("invalid --source-addrs '{s}': expected a count from 1 to 254 or a list of 127.x.y.z addresses")));
        }
        return Ok((1..=n).map(|i| Ipv4Addr::new(127, 0, 0, i as u8)).collect());
    }
    let ips = ioscale_flags::ipv4_list(s).map_err(|e| PlanError(e.to_string()))?;
    if let Some(ip) = ips.iter().find(|ip| ip.octets()[0] != 127) {
        return Err(PlanError(format!(
            "source address '{ip}' is not in 127.0.0.0/8: the generator only loads this machine's loopback"
        )));
    }
    Ok(ips)
}

impl Plan {
    /// Checks the plan as a whole.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.targets.is_empty() {
            return Err(PlanError("no target: give at least one http://HOST:PORT/PATH".into()));
        }
        if self.duration.is_none() && self.sessions.is_none() && self.requests.is_none() {
            return Err(PlanError(
                "the run has no bound: give --duration (-d), --requests (-n) or --sessions".into(),
            ));
        }
        if let Some(n) = self.requests {
            if n == 0 {
                return Err(PlanError("invalid --requests '0': expected at least 1".into()));
            }
            match self.mode {
                Mode::None => {
                    return Err(PlanError(
                        "--requests counts the active load's requests: give --rate, --request-rate or --peak"
                            .into(),
                    ))
                }
                Mode::Sessions { calls, .. } if calls > 1 => {
                    return Err(PlanError(format!(
                        "--requests with --calls {calls} cannot stop at exactly {n}: the last sessions' later calls fall after the window; give --sessions {} instead, or --calls 1",
                        n.div_ceil(u64::from(calls))
                    )))
                }
                _ => {}
            }
        }
        if let Mode::Peak { connections } | Mode::RequestRate { connections, .. } = self.mode {
            if connections == 0 {
                return Err(PlanError("--connections must be at least 1".into()));
            }
        }
        if let Mode::Sessions { rate, .. } | Mode::RequestRate { rate, .. } = self.mode {
            if !(rate > 0.0 && rate.is_finite() && rate <= 10_000_000.0) {
                return Err(PlanError(format!(
                    "invalid rate '{rate}': expected a positive number up to 10000000 per second"
                )));
            }
        }
        let held = self.inactive
            + self.idle
            + match self.mode {
                Mode::Peak { connections } | Mode::RequestRate { connections, .. } => connections,
                _ => 0,
            };
        if held > 19_500 {
            return Err(PlanError(format!(
                "{held} held connections exceed what one process may open here (about 19,500 of its 20,000 descriptors)"
            )));
        }
        if self.timeout.is_zero() {
            return Err(PlanError("the timeout must be longer than 0".into()));
        }
        if !(1..=MAX_THREADS).contains(&self.threads) {
            return Err(PlanError(format!(
                "invalid --threads '{}': expected 1 to {MAX_THREADS} or auto",
                self.threads
            )));
        }
        if let Mode::Peak { connections } | Mode::RequestRate { connections, .. } = self.mode {
            if connections < self.threads {
                return Err(PlanError(format!(
                    "--connections {connections} cannot be split over {} threads: each needs at least one",
                    self.threads
                )));
            }
        }
        if self.idle > 0 && self.idle_period.is_zero() {
            return Err(PlanError("--idle-period must be longer than 0".into()));
        }
        Ok(())
    }

    /// The source addresses connections come from, round-robin: `--source-addrs`, or, when it
    /// is not given and every target is on loopback, [`DEFAULT_LOOPBACK_SOURCES`] addresses
    /// 127.0.0.1, 127.0.0.2, ... — several client addresses, as the papers used several client
    /// machines, so that the connections an overloaded server leaves pending and the
    /// generator's own TIME_WAIT do not exhaust one address's ~28,000 ephemeral ports. Empty:
    /// the system chooses (a target off loopback).
    pub fn source_addrs(&self) -> Vec<Ipv4Addr> {
        if !self.sources.is_empty() {
            return self.sources.clone();
        }
        if self.targets.iter().all(|t| t.addr.is_ipv4() && t.addr.ip().is_loopback()) {
            return (1..=DEFAULT_LOOPBACK_SOURCES).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
        }
        Vec::new()
    }

    /// How many open-loop arrivals the run starts at most (global, over every segment):
    /// `--sessions`, and `--requests` (one request per arrival: `--calls 1`). None: no such
    /// bound (the closed loop counts `--requests` itself).
    pub fn arrival_bound(&self) -> Option<u64> {
        let from_requests = match self.mode {
            Mode::Sessions { .. } | Mode::RequestRate { .. } => self.requests,
            _ => None,
        };
        match (self.sessions, from_requests) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Connections the plan holds open for its whole length.
    pub fn held(&self) -> usize {
        self.inactive + self.idle
    }
}

/// The most generator threads a run may have.
pub const MAX_THREADS: usize = 256;

/// Parses `--threads`: a count, or `auto` (the CPUs this process may run on).
pub fn parse_threads(s: &str) -> Result<usize, PlanError> {
    if s == "auto" {
        return Ok(crate::sys::allowed_cpus().len().max(1));
    }
    s.parse::<usize>().ok().filter(|n| (1..=MAX_THREADS).contains(n)).ok_or_else(|| {
        PlanError(format!("invalid --threads '{s}': expected 1 to {MAX_THREADS} or auto"))
    })
}

/// How many loopback source addresses a run uses when `--source-addrs` is not given.
pub const DEFAULT_LOOPBACK_SOURCES: u8 = 4;

/// One process's share of a multi-host run (`--segment I/N`, `--start-at T`): the `index`-th
/// (0-based here, 1-based on the command line) of `count` interleaved slices of one global
/// arrival plan, started at a wall-clock instant shared by every host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Which slice, 0-based (`--segment 1/3` is index 0).
    pub index: u64,
    /// How many slices the global plan is split into.
    pub count: u64,
    /// When the arrival clock starts (wall clock); `None`: as soon as the run is set up.
    pub start_at: Option<SystemTime>,
}

impl Default for Segment {
    fn default() -> Self {
        Segment { index: 0, count: 1, start_at: None }
    }
}

/// Parses `--segment I/N`: 1-based, `1 <= I <= N <= 10000`.
pub fn parse_segment(s: &str) -> Result<(u64, u64), PlanError> {
    let bad = || {
        PlanError(format!(
            "invalid --segment '{s}': expected I/N with 1 <= I <= N <= 10000 (e.g. 2/3, the second of three hosts)"
        ))
    };
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let i: u64 = i.trim().parse().map_err(|_| bad())?;
    let n: u64 = n.trim().parse().map_err(|_| bad())?;
    if i == 0 || i > n || n > 10_000 {
        return Err(bad());
    }
    Ok((i - 1, n))
}

/// Parses `--start-at`: unix seconds with an optional fraction (`1763884800.25`) or an RFC 3339
/// UTC instant (`2026-11-23T08:00:00.250Z`).
pub fn parse_start_at(s: &str) -> Result<SystemTime, PlanError> {
    let bad = || {
        PlanError(format!(
            "invalid --start-at '{s}': expected unix seconds (e.g. 1763884800.25) or an RFC 3339 UTC instant (e.g. 2026-11-23T08:00:00.25Z)"
        ))
    };
    if let Ok(secs) = s.trim().parse::<f64>() {
        if !(secs.is_finite() && secs > 0.0 && secs < 1e11) {
            return Err(bad());
        }
        return Ok(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs));
    }
    humantime::parse_rfc3339(s.trim()).map_err(|_| bad())
}

/// Splits `total` over `count` parts so that they add up exactly: the first `total % count`
/// parts take one more.
pub fn share(total: usize, index: u64, count: u64) -> usize {
    let (q, r) = (total as u64 / count, total as u64 % count);
    (q + u64::from(index < r)) as usize
}

impl Plan {
    /// The plan of slice `index` (0-based) of `count`: arrivals are taken by global index
    /// (`index`, `index + count`, ...) from the one global schedule (see [`Schedule`]); the
    /// idle, inactive and pool connections are divided so that the slices add up exactly,
    /// remainders going to the first slices. A `--sessions` bound stays global.
    pub fn segment(&self, index: u64, count: u64) -> Result<Plan, PlanError> {
        if count == 0 || index >= count {
            return Err(PlanError(format!(
                "invalid segment {}/{count}: expected 1 <= I <= N",
                index + 1
            )));
        }
        let mut p = self.clone();
        p.idle = share(self.idle, index, count);
        p.inactive = share(self.inactive, index, count);
        p.mode = match self.mode {
            Mode::Peak { connections } | Mode::RequestRate { connections, .. }
                if (connections as u64) < count =>
            {
                return Err(PlanError(format!(
                    "--connections {connections} cannot be split over {count} hosts: each needs at least one"
                )));
            }
            Mode::Peak { connections } => {
                // The closed loop's request budget is divided like its connections.
                p.requests = self.requests.map(|n| share(n as usize, index, count) as u64);
                Mode::Peak { connections: share(connections, index, count) }
            }
            Mode::RequestRate { rate, connections } => {
                Mode::RequestRate { rate, connections: share(connections, index, count) }
            }
            m => m,
        };
        p.segment = Segment { index, count, start_at: self.segment.start_at };
        Ok(p)
    }

    /// Thread `j`'s plan of `threads`: its slice of this process's arrivals — global arrival
    /// indices interleaved, slice `segment.index + j * segment.count` of
    /// `segment.count * threads`, so the offered rate and its spacing stay those asked for —
    /// and its share of the idle, inactive and pool connections and of a closed loop's
    /// `--requests` (remainders to the first threads).
    pub fn thread_plan(&self, j: usize, threads: usize) -> Result<Plan, PlanError> {
        if threads <= 1 {
            return Ok(self.clone());
        }
        let t = threads as u64;
        let mut p = self.clone();
        p.idle = share(self.idle, j as u64, t);
        p.inactive = share(self.inactive, j as u64, t);
        p.mode = match self.mode {
            Mode::Peak { connections } | Mode::RequestRate { connections, .. }
                if connections < threads =>
            {
                return Err(PlanError(format!(
                    "--connections {connections} cannot be split over {threads} threads: each needs at least one"
                )));
            }
            Mode::Peak { connections } => {
                p.requests = self.requests.map(|n| share(n as usize, j as u64, t) as u64);
                Mode::Peak { connections: share(connections, j as u64, t) }
            }
            Mode::RequestRate { rate, connections } => {
                Mode::RequestRate { rate, connections: share(connections, j as u64, t) }
            }
            m => m,
        };
        p.segment.index = self.segment.index + j as u64 * self.segment.count;
        p.segment.count = self.segment.count * t;
        p.threads = 1;
        Ok(p)
    }

    /// This process's share of the planned open-loop rate (the global rate / segment count).
    pub fn segment_rate(&self) -> f64 {
        match self.mode {
            Mode::Sessions { rate, .. } | Mode::RequestRate { rate, .. } => {
                rate / self.segment.count as f64
            }
            _ => 0.0,
        }
    }
}

/// The global open-loop arrival schedule, of which this process takes its segment's arrivals.
///
/// Arrival `k` of the global plan is due `t_k` ns after the start (`t_0 = 0`), spaced evenly or
/// by exponential gaps drawn from a generator seeded by `--seed` alone, so that every host draws
/// the same global stream; segment `i` of `n` takes the arrivals with `k % n == i`. The union of
/// the `n` segments is therefore exactly the one-host plan.
#[derive(Clone, Debug)]
pub struct Schedule {
    gap_ns: f64,
    poisson: bool,
    rng: u64,
    at: f64,
    index: u64,
    seg: u64,
    of: u64,
}

impl Schedule {
    /// The schedule of `plan` at `rate` arrivals per second (global), positioned on this
    /// segment's first arrival.
    pub fn new(plan: &Plan, rate: f64) -> Schedule {
        let mut s = Schedule {
            gap_ns: if rate > 0.0 { 1e9 / rate } else { 0.0 },
            poisson: plan.arrival == Arrival::Poisson,
            rng: plan.seed | 1,
            at: 0.0,
            index: 0,
            seg: plan.segment.index,
            of: plan.segment.count.max(1),
        };
        while s.index % s.of != s.seg {
            s.step();
        }
        s
    }

    fn step(&mut self) {
        self.index += 1;
        self.at += if self.poisson {
            // xorshift64: the same sequence on every host for the same seed.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let u = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
            -self.gap_ns * (1.0 - u).ln()
        } else {
            self.gap_ns
        };
    }

    /// When this segment's next arrival is due, ns after the start.
    pub fn at(&self) -> f64 {
        self.at
    }

    /// Its index in the global plan (also: how many global arrivals come before it).
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Moves to this segment's next arrival.
    pub fn advance(&mut self) {
        self.step();
        while self.index % self.of != self.seg {
            self.step();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(mode: Mode, arrival: Arrival) -> Plan {
        Plan {
            targets: vec![parse_target("http://127.0.0.1:80/").unwrap()],
            mode,
            arrival,
            duration: Some(Duration::from_secs(1)),
            sessions: None,
            requests: None,
            warmup: Duration::ZERO,
            inactive: 10,
            idle: 7,
            idle_period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            sources: vec![],
            dispatch: ioscale_dispatch::Mechanism::Epoll,
            seed: 42,
            request: Default::default(),
            tls: Default::default(),
            segment: Segment::default(),
            warmup_from: WarmupFrom::Start,
            events: false,
            expect: Default::default(),
            threads: 1,
        }
    }

    #[test]
    fn segments_are_an_exact_interleaved_partition_of_the_plan() {
        for arrival in [Arrival::Fixed, Arrival::Poisson] {
            let whole = plan(Mode::RequestRate { rate: 1000.0, connections: 8 }, arrival);
            let mut global = Schedule::new(&whole, 1000.0);
            let one: Vec<(u64, f64)> = (0..300)
                .map(|_| {
                    let v = (global.index(), global.at());
                    global.advance();
                    v
                })
                .collect();
            let mut union = Vec::new();
            let (mut idle, mut inactive, mut conns) = (0, 0, 0);
            for i in 0..3 {
                let p = whole.segment(i, 3).unwrap();
                idle += p.idle;
                inactive += p.inactive;
                if let Mode::RequestRate { connections, .. } = p.mode {
                    conns += connections;
                }
                assert!((p.segment_rate() - 1000.0 / 3.0).abs() < 1e-9);
                let mut s = Schedule::new(&p, 1000.0);
                while s.index() < 300 {
                    assert_eq!(s.index() % 3, i);
                    union.push((s.index(), s.at()));
                    s.advance();
                }
            }
            union.sort_by_key(|a| a.0);
            assert_eq!(union, one, "{arrival:?}");
            assert_eq!((idle, inactive, conns), (7, 10, 8));
        }
        assert_eq!([share(7, 0, 3), share(7, 1, 3), share(7, 2, 3)], [3, 2, 2]);
        let p = plan(Mode::Peak { connections: 2 }, Arrival::Fixed);
        assert!(p.segment(0, 3).unwrap_err().0.contains("cannot be split over 3 hosts"));
    }

    #[test]
    fn segment_and_start_at_arguments() {
        assert_eq!(parse_segment("1/3").unwrap(), (0, 3));
        assert_eq!(parse_segment("3/3").unwrap(), (2, 3));
        for bad in ["0/3", "4/3", "x", "1/0", "2"] {
            assert!(parse_segment(bad).unwrap_err().0.contains("expected I/N"), "{bad}");
        }
        let t = parse_start_at("1763884800.25").unwrap();
        assert_eq!(t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis(), 1763884800250);
        assert_eq!(parse_start_at("2025-11-23T08:00:00.25Z").unwrap(), t);
        assert!(parse_start_at("tomorrow").unwrap_err().0.contains("RFC 3339"));
    }

    #[test]
    fn threads_take_interleaved_slices_and_divide_the_populations() {
        let mut whole = plan(Mode::RequestRate { rate: 900.0, connections: 7 }, Arrival::Poisson);
        whole.requests = None;
        let seg = whole.segment(1, 2).unwrap();
        let mut global = Schedule::new(&whole, 900.0);
        let mut mine = Vec::new();
        for _ in 0..400 {
            if global.index() % 2 == 1 {
                mine.push(global.index());
            }
            global.advance();
        }
        let mut got = Vec::new();
        let mut total = (0, 0, 0);
        for j in 0..3 {
            let t = seg.thread_plan(j, 3).unwrap();
            assert_eq!(t.segment_rate(), 150.0);
            let Mode::RequestRate { connections, .. } = t.mode else { panic!() };
            total = (total.0 + t.idle, total.1 + t.inactive, total.2 + connections);
            let mut s = Schedule::new(&t, 900.0);
            while s.index() < 400 {
                got.push(s.index());
                s.advance();
            }
        }
        got.sort();
        assert_eq!(got, mine, "the threads' arrivals are exactly the segment's");
        let Mode::RequestRate { connections, .. } = seg.mode else { panic!() };
        assert_eq!(total, (seg.idle, seg.inactive, connections));
        assert!(seg.thread_plan(0, 8).unwrap_err().0.contains("cannot be split over 8 threads"));
    }

    #[test]
    fn requests_bound() {
        let mut p = plan(Mode::Peak { connections: 5 }, Arrival::Fixed);
        p.duration = None;
        p.requests = Some(10);
        assert!(p.validate().is_ok());
        assert_eq!(p.arrival_bound(), None, "the closed loop counts its own budget");
        let shares: Vec<u64> = (0..3).map(|i| p.segment(i, 3).unwrap().requests.unwrap()).collect();
        assert_eq!(shares, [4, 3, 3]);
        p.mode = Mode::RequestRate { rate: 10.0, connections: 5 };
        assert_eq!(p.arrival_bound(), Some(10));
        p.sessions = Some(4);
        assert_eq!(p.arrival_bound(), Some(4));
        p.mode = Mode::Sessions { rate: 10.0, calls: 2 };
        assert!(p.validate().unwrap_err().0.contains("--sessions 5 instead"));
        p.mode = Mode::None;
        assert!(p.validate().unwrap_err().0.contains("--requests counts the active load"));
        p.mode = Mode::Peak { connections: 5 };
        p.requests = Some(0);
        assert!(p.validate().unwrap_err().0.contains("invalid --requests '0'"));
    }

    #[test]
    fn urls() {
        let t = parse_target("http://127.0.0.1:8080/a/b?c=1").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!((t.path.as_str(), t.host.as_str(), t.weight), ("/a/b?c=1", "127.0.0.1:8080", 1));
        assert_eq!(parse_target("http://127.0.0.1:81@3").unwrap().weight, 3);
        assert_eq!(parse_target("http://127.0.0.1:81").unwrap().path, "/");
        assert!(parse_target("ftp://x/").unwrap_err().0.contains("expected http://HOST:PORT/PATH"));
        assert!(parse_target("http://127.0.0.1:0/").unwrap_err().0.contains("invalid port '0'"));
        assert!(parse_target("http://127.0.0.1:99999/").unwrap_err().0.contains("1-65535"));
        let t = parse_target("http://[::1]:8080/x y?q#frag@2").unwrap();
        assert_eq!(t.addr, "[::1]:8080".parse().unwrap());
        assert_eq!((t.host.as_str(), t.path.as_str(), t.weight), ("[::1]:8080", "/x%20y?q", 2));
        assert_eq!(parse_target("http://[::1]/").unwrap().host, "[::1]");
        assert_eq!(parse_target("http://127.0.0.1:80/").unwrap().host, "127.0.0.1");
        for bad in ["http://user:pw@127.0.0.1:81/", "http://user@127.0.0.1/"] {
            let e = parse_target(bad).unwrap_err().0;
            assert!(e.contains("user information"), "{bad}: {e}");
        }
        let e = parse_target("http://[::1/").unwrap_err().0;
        assert!(e.starts_with("invalid URL 'http://[::1/'") && !e.contains('\n'), "{e}");
        assert!(parse_target("http://127.0.0.1:81/@0").unwrap_err().0.contains("invalid weight"));
    }

    #[test]
    fn sources() {
        assert_eq!(parse_sources("3").unwrap().len(), 3);
        assert_eq!(parse_sources("127.0.0.5,127.0.0.6").unwrap()[1], Ipv4Addr::new(127, 0, 0, 6));
        assert!(parse_sources("10.0.0.1").unwrap_err().0.contains("not in 127.0.0.0/8"));
        assert!(parse_sources("0").is_err());
    }
}
