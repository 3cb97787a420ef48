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

/// The httperf-like human summary of a record.
pub fn summary_text(r: &Value) -> String {
    let mut s = String::new();
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let _ = std::fmt::Write::write_fmt(
        &mut s,
        format_args!(
            "ioscale load: {} over {:.1} s measured ({} dispatch), mode {}\n",
            r["targets"]
                .as_array()
                .map(|t| t
                    .iter()
                    .map(|x| x["url"].as_str().unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join(" "))
                .unwrap_or_default(),
            f(&r["window_s"]),
            r["dispatch"].as_str().unwrap_or(""),
            r["mode"]["kind"].as_str().unwrap_or("")
        ),
    );
    for pop in ["active", "idle", "inactive"] {
        let p = &r[pop];
        if p["connections_asked"].as_u64().unwrap_or(0) == 0
            && p["requests"].as_u64().unwrap_or(0) == 0
        {
            continue;
        }
        let _ = std::fmt::Write::write_fmt(
            &mut s,
            format_args!(
                "{pop:>8}: sessions {} ok {}  requests {} replies {}  connections {}/{} reconnects {}\n\
                 {:>8}  reply rate [/s]: avg {:.1} min {:.0} max {:.0} stddev {:.1} ({} samples)\n\
                 {:>8}  response ms (from intended): p50 {:.3} p90 {:.3} p99 {:.3} max {:.3}; actual p50 {:.3} p99 {:.3}; connect p50 {:.3}\n\
                 {:>8}  errors {} = {:.1}% (connect timeout {}, response timeout {}, refused {}, reset {}, fd unavailable {}, addr unavailable {}, bad response {}, closed early {}, other {}, tls {})\n",
                p["sessions"], p["sessions_ok"], p["requests"], p["replies"], p["connections_established"], p["connections_asked"], p["reconnects"],
                "", f(&p["reply_rate"]["avg"]), f(&p["reply_rate"]["min"]), f(&p["reply_rate"]["max"]), f(&p["reply_rate"]["stddev"]), p["reply_rate"]["samples"],
                "", f(&p["latency_ms"]["p50"]), f(&p["latency_ms"]["p90"]), f(&p["latency_ms"]["p99"]), f(&p["latency_ms"]["max"]), f(&p["latency_actual_ms"]["p50"]), f(&p["latency_actual_ms"]["p99"]), f(&p["connect_ms"]["p50"]),
                "", p["errors"]["total"], f(&p["error_percent"]), p["errors"]["connect_timeout"], p["errors"]["response_timeout"], p["errors"]["refused"], p["errors"]["reset"], p["errors"]["fd_unavailable"], p["errors"]["addr_unavailable"], p["errors"]["bad_response"], p["errors"]["closed_early"], p["errors"]["other"], p["errors"]["tls"],
            ),
        );
        let classes: Vec<String> = stats::CLASSES
            .iter()
            .filter(|c| p["status"][**c].as_u64().unwrap_or(0) > 0)
            .map(|c| format!("{c} {}", p["status"][*c]))
            .collect();
        if !classes.is_empty() {
            let codes: Vec<String> = p["status_codes"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(c, n)| format!("{c}: {n}"))
                .collect();
            s.push_str(&format!(
                "{:>8}  status {} (codes {})\n",
                "",
                classes.join(", "),
                codes.join(", ")
            ));
        }
        let t = &p["tls"];
        if t["handshakes"].as_u64().unwrap_or(0) > 0 {
            let _ = std::fmt::Write::write_fmt(
                &mut s,
                format_args!(
                    "{:>8}  TLS handshakes {} (resumed {}), handshake ms p50 {:.3} p99 {:.3}\n",
                    "",
                    t["handshakes"],
                    t["resumed"],
                    f(&t["handshake_ms"]["p50"]),
                    f(&t["handshake_ms"]["p99"])
                ),
            );
        }
    }
    if let Some(why) = stats::status_reason(&r["status_check"]) {
        s.push_str(&format!("NOT AS EXPECTED: {why}\n"));
    }
    let sv = &r["server"];
    if sv["kept_up"].as_bool() == Some(false) {
        let reasons: Vec<&str> =
            sv["reasons"].as_array().into_iter().flatten().filter_map(|x| x.as_str()).collect();
        s.push_str(&format!("server: did not keep up: {}\n", reasons.join("; ")));
    }
    let c = &r["self_check"];
    let _ = std::fmt::Write::write_fmt(
        &mut s,
        format_args!(
            "self-check: target {:.1}/s achieved {:.1}/s, schedule lag p50 {:.3} ms p99 {:.3} ms, generator CPU {:.1}% ({:.2} µs/reply)\n{}\n",
            f(&c["target_rate"]), f(&c["achieved_rate"]), f(&c["schedule_lag_ms"]["p50"]), f(&c["schedule_lag_ms"]["p99"]), f(&c["cpu_util"]) * 100.0, f(&c["cpu_us_per_reply"]),
            if r["valid"].as_bool() == Some(true) { "VALID".to_string() } else { format!("INVALID: {}", r["invalid_reasons"]) }
        ),
    );
    s
}
