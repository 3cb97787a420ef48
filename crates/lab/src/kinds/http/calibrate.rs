//! The server's CPU budget and capacity for an `http` experiment, against which its rates
//! (fractions of capacity) are placed.
//!
//! Calibration runs the reference server (epoll) in the experiment's own shape (its load mode,
//! and the grid's smallest held populations and reply size): a light probe measures what one
//! reply costs the server and the generator; the budget follows (`auto`) or is the experiment's;
//! probes at and past the estimated capacity, under the budget, find the reply rate of the
//! saturated server ([`crate::capacity`]).

use super::generator::{self, CpuWindow, LoadRun};
use super::server;
use crate::budget::Budget;
use crate::capacity::{self, Calibration, Probe};
use crate::error::Error;
use crate::runner::context::{blank, Ctx};
use crate::spec::{Budgeting, LoadMode, Plan, Point, Value};
use crate::sys;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The mechanism whose capacity places every line's rates.
pub(crate) const REFERENCE: &str = "epoll";

/// A calibration kept for later experiments of the same shape: the budget's fraction, what
/// was found, why the budget is what it is, and the top rate (a fraction of capacity) the
/// budget leaves the generator headroom for.
type Found = (Option<f64>, Calibration, String, f64);

thread_local! {
    /// Calibrations found in this run, by shape and budget setting: experiments of the same
    /// shape share one.
    static FOUND: std::cell::RefCell<BTreeMap<String, Found>> =
        const { std::cell::RefCell::new(BTreeMap::new()) };
    /// Calibrations with a mechanism's knee, by shape, knee mechanism, server settings and the
    /// budget and capacity they started from.
    static KNEES: std::cell::RefCell<BTreeMap<String, Calibration>> =
        const { std::cell::RefCell::new(BTreeMap::new()) };
}

/// An experiment's budget and calibration.
pub(crate) struct Prepared {
    /// The cgroup the servers run in (from when their held populations are up).
    pub(crate) budget: Option<Budget>,
    /// What calibration found (`None` when no point places its rate by capacity).
    pub(crate) cal: Option<Calibration>,
    /// Why the server has this budget, in words.
    pub(crate) why: String,
}

/// The budget an experiment asks for (the command line's `--server-cpu` first).
pub(crate) fn setting(ctx: &Ctx<'_>, plan: &Plan) -> Budgeting {
    ctx.cfg
        .server_cpu
        .unwrap_or_else(|| plan.server_cpu.map_or(Budgeting::Unlimited, Budgeting::from))
}

/// Makes the experiment's budget and calibrates its capacity (when `needs_rate`), and the knee
/// of its `knee` mechanism where it names one.
pub(crate) fn prepare(
    ctx: &mut Ctx<'_>,
    plan: &Plan,
    root: &Path,
    needs_rate: bool,
) -> Result<Prepared, Error> {
    let mut prep = prepare_capacity(ctx, plan, root, needs_rate)?;
    let (Some(cal), Some(m)) = (prep.cal.as_mut(), plan.exp.knee.as_deref()) else {
        return Ok(prep);
    };
    // A later experiment of this shape may have calibrated again (a higher top rate): the
    // budget and capacity found are part of what identifies the knee.
    let key = format!(
        "{}:{m}:{:?}:{:?}:{:?}",
        shape_key(plan, setting(ctx, plan)),
        plan.exp.server,
        cal.budget,
        cal.capacity
    );
    if let Some(found) = KNEES.with(|k| k.borrow().get(&key).cloned()) {
        *cal = found;
    } else {
        find_knee(ctx, plan, root, &shape(plan), m, cal, prep.budget.as_ref())?;
        KNEES.with(|k| k.borrow_mut().insert(key, cal.clone()));
    }
    Ok(prep)
}

/// What identifies an experiment's calibration: its load's shape and the budget asked for.
fn shape_key(plan: &Plan, want: Budgeting) -> String {
    format!(
        "{:?}:{:?}:{:?}:{:?}:{:?}:{want:?}",
        plan.exp.load.mode,
        plan.exp.load.calls,
        plan.exp.load.connections,
        plan.exp.load.args,
        shape(plan)
    )
}

/// The budget and the reference server's capacity ([`prepare`] without the knee).
fn prepare_capacity(
    ctx: &mut Ctx<'_>,
    plan: &Plan,
    root: &Path,
    needs_rate: bool,
) -> Result<Prepared, Error> {
    let want = setting(ctx, plan);
    if want == Budgeting::Unlimited && !needs_rate {
        return Ok(Prepared { budget: None, cal: None, why: "no CPU budget".into() });
    }
    let shape = shape(plan);
    let key = shape_key(plan, want);
    let top = super::super::num_list(plan, "rate_fraction").into_iter().fold(1.0f64, f64::max);
    // A budget found for a lower top rate would not leave this experiment's generator its
    // headroom: calibrate again.
    if let Some((fraction, cal, why, _)) =
        FOUND.with(|m| m.borrow().get(&key).cloned()).filter(|f| f.3 >= top)
    {
        let budget = fraction.map(Budget::create).transpose().map_err(|e| Error(e.0))?;
        return Ok(Prepared { budget, cal: needs_rate.then_some(cal), why });
    }
    let light_rate = match plan.exp.load.mode {
        LoadMode::Requests => 4000.0,
        LoadMode::Sessions | LoadMode::Periodic => 1000.0,
    };
    ctx.message(format!("calibrating: light probe at {light_rate:.0}/s"));
    let first = probe(ctx, plan, root, &shape, REFERENCE, light_rate, 2.0, None)?;
    // Both sides spend less per reply as the rate rises (more work per wakeup): a second probe,
    // where the generator is about 40% busy by the first one's cost, is nearer to what
    // saturation costs. Neither probe has a budget: the server has its whole core.
    let second = (first.generator_s_per_reply > 0.0)
        .then(|| (0.4 / first.generator_s_per_reply).max(light_rate))
        .filter(|r| *r > 1.2 * light_rate);
    let light = match second {
        Some(r) => {
            ctx.message(format!("calibrating: light probe at {r:.0}/s"));
            let p = probe(ctx, plan, root, &shape, REFERENCE, r, 2.0, None)?;
            if p.generator_valid && p.server_s_per_reply().is_some() {
                p
            } else {
                first.clone()
            }
        }
        None => first.clone(),
    };
    let generator_cores = if ctx.cfg.load_hosts.is_empty() {
        super::priority::generator_cores() as f64
    } else {
        ctx.cfg.load_hosts.len() as f64
    };
    let (fraction, mut why) = match want {
        Budgeting::Unlimited => (None, "no CPU budget (the experiment or --server-cpu asks for none)".to_string()),
        Budgeting::Fixed(f) => (Some(f), format!("a CPU budget of {} of a core, as the experiment or --server-cpu asks", crate::budget::fmt_fraction(f))),
        Budgeting::Auto => match capacity::auto_budget(&light, top, generator_cores) {
            Some(f) if f < 1.0 => (Some(f), format!(
                "a CPU budget of {} of a core (auto): a light probe measured {:.1} µs of server CPU and {:.1} µs of generator CPU per reply, so this is the largest budget under which the generator can offer {top}x the server's capacity using at most {:.0}% of its {generator_cores} core(s)",
                crate::budget::fmt_fraction(f),
                light.server_s_per_reply().unwrap_or(0.0) * 1e6,
                light.generator_s_per_reply * 1e6,
                capacity::GENERATOR_HEADROOM * 100.0
            )),
            Some(_) => (None, "no CPU budget (auto): the generator can outrun the whole server core".to_string()),
            None => (None, "no CPU budget (auto): the light probe measured no replies".to_string()),
        },
    };
    let mut budget = None;
    if let Some(f) = fraction {
        match Budget::create(f) {
            Ok(b) => {
                why = format!("{why}; {}", b.describe());
                budget = Some(b);
            }
            Err(e) if want == Budgeting::Auto => {
                why = format!("no CPU budget: {e}");
            }
            Err(e) => return Err(Error(e.0)),
        }
    }
    let fraction = budget.as_ref().map(|b| b.fraction);
    let mut probes = vec![first.clone()];
    if light != first {
        probes.push(light.clone());
    }
    let mut cal = Calibration::judge(probes.clone(), fraction, generator_cores, REFERENCE);
    if needs_rate {
        let light_probes = probes.clone();
        let start = capacity::probe_rates(&light, fraction.unwrap_or(1.0));
        probes.extend(probe_capacity(ctx, plan, root, &shape, &start, budget.as_ref())?);
        cal = Calibration::judge(probes, fraction, generator_cores, REFERENCE);
        // The light probes overestimate the server's cost per reply more than the generator's:
        // where the capacity measured leaves the generator too little headroom at the top
        // rate, the budget shrinks in proportion and the capacity is measured again under it.
        let refit = match (want, fraction) {
            (Budgeting::Auto, Some(f)) => capacity::refit_budget(&cal, f, top, generator_cores),
            _ => None,
        };
        if let (Some(f2), Some(f), Some(cap)) = (refit, fraction, cal.capacity) {
            let b2 = Budget::create(f2).map_err(|e| Error(e.0))?;
            why = format!(
                "{why}; at the capacity measured under it ({cap:.0}/s) the generator would need more than {:.0}% of its core(s) at {top}x, so the budget was lowered to {} and the capacity measured again: {}",
                capacity::GENERATOR_HEADROOM * 100.0,
                crate::budget::fmt_fraction(f2),
                b2.describe()
            );
            budget = Some(b2);
            let scale = f2 / f;
            let start = [0.8 * scale * cap, scale * cap, 1.3 * scale * cap];
            let mut again = light_probes;
            again.extend(probe_capacity(ctx, plan, root, &shape, &start, budget.as_ref())?);
            cal = Calibration::judge(again, Some(f2), generator_cores, REFERENCE);
        }
    }
    let fraction = budget.as_ref().map(|b| b.fraction);
    FOUND.with(|m| m.borrow_mut().insert(key, (fraction, cal.clone(), why.clone(), top)));
    Ok(Prepared { budget, cal: needs_rate.then_some(cal), why })
}

/// Probes the reference server under `budget` at `rates`, then at 1.3x steps while it still
/// keeps up (per-reply costs fall as the server batches), as long as the generator stays valid.
fn probe_capacity(
    ctx: &mut Ctx<'_>,
    plan: &Plan,
    root: &Path,
    shape: &BTreeMap<String, Value>,
    rates: &[f64],
    budget: Option<&Budget>,
) -> Result<Vec<Probe>, Error> {
    let mut probes = Vec::new();
    for &rate in rates {
        if sys::interrupted() {
            return Err(Error("interrupted".into()));
        }
        ctx.message(format!("calibrating: {rate:.0}/s"));
        probes.push(probe(ctx, plan, root, shape, REFERENCE, rate, 2.0, budget)?);
    }
    let fraction = budget.map(|b| b.fraction);
    for _ in 0..3 {
        let Some(last) = probes.last().filter(|p| p.generator_valid).cloned() else { break };
        if capacity::levelled(&probes, fraction) || sys::interrupted() {
            break;
        }
        let rate = 1.3 * last.offered;
        ctx.message(format!("calibrating: {rate:.0}/s (the server still kept up)"));
        probes.push(probe(ctx, plan, root, shape, REFERENCE, rate, 2.0, budget)?);
    }
    Ok(probes)
}

/// Finds the knee of `mechanism` under the experiment's budget ([`capacity::knee_next`]): the
/// highest rate at which it keeps up with no RT-signal queue overflow. Chandra & Mosberger
/// place Table 1's rows around their RT-signal server's own saturation ("saturated at about
/// 3200 req/s, which corresponds to the high number of sigwaitinfo()s resulting in SIGIOs"),
/// not around another server's; where this mechanism costs more per reply than the reference,
/// its knee comes first. Found, it places the rates and `cal.method` says how.
fn find_knee(
    ctx: &mut Ctx<'_>,
    plan: &Plan,
    root: &Path,
    shape: &BTreeMap<String, Value>,
    mechanism: &str,
    cal: &mut Calibration,
    budget: Option<&Budget>,
) -> Result<(), Error> {
    let Some(cap) = cal.basis() else { return Ok(()) };
    let mut probes: Vec<Probe> = Vec::new();
    while let Some(rate) = capacity::knee_next(cap, &probes) {
        if sys::interrupted() {
            return Err(Error("interrupted".into()));
        }
        ctx.message(format!("calibrating the knee of {mechanism}: {rate:.0}/s"));
        probes.push(probe(ctx, plan, root, shape, mechanism, rate, KNEE_PROBE_S, budget)?);
    }
    let tried: Vec<String> = probes
        .iter()
        .map(|p| {
            format!(
                "{:.0}/s: {:.0} replies/s, {:.0} overflows{}",
                p.offered,
                p.replies_per_s,
                p.overflows,
                if p.generator_valid { "" } else { ", generator INVALID" }
            )
        })
        .collect();
    let under = budget.map_or("without a budget".to_string(), |b| {
        format!("under the same budget of {} of a core", crate::budget::fmt_fraction(b.fraction))
    });
    cal.knee = capacity::knee(&probes);
    cal.method = match cal.knee {
        Some(k) => format!(
            "rates placed on the knee of {mechanism}, {k:.0}/s: the highest rate at which it replied to {:.0}% or more of the offered rate with no RT-signal queue overflow in a {KNEE_PROBE_S:.0} s window {under} (probes: {}); the reference capacity: {}",
            capacity::LEVELLED * 100.0,
            tried.join("; "),
            cal.method
        ),
        None => format!(
            "{}; no knee of {mechanism} was found below the highest rate probed (probes: {}), so the reference capacity places the rates",
            cal.method,
            tried.join("; ")
        ),
    };
    eprintln!("lab: {}: {}", plan.exp.name, cal.method);
    Ok(())
}

/// Seconds of load per knee probe (overflows are rare events near the knee: a longer window
/// than the capacity probes').
const KNEE_PROBE_S: f64 = 3.0;

/// The calibration's point parameters: the grid's smallest number and first word of each
/// parameter (smallest reply), rates left out, and the held populations too where they do not
/// carry the load (the capacity is the server's with no connection held; the held sets are
/// what the experiment varies against it).
fn shape(plan: &Plan) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (k, vals) in &plan.grid {
        if k == "rate_fraction" || k == "rate" {
            continue;
        }
        if plan.exp.load.mode != LoadMode::Periodic && super::generator::HELD.contains(&k.as_str())
        {
            continue;
        }
        let min = vals
            .iter()
            .filter_map(Value::as_f64)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v))));
        if let Some(v) = min.map(Value::Num).or_else(|| vals.first().cloned()) {
            out.insert(k.clone(), v);
        }
    }
    out
}

/// One probe: a fresh `mechanism` server, the generator at `rate` for `duration` seconds, the
/// server under `budget` once the held populations are up.
#[allow(clippy::too_many_arguments)]
fn probe(
    ctx: &mut Ctx<'_>,
    plan: &Plan,
    root: &Path,
    params: &BTreeMap<String, Value>,
    mechanism: &str,
    rate: f64,
    duration: f64,
    budget: Option<&Budget>,
) -> Result<Probe, Error> {
    let point = Point { mechanism: mechanism.into(), params: params.clone() };
    let server = server::start_ioscale(ctx, plan, &point, root)?;
    let mut cpu = CpuWindow::default();
    let run = LoadRun { params, rate, duration, warmup: 1.0, budget };
    let res = generator::run(ctx, &server, plan, &run, &mut cpu);
    let now = server.cpu_ns();
    let after = server.stats();
    ctx.children.stop(server.pid, Duration::from_secs(3));
    let v = res?;
    let mut r = blank(plan, &point, &ctx.machine);
    generator::load_metrics(&v, &mut r);
    generator::counter_metrics(&None, &after, &cpu, &mut r);
    let ns = cpu.end.unwrap_or(now).saturating_sub(cpu.start.unwrap_or(0)) as f64;
    let window = v["window_s"].as_f64().filter(|w| *w > 0.0).unwrap_or(duration);
    Ok(Probe {
        offered: rate,
        replies_per_s: r.metric("reply_rate_avg").unwrap_or(0.0),
        server_cores: ns / 1e9 / window,
        generator_s_per_reply: v["self_check"]["cpu_us_per_reply"].as_f64().unwrap_or(0.0) / 1e6,
        generator_valid: r.valid,
        overflows: r.metric("overflows").unwrap_or(0.0),
    })
}
