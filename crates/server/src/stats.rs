//! Counters each worker keeps and the JSON the stats endpoint returns.
//!
//! Each worker writes only its own block (single writer: a relaxed load and store, no locked
//! instruction on the request path); any worker reads all blocks to answer `/.ioscale/stats`.

use ioscale_dispatch::{Counters, ModeSwitch};
use ioscale_http::ErrorKind;
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
    /// Responses by class: 2xx, 3xx, 4xx, 5xx.
    pub responses: [AtomicU64; 4],
    /// Bytes read.
    pub bytes_in: AtomicU64,
    /// Bytes sent.
    pub bytes_out: AtomicU64,
    /// HTTP errors by [`ErrorKind::index`].
    pub http_errors: [AtomicU64; 16],
    /// Server errors by [`ServerError`].
    pub server_errors: [AtomicU64; 10],
    /// The dispatcher's counters, copied after each wait.
    pub dispatch: [AtomicU64; 9],
    /// The dispatcher's mode switches (hybrid), copied when their count changes.
    pub switches: Mutex<Vec<ModeSwitch>>,
    /// The completion engine's ring counters ([`COMPLETION_NAMES`]), copied after each wait,
    /// and its count of short sends (sends finished by sending the rest again).
    pub completion: [AtomicU64; 6],
    /// Requests by duration ([`DURATION_BOUNDS`]; the last slot is above the last bound).
    /// Slot 0 stays 0: the first bucket is the requests less the other buckets (see
    /// [`WorkerStats::observe`]), so the common request adds nothing here.
    pub durations: [AtomicU64; DURATION_BOUNDS.len() + 1],
    /// Sum of the request durations in nanoseconds.
    pub duration_sum_ns: AtomicU64,
    /// Access-log lines written (handed to the kernel).
    pub log_lines: AtomicU64,
    /// Access-log lines lost because a write failed.
    pub log_dropped: AtomicU64,
}

/// Upper bounds of the request-duration histogram, in nanoseconds (1 ms to 10 s). The duration
/// is read from the worker's clock cached once per wait (no clock read per request), so it has
/// the resolution of a loop pass, like nginx's `$request_time`: a request whose head arrived
/// whole is answered in the pass that read it and counts as 0.
pub const DURATION_BOUNDS: [u64; 10] = [
    1_000_000,
    5_000_000,
    10_000_000,
    50_000_000,
    100_000_000,
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
            c.overflows,
            c.recoveries,
            c.mode_switches,
            c.interrupted,
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
        self.dispatch[0].store(c.enter_calls, Relaxed);
        self.dispatch[1].store(c.completions, Relaxed);
        self.dispatch[5].store(c.cq_overflows, Relaxed);
    }

    /// Counts a server error.
    pub fn error(&self, e: ServerError) {
        bump(&self.server_errors[e as usize], 1);
    }

    /// Counts an HTTP error.
    pub fn http_error(&self, k: ErrorKind) {
        bump(&self.http_errors[k.index()], 1);
    }

    /// Counts the duration of a request whose head arrived over several loop passes (from the
    /// pass of its first byte to the pass that answered it). Every other request has duration
    /// 0 and is counted only in [`WorkerStats::requests`]: the first bucket is derived.
    pub fn observe(&self, d: std::time::Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = DURATION_BOUNDS.iter().position(|&b| ns <= b).unwrap_or(DURATION_BOUNDS.len());
        if i > 0 {
            bump(&self.durations[i], 1);
        }
        bump(&self.duration_sum_ns, ns);
    }

    /// Counts a response by status.
    #[inline]
    pub fn response(&self, code: u16) {
        let class = usize::from(code / 100).clamp(2, 5) - 2;
        bump(&self.responses[class], 1);
    }
}

/// The names of the dispatcher's counters, in [`WorkerStats::dispatch`] order.
pub const DISPATCH_NAMES: [&str; 9] = [
    "wait_calls",
    "events",
    "interest_syscalls",
    "signals",
    "dequeue_calls",
    "overflows",
    "recoveries",
    "mode_switches",
    "interrupted",
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
}

impl Shared {
    /// The sum over the workers of one counter.
    pub fn sum(&self, f: impl Fn(&WorkerStats) -> &AtomicU64) -> u64 {
        self.workers.iter().map(|w| f(w).load(Relaxed)).sum()
    }

    /// The stats document.
    pub fn json(&self, open: u64) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        let sum = |f: &dyn Fn(&WorkerStats) -> &AtomicU64| -> u64 {
            self.workers.iter().map(|w| f(w).load(Relaxed)).sum()
        };
        let accepted = sum(&|w| &w.accepted);
        let closed = sum(&|w| &w.closed);
        let mut dispatch = Map::new();
        for (i, name) in DISPATCH_NAMES.iter().enumerate() {
            dispatch.insert((*name).into(), sum(&|w| &w.dispatch[i]).into());
        }
        if self.mechanism.is_completion() {
            let mut completion = Map::new();
            for (i, name) in COMPLETION_NAMES.iter().enumerate() {
                completion.insert((*name).into(), sum(&|w| &w.completion[i]).into());
            }
            dispatch.insert("completion".into(), Value::Object(completion));
        }
        let mut errors = Map::new();
        for k in ErrorKind::ALL {
            errors.insert(k.name().into(), sum(&|w| &w.http_errors[k.index()]).into());
        }
        for (i, name) in SERVER_ERRORS.iter().enumerate() {
            errors.insert((*name).into(), sum(&|w| &w.server_errors[i]).into());
        }
        let mut wakeups = 0u64;
        let per_worker: Vec<Value> = self
            .workers
            .iter()
            .map(|w| {
                let tid = w.tid.load(Relaxed);
                let (voluntary, involuntary) = crate::sys::thread_switches(tid).unwrap_or((0, 0));
                wakeups += voluntary;
                json!({
                    "tid": tid,
                    "accepted": w.accepted.load(Relaxed),
                    "requests": w.requests.load(Relaxed),
                    "waits": w.dispatch[0].load(Relaxed),
                    "listener_notices": w.listener_notices.load(Relaxed),
                    "accept_eagain": w.accept_eagain.load(Relaxed),
                    "voluntary_switches": voluntary,
                    "involuntary_switches": involuntary,
                })
            })
            .collect();
        let busiest = self.workers.iter().map(|w| w.accepted.load(Relaxed)).max().unwrap_or(0);
        let herd = json!({
            "listener_notices": sum(&|w| &w.listener_notices),
            "accept_eagain": sum(&|w| &w.accept_eagain),
            "voluntary_switches": wakeups,
            "busiest_worker_share": if accepted == 0 { 0.0 } else { busiest as f64 / accepted as f64 },
        });
        let switches: Vec<Value> = self
            .workers
            .iter()
            .flat_map(|w| w.switches.lock().map(|s| s.clone()).unwrap_or_default())
            .map(|s| json!({"at": s.at.as_secs_f64(), "to": s.to, "reason": s.reason}))
            .collect();
        let (user, system) = crate::sys::process_cpu();
        json!({
            "server": "ioscale",
            "mechanism": self.mechanism.name(),
            "workers": self.workers.len(),
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "connections": {"open": open, "accepted": accepted, "closed": closed},
            "requests": sum(&|w| &w.requests),
            "responses": {
                "2xx": sum(&|w| &w.responses[0]),
                "3xx": sum(&|w| &w.responses[1]),
                "4xx": sum(&|w| &w.responses[2]),
                "5xx": sum(&|w| &w.responses[3]),
            },
            "bytes": {"in": sum(&|w| &w.bytes_in), "out": sum(&|w| &w.bytes_out)},
            "access_log": {"lines": sum(&|w| &w.log_lines), "dropped": sum(&|w| &w.log_dropped)},
            "dispatch": dispatch,
            "switches": switches,
            "errors": errors,
            "cpu": {
                "process_s": (user + system).as_secs_f64(),
                "user_s": user.as_secs_f64(),
                "system_s": system.as_secs_f64(),
            },
            "per_worker": per_worker,
            "herd": herd,
        })
    }
}
