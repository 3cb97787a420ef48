//! This machine's capacity for an `http` experiment's session shape, against which its rates
//! (fractions of capacity) are placed.

use super::generator::{self, CpuWindow, LoadRun};
use super::server;
use crate::runner::{blank, Ctx, Error};
use crate::spec::{LoadMode, Plan, Point};
use crate::sys;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

thread_local! {
    /// Capacities found in this run, by session shape: experiments of the same shape share one.
    static CAPACITY: std::cell::RefCell<BTreeMap<String, f64>> = const { std::cell::RefCell::new(BTreeMap::new()) };
}

/// Finds this machine's capacity for the experiment's session shape: the highest open-loop
/// session rate the epoll server sustains (≥ 97% of the target replied, generator valid),
/// searched geometrically and then refined once. Returns it with a note on what stopped the
/// search.
pub(crate) fn capacity(
    ctx: &mut Ctx<'_>,
    plan: &Plan,
    root: &Path,
) -> Result<(f64, String), Error> {
    let key = format!(
        "{:?}:{}:{:?}:{:?}",
        plan.exp.load.mode,
        plan.exp.load.calls.unwrap_or(1),
        plan.exp.load.connections,
        plan.exp.load.args
    );
    if let Some(c) = CAPACITY.with(|m| m.borrow().get(&key).copied()) {
        return Ok((c, "cached".into()));
    }
    let mut good = 0.0f64;
    let mut bad = f64::INFINITY;
    let requests = plan.exp.load.mode == LoadMode::Requests;
    let mut rate = if requests { 8000.0f64 } else { 2000.0f64 };
    let mut note = String::new();
    for _ in 0..9 {
        if sys::interrupted() {
            return Err(Error("interrupted".into()));
        }
        let unit = if requests { "requests/s" } else { "sessions/s" };
        ctx.message(format!("calibrating: {rate:.0} {unit}"));
        if sustains(ctx, plan, root, rate, &mut note)? {
            good = rate;
        } else {
            bad = rate;
        }
        rate = if bad.is_finite() { (good + bad) / 2.0 } else { rate * 2.0 };
        if bad.is_finite() && (bad - good) / bad < 0.15 {
            break;
        }
    }
    if good <= 0.0 {
        return Err(Error(
            "calibration failed: the epoll server could not sustain the lowest rate tried".into(),
        ));
    }
    CAPACITY.with(|m| m.borrow_mut().insert(key, good));
    Ok((good, note))
}

/// One probe: whether a fresh epoll server answers ≥ 97% of `rate` with the generator valid.
/// A probe that fails says why in `note`.
fn sustains(
    ctx: &mut Ctx<'_>,
    plan: &Plan,
    root: &Path,
    rate: f64,
    note: &mut String,
) -> Result<bool, Error> {
    let probe = Point { mechanism: "epoll".into(), params: BTreeMap::new() };
    let server = server::start_ioscale(ctx, plan, &probe, root)?;
    let mut cpu = CpuWindow::default();
    let params = BTreeMap::new();
    let run = LoadRun { params: &params, rate, duration: 2.0, warmup: 0.5 };
    let res = generator::run(ctx, &server, plan, &run, &mut cpu);
    ctx.children.stop(server.pid, Duration::from_secs(3));
    Ok(match res {
        Ok(v) => {
            let mut r = blank(plan, &probe, &ctx.machine);
            generator::load_metrics(&v, &mut r);
            let got = r.metric("reply_rate_avg").unwrap_or(0.0);
            if !r.valid {
                *note = format!("generator limit near {rate:.0}/s");
            }
            if !(r.valid && got >= 0.97 * rate) {
                *note = format!(
                    "at {rate:.0}/s: {got:.0} replies/s{}",
                    r.invalid_reason.map(|w| format!(", {w}")).unwrap_or_default()
                );
            }
            r.valid && got >= 0.97 * rate
        }
        Err(e) => {
            *note = e.0;
            false
        }
    })
}
