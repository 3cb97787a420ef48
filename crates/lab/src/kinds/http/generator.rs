//! The generator of an `http` point: `ioscale load` on CPU 1 (or over `--load-hosts`), the
//! server's CPU sampled over the generator's measuring window, and the lab's metrics pulled
//! out of the generator's record and the server's counters.

use super::server::{file_name, Server};
use crate::kinds::flatten_numbers;
use crate::record::Record;
use crate::runner::{pinned, Ctx, Error};
use crate::spec::{LoadMode, Plan, Value};
use crate::sys;
use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The server's CPU time (ns) when the generator's warm-up ended and when its measuring window
/// ended: overload points drain for long after the window, and that tail is not the point's.
#[derive(Default)]
pub(crate) struct CpuWindow {
    pub(crate) start: Option<u64>,
    pub(crate) end: Option<u64>,
}

/// One run of the generator: the rate it offers, for how long, after what warm-up.
pub(crate) struct LoadRun<'a> {
    pub(crate) params: &'a BTreeMap<String, Value>,
    pub(crate) rate: f64,
    pub(crate) duration: f64,
    pub(crate) warmup: f64,
}

/// The `ioscale load` command line for one run against `server`.
fn command(ctx: &Ctx<'_>, server: &Server, plan: &Plan, run: &LoadRun<'_>) -> Command {
    let (params, rate) = (run.params, run.rate);
    let size = params.get("file_size").and_then(Value::as_f64).unwrap_or(1.0) as u64;
    let url = format!("http://{}:{}/{}", server.ip, server.port, file_name(size));
    let mut cmd = pinned(&ctx.cfg.exe, 1);
    cmd.args(["load", &url, "--json"]);
    cmd.args([
        "--duration",
        &format!("{}s", run.duration),
        "--warmup",
        &format!("{}s", run.warmup),
    ]);
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

/// Runs the generator once, sampling the server's CPU into `cpu` when the warm-up ends and
/// when the window ends; returns the generator's JSON record.
pub(crate) fn run(
    ctx: &mut Ctx<'_>,
    server: &Server,
    plan: &Plan,
    run: &LoadRun<'_>,
    cpu: &mut CpuWindow,
) -> Result<serde_json::Value, Error> {
    let cmd = command(ctx, server, plan, run);
    // With load hosts the segments start together this long after launch (docs/multihost.md).
    let lead = if ctx.cfg.load_hosts.is_empty() { 0.0 } else { 5.0 };
    let pid = ctx.children.spawn(cmd)?;
    let mut child = ctx.children.take(pid).ok_or_else(|| Error("lost the generator".into()))?;
    // Read its output while it runs: a record larger than a pipe's buffer (a merged --hosts
    // record carries every host's) must not block the generator before it exits.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_reader = drain(child.stdout.take().map(|o| Box::new(o) as Box<dyn Read + Send>));
    let err_reader = drain(child.stderr.take().map(|e| Box::new(e) as Box<dyn Read + Send>));
    let t = Instant::now();
    let (warm_end, window_end) = (lead + run.warmup, lead + run.warmup + run.duration);
    let deadline = Duration::from_secs_f64(window_end + 60.0);
    let mut status = None;
    while status.is_none() {
        let el = t.elapsed().as_secs_f64();
        if cpu.start.is_none() && el >= warm_end {
            cpu.start = Some(server.cpu_ns());
        }
        if cpu.end.is_none() && el >= window_end {
            cpu.end = Some(server.cpu_ns());
        }
        if sys::interrupted() || t.elapsed() > deadline {
            let _ = sys::kill(pid, sys::SIGINT);
            std::thread::sleep(Duration::from_millis(500));
            let _ = child.kill();
        }
        status = child.try_wait()?;
        if status.is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    match serde_json::from_slice::<serde_json::Value>(&stdout) {
        Ok(v) => Ok(v),
        Err(_) => Err(Error(format!(
            "ioscale load gave no JSON record (exit {:?}): {}",
            status.and_then(|s| s.code()),
            String::from_utf8_lossy(&stderr).trim()
        ))),
    }
}

/// The metrics a point takes from the generator's record: each name with the places in the
/// record it may be found (the first present wins).
pub(crate) const LOAD_METRICS: [(&str, &[&str]); 13] = [
    ("reply_rate_avg", &["reply_rate.avg", "active.reply_rate.avg", "reply_rate_avg"]),
    ("reply_rate_min", &["reply_rate.min", "active.reply_rate.min", "reply_rate_min"]),
    ("reply_rate_max", &["reply_rate.max", "active.reply_rate.max", "reply_rate_max"]),
    ("reply_rate_stddev", &["reply_rate.stddev", "active.reply_rate.stddev", "reply_rate_stddev"]),
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
    if let (Some(e), Some(s)) = (rec.metric("errors"), rec.metric("sessions")) {
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

/// The server's dispatch counters a point records (their difference over the run), by the
/// last part of their name in the stats document.
pub(crate) const COUNTERS: [&str; 8] = [
    "signals",
    "dequeue_calls",
    "overflows",
    "recoveries",
    "mode_switches",
    "wait_calls",
    "events",
    "interest_syscalls",
];

/// Dispatch counters from the stats endpoint: the difference `after - before`.
pub(crate) fn counter_metrics(
    before: &Option<serde_json::Value>,
    after: &Option<serde_json::Value>,
    rec: &mut Record,
) {
    let (Some(b), Some(a)) = (before, after) else { return };
    let (mut fb, mut fa) = (BTreeMap::new(), BTreeMap::new());
    flatten_numbers(b, "", &mut fb);
    flatten_numbers(a, "", &mut fa);
    for (k, va) in &fa {
        let Some(short) = k.rsplit('.').next() else { continue };
        if COUNTERS.contains(&short) && k.contains("dispatch") {
            let d = va - fb.get(k).copied().unwrap_or(0.0);
            *rec.metrics.entry(short.to_string()).or_insert(0.0) += d;
        }
    }
}
