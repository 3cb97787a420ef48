//! The generator's engine: one event loop per thread, each on its own dispatcher
//! (ioscale-dispatch, epoll by default), every connection a small state machine.
//!
//! Arrivals follow the schedule whatever the server does (open loop); the latency of a request
//! is measured from the time the schedule *intended* to send it (wrk2's correction for
//! coordinated omission) and, apart, from the time it was actually sent. How late the loop
//! started each arrival is the schedule lag: when it grows, the generator was the bottleneck and
//! the run says INVALID instead of reporting the server's figures.
//!
//! | file | role |
//! | --- | --- |
//! | `mod.rs` | a run: checks before it, the threads, what they share, their parts merged into one record ([`crate::report`]) |
//! | `conn.rs` | the connection state machine: connect, TLS, write, read, reply, close, fail |
//! | `event_loop.rs` | one thread's loop: window and phases, arrivals, timers, waiting for events |
//! | `output.rs` | the live outputs (progress line, series file, HdrHistogram log) fed by every thread |

mod conn;
mod event_loop;
mod output;

use crate::hdrlog::HdrLog;
use crate::plan::Plan;
use crate::report::{self, Part, Report};
use crate::sys;
use crate::tls::Tls;
use conn::{Conn, Pop};
use hdrhistogram::Histogram;
use ioscale_dispatch::Dispatcher;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

pub use output::EVENT;

use crate::stats::{ErrorKind, PopStats};

/// Runs the plan. `progress` is called about once a second with the elapsed seconds and a line
/// of text; `series` gets one JSON line per second of the measured window.
pub fn run(
    plan: &Plan,
    progress: impl FnMut(f64, &str),
    series: Option<&mut dyn Write>,
) -> io::Result<Report> {
    run_with_log(plan, progress, series, None)
}

/// [`run`], also writing per-interval latency histograms to an HdrHistogram interval log.
pub fn run_with_log(
    plan: &Plan,
    progress: impl FnMut(f64, &str),
    series: Option<&mut dyn Write>,
    mut hdr: Option<&mut HdrLog>,
) -> io::Result<Report> {
    let prep = prepare(plan)?;
    let threads = plan.threads.max(1);
    let plans = (0..threads)
        .map(|j| plan.thread_plan(j, threads))
        .collect::<Result<Vec<Plan>, _>>()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.0))?;
    let cpus = sys::allowed_cpus();
    let shared = Shared::new(plan, threads);
    if let Some(h) = hdr.as_deref_mut() {
        let start = SystemTime::now() - shared.t0.elapsed();
        h.begin(start, &format!("ioscale load {}: response times in microseconds; untagged: active from the intended send time, Tag=actual: from the actual send time, Tag=idle: idle population", env!("CARGO_PKG_VERSION")));
    }
    let hdr_interval = hdr.as_ref().map(|h| ns(h.interval).max(1_000_000));
    let with_series = series.is_some();
    let cpu0 = sys::cpu_time()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let parts: Vec<io::Result<Part>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..shared.threads)
            .map(|i| {
                let (tx, shared, prep, plan) = (tx.clone(), &shared, &prep, &plans[i]);
                // Each thread on a core of its own (in the order this process may use them).
                let cpu = (threads > 1 && !cpus.is_empty()).then(|| cpus[i % cpus.len()]);
                s.spawn(move || -> io::Result<Part> {
                    if let Some(c) = cpu {
                        sys::pin_thread(c);
                    }
                    let mut e = Engine::new(plan, shared, prep, i, hdr_interval, with_series)?;
                    e.run(&output::Sink::new(i, tx))
                })
            })
            .collect();
        drop(tx);
        output::collect(rx, shared.threads, progress, series, hdr, plan.idle > 0);
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| Err(io::Error::other("a generator thread panicked")))
            })
            .collect()
    });
    let parts = parts.into_iter().collect::<io::Result<Vec<Part>>>()?;
    let wall = shared.t0.elapsed();
    let cpu = sys::cpu_time()? - cpu0;
    let mut report = report::finish(plan, &parts, wall, cpu);
    if plan.segment.count > 1 || plan.segment.start_at.is_some() {
        let started = parts.iter().map(|p| p.seg_start).max().flatten();
        crate::segment::annotate_segment(&mut report, plan, started);
    }
    Ok(report)
}

/// What the threads of a run read but do not own: the checks' results.
pub(crate) struct Prepared {
    /// https targets: the shared client configuration and each target's server name.
    tls: Option<Tls>,
    names: Vec<Option<rustls::pki_types::ServerName<'static>>>,
    /// This process's descriptor limit.
    nofile: u64,
}

/// The checks before a run: the plan, the descriptor limit, a target that answers (one
/// sentence when nothing listens), and for https targets one blocking handshake each so that a
/// certificate problem is one sentence naming the host and the reason. A connect that times out
/// is no absent target but an overloaded one (its accept queue full, the SYN dropped): the run
/// goes on, says so on stderr, and counts what the server does not accept in time as connect
/// timeouts, as the papers counted a collapsed server.
fn prepare(plan: &Plan) -> io::Result<Prepared> {
    plan.validate().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.0))?;
    sys::install_signals()?;
    let nofile = ioscale_sys::limits::raise_nofile()?;
    let need = plan.held() as u64 + 64;
    if need > nofile {
        return Err(io::Error::other(format!(
            "the plan holds {} connections but this process may open {nofile} descriptors",
            plan.held()
        )));
    }
    match std::net::TcpStream::connect_timeout(&plan.targets[0].addr, Duration::from_secs(3)) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::TimedOut => eprintln!(
            "ioscale load: connecting to {} timed out after 3 s (its accept queue full?): running \
             anyway; connections it does not accept in time count as connect timeouts",
            plan.targets[0].url
        ),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot connect to {}: {e}", plan.targets[0].url),
            ))
        }
    }
    let tls = if plan.targets.iter().any(|t| t.tls) {
        let tls = Tls::new(&plan.tls).map_err(io::Error::other)?;
        for t in plan.targets.iter().filter(|t| t.tls) {
            tls.preflight(&t.url, &t.host, t.addr)?;
        }
        Some(tls)
    } else {
        None
    };
    let mut names = Vec::new();
    for t in &plan.targets {
        names.push(if t.tls {
            Some(Tls::server_name(&t.host).map_err(io::Error::other)?)
        } else {
            None
        });
    }
    Ok(Prepared { tls, names, nofile })
}

/// What the threads of one run share: the clock, and the few facts that must be the same for
/// all of them (when the held populations were all up, where the window starts, which events
/// were already written).
pub(crate) struct Shared {
    /// The run's start; every time in the engine is ns after it.
    t0: Instant,
    /// When the arrival clock starts (ns after t0): 0, or the `--start-at` instant.
    start: u64,
    /// How many threads run.
    threads: usize,
    /// The process's own segment of a multi-host run (each thread's plan holds a finer slice).
    segment: crate::plan::Segment,
    /// Threads whose held populations are all up.
    held: AtomicUsize,
    /// Where the window starts, once placed by `--warmup-from held` (`u64::MAX` until then).
    warm_end: AtomicU64,
    /// Events already written (bits of [`output::EVENT_HELD`] ...).
    written: AtomicU8,
}

impl Shared {
    fn new(plan: &Plan, threads: usize) -> Shared {
        let t0 = Instant::now();
        let start = plan
            .segment
            .start_at
            .map_or(0, |at| ns(at.duration_since(SystemTime::now()).unwrap_or_default()));
        Shared {
            t0,
            start,
            threads,
            segment: plan.segment,
            held: AtomicUsize::new(0),
            warm_end: AtomicU64::new(u64::MAX),
            written: AtomicU8::new(0),
        }
    }

    /// Notes that one thread's held populations are all up; true for the thread whose note
    /// completes the count (it speaks for the run).
    fn held_up(&self) -> bool {
        self.held.fetch_add(1, Ordering::SeqCst) + 1 == self.threads
    }

    /// Whether every thread's held populations are up.
    fn all_held(&self) -> bool {
        self.held.load(Ordering::SeqCst) >= self.threads
    }

    /// Places the window's start at `at` unless a thread placed it already; returns where it is.
    fn place_window(&self, at: u64) -> u64 {
        match self.warm_end.compare_exchange(u64::MAX, at, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => at,
            Err(placed) => placed,
        }
    }

    /// The window's start, if placed.
    fn placed_window(&self) -> Option<u64> {
        Some(self.warm_end.load(Ordering::SeqCst)).filter(|&w| w != u64::MAX)
    }

    /// True for the first thread to report the event `bit`.
    fn first(&self, bit: u8) -> bool {
        self.written.fetch_or(bit, Ordering::SeqCst) & bit == 0
    }
}

pub(crate) fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One thread's generator: its connections, its schedule, its statistics.
struct Engine<'p> {
    plan: &'p Plan,
    shared: &'p Shared,
    d: Box<dyn Dispatcher>,
    slab: Vec<Option<Conn>>,
    free: Vec<usize>,
    gens: Vec<u32>,
    /// Per target: `pipeline` copies of the encoded request back to back (crate::request).
    requests: Vec<Vec<u8>>,
    /// Per target: the length of one request.
    req_len: Vec<usize>,
    /// Requests in flight per connection (--pipeline).
    pipeline: u32,
    /// Whether the method is HEAD (responses have no body).
    head: bool,
    /// https targets: the shared client configuration and each target's server name.
    tls: Option<Tls>,
    names: Vec<Option<rustls::pki_types::ServerName<'static>>>,
    /// Per target: the incomplete request an inactive connection sends.
    incomplete: Vec<Vec<u8>>,
    /// Target indices repeated by weight, taken round-robin.
    wheel: Vec<usize>,
    wheel_pos: usize,
    /// The window: `[warm_end, end)` ns after t0 (`u64::MAX` while not yet placed).
    warm_end: u64,
    end: u64,
    timeout: u64,
    rng: Rng,
    source_i: usize,
    /// Source addresses, used round-robin (empty: the system's choice).
    sources: Vec<std::net::Ipv4Addr>,
    active: PopStats,
    idle: PopStats,
    inactive: PopStats,
    lag: Histogram<u64>,
    /// Active latencies recorded since the last series line (the series' per-second figures).
    tick_latency: Histogram<u64>,
    /// `--hdr-log`: the interval's histograms (None without a log: nothing recorded).
    hdr: Option<Box<crate::hdrlog::IntervalHists>>,
    /// Idle connections' next sends: (when, slot, generation).
    timers: BinaryHeap<std::cmp::Reverse<(u64, usize, u32)>>,
    /// Connect and response deadlines in order: (deadline, slot, generation).
    deadlines: VecDeque<(u64, u32, u32)>,
    /// Held connections to re-open: (not before, population).
    retry: VecDeque<(u64, Pop)>,
    /// While re-opening held connections fails, one attempt per 100 ms: not before this time
    /// (0: not failing).
    retry_gate: u64,
    /// Request-rate arrivals waiting for a free pool connection (their intended times).
    queue: VecDeque<u64>,
    /// Pool connections with room for another request.
    pool_free: Vec<usize>,
    /// When the arrival clock starts (ns after t0): 0, or the --start-at instant.
    start: u64,
    started_in_window: u64,
    scheduling: bool,
    /// The closed loop's `--requests`: how many more it may send (`u64::MAX`: no bound); the
    /// run ends when it reaches 0.
    budget: u64,
    open: usize,
    /// Active connections open, and how many the descriptor budget allows (the process's
    /// limit less the held populations and a margin, shared out between the threads): an
    /// arrival beyond it is counted as "fd unavailable" at once, as httperf's fd-unavail,
    /// without a system call.
    open_active: usize,
    active_budget: usize,
    /// The open-loop arrival schedule.
    arr: event_loop::Arrivals,
    /// The loop's own state (phases, ticks, intervals).
    lp: event_loop::LoopState,
    level: bool,
    oneshot: bool,
}

impl Engine<'_> {
    fn now(&self) -> u64 {
        ns(self.shared.t0.elapsed())
    }

    fn in_window(&self, t: u64) -> bool {
        t >= self.warm_end && t < self.end
    }

    fn stats(&mut self, pop: Pop) -> &mut PopStats {
        match pop {
            Pop::Active => &mut self.active,
            Pop::Idle => &mut self.idle,
            Pop::Inactive => &mut self.inactive,
        }
    }

    fn pick_target(&mut self) -> usize {
        let i = self.wheel[self.wheel_pos % self.wheel.len()];
        self.wheel_pos += 1;
        i
    }

    /// Counts `n` errors of `kind` for `pop`: in the population's totals when `counted` (the
    /// request or connection belongs to the window), and in the per-second series by when they
    /// happened (any error inside the window, whatever it belongs to: the server's figure for
    /// that second).
    fn count_error(&mut self, pop: Pop, kind: ErrorKind, n: u32, counted: bool) {
        let now = self.now();
        let second = self.window_second(now);
        let s = self.stats(pop);
        if counted {
            for _ in 0..n {
                s.error(kind);
            }
        }
        if let Some(i) = second {
            s.error_at(i, u64::from(n));
        }
    }

    /// The second of the measured window `t` falls in.
    fn window_second(&self, t: u64) -> Option<usize> {
        self.in_window(t).then(|| ((t - self.warm_end) / 1_000_000_000) as usize)
    }

    /// Whether connections of `pop` are held (re-opened when they end): idle, inactive, and the
    /// active pool of the request-rate and peak modes.
    fn held(&self, pop: Pop) -> bool {
        pop != Pop::Active
            || matches!(
                self.plan.mode,
                crate::plan::Mode::Peak { .. } | crate::plan::Mode::RequestRate { .. }
            )
    }

    /// The gap before an idle connection's next request: the period, jittered ±10%.
    fn idle_gap(&mut self) -> u64 {
        let period = ns(self.plan.idle_period) as f64;
        (period * (0.9 + 0.2 * self.rng.next_f64())) as u64
    }
}
