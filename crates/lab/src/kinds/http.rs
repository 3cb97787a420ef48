//! `http` experiments: `ioscale serve` (or nginx, as a reference line) on CPU 0, driven by
//! `ioscale load` on CPU 1.
//!
//! For each point the runner starts a fresh server ([`server`]), waits until it accepts, starts
//! the generator ([`generator`]), reads the server's CPU from `/proc/PID/task/*/schedstat` when
//! the generator's warm-up ends and again when it finishes (so opening thousands of idle
//! connections is not charged to the requests), reads the dispatch counters from the stats
//! endpoint, and stops the server by PID. Request rates are fractions of the capacity
//! calibrated on this machine at the start of the experiment ([`calibrate`]; the papers'
//! 400 MHz rates do not carry over; the fractions do).

use crate::capacity::Calibration;
use crate::error::Error;
use crate::record::Record;
use crate::runner::context::{blank, Ctx};
use crate::spec::{LoadMode, Plan, Point, Value};
use crate::sys;
use generator::{CpuWindow, LoadRun};
use server::Server;
use std::path::Path;
use std::time::{Duration, Instant};

pub mod calibrate;
pub mod generator;
mod priority;
pub mod server;
mod sweep;

pub use server::{docroot, FILE_SIZES};

/// The metrics an `http` point records besides the generator's ([`generator::LOAD_METRICS`])
/// and the server's counters ([`generator::COUNTERS`]): the server's CPU over the window
/// (`server_cpu_ns`, `cpu_util` in % of one core, `cpu_budget_pct` in % of its budget,
/// `saturated`, `throttled_pct`, `cpu_us_per_req`), its budget (`server_budget`, a fraction of
/// a core), the calibration (`capacity`, `rate_basis`, `generator_ceiling`), `held_up_s`,
/// `error_pct`, `counters_s` (the seconds between the server's two counter snapshots, which a
/// busy worker takes at the end of its loop pass, a little after the window's edges),
/// `fallback_pct` (the share of that span an RT-signal server served from its fallback scans),
/// and for a ramp `t`, the step's middle in seconds. A metric added to a point goes here too:
/// figures are checked against this list before anything runs.
pub(crate) const POINT_METRICS: [&str; 15] = [
    "server_cpu_ns",
    "cpu_util",
    "cpu_budget_pct",
    "saturated",
    "throttled_pct",
    "cpu_us_per_req",
    "server_budget",
    "capacity",
    "rate_basis",
    "generator_ceiling",
    "held_up_s",
    "error_pct",
    "counters_s",
    "fallback_pct",
    "t",
];

/// The lists an `http` point may record: a ramp's mode-switch times.
pub(crate) const POINT_LISTS: [&str; 1] = ["switch_times"];

/// Every metric an `http` point can carry, for checking the figures that draw them.
pub(crate) fn metric_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = generator::LOAD_METRICS.iter().map(|(n, _)| *n).collect();
    v.extend(generator::COUNTERS);
    v.extend(POINT_METRICS);
    v
}

/// Runs the points of one `http` experiment.
pub(crate) fn run(ctx: &mut Ctx<'_>, plan: &Plan, points: &[Point]) -> Result<(), Error> {
    let root = docroot(&ctx.cfg.out)?;
    let needs_rate = points.iter().any(|p| p.params.contains_key("rate_fraction"));
    let prep = match calibrate::prepare(ctx, plan, &root, needs_rate) {
        Ok(p) => p,
        Err(e) if !sys::interrupted() => {
            // Without a capacity no rate can be placed (or the budget asked for cannot be
            // made): every point says why, and the lab goes on with the next experiment.
            return ctx.emit_errors(plan, points, &format!("calibration failed: {e}"));
        }
        Err(e) => return Err(e),
    };
    eprintln!("lab: {}: {}", plan.exp.name, prep.why);
    if let Some(c) = &prep.cal {
        eprintln!("lab: {}: capacity: {}", plan.exp.name, c.method);
    }
    let basis =
        match prep.cal.as_ref().map(Calibration::basis) {
            Some(Some(b)) => b,
            Some(None) => return ctx.emit_errors(
                plan,
                points,
                "calibration failed: the reference server gave no valid reply rate at any probe",
            ),
            None => 0.0,
        };
    if plan.exp.load.ramp {
        return run_ramp(ctx, plan, points, &root, basis, &prep);
    }
    if plan.exp.load.mode == LoadMode::Sessions && needs_rate {
        // New connections at a rate beside held populations: one server and one holder per
        // mechanism and population, the rates in turn ([`sweep`]).
        let placed: Vec<(Point, f64)> = points
            .iter()
            .map(|p| {
                let rate = p.num("rate").unwrap_or(p.num("rate_fraction").unwrap_or(0.0) * basis);
                (p.clone(), rate)
            })
            .collect();
        return sweep::run_all(ctx, plan, &placed, &root, &prep, &|rec| stamp(rec, &prep));
    }
    for p in points {
        if sys::interrupted() {
            return Err(Error("interrupted".into()));
        }
        let mut rec = blank(plan, p, &ctx.machine);
        if p.mechanism != "nginx" {
            if let Some(why) = ctx.unavailable(&p.mechanism) {
                rec.error = Some(why);
                ctx.emit(rec)?;
                continue;
            }
        }
        let frac = p.num("rate_fraction").unwrap_or(0.0);
        let rate = p.num("rate").unwrap_or(frac * basis);
        rec.params.insert("rate".into(), Value::Num(rate.round()));
        stamp(&mut rec, &prep);
        ctx.message(super::describe(p));
        measure(ctx, plan, p, &root, rate, &prep, &mut rec);
        ctx.emit(rec)?;
    }
    Ok(())
}

/// Writes the experiment's budget and calibration into a point.
fn stamp(rec: &mut Record, prep: &calibrate::Prepared) {
    let budget = prep.budget.as_ref().map_or(1.0, |b| b.fraction);
    rec.metrics.insert("server_budget".into(), budget);
    rec.params.insert(
        "server_cpu".into(),
        match &prep.budget {
            Some(b) => Value::Word(b.describe()),
            None => Value::Word("none".into()),
        },
    );
    rec.params.insert("budget_why".into(), Value::Word(prep.why.clone()));
    rec.params.insert(
        "scheduling".into(),
        Value::Word(format!(
            "server {} on CPU 0, generator {} on {}",
            priority::describe(priority::Role::Server),
            priority::describe(priority::Role::Generator),
            match priority::generator_cores() {
                1 => "CPU 1 (one event loop: this machine has no core to spare for more)".to_string(),
                n => format!("CPUs {} ({n} event loops, one per core but the server's)", priority::generator_cpus()),
            }
        )),
    );
    if let Some(c) = &prep.cal {
        if let Some(cap) = c.capacity {
            rec.metrics.insert("capacity".into(), cap);
        }
        if let Some(b) = c.basis() {
            rec.metrics.insert("rate_basis".into(), b);
        }
        rec.metrics.insert("generator_ceiling".into(), c.generator_ceiling);
        rec.params.insert("capacity_method".into(), Value::Word(c.method.clone()));
    }
}

/// Measures one point into `rec` on a fresh server (errors are recorded, not returned).
fn measure(
    ctx: &mut Ctx<'_>,
    plan: &Plan,
    p: &Point,
    root: &Path,
    rate: f64,
    prep: &calibrate::Prepared,
    rec: &mut Record,
) {
    let server = match server::start(ctx, plan, p, root) {
        Ok(s) => s,
        Err(e) => {
            rec.error = Some(e.0);
            return;
        }
    };
    let run = LoadRun {
        params: &p.params,
        rate,
        duration: plan.duration,
        warmup: plan.warmup.max(0.5),
        budget: prep.budget.as_ref(),
    };
    load_point(ctx, &server, plan, &run, rec);
    ctx.children.stop(server.pid, Duration::from_secs(3));
}

/// Runs the generator for one point against a running server and fills `rec`: the generator's
/// metrics, the server's counter differences and its CPU over the window (as a share of one
/// core and of its budget, and whether it was saturated). Returns the server's stats document
/// after the run.
pub(crate) fn load_point(
    ctx: &mut Ctx<'_>,
    server: &Server,
    plan: &Plan,
    run: &LoadRun<'_>,
    rec: &mut Record,
) -> Option<serde_json::Value> {
    // An ioscale server's counters come from its snapshots at the window's edges; a stats
    // document read before the run is needed only where it takes none (see counter_metrics).
    let before = if server.takes_snapshots() { None } else { server.stats() };
    let mut cpu = CpuWindow::default();
    let res = generator::run(ctx, server, plan, run, &mut cpu);
    let now = server.cpu_ns();
    let after = server.stats();
    match res {
        Ok(v) => {
            generator::load_metrics(&v, rec);
            let scope = generator::counter_metrics(&before, &after, &cpu, rec);
            rec.params.insert("counters".into(), Value::Word(scope.into()));
            let window = v["window_s"].as_f64().filter(|w| *w > 0.0).unwrap_or(plan.duration);
            cpu_metrics(rec, &cpu, now, window, run.budget.map_or(1.0, |b| b.fraction));
            if let Some(ns) = rec.metric("fallback_ns") {
                // The share of the counters' span an RT-signal server spent on its fallback
                // scans (their own span: a worker busy in a long scan takes its snapshot late).
                let span = rec.metric("counters_s").unwrap_or(window);
                rec.metrics.insert("fallback_pct".into(), 100.0 * ns / (span * 1e9));
            }
            rec.raw = v;
        }
        Err(e) => rec.error = Some(e.0),
    }
    after
}

/// The server's CPU over the window: µs per reply, % of one core, % of its budget, whether it
/// was saturated, and the share of the budget's periods in which it was throttled. A window
/// with no CPU reading records none (never a 0 drawn as a measurement).
fn cpu_metrics(rec: &mut Record, cpu: &CpuWindow, now: u64, window: f64, budget: f64) {
    let (Some(start), end) = (cpu.start, cpu.end.unwrap_or(now)) else { return };
    let ns = end.saturating_sub(start) as f64;
    if ns <= 0.0 {
        return;
    }
    rec.metrics.insert("server_cpu_ns".into(), ns);
    let util = ns / (window * 1e9);
    rec.metrics.insert("cpu_util".into(), 100.0 * util);
    rec.metrics.insert("cpu_budget_pct".into(), 100.0 * util / budget);
    rec.metrics.insert(
        "saturated".into(),
        if util >= crate::capacity::SATURATED * budget { 1.0 } else { 0.0 },
    );
    if let Some(replies) = rec.metric("replies").filter(|r| *r > 0.0) {
        rec.metrics.insert("cpu_us_per_req".into(), ns / 1e3 / replies);
    }
    if let (Some(a), Some(b)) = (cpu.throttle_start, cpu.throttle_end) {
        let d = b.since(&a);
        if d.periods > 0 {
            rec.metrics
                .insert("throttled_pct".into(), 100.0 * d.throttled as f64 / d.periods as f64);
        }
    }
    if let (Some(h), true) = (cpu.held_at, cpu.from_events) {
        rec.metrics.insert("held_up_s".into(), h);
    }
}

/// The hybrid ramp: per mechanism, one server, the rate steps in order (up and down), each step
/// a generator run; the server's mode switches (from its stats) are drawn on the time axis.
fn run_ramp(
    ctx: &mut Ctx<'_>,
    plan: &Plan,
    points: &[Point],
    root: &Path,
    capacity: f64,
    prep: &calibrate::Prepared,
) -> Result<(), Error> {
    let steps = super::num_list(plan, "rate_fraction");
    for m in &plan.mechanisms {
        let mine: Vec<&Point> = points.iter().filter(|p| &p.mechanism == m).collect();
        if mine.is_empty() {
            continue;
        }
        if let Some(why) = ctx.unavailable(m) {
            ctx.emit_errors(plan, mine, &why)?;
            continue;
        }
        let server = match server::start_ioscale(ctx, plan, mine[0], root) {
            Ok(s) => s,
            Err(e) => {
                ctx.emit_errors(plan, mine, &e.0)?;
                continue;
            }
        };
        let r = ramp_steps(ctx, plan, m, &steps, &server, capacity, prep);
        ctx.children.stop(server.pid, Duration::from_secs(3));
        r?;
    }
    Ok(())
}

/// The steps of one mechanism's ramp against its one server.
fn ramp_steps(
    ctx: &mut Ctx<'_>,
    plan: &Plan,
    m: &str,
    steps: &[f64],
    server: &Server,
    capacity: f64,
    prep: &calibrate::Prepared,
) -> Result<(), Error> {
    let t0 = Instant::now();
    for (i, frac) in steps.iter().enumerate() {
        if sys::interrupted() {
            return Err(Error("interrupted".into()));
        }
        // The grid gives each step once per distinct fraction; a ramp may repeat fractions
        // (up then down), so the step index makes each point distinct.
        let p = Point {
            mechanism: m.to_string(),
            params: [
                ("step".to_string(), Value::Num(i as f64)),
                ("rate_fraction".to_string(), Value::Num(*frac)),
            ]
            .into_iter()
            .collect(),
        };
        let mut rec = blank(plan, &p, &ctx.machine);
        if ctx.done.contains(&rec.key) {
            continue;
        }
        let rate = frac * capacity;
        rec.params.insert("rate".into(), Value::Num(rate.round()));
        stamp(&mut rec, prep);
        ctx.message(format!("{m} step {i}: {:.0}/s", rate));
        let start = t0.elapsed().as_secs_f64();
        let run = LoadRun {
            params: &p.params,
            rate,
            duration: plan.duration,
            warmup: plan.warmup.max(0.3),
            budget: prep.budget.as_ref(),
        };
        let after = load_point(ctx, server, plan, &run, &mut rec);
        rec.metrics.insert("t".into(), (start + t0.elapsed().as_secs_f64()) / 2.0);
        if let (Some(a), None) = (&after, &rec.error) {
            rec.lists.insert("switch_times".into(), switch_times(a));
        }
        ctx.emit(rec)?;
    }
    Ok(())
}

/// Mode-switch times (seconds) from the server's stats: any array of objects with an `at` field
/// (a number of seconds, or `{secs, nanos}`).
fn switch_times(v: &serde_json::Value) -> Vec<f64> {
    let mut out = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<f64>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(at) = m.get("at") {
                    let secs = at.as_f64().or_else(|| {
                        Some(
                            at.get("secs")?.as_f64()?
                                + at.get("nanos")
                                    .and_then(serde_json::Value::as_f64)
                                    .unwrap_or(0.0)
                                    / 1e9,
                        )
                    });
                    if let Some(s) = secs {
                        out.push(s);
                    }
                }
                for x in m.values() {
                    walk(x, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}
