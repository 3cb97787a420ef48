//! A run's record and its human summary: the threads' parts merged into one record (counters
//! added, histograms added losslessly), the generator's self-check per thread and for the whole,
//! the server's verdict, and the httperf-like summary text.

use crate::plan::{Arrival, Mode, Plan};
use crate::stats::{self, PopStats};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

/// What a run produced.
#[derive(Debug)]
pub struct Report {
    /// The JSON record (docs/load-json.md).
    pub record: Value,
    /// The human summary.
    pub summary: String,
    /// Whether the generator kept its schedule (and held what it was asked to hold).
    pub valid: bool,
}

/// What one generator thread measured, for the record (made by [`crate::engine`]).
pub(crate) struct Part {
    pub(crate) active: PopStats,
    pub(crate) idle: PopStats,
    pub(crate) inactive: PopStats,
    /// Schedule lag, µs.
    pub(crate) lag: Histogram<u64>,
    /// Open-loop arrivals issued in the window.
    pub(crate) started_in_window: u64,
    /// This thread's share of the open-loop rate (0: closed loop or none).
    pub(crate) rate: f64,
    /// This thread's CPU time.
    pub(crate) cpu: Duration,
    /// The window as this thread saw it: its start (ns after t0) and length (s).
    pub(crate) warm_end: u64,
    pub(crate) window_s: f64,
    /// When every held connection of this thread was first up at once (ns after t0).
    pub(crate) held_at: Option<u64>,
    /// The idle and inactive connections this thread was asked to hold.
    pub(crate) idle_asked: usize,
    pub(crate) inactive_asked: usize,
    pub(crate) interrupted: bool,
    /// When the arrival clock started (wall clock), and whether the populations were up then.
    pub(crate) seg_start: Option<(SystemTime, bool)>,
}

/// The schedule lag beyond which (99th percentile) the generator missed its schedule, ms.
pub const MAX_LAG_P99_MS: f64 = 10.0;

/// The share of a core beyond which a generator thread may have been the bottleneck.
pub const MAX_CPU_UTIL: f64 = 0.95;

/// The generator's own figures for one thread or the whole run, and the reasons they make the
/// run INVALID: it missed its schedule (lag), did not start what it was asked to (achieved
/// rate), or had no CPU to spare. Only open loops have a schedule to keep.
struct SelfCheck {
    rate: f64,
    achieved: f64,
    lag_p99_ms: f64,
    cpu_util: f64,
}

impl SelfCheck {
    fn reasons(&self, window_s: f64) -> Vec<String> {
        let mut reasons = Vec::new();
        let open_loop = self.rate > 0.0;
        if open_loop && self.lag_p99_ms > MAX_LAG_P99_MS {
            reasons.push(format!(
                "schedule lag p99 {:.1} ms > {MAX_LAG_P99_MS} ms: the generator could not keep its schedule",
                self.lag_p99_ms
            ));
        }
        if open_loop && self.achieved < 0.99 * self.rate && window_s >= 1.0 {
            reasons.push(format!(
                "achieved {:.1}/s < 99% of the target {:.1}/s",
                self.achieved, self.rate
            ));
        }
        if open_loop && self.cpu_util > MAX_CPU_UTIL {
            reasons.push(format!(
                "generator CPU at {:.0}%: it may be the bottleneck",
                self.cpu_util * 100.0
            ));
        }
        reasons
    }
}

fn p99_ms(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(0.99) as f64 / 1000.0
    }
}

fn per(window_s: f64, n: u64) -> f64 {
    if window_s > 0.0 {
        n as f64 / window_s
    } else {
        0.0
    }
}

/// Every held connection must have been up at once, and before measuring began when there was a
/// warm-up to open them in.
fn held_reason(parts: &[Part], idle: &PopStats, inactive: &PopStats) -> Option<String> {
    let (asked_idle, asked_inactive): (usize, usize) =
        parts.iter().fold((0, 0), |(a, b), p| (a + p.idle_asked, b + p.inactive_asked));
    let held_at = parts.iter().map(|p| p.held_at).collect::<Option<Vec<u64>>>();
    let warm_end = parts[0].warm_end;
    match held_at.and_then(|v| v.into_iter().max()) {
        None => Some(format!(
            "the {asked_idle} idle and {asked_inactive} inactive connections asked for were never all established ({} and {} were)",
            idle.established, inactive.established
        )),
        Some(at) if warm_end > 0 && at > warm_end => Some(format!(
            "the held connections were all established only {:.1} s after measuring began; use a longer --warmup",
            (at - warm_end) as f64 / 1e9
        )),
        Some(_) => None,
    }
}

/// One record from the threads' parts (`cpu`: the whole process's, over `wall`).
pub(crate) fn finish(plan: &Plan, parts: &[Part], wall: Duration, cpu: Duration) -> Report {
    let window_s = parts[0].window_s;
    let (mut active, mut idle, mut inactive) =
        (PopStats::default(), PopStats::default(), PopStats::default());
    let mut lag = stats::hist();
    for p in parts {
        active.add(&p.active);
        idle.add(&p.idle);
        inactive.add(&p.inactive);
        let _ = lag.add(&p.lag);
    }
    let rate: f64 = parts.iter().map(|p| p.rate).sum();
    let started: u64 = parts.iter().map(|p| p.started_in_window).sum();
    let wall_s = wall.as_secs_f64().max(1e-9);
    let cpu_util = cpu.as_secs_f64() / wall_s;
    let busiest = parts.iter().map(|p| p.cpu.as_secs_f64() / wall_s).fold(0.0, f64::max);
    let whole = SelfCheck {
        rate,
        achieved: per(window_s, started),
        lag_p99_ms: p99_ms(&lag),
        cpu_util: busiest,
    };
    let mut reasons = whole.reasons(window_s);
    if parts.len() > 1 {
        for (i, p) in parts.iter().enumerate() {
            let own = SelfCheck {
                rate: p.rate,
                achieved: per(window_s, p.started_in_window),
                lag_p99_ms: p99_ms(&p.lag),
                cpu_util: p.cpu.as_secs_f64() / wall_s,
            };
            reasons.extend(own.reasons(window_s).into_iter().map(|r| format!("thread {i}: {r}")));
        }
    }
    reasons.extend(held_reason(parts, &idle, &inactive));
    if parts.iter().any(|p| p.interrupted) {
        reasons.push("interrupted (SIGINT/SIGTERM) before the planned end".into());
    }
    let active_json = stats::population_json(&active, window_s);
    let idle_json = stats::population_json(&idle, window_s);
    let status_check = stats::status_check(&active_json, &idle_json, &plan.expect);
    reasons.extend(stats::status_reason(&status_check));
    let valid = reasons.is_empty();
    let per_arrival = match plan.mode {
        Mode::Sessions { calls, .. } => f64::from(calls),
        _ => 1.0,
    };
    let server =
        stats::server_verdict(&active_json, rate * per_arrival * plan.segment.count as f64);
    let replies = active.replies + idle.replies;
    let mut record = json!({
        "tool": "ioscale load",
        "version": env!("CARGO_PKG_VERSION"),
        "targets": plan.targets.iter().map(|t| json!({"url": t.url, "weight": t.weight})).collect::<Vec<_>>(),
        "mode": mode_json(plan),
        "arrival": if plan.arrival == Arrival::Poisson { "poisson" } else { "fixed" },
        "dispatch": plan.dispatch.name(),
        "source_addrs": plan.source_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "warmup_s": plan.warmup.as_secs_f64(),
        "window_s": window_s,
        "wall_s": wall.as_secs_f64(),
        "valid": valid,
        "invalid_reasons": reasons,
        "reply_rate": active_json["reply_rate"],
        "target_rate": rate,
        "achieved_rate": whole.achieved,
        "generator_cpu_util": cpu_util,
        "server": server,
        "status_check": status_check,
        "self_check": {
            "target_rate": rate,
            "achieved_rate": whole.achieved,
            "schedule_lag_ms": stats::percentiles_ms(&lag),
            "schedule_lag_us_histogram": stats::encode(&lag),
            "cpu_s": cpu.as_secs_f64(),
            "cpu_util": cpu_util,
            "cpu_us_per_reply": if replies > 0 { cpu.as_secs_f64() * 1e6 / replies as f64 } else { 0.0 },
            "cpu_us_per_arrival": if started > 0 { cpu.as_secs_f64() * 1e6 / started as f64 } else { 0.0 },
            "connections_asked": active.asked + idle.asked + inactive.asked,
            "connections_established": active.established + idle.established + inactive.established,
        },
        "active": active_json,
        "idle": idle_json,
        "inactive": stats::population_json(&inactive, window_s),
    });
    if parts.len() > 1 {
        record["threads"] =
            json!(parts.iter().map(|p| thread_json(p, window_s, wall_s)).collect::<Vec<_>>());
    }
    let summary = summary_text(&record);
    Report { record, summary, valid }
}

fn mode_json(plan: &Plan) -> Value {
    match plan.mode {
        Mode::Sessions { rate, calls } => json!({"kind": "sessions", "rate": rate, "calls": calls}),
        Mode::RequestRate { rate, connections } => {
            json!({"kind": "request-rate", "rate": rate, "connections": connections})
        }
        Mode::Peak { connections } => json!({"kind": "peak", "connections": connections}),
        Mode::None => json!({"kind": "none"}),
    }
}

/// One thread's own figures: its populations (histograms included, so the merge can be
/// checked) and its self-check.
fn thread_json(p: &Part, window_s: f64, wall_s: f64) -> Value {
    let own = SelfCheck {
        rate: p.rate,
        achieved: per(window_s, p.started_in_window),
        lag_p99_ms: p99_ms(&p.lag),
        cpu_util: p.cpu.as_secs_f64() / wall_s,
    };
    let reasons = own.reasons(window_s);
    json!({
        "valid": reasons.is_empty(),
        "invalid_reasons": reasons,
        "self_check": {
            "target_rate": own.rate,
            "achieved_rate": own.achieved,
            "schedule_lag_ms": stats::percentiles_ms(&p.lag),
            "schedule_lag_us_histogram": stats::encode(&p.lag),
            "cpu_s": p.cpu.as_secs_f64(),
            "cpu_util": own.cpu_util,
        },
        "active": stats::population_json(&p.active, window_s),
        "idle": stats::population_json(&p.idle, window_s),
        "inactive": stats::population_json(&p.inactive, window_s),
    })
}

/// The human summary of a record: what ran, then one headline — requests/s, transfer/s,
/// errors and status counts — then each population's figures (only the error kinds and status
/// classes that happened), the server's verdict, the status check and the self-check (the
/// schedule's figures only for an open loop).
pub fn summary_text(r: &Value) -> String {
    let mut s = String::new();
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let window = f(&r["window_s"]);
    let urls = r["targets"]
        .as_array()
        .map(|t| t.iter().map(|x| x["url"].as_str().unwrap_or("")).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let threads = match r["threads"].as_array().map(Vec::len) {
        Some(n) if n > 1 => format!(", {n} threads"),
        _ => String::new(),
    };
    s.push_str(&format!(
        "ioscale load: {urls}: {}, {window:.1} s measured ({} dispatch{threads})\n",
        mode_text(&r["mode"]),
        r["dispatch"].as_str().unwrap_or("")
    ));
    let a = &r["active"];
    let open_loop = matches!(r["mode"]["kind"].as_str(), Some("sessions" | "request-rate"));
    if r["mode"]["kind"] != "none" {
        let per = |n: f64| if window > 0.0 { n / window } else { 0.0 };
        s.push_str(&format!(
            "  requests/s {:.1}   transfer/s {}   errors {} ({:.1}%)   status {}\n",
            f(&a["replies_per_s"]),
            bytes_text(per(f(&a["bytes"]))),
            a["errors"]["total"],
            f(&a["error_percent"]),
            status_text(a),
        ));
    }
    for pop in ["active", "idle", "inactive"] {
        population_text(&mut s, pop, &r[pop], open_loop, r["mode"]["kind"] == "sessions");
    }
    let sv = &r["server"];
    if sv["kept_up"].as_bool() == Some(false) {
        let reasons: Vec<&str> =
            sv["reasons"].as_array().into_iter().flatten().filter_map(|x| x.as_str()).collect();
        s.push_str(&format!("server: did not keep up: {}\n", reasons.join("; ")));
    }
    if let Some(why) = stats::status_reason(&r["status_check"]) {
        s.push_str(&format!("NOT AS EXPECTED: {why}\n"));
    }
    let c = &r["self_check"];
    let cpu = format!(
        "generator CPU {:.1}% ({:.2} µs/reply)",
        f(&c["cpu_util"]) * 100.0,
        f(&c["cpu_us_per_reply"])
    );
    if open_loop {
        s.push_str(&format!(
            "self-check: target {:.1}/s achieved {:.1}/s, schedule lag p50 {:.3} ms p99 {:.3} ms, {cpu}\n",
            f(&c["target_rate"]),
            f(&c["achieved_rate"]),
            f(&c["schedule_lag_ms"]["p50"]),
            f(&c["schedule_lag_ms"]["p99"]),
        ));
    } else {
        s.push_str(&format!("self-check: {cpu}\n"));
    }
    for (i, t) in r["threads"].as_array().into_iter().flatten().enumerate() {
        let tc = &t["self_check"];
        let lag = if open_loop {
            format!(", schedule lag p99 {:.3} ms", f(&tc["schedule_lag_ms"]["p99"]))
        } else {
            String::new()
        };
        s.push_str(&format!(
            "  thread {i}: replies {}{lag}, CPU {:.1}%, {}\n",
            t["active"]["replies"],
            f(&tc["cpu_util"]) * 100.0,
            if t["valid"].as_bool() == Some(true) { "VALID" } else { "INVALID" }
        ));
    }
    if r["valid"].as_bool() == Some(true) {
        s.push_str("VALID\n");
    } else {
        s.push_str(&format!("INVALID: {}\n", r["invalid_reasons"]));
    }
    s
}

/// The mode in words: "open loop, 500 sessions/s of 1 call each", "closed loop, 50 connections".
fn mode_text(m: &Value) -> String {
    let n = |k: &str| m[k].as_f64().unwrap_or(0.0);
    match m["kind"].as_str() {
        Some("sessions") => {
            let calls = n("calls");
            let each = if calls == 1.0 { "1 call".to_string() } else { format!("{calls} calls") };
            format!("open loop, {} sessions/s of {each} each", n("rate"))
        }
        Some("request-rate") => {
            format!("open loop, {} requests/s over {} connections", n("rate"), n("connections"))
        }
        Some("peak") => format!("closed loop, {} connections", n("connections")),
        _ => "no active load".into(),
    }
}

/// Bytes per second in binary units.
fn bytes_text(b: f64) -> String {
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.2} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

/// The status classes seen with their counts, and the codes: "2xx 10, 4xx 2 (200: 10, 404: 2)";
/// "none" when there was no reply.
fn status_text(p: &Value) -> String {
    let classes: Vec<String> = stats::CLASSES
        .iter()
        .filter(|c| p["status"][**c].as_u64().unwrap_or(0) > 0)
        .map(|c| format!("{c} {}", p["status"][*c]))
        .collect();
    if classes.is_empty() {
        return "none".into();
    }
    let codes: Vec<String> = p["status_codes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(c, n)| format!("{c}: {n}"))
        .collect();
    format!("{} ({})", classes.join(", "), codes.join(", "))
}

/// One population's lines, if it was used: counts, reply rate, response times, errors (only
/// the kinds that happened), statuses, TLS.
fn population_text(s: &mut String, pop: &str, p: &Value, open_loop: bool, sessions_mode: bool) {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    if p["connections_asked"].as_u64().unwrap_or(0) == 0 && p["requests"].as_u64().unwrap_or(0) == 0
    {
        return;
    }
    // Sessions are the open loop's arrivals of --rate; elsewhere they repeat other counts.
    let sessions = if pop == "active" && sessions_mode {
        format!("sessions {} ok {}  ", p["sessions"], p["sessions_ok"])
    } else {
        String::new()
    };
    s.push_str(&format!(
        "{pop:>8}: {sessions}requests {} replies {}  connections {}/{} reconnects {}\n",
        p["requests"],
        p["replies"],
        p["connections_established"],
        p["connections_asked"],
        p["reconnects"],
    ));
    if p["requests"].as_u64().unwrap_or(0) > 0 {
        let rr = &p["reply_rate"];
        s.push_str(&format!(
            "{:>8}  reply rate [/s]: avg {:.1} min {:.0} max {:.0} stddev {:.1} ({} samples)\n",
            "",
            f(&rr["avg"]),
            f(&rr["min"]),
            f(&rr["max"]),
            f(&rr["stddev"]),
            rr["samples"],
        ));
        let (l, la) = (&p["latency_ms"], &p["latency_actual_ms"]);
        s.push_str(&format!(
            "{:>8}  response ms{}: p50 {:.3} p90 {:.3} p99 {:.3} max {:.3}{}; connect p50 {:.3}\n",
            "",
            if open_loop || pop != "active" { " (from intended)" } else { "" },
            f(&l["p50"]),
            f(&l["p90"]),
            f(&l["p99"]),
            f(&l["max"]),
            if open_loop || pop != "active" {
                format!("; actual p50 {:.3} p99 {:.3}", f(&la["p50"]), f(&la["p99"]))
            } else {
                String::new()
            },
            f(&p["connect_ms"]["p50"]),
        ));
    }
    let kinds: Vec<String> = stats::ERROR_KINDS
        .iter()
        .filter(|k| p["errors"][**k].as_u64().unwrap_or(0) > 0)
        .map(|k| format!("{} {}", k.replace('_', " "), p["errors"][*k]))
        .collect();
    if kinds.is_empty() {
        s.push_str(&format!("{:>8}  errors 0\n", ""));
    } else {
        s.push_str(&format!(
            "{:>8}  errors {} = {:.1}% ({})\n",
            "",
            p["errors"]["total"],
            f(&p["error_percent"]),
            kinds.join(", ")
        ));
    }
    // The active population's statuses are in the headline.
    if pop != "active" && p["replies"].as_u64().unwrap_or(0) > 0 {
        s.push_str(&format!("{:>8}  status {}\n", "", status_text(p)));
    }
    let t = &p["tls"];
    if t["handshakes"].as_u64().unwrap_or(0) > 0 {
        s.push_str(&format!(
            "{:>8}  TLS handshakes {} (resumed {}), handshake ms p50 {:.3} p99 {:.3}\n",
            "",
            t["handshakes"],
            t["resumed"],
            f(&t["handshake_ms"]["p50"]),
            f(&t["handshake_ms"]["p99"])
        ));
    }
}

/// The `--latency` table: percentiles of the active population's response time from the
/// intended send time (coordinated omission corrected), from its full histogram.
pub fn latency_table(r: &Value) -> String {
    let Some(h) =
        r["active"]["histograms"]["latency_us"].as_str().and_then(|h| stats::decode(h).ok())
    else {
        return String::new();
    };
    if h.is_empty() {
        return "latency: no replies\n".into();
    }
    // In a closed loop a request is sent when it is meant to be: one latency, no correction.
    let from = if r["mode"]["kind"] == "peak" { "" } else { ", from the intended send time" };
    let mut s = format!("latency distribution ({} replies{from}):\n", h.len());
    for (name, q) in [
        ("50%", 0.5),
        ("75%", 0.75),
        ("90%", 0.9),
        ("99%", 0.99),
        ("99.9%", 0.999),
        ("99.99%", 0.9999),
    ] {
        s.push_str(&format!("  {name:>7}  {:>10.3} ms\n", h.value_at_quantile(q) as f64 / 1000.0));
    }
    s.push_str(&format!("  {:>7}  {:>10.3} ms\n", "max", h.max() as f64 / 1000.0));
    s
}
