//! The generator of an `http` point: `ioscale load` on CPU 1 (or over `--load-hosts`), the
//! server's CPU sampled over the generator's measuring window, and the lab's metrics pulled
//! out of the generator's record and the server's counters.

use super::server::{file_name, Server};
use crate::budget::{Budget, Throttle};
use crate::error::Error;
use crate::kinds::flatten_numbers;
use crate::record::Record;
use crate::runner::context::Ctx;
use crate::spec::{LoadMode, Plan, Value};
use crate::sys;
use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the lab read at the generator's milestones: the server's CPU time (ns) and the budget's
/// throttling counters when the measuring window started and ended (overload points drain for
/// long after the window, and that tail is not the point's), and when the budget took hold.
#[derive(Default)]
pub(crate) struct CpuWindow {
    pub(crate) start: Option<u64>,
    pub(crate) end: Option<u64>,
    pub(crate) throttle_start: Option<Throttle>,
    pub(crate) throttle_end: Option<Throttle>,
    /// Seconds after the generator started when the server was put under its budget.
    pub(crate) budget_at: Option<f64>,
    /// Seconds after start when every held connection (idle, inactive) was up.
    pub(crate) held_at: Option<f64>,
    /// Whether the milestones came from the generator's own events (else from the clock).
    pub(crate) from_events: bool,
    /// The sequence numbers of the server's counter snapshots at the window's start and end.
    pub(crate) snap_start: Option<u64>,
    pub(crate) snap_end: Option<u64>,
}

/// One run of the generator: the rate it offers, for how long, after what warm-up.
pub(crate) struct LoadRun<'a> {
    pub(crate) params: &'a BTreeMap<String, Value>,
    pub(crate) rate: f64,
    pub(crate) duration: f64,
    /// Seconds of load before the window, counted from when the held populations are up.
    pub(crate) warmup: f64,
    /// The budget the server is put under once the held populations are up (opening thousands
    /// of connections is set-up, not the point's work, and a budgeted select server would take
    /// most of the run to accept them).
    pub(crate) budget: Option<&'a Budget>,
}

impl LoadRun<'_> {
    fn held(&self) -> u64 {
        let n = |k: &str| self.params.get(k).and_then(Value::as_f64).unwrap_or(0.0).max(0.0) as u64;
        n("idle") + n("inactive")
    }
}

/// The held populations (idle, inactive): what a sweep's holder keeps open.
pub(crate) const HELD: [&str; 2] = ["idle", "inactive"];

/// The prefix of the generator's event lines on its stderr (`ioscale load --events`).
const EVENT: &str = "ioscale-load-event ";

/// Whether this `ioscale` binary's generator announces its milestones (`--events`).
fn announces(exe: &std::path::Path) -> bool {
    static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(|| {
        Command::new(exe)
            .args(["load", "--help"])
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--warmup-from"))
    })
}

/// Without the generator's events: how long the held populations take to open, guessed from
/// their size (a fresh server accepts a few thousand connections a second on a small machine).
fn open_guess(held: u64) -> f64 {
    if held == 0 {
        0.0
    } else {
        0.5 + held as f64 / 2000.0
    }
}

/// The `ioscale load` command line for one run against `server`.
fn command(
    ctx: &Ctx<'_>,
    server: &Server,
    plan: &Plan,
    run: &LoadRun<'_>,
    events: bool,
) -> Command {
    let (params, rate) = (run.params, run.rate);
    let size = params.get("file_size").and_then(Value::as_f64).unwrap_or(1.0) as u64;
    let url = format!("http://{}:{}/{}", server.ip, server.port, file_name(size));
    let mut cmd = super::priority::launch(&ctx.cfg.exe, super::priority::Role::Generator);
    cmd.args(["load", &url, "--json"]);
    // On more than two cores the plan is split over one event loop per generator core, merged
    // into one record by the generator itself (`ioscale load --threads`).
    let threads = super::priority::generator_cores();
    if threads > 1 && ctx.cfg.load_hosts.is_empty() {
        cmd.args(["--threads", &threads.to_string()]);
    }
    let warmup = if events { run.warmup } else { run.warmup + open_guess(run.held()) };
    cmd.args(["--duration", &format!("{}s", run.duration), "--warmup", &format!("{warmup}s")]);
    if events {
        cmd.args(["--events", "--warmup-from", "held"]);
    }
    let idle = params.get("idle").and_then(Value::as_f64).unwrap_or(0.0) as u64;
    if plan.exp.load.mode == LoadMode::Periodic && idle > 0 {
        // Chandra & Mosberger: the persistent connections themselves carry the rate.
        cmd.args(["--idle", &idle.to_string()]);
        cmd.args(["--idle-period", &format!("{}s", idle as f64 / rate.max(1e-9))]);
    } else if plan.exp.load.mode == LoadMode::Requests {
        cmd.args(["--request-rate", &format!("{rate:.1}")]);
        cmd.args(["--connections", &plan.exp.load.connections.unwrap_or(50).to_string()]);
        if idle > 0 {
            cmd.args(["--idle", &idle.to_string()]);
            cmd.args(["--idle-period", &format!("{}s", plan.exp.load.idle_period.unwrap_or(1.0))]);
        }
    } else {
        cmd.args(["--rate", &format!("{rate:.1}")]);
        cmd.args(["--calls", &plan.exp.load.calls.unwrap_or(1).to_string()]);
        if idle > 0 {
            cmd.args(["--idle", &idle.to_string()]);
            cmd.args(["--idle-period", &format!("{}s", plan.exp.load.idle_period.unwrap_or(1.0))]);
        }
    }
    let inactive = params.get("inactive").and_then(Value::as_f64).unwrap_or(0.0) as u64;
    if inactive > 0 {
        cmd.args(["--inactive", &inactive.to_string()]);
    }
    cmd.args(&plan.exp.load.args).stdout(Stdio::piped()).stderr(Stdio::piped());
    if !ctx.cfg.load_hosts.is_empty() {
        // One segment of the plan per load host, merged by `ioscale load --hosts`.
        cmd.args(["--hosts", &ctx.cfg.load_hosts.join(","), "--start-in", "5s"]);
        if let Some(t) = &ctx.cfg.load_remote_cmd {
            cmd.args(["--remote-cmd", t]);
        }
    }
    cmd
}

/// Runs the generator once; at its milestones puts the server under the budget (held
/// populations up) and samples the server's CPU and throttling into `cpu` (window start and
/// end). Returns the generator's JSON record.
pub(crate) fn run(
    ctx: &mut Ctx<'_>,
    server: &Server,
    plan: &Plan,
    run: &LoadRun<'_>,
    cpu: &mut CpuWindow,
) -> Result<serde_json::Value, Error> {
    let events = announces(&ctx.cfg.exe);
    let cmd = command(ctx, server, plan, run, events);
    // With load hosts the segments start together this long after launch (docs/multihost.md).
    let lead = if ctx.cfg.load_hosts.is_empty() { 0.0 } else { 5.0 };
    let pid = ctx.children.spawn(cmd)?;
    let mut child = ctx.children.take(pid).ok_or_else(|| Error("lost the generator".into()))?;
    // Read its output while it runs: a record larger than a pipe's buffer (a merged --hosts
    // record carries every host's) must not block the generator before it exits. Its stderr
    // comes line by line: the event lines are acted on as they arrive.
    let out_reader = {
        let pipe = child.stdout.take();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let err_reader = {
        let pipe = child.stderr.take();
        std::thread::spawn(move || {
            if let Some(p) = pipe {
                for line in std::io::BufReader::new(p).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        })
    };
    let t = Instant::now();
    // Milestones by the clock, used where the generator does not announce them.
    let open = open_guess(run.held());
    let mut held_at = (!events).then_some(lead + open);
    let (mut start_at, mut end_at) = if events {
        (None, None)
    } else {
        let w = lead + open + run.warmup;
        (Some(w), Some(w + run.duration))
    };
    cpu.from_events = events;
    let bound = lead + 30.0 + 2.0 * open + run.warmup + run.duration + 60.0;
    let mut stderr = String::new();
    let mut status = None;
    while status.is_none() {
        for line in lines.try_iter() {
            match line
                .strip_prefix(EVENT)
                .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
            {
                Some(ev) => {
                    let at = t.elapsed().as_secs_f64();
                    match ev["event"].as_str() {
                        Some("held") => held_at = Some(at),
                        Some("window_start") => start_at = Some(at),
                        Some("window_end") => end_at = Some(at),
                        _ => {}
                    }
                }
                None => {
                    stderr.push_str(&line);
                    stderr.push('\n');
                }
            }
        }
        let el = t.elapsed().as_secs_f64();
        if cpu.budget_at.is_none() && held_at.is_some_and(|h| el >= h) {
            if let Some(b) = run.budget {
                for p in server.pids() {
                    b.add(p).map_err(|e| {
                        Error(format!(
                            "cannot put the server (PID {p}) under its CPU budget in {}: {e}",
                            b.dir().display()
                        ))
                    })?;
                }
                cpu.throttle_start = b.throttle();
            }
            cpu.budget_at = Some(el);
            cpu.held_at = held_at;
        }
        if cpu.start.is_none() && start_at.is_some_and(|s| el >= s) {
            cpu.start = Some(server.cpu_ns());
            cpu.snap_start = server.snapshot();
            cpu.throttle_start = run.budget.and_then(Budget::throttle);
        }
        if cpu.end.is_none() && end_at.is_some_and(|e| el >= e) {
            cpu.end = Some(server.cpu_ns());
            cpu.snap_end = server.snapshot();
            cpu.throttle_end = run.budget.and_then(Budget::throttle);
        }
        if sys::interrupted() || el > bound {
            let _ = sys::kill(pid, sys::SIGINT);
            std::thread::sleep(Duration::from_millis(500));
            let _ = child.kill();
        }
        status = child.try_wait()?;
        if status.is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let stdout = out_reader.join().unwrap_or_default();
    let _ = err_reader.join();
    for line in lines.try_iter() {
        if !line.starts_with(EVENT) {
            stderr.push_str(&line);
            stderr.push('\n');
        }
    }
    match serde_json::from_slice::<serde_json::Value>(&stdout) {
        Ok(v) => Ok(v),
        Err(_) => Err(Error(format!(
            "ioscale load gave no JSON record (exit {:?}): {}",
            status.and_then(|s| s.code()),
            stderr.trim()
        ))),
    }
}

/// The metrics a point takes from the generator's record: each name with the places in the
/// record it may be found (the first present wins).
pub(crate) const LOAD_METRICS: [(&str, &[&str]); 15] = [
    ("reply_rate_avg", &["reply_rate.avg", "active.reply_rate.avg", "reply_rate_avg"]),
    ("reply_rate_min", &["reply_rate.min", "active.reply_rate.min", "reply_rate_min"]),
    ("reply_rate_max", &["reply_rate.max", "active.reply_rate.max", "reply_rate_max"]),
    ("reply_rate_stddev", &["reply_rate.stddev", "active.reply_rate.stddev", "reply_rate_stddev"]),
    // Provos & Lever's starved seconds: one-second samples of the window with no reply at all.
    ("starved_seconds", &["reply_rate.zero_seconds", "active.reply_rate.zero_seconds"]),
    ("reply_rate_samples", &["reply_rate.samples", "active.reply_rate.samples"]),
    ("replies", &["active.replies", "replies", "active.responses", "responses"]),
    ("latency_p50_ms", &["active.latency_ms.p50", "latency_ms.p50", "active.latency.p50_ms"]),
    ("latency_p99_ms", &["active.latency_ms.p99", "latency_ms.p99", "active.latency.p99_ms"]),
    ("latency_mean_ms", &["active.latency_ms.mean", "latency_ms.mean", "active.latency.mean_ms"]),
    ("errors", &["active.errors.total", "errors.total", "active.errors"]),
    ("sessions", &["active.sessions", "sessions", "active.connections"]),
    ("target_rate", &["target_rate", "check.target_rate", "self_check.target_rate"]),
    ("achieved_rate", &["achieved_rate", "check.achieved_rate", "self_check.achieved_rate"]),
    ("generator_cpu_util", &["generator_cpu_util", "check.cpu_util", "self_check.cpu_util"]),
];

/// Pulls the lab's metrics out of the generator's record (from the population that carries the
/// rate: `idle` in periodic mode, `active` otherwise).
pub(crate) fn load_metrics(v: &serde_json::Value, rec: &mut Record) {
    let mut flat = BTreeMap::new();
    let periodic = v["mode"]["kind"] == "none";
    if periodic {
        let mut view = v.clone();
        view["active"] = v["idle"].clone();
        view["reply_rate"] = v["idle"]["reply_rate"].clone();
        flatten_numbers(&view, "", &mut flat);
    } else {
        flatten_numbers(v, "", &mut flat);
    }
    let pick = |names: &[&str]| names.iter().find_map(|n| flat.get(*n).copied());
    for (name, candidates) in LOAD_METRICS {
        if let Some(x) = pick(candidates) {
            rec.metrics.insert(name.to_string(), x);
        }
    }
    // The generator's own share: errors per connection it tried to open (timeouts and
    // descriptors it could not get included, as httperf counts them).
    if let Some(pct) = pick(&["active.error_percent", "error_percent"]) {
        rec.metrics.insert("error_pct".into(), pct);
    } else if let (Some(e), Some(s)) = (rec.metric("errors"), rec.metric("sessions")) {
        if s > 0.0 {
            rec.metrics.insert("error_pct".into(), 100.0 * e / s);
        }
    }
    let valid = v.get("valid").and_then(serde_json::Value::as_bool).unwrap_or(true);
    if !valid {
        rec.valid = false;
        rec.invalid_reason = Some(
            v.get("invalid_reason")
                .or_else(|| v.get("invalid_reasons"))
                .map_or_else(|| "the generator marked the run INVALID".into(), |r| r.to_string()),
        );
    }
}

/// The server's dispatch counters a point records (their difference over the measured window),
/// by the last part of their name in the stats document.
pub(crate) const COUNTERS: [&str; 11] = [
    "signals",
    "dequeue_calls",
    "flush_reads",
    "overflows",
    "recoveries",
    "mode_switches",
    "wait_calls",
    "events",
    "interest_syscalls",
    "fallback_scans",
    "fallback_ns",
];

/// The server's counters over the measured window: the difference between the snapshots taken
/// at its start and end (`after` lists them), and `"window"`; where the server took none (nginx,
/// or a snapshot missing or incomplete), the difference between the stats documents read before
/// and after the whole run, and `"run"`; `"none"` (nothing recorded) without both documents:
/// what the point's `counters` parameter then says.
pub(crate) fn counter_metrics(
    before: &Option<serde_json::Value>,
    after: &Option<serde_json::Value>,
    cpu: &CpuWindow,
    rec: &mut Record,
) -> &'static str {
    let snap = |seq: Option<u64>| {
        let seq = seq?;
        after.as_ref()?["snapshots"]
            .as_array()?
            .iter()
            .find(|s| s["seq"].as_u64() == Some(seq) && s["complete"].as_bool() == Some(true))
            .map(|s| (s["sum"].clone(), s["taken_ns"]["last"].as_u64()))
    };
    if let (Some(b), Some(a)) = (snap(cpu.snap_start), snap(cpu.snap_end)) {
        differences(&b.0, &a.0, rec);
        if let (Some(t0), Some(t1)) = (b.1, a.1) {
            if t1 > t0 {
                rec.metrics.insert("counters_s".into(), (t1 - t0) as f64 / 1e9);
            }
        }
        return "window";
    }
    match (before, after) {
        (Some(b), Some(a)) => {
            differences(b, a, rec);
            "run"
        }
        _ => "none",
    }
}

/// Adds the dispatch counters' differences `a - b` to `rec`.
fn differences(b: &serde_json::Value, a: &serde_json::Value, rec: &mut Record) {
    let (mut fb, mut fa) = (BTreeMap::new(), BTreeMap::new());
    flatten_numbers(b, "", &mut fb);
    flatten_numbers(a, "", &mut fa);
    for (k, va) in &fa {
        let Some(short) = k.rsplit('.').next() else { continue };
        // The snapshots listed in a stats document are not its totals.
        if COUNTERS.contains(&short) && k.contains("dispatch") && !k.starts_with("snapshots") {
            let d = va - fb.get(k).copied().unwrap_or(0.0);
            *rec.metrics.entry(short.to_string()).or_insert(0.0) += d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snap(seq: u64, complete: bool, signals: f64) -> serde_json::Value {
        json!({"seq": seq, "complete": complete, "taken_ns": {"first": seq * 1_000_000_000, "last": seq * 1_000_000_000 + 5},
               "sum": {"dispatch": {"signals": signals, "overflows": 1.0}}})
    }

    fn doc(total: f64, snaps: Vec<serde_json::Value>) -> Option<serde_json::Value> {
        Some(json!({"dispatch": {"signals": total, "overflows": total / 2.0}, "snapshots": snaps}))
    }

    fn record() -> Record {
        Record {
            experiment: "t".into(),
            variant: crate::spec::Which::Quick,
            key: "k".into(),
            mechanism: "rtsig".into(),
            params: BTreeMap::new(),
            metrics: BTreeMap::new(),
            lists: BTreeMap::new(),
            valid: true,
            invalid_reason: None,
            error: None,
            unix_time: 0,
            machine: Default::default(),
            raw: serde_json::Value::Null,
        }
    }

    fn window(start: Option<u64>, end: Option<u64>) -> CpuWindow {
        CpuWindow { snap_start: start, snap_end: end, ..CpuWindow::default() }
    }

    #[test]
    fn counters_come_from_the_window_snapshots_by_sequence_number() {
        let before = doc(10.0, vec![]);
        // Snapshots 1 and 2 are an earlier rate's window; 3 and 4 this one's.
        let after = doc(
            500.0,
            vec![
                snap(1, true, 20.0),
                snap(2, true, 90.0),
                snap(3, true, 100.0),
                snap(4, true, 340.0),
            ],
        );
        let mut rec = record();
        assert_eq!(counter_metrics(&before, &after, &window(Some(3), Some(4)), &mut rec), "window");
        assert_eq!(rec.metric("signals"), Some(240.0));
        assert_eq!(rec.metric("overflows"), Some(0.0));
        assert_eq!(rec.metric("counters_s"), Some(1.0), "the span between the two snapshots");
    }

    #[test]
    fn without_both_complete_snapshots_the_counters_cover_the_run_and_say_so() {
        let before = doc(10.0, vec![]);
        let after = doc(500.0, vec![snap(3, true, 100.0), snap(4, false, 340.0)]);
        let mut rec = record();
        assert_eq!(counter_metrics(&None, &after, &window(Some(3), None), &mut rec), "none");
        assert_eq!(rec.metric("signals"), None, "no counters rather than a guess");
        for w in [
            window(Some(3), Some(4)),
            window(Some(3), None),
            window(None, None),
            window(Some(7), Some(8)),
        ] {
            let mut rec = record();
            assert_eq!(counter_metrics(&before, &after, &w, &mut rec), "run");
            // The totals' difference; the listed snapshots are not added in.
            assert_eq!(rec.metric("signals"), Some(490.0));
            assert_eq!(rec.metric("overflows"), Some(245.0));
        }
    }
}
