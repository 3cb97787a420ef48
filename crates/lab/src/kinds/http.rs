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

use crate::record::Record;
use crate::runner::{blank, Ctx, Error};
use crate::spec::{Plan, Point, Value};
use crate::sys;
use generator::{CpuWindow, LoadRun};
use server::Server;
use std::path::Path;
use std::time::{Duration, Instant};

pub mod calibrate;
pub mod generator;
pub mod server;

pub use server::{docroot, FILE_SIZES};

/// The metrics an `http` point records besides the generator's ([`generator::LOAD_METRICS`])
/// and the server's counters ([`generator::COUNTERS`]): the server's CPU over the window
/// (`server_cpu_ns`, `cpu_util` in % of one core, `cpu_us_per_req`), the calibrated
/// `capacity`, `error_pct`, and for a ramp `t`, the step's middle in seconds.
pub(crate) const POINT_METRICS: [&str; 6] =
    ["server_cpu_ns", "cpu_util", "cpu_us_per_req", "capacity", "error_pct", "t"];

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
    let (capacity, note) = if needs_rate {
        match calibrate::capacity(ctx, plan, &root) {
            Ok(c) => c,
            Err(e) if !sys::interrupted() => {
                // Without a capacity no rate can be placed: every point says why, and the lab
                // goes on with the next experiment.
                return ctx.emit_errors(plan, points, &format!("calibration failed: {e}"));
            }
            Err(e) => return Err(e),
        }
    } else {
        (0.0, String::new())
    };
    if plan.exp.load.ramp {
        return run_ramp(ctx, plan, points, &root, capacity);
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
        let rate = p.num("rate").unwrap_or(frac * capacity);
        rec.params.insert("rate".into(), Value::Num(rate.round()));
        rec.metrics.insert("capacity".into(), capacity);
        if !note.is_empty() {
            rec.params.insert("calibration_note".into(), Value::Word(note.clone()));
        }
        ctx.message(super::describe(p));
        measure(ctx, plan, p, &root, rate, &mut rec);
        ctx.emit(rec)?;
    }
    Ok(())
}

/// Measures one point into `rec` on a fresh server (errors are recorded, not returned).
fn measure(ctx: &mut Ctx<'_>, plan: &Plan, p: &Point, root: &Path, rate: f64, rec: &mut Record) {
    let server = match server::start(ctx, plan, p, root) {
        Ok(s) => s,
        Err(e) => {
            rec.error = Some(e.0);
            return;
        }
    };
    let run =
        LoadRun { params: &p.params, rate, duration: plan.duration, warmup: plan.warmup.max(0.5) };
    load_point(ctx, &server, plan, &run, rec);
    ctx.children.stop(server.pid, Duration::from_secs(3));
}

/// Runs the generator for one point against a running server and fills `rec`: the generator's
/// metrics, the server's counter differences and its CPU over the window. Returns the server's
/// stats document after the run.
fn load_point(
    ctx: &mut Ctx<'_>,
    server: &Server,
    plan: &Plan,
    run: &LoadRun<'_>,
    rec: &mut Record,
) -> Option<serde_json::Value> {
    let before = server.stats();
    let mut cpu = CpuWindow::default();
    let res = generator::run(ctx, server, plan, run, &mut cpu);
    let now = server.cpu_ns();
    let after = server.stats();
    match res {
        Ok(v) => {
            generator::load_metrics(&v, rec);
            generator::counter_metrics(&before, &after, rec);
            let ns = cpu.end.unwrap_or(now).saturating_sub(cpu.start.unwrap_or(0)) as f64;
            rec.metrics.insert("server_cpu_ns".into(), ns);
            rec.metrics.insert("cpu_util".into(), 100.0 * ns / (plan.duration * 1e9));
            if let Some(replies) = rec.metric("replies").filter(|r| *r > 0.0) {
                rec.metrics.insert("cpu_us_per_req".into(), ns / 1e3 / replies);
            }
            rec.raw = v;
        }
        Err(e) => rec.error = Some(e.0),
    }
    after
}

/// The hybrid ramp: per mechanism, one server, the rate steps in order (up and down), each step
/// a generator run; the server's mode switches (from its stats) are drawn on the time axis.
fn run_ramp(
    ctx: &mut Ctx<'_>,
    plan: &Plan,
    points: &[Point],
    root: &Path,
    capacity: f64,
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
        let r = ramp_steps(ctx, plan, m, &steps, &server, capacity);
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
        ctx.message(format!("{m} step {i}: {:.0}/s", rate));
        let start = t0.elapsed().as_secs_f64();
        let run = LoadRun {
            params: &p.params,
            rate,
            duration: plan.duration,
            warmup: plan.warmup.max(0.3),
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
