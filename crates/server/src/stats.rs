//! Counters each worker keeps, the snapshots the lab takes of them, and the JSON the stats
//! endpoint returns.
//!
//! Each worker writes only its own block (single writer: a relaxed load and store, no locked
//! instruction on the request path); any worker reads all blocks to answer `/.ioscale/stats`.
//!
//! **Snapshots** (SIGUSR2, or [`crate::Handle::snapshot`]): a request gets the next sequence
//! number and wakes every worker; each worker, at the top of its next loop pass (one relaxed
//! load and compare per pass, nothing per request), copies all its counters with its own
//! `CLOCK_MONOTONIC` time and thread CPU time into the request's record. The last
//! [`SNAPSHOTS_KEPT`] records are listed by `/.ioscale/stats` under `"snapshots"`, per worker and
//! summed, so a measurement can mark the start and end of its window with two signals and read
//! the difference later, however late an overloaded server answers (docs/observability.md).

use ioscale_dispatch::{Counters, ModeSwitch};
use ioscale_http::ErrorKind;
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

/// Server-level failures counted beside the HTTP error kinds.
pub const SERVER_ERRORS: &[&str] = &[
    "timeout_header",
    "timeout_idle",
    "timeout_send",
    "reset",
    "shed_emfile",
    "shed_max_conns",
    "register_failed",
    "accept_failed",
    "unavailable",
    "io",
];

/// Index of a server-level error in [`SERVER_ERRORS`].
#[derive(Copy, Clone, Debug)]
#[allow(missing_docs)]
pub enum ServerError {
    TimeoutHeader = 0,
    TimeoutIdle,
    TimeoutSend,
    Reset,
    ShedEmfile,
    ShedMaxConns,
    RegisterFailed,
    AcceptFailed,
    Unavailable,
    Io,
}

/// One worker's counters.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections closed.
    pub closed: AtomicU64,
    /// Wakeups that reported the listener ready (calls into accept).
    pub listener_notices: AtomicU64,
    /// Listener notices whose first `accept` found nothing (`EAGAIN`): another worker took the
    /// connection — the thundering herd's wasted work, seen from user space.
    pub accept_eagain: AtomicU64,
    /// The worker thread's kernel thread id (for its context-switch counts in /proc).
    pub tid: AtomicU64,
    /// Requests parsed.
    pub requests: AtomicU64,
    /// Responses by status code.
    pub status: StatusCounts,
    /// Bytes read.
    pub bytes_in: AtomicU64,
    /// Bytes sent.
    pub bytes_out: AtomicU64,
    /// HTTP errors by [`ErrorKind::index`].
    pub http_errors: [AtomicU64; 16],
    /// Server errors by [`ServerError`].
    pub server_errors: [AtomicU64; 10],
    /// The dispatcher's counters, copied after each wait.
    pub dispatch: [AtomicU64; 12],
    /// The dispatcher's mode switches (hybrid), copied when their count changes.
    pub switches: Mutex<Vec<ModeSwitch>>,
    /// The completion engine's ring counters ([`COMPLETION_NAMES`]), copied after each wait,
    /// and its count of short sends (sends finished by sending the rest again).
    pub completion: [AtomicU64; 6],
    /// Requests by duration ([`DURATION_BOUNDS`]; the last slot is above the last bound), each
    /// counted once its response is written ([`WorkerStats::observe_ticks`],
    /// [`WorkerStats::observe`]): every slot only grows, so every cumulative bucket does too.
    pub durations: [AtomicU64; DURATION_BOUNDS.len() + 1],
    /// Sum of the durations of requests whose head took several passes, in nanoseconds.
    pub duration_sum_ns: AtomicU64,
    /// Sum of the other requests' durations, in [`crate::sys::ticks`].
    pub duration_sum_ticks: AtomicU64,
    /// Access-log lines written (handed to the kernel).
    pub log_lines: AtomicU64,
    /// Access-log lines lost because a write failed.
    pub log_dropped: AtomicU64,
    /// The last snapshot sequence number this worker has recorded (see [`Shared::poll_snapshot`]).
    pub snap_seen: AtomicU64,
    /// The open-file cache ([`FILES_NAMES`]): entries, descriptors held, descriptor budget,
    /// files opened for one response only, evictions.
    pub files: [AtomicU64; 5],
}

/// The open-file cache's figures in the stats document (`"files"`), in [`WorkerStats::files`]
/// order.
pub const FILES_NAMES: [&str; 5] = ["entries", "open", "budget", "transient_opens", "evicted"];
/// Index of the descriptor budget in [`WorkerStats::files`].
pub const FILES_BUDGET: usize = 2;

/// Lowest status code counted on its own ([`StatusCounts`]).
const STATUS_MIN: u16 = 100;
/// Codes counted: 100 to 599 (anything else would be counted as 599; the server sends none).
const STATUS_SLOTS: usize = 500;

/// Responses by status code: one counter per code from 100 to 599, so counting is one indexed
/// store (no table lookup) and any code the server may send later is counted as itself.
#[derive(Debug)]
pub struct StatusCounts([AtomicU64; STATUS_SLOTS]);

impl Default for StatusCounts {
    fn default() -> Self {
        StatusCounts(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl StatusCounts {
    /// The codes answered at least once and how often, in code order.
    pub fn nonzero(&self) -> Vec<(u16, u64)> {
        (0..STATUS_SLOTS)
            .filter_map(|i| {
                let n = self.0[i].load(Relaxed);
                (n > 0).then(|| (STATUS_MIN + i as u16, n))
            })
            .collect()
    }
}

/// Upper bounds of the request-duration histogram, in nanoseconds (50 µs to 10 s: a cached GET
/// takes tens of microseconds of the server's time, an overloaded one seconds).
///
/// A request's duration runs from the start of the loop pass in which its head was complete
/// (the wait's return; for a head that took several passes, the pass of its first byte) to the
/// moment its response is in the engine's send buffer: the time it spent in the server, queued
/// behind the other connections of its pass included, not the time in the kernel's queues
/// before the wait returned. It is read from a cycle counter ([`crate::sys::ticks`]: one
/// instruction), not a clock call per request.
pub const DURATION_BOUNDS: [u64; 17] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// The completion engine's counters in the stats document (`"completion"`).
pub const COMPLETION_NAMES: [&str; 6] =
    ["submitted", "completions", "enter_calls", "enobufs", "cq_overflows", "short_sends"];

/// Adds `n` to a counter only this thread writes.
#[inline]
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl WorkerStats {
    /// Copies the dispatcher's counters.
    pub fn publish(&self, c: &Counters) {
        let v = [
            c.wait_calls,
            c.events,
            c.interest_syscalls,
            c.signals,
            c.dequeue_calls,
            c.flush_reads,
            c.overflows,
            c.recoveries,
            c.mode_switches,
            c.interrupted,
            c.fallback_scans,
            c.fallback_ns,
        ];
        for (a, v) in self.dispatch.iter().zip(v) {
            a.store(v, Relaxed);
        }
    }

    /// Copies the completion engine's ring counters; the readiness names get their nearest
    /// equivalents (`wait_calls`: `io_uring_enter` calls, `events`: completions, `overflows`:
    /// CQ overflows) so tools that read only those compare the two models.
    pub fn publish_completion(&self, c: &ioscale_dispatch::completion::CompletionCounters) {
        let v = [c.submitted, c.completions, c.enter_calls, c.enobufs, c.cq_overflows];
        for (a, v) in self.completion.iter().zip(v) {
            a.store(v, Relaxed);
        }
        self.dispatch[D_WAIT_CALLS].store(c.enter_calls, Relaxed);
        self.dispatch[D_EVENTS].store(c.completions, Relaxed);
        self.dispatch[D_OVERFLOWS].store(c.cq_overflows, Relaxed);
    }

    /// Copies the open-file cache's counts (the budget is set once, at start).
    pub fn publish_files(&self, c: &crate::files::CacheCounts) {
        let v = [c.entries, c.open, self.files[FILES_BUDGET].load(Relaxed), c.transient, c.evicted];
        for (a, v) in self.files.iter().zip(v) {
            a.store(v, Relaxed);
        }
    }

    /// Counts a server error.
    pub fn error(&self, e: ServerError) {
        bump(&self.server_errors[e as usize], 1);
    }

    /// Counts an HTTP error.
    pub fn http_error(&self, k: ErrorKind) {
        bump(&self.http_errors[k.index()], 1);
    }

    /// Counts the duration of a request whose head arrived over several loop passes, in
    /// nanoseconds.
    #[cold]
    pub fn observe(&self, ns: u64) {
        let i = DURATION_BOUNDS.iter().position(|&b| ns <= b).unwrap_or(DURATION_BOUNDS.len());
        bump(&self.durations[i], 1);
        bump(&self.duration_sum_ns, ns);
    }

    /// Counts the duration of a request answered in the pass its head completed, in
    /// [`crate::sys::ticks`] (`bounds`: [`DURATION_BOUNDS`] in ticks). The common request,
    /// under the first bound, adds to the sum and the first slot only.
    #[inline]
    pub fn observe_ticks(&self, d: u64, bounds: &[u64; DURATION_BOUNDS.len()]) {
        bump(&self.duration_sum_ticks, d);
        if d > bounds[0] {
            self.slower(d, bounds);
        } else {
            bump(&self.durations[0], 1);
        }
    }

    #[cold]
    #[inline(never)]
    fn slower(&self, d: u64, bounds: &[u64; DURATION_BOUNDS.len()]) {
        let i = bounds.iter().position(|&b| d <= b).unwrap_or(DURATION_BOUNDS.len());
        bump(&self.durations[i], 1);
    }

    /// Counts a response by status.
    #[inline]
    pub fn response(&self, code: u16) {
        let i = usize::from(code.saturating_sub(STATUS_MIN)).min(STATUS_SLOTS - 1);
        bump(&self.status.0[i], 1);
    }

    /// Reads every counter (relaxed loads: each is exact, the set is as of "about now"; read
    /// by the worker itself, as a snapshot is, it is exactly as of that moment).
    pub fn counts(&self) -> Counts {
        let load = |a: &[AtomicU64]| -> Vec<u64> { a.iter().map(|x| x.load(Relaxed)).collect() };
        Counts {
            accepted: self.accepted.load(Relaxed),
            closed: self.closed.load(Relaxed),
            listener_notices: self.listener_notices.load(Relaxed),
            accept_eagain: self.accept_eagain.load(Relaxed),
            requests: self.requests.load(Relaxed),
            status: self.status.nonzero(),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            http_errors: load(&self.http_errors),
            server_errors: load(&self.server_errors),
            dispatch: load(&self.dispatch),
            completion: load(&self.completion),
            durations: load(&self.durations),
            duration_sum_ns: self.duration_sum_ns.load(Relaxed),
            duration_sum_ticks: self.duration_sum_ticks.load(Relaxed),
            log_lines: self.log_lines.load(Relaxed),
            log_dropped: self.log_dropped.load(Relaxed),
        }
    }
}

/// Every counter of one worker, or summed over several, as plain numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed.
    pub closed: u64,
    /// Wakeups that reported the listener ready.
    pub listener_notices: u64,
    /// Listener notices whose first `accept` found nothing.
    pub accept_eagain: u64,
    /// Requests parsed.
    pub requests: u64,
    /// Responses by status code (codes with a count above zero, in order).
    pub status: Vec<(u16, u64)>,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// HTTP errors by [`ErrorKind::index`].
    pub http_errors: Vec<u64>,
    /// Server errors by [`ServerError`] ([`SERVER_ERRORS`] order).
    pub server_errors: Vec<u64>,
    /// The dispatcher's counters ([`DISPATCH_NAMES`] order).
    pub dispatch: Vec<u64>,
    /// The completion engine's counters ([`COMPLETION_NAMES`] order).
    pub completion: Vec<u64>,
    /// The duration histogram's slots as kept by the worker ([`WorkerStats::durations`]).
    pub durations: Vec<u64>,
    /// Sum of the durations of requests whose head took several passes, in nanoseconds.
    pub duration_sum_ns: u64,
    /// Sum of the other requests' durations, in [`crate::sys::ticks`].
    pub duration_sum_ticks: u64,
    /// Access-log lines written.
    pub log_lines: u64,
    /// Access-log lines dropped.
    pub log_dropped: u64,
}

fn add_into(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.wrapping_add(*y);
    }
}

impl Counts {
    /// Adds `o` to these counts.
    pub fn add(&mut self, o: &Counts) {
        self.accepted += o.accepted;
        self.closed += o.closed;
        self.listener_notices += o.listener_notices;
        self.accept_eagain += o.accept_eagain;
        self.requests += o.requests;
        for &(code, n) in &o.status {
            match self.status.binary_search_by_key(&code, |s| s.0) {
                Ok(i) => self.status[i].1 += n,
                Err(i) => self.status.insert(i, (code, n)),
            }
        }
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        add_into(&mut self.http_errors, &o.http_errors);
        add_into(&mut self.server_errors, &o.server_errors);
        add_into(&mut self.dispatch, &o.dispatch);
        add_into(&mut self.completion, &o.completion);
        add_into(&mut self.durations, &o.durations);
        self.duration_sum_ns += o.duration_sum_ns;
        self.duration_sum_ticks += o.duration_sum_ticks;
        self.log_lines += o.log_lines;
        self.log_dropped += o.log_dropped;
    }

    /// The sum of several.
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a Counts>) -> Counts {
        let mut s = Counts::default();
        for c in all {
            s.add(c);
        }
        s
    }

    /// Responses of the class `c` (2 for 2xx, ...); 1xx are counted with 2xx.
    pub fn class(&self, c: u16) -> u64 {
        self.status.iter().filter(|(code, _)| (code / 100).clamp(2, 5) == c).map(|(_, n)| n).sum()
    }

    /// The duration histogram: for each bound of [`DURATION_BOUNDS`] (in seconds) and then
    /// +Inf, the requests up to it (cumulative), and the sum of all durations in seconds
    /// (`ticks_per_s`: the rate of [`crate::sys::ticks`]). Every request whose response was
    /// written is in it; one still being answered (the scrape's own) is not yet.
    pub fn duration_buckets(&self, ticks_per_s: f64) -> (Vec<(f64, u64)>, f64) {
        let slot = |i: usize| self.durations.get(i).copied().unwrap_or(0);
        let mut cumulative = 0;
        let mut out = Vec::with_capacity(DURATION_BOUNDS.len() + 1);
        for (i, b) in DURATION_BOUNDS.iter().enumerate() {
            cumulative += slot(i);
            out.push((*b as f64 / 1e9, cumulative));
        }
        out.push((f64::INFINITY, cumulative + slot(DURATION_BOUNDS.len())));
        let sum = self.duration_sum_ns as f64 / 1e9 + self.duration_sum_ticks as f64 / ticks_per_s;
        (out, sum)
    }

    /// A dispatcher counter by name ([`DISPATCH_NAMES`]).
    pub fn dispatch(&self, name: &str) -> u64 {
        DISPATCH_NAMES
            .iter()
            .position(|n| *n == name)
            .and_then(|i| self.dispatch.get(i).copied())
            .unwrap_or(0)
    }

    /// The counters as the stats document shows them (`completion`: include the completion
    /// engine's ring counters).
    pub fn json(&self, completion: bool) -> Map<String, Value> {
        let named = |names: &[&str], v: &[u64]| -> Value {
            let m: Map<String, Value> = names
                .iter()
                .zip(v.iter().chain(std::iter::repeat(&0)))
                .map(|(n, v)| ((*n).to_string(), Value::from(*v)))
                .collect();
            Value::Object(m)
        };
        let mut dispatch = named(&DISPATCH_NAMES, &self.dispatch);
        if completion {
            dispatch["completion"] = named(&COMPLETION_NAMES, &self.completion);
        }
        let mut errors = Map::new();
        for k in ErrorKind::ALL {
            errors.insert(k.name().into(), self.http_errors.get(k.index()).copied().into());
        }
        for (i, name) in SERVER_ERRORS.iter().enumerate() {
            errors.insert((*name).into(), self.server_errors.get(i).copied().unwrap_or(0).into());
        }
        let status: Map<String, Value> =
            self.status.iter().map(|(c, n)| (c.to_string(), Value::from(*n))).collect();
        let v = json!({
            "connections": {"accepted": self.accepted, "closed": self.closed},
            "requests": self.requests,
            "responses": {
                "2xx": self.class(2),
                "3xx": self.class(3),
                "4xx": self.class(4),
                "5xx": self.class(5),
            },
            "status": status,
            "bytes": {"in": self.bytes_in, "out": self.bytes_out},
            "access_log": {"lines": self.log_lines, "dropped": self.log_dropped},
            "dispatch": dispatch,
            "errors": errors,
            "herd": {"listener_notices": self.listener_notices, "accept_eagain": self.accept_eagain},
        });
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }
}

/// How many snapshots `/.ioscale/stats` keeps (the oldest is dropped first).
pub const SNAPSHOTS_KEPT: usize = 16;

/// One worker's part of a snapshot.
#[derive(Clone, Debug)]
pub struct WorkerSnapshot {
    /// `CLOCK_MONOTONIC` when the worker copied its counters, in nanoseconds.
    pub taken_ns: u64,
    /// The worker thread's CPU time then (`CLOCK_THREAD_CPUTIME_ID`), in nanoseconds.
    pub cpu_ns: u64,
    /// Its counters.
    pub counts: Counts,
}

/// One snapshot: a sequence number, when it was asked for, and each worker's part once taken.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// 1 for the first snapshot of the process, then 2, 3, ...
    pub seq: u64,
    /// `CLOCK_MONOTONIC` when it was asked for (the signal was taken), in nanoseconds.
    pub requested_ns: u64,
    /// Each worker's part, `None` until that worker has taken it.
    pub workers: Vec<Option<WorkerSnapshot>>,
}

impl Snapshot {
    /// Whether every worker has taken its part.
    pub fn complete(&self) -> bool {
        self.workers.iter().all(Option::is_some)
    }

    /// The counters summed over the workers that have taken their part.
    pub fn sum(&self) -> Counts {
        Counts::sum(self.workers.iter().flatten().map(|w| &w.counts))
    }
}

#[derive(Debug, Default)]
struct SnapshotList {
    /// The last sequence number given out.
    last: u64,
    list: VecDeque<Snapshot>,
}

/// The snapshots asked for and taken (the last [`SNAPSHOTS_KEPT`]).
#[derive(Debug, Default)]
pub struct Snapshots {
    /// The last sequence number given out, read by the workers once per loop pass without the
    /// lock (a hint: what they record is decided under the lock).
    asked: AtomicU64,
    inner: Mutex<SnapshotList>,
}

/// Where `wait_calls`, `events` and `overflows` sit in [`DISPATCH_NAMES`] (the completion engine
/// fills them with its nearest equivalents).
const D_WAIT_CALLS: usize = 0;
const D_EVENTS: usize = 1;
const D_OVERFLOWS: usize = 6;

/// The names of the dispatcher's counters, in [`WorkerStats::dispatch`] order.
pub const DISPATCH_NAMES: [&str; 12] = [
    "wait_calls",
    "events",
    "interest_syscalls",
    "signals",
    "dequeue_calls",
    "flush_reads",
    "overflows",
    "recoveries",
    "mode_switches",
    "interrupted",
    "fallback_scans",
    "fallback_ns",
];

/// Everything the stats endpoint reports, shared by the workers.
#[derive(Debug)]
pub struct Shared {
    /// One block per worker.
    pub workers: Vec<WorkerStats>,
    /// The engine (mechanism) in use.
    pub mechanism: crate::Engine,
    /// When the server started.
    pub started: Instant,
    /// The counter snapshots.
    pub snapshots: Snapshots,
    /// The rate of [`crate::sys::ticks`].
    pub ticks_per_s: f64,
    /// [`DURATION_BOUNDS`] in ticks.
    pub tick_bounds: [u64; DURATION_BOUNDS.len()],
}

impl Shared {
    /// Counters for `workers` workers of `mechanism`, all zero.
    pub fn new(workers: usize, mechanism: crate::Engine) -> Shared {
        let ticks_per_s = crate::sys::ticks_per_second();
        Shared {
            workers: (0..workers).map(|_| WorkerStats::default()).collect(),
            mechanism,
            started: Instant::now(),
            snapshots: Snapshots::default(),
            ticks_per_s,
            tick_bounds: DURATION_BOUNDS.map(|ns| (ns as f64 * ticks_per_s / 1e9) as u64),
        }
    }

    /// The sum over the workers of one counter.
    pub fn sum(&self, f: impl Fn(&WorkerStats) -> &AtomicU64) -> u64 {
        self.workers.iter().map(|w| f(w).load(Relaxed)).sum()
    }

    /// Every worker's counters, summed.
    pub fn counts(&self) -> Counts {
        let all: Vec<Counts> = self.workers.iter().map(WorkerStats::counts).collect();
        Counts::sum(&all)
    }

    /// Asks every worker for a snapshot; returns its sequence number. The caller wakes the
    /// workers (a worker blocked in its wait takes it when it wakes).
    pub fn request_snapshot(&self) -> u64 {
        let Ok(mut g) = self.snapshots.inner.lock() else { return 0 };
        g.last += 1;
        let seq = g.last;
        g.list.push_back(Snapshot {
            seq,
            requested_ns: crate::sys::monotonic_ns(),
            workers: vec![None; self.workers.len()],
        });
        while g.list.len() > SNAPSHOTS_KEPT {
            g.list.pop_front();
        }
        self.snapshots.asked.store(seq, Relaxed);
        seq
    }

    /// Once per loop pass of worker `id` (whose block is `st`): takes its part of any snapshot
    /// asked for since its last one. One relaxed load and compare when there is none.
    #[inline]
    pub fn poll_snapshot(&self, id: usize, st: &WorkerStats) {
        if self.snapshots.asked.load(Relaxed) != st.snap_seen.load(Relaxed) {
            self.take_snapshot(id, st);
        }
    }

    #[cold]
    #[inline(never)]
    fn take_snapshot(&self, id: usize, st: &WorkerStats) {
        let part = WorkerSnapshot {
            taken_ns: crate::sys::monotonic_ns(),
            cpu_ns: crate::sys::thread_cpu_ns(),
            counts: st.counts(),
        };
        let Ok(mut g) = self.snapshots.inner.lock() else { return };
        let seen = st.snap_seen.load(Relaxed);
        // Every snapshot asked for since this worker's last one gets the same part: two
        // signals within one loop pass are two records with the same counters, never a hole.
        for s in g.list.iter_mut().filter(|s| s.seq > seen) {
            if let Some(slot @ None) = s.workers.get_mut(id) {
                *slot = Some(part.clone());
            }
        }
        st.snap_seen.store(g.last, Relaxed);
    }

    /// The snapshots kept, oldest first.
    pub fn snapshot_list(&self) -> Vec<Snapshot> {
        self.snapshots.inner.lock().map(|g| g.list.iter().cloned().collect()).unwrap_or_default()
    }

    /// The `"snapshots"` part of the stats document.
    pub fn snapshots_json(&self) -> Value {
        let completion = self.mechanism.is_completion();
        let list: Vec<Value> = self
            .snapshot_list()
            .iter()
            .map(|s| {
                let taken: Vec<u64> = s.workers.iter().flatten().map(|w| w.taken_ns).collect();
                let mut sum = s.sum().json(completion);
                let cpu: u64 = s.workers.iter().flatten().map(|w| w.cpu_ns).sum();
                sum.insert("cpu_ns".into(), cpu.into());
                let workers: Vec<Value> = s
                    .workers
                    .iter()
                    .enumerate()
                    .map(|(i, w)| match w {
                        None => json!({"worker": i, "taken": false}),
                        Some(w) => {
                            let mut c = w.counts.json(completion);
                            c.insert("cpu_ns".into(), w.cpu_ns.into());
                            json!({"worker": i, "taken": true, "taken_ns": w.taken_ns, "counters": c})
                        }
                    })
                    .collect();
                json!({
                    "seq": s.seq,
                    "requested_ns": s.requested_ns,
                    "complete": s.complete(),
                    "taken_ns": {
                        "first": taken.iter().min(),
                        "last": taken.iter().max(),
                    },
                    "sum": sum,
                    "workers": workers,
                })
            })
            .collect();
        Value::Array(list)
    }

    /// The stats document.
    pub fn json(&self, open: u64) -> Value {
        let completion = self.mechanism.is_completion();
        let all: Vec<Counts> = self.workers.iter().map(WorkerStats::counts).collect();
        let total = Counts::sum(&all);
        let mut doc = total.json(completion);
        let accepted = total.accepted;
        let mut wakeups = 0u64;
        let per_worker: Vec<Value> = self
            .workers
            .iter()
            .zip(&all)
            .map(|(w, c)| {
                let tid = w.tid.load(Relaxed);
                let (voluntary, involuntary) =
                    ioscale_sys::cpu::thread_switches(tid as i32).unwrap_or((0, 0));
                wakeups += voluntary;
                json!({
                    "tid": tid,
                    "accepted": c.accepted,
                    "requests": c.requests,
                    "waits": c.dispatch("wait_calls"),
                    "listener_notices": c.listener_notices,
                    "accept_eagain": c.accept_eagain,
                    "voluntary_switches": voluntary,
                    "involuntary_switches": involuntary,
                })
            })
            .collect();
        let busiest = all.iter().map(|c| c.accepted).max().unwrap_or(0);
        doc["connections"]["open"] = open.into();
        let herd = &mut doc["herd"];
        herd["voluntary_switches"] = wakeups.into();
        herd["busiest_worker_share"] =
            (if accepted == 0 { 0.0 } else { busiest as f64 / accepted as f64 }).into();
        let switches: Vec<Value> = self
            .workers
            .iter()
            .flat_map(|w| w.switches.lock().map(|s| s.clone()).unwrap_or_default())
            .map(|s| json!({"at": s.at.as_secs_f64(), "to": s.to, "reason": s.reason}))
            .collect();
        let u = ioscale_sys::cpu::usage().unwrap_or_default();
        let (user, system) = (u.user, u.system);
        let mut m = Map::new();
        m.insert("server".into(), "ioscale".into());
        m.insert("mechanism".into(), self.mechanism.name().into());
        m.insert("workers".into(), self.workers.len().into());
        m.insert("uptime_s".into(), self.started.elapsed().as_secs_f64().into());
        m.insert("now_ns".into(), crate::sys::monotonic_ns().into());
        m.append(&mut doc);
        m.insert("switches".into(), Value::Array(switches));
        m.insert(
            "cpu".into(),
            json!({
                "process_s": (user + system).as_secs_f64(),
                "user_s": user.as_secs_f64(),
                "system_s": system.as_secs_f64(),
            }),
        );
        let mut files = Map::new();
        for (i, name) in FILES_NAMES.iter().enumerate() {
            files.insert((*name).into(), self.sum(|w| &w.files[i]).into());
        }
        m.insert("files".into(), Value::Object(files));
        m.insert("per_worker".into(), Value::Array(per_worker));
        m.insert("snapshots".into(), self.snapshots_json());
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_completion_engine_fills_the_counters_it_names() {
        assert_eq!(DISPATCH_NAMES[D_WAIT_CALLS], "wait_calls");
        assert_eq!(DISPATCH_NAMES[D_EVENTS], "events");
        assert_eq!(DISPATCH_NAMES[D_OVERFLOWS], "overflows");
    }
}
