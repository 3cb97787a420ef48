//! `dispatch` experiments: one `ioscale overhead --json` child for the whole plan (it
//! interleaves mechanisms and idle counts itself), pinned to CPU 0.

use super::num_list;
use crate::error::Error;
use crate::runner::children::pinned;
use crate::runner::context::{blank, Ctx};
use crate::spec::{Plan, Point};
use std::process::Stdio;

/// Runs the points of one `dispatch` experiment.
pub(crate) fn run(ctx: &mut Ctx<'_>, plan: &Plan, points: &[Point]) -> Result<(), Error> {
    let mut runnable = Vec::new();
    for m in &plan.mechanisms {
        if let Some(why) = ctx.unavailable(m) {
            ctx.emit_errors(plan, points.iter().filter(|p| &p.mechanism == m), &why)?;
        } else if points.iter().any(|p| &p.mechanism == m) {
            runnable.push(m.clone());
        }
    }
    if runnable.is_empty() {
        return Ok(());
    }
    let rows = overhead(ctx, plan, &runnable)?;
    for p in points.iter().filter(|p| runnable.contains(&p.mechanism)) {
        let mut rec = blank(plan, p, &ctx.machine);
        let idle = p.num("idle").unwrap_or(0.0);
        let row = rows
            .iter()
            .find(|r| r["mechanism"] == p.mechanism.as_str() && r["idle"].as_f64() == Some(idle));
        match row {
            Some(r) => {
                if let Some(e) = r["error"].as_str() {
                    rec.error = Some(e.to_string());
                }
                for k in [
                    "ns_per_cycle",
                    "ratio_to_smallest",
                    "waits_per_event",
                    "interest_syscalls_per_cycle",
                ] {
                    if let Some(v) = r[k].as_f64() {
                        rec.metrics.insert(k.to_string(), v);
                    }
                }
                if let Some(c) = r["counters"].as_object() {
                    for (k, v) in c {
                        if let Some(v) = v.as_f64() {
                            rec.metrics.insert(k.clone(), v);
                        }
                    }
                }
                rec.raw = r.clone();
            }
            None => rec.error = Some("ioscale overhead returned no row for this point".into()),
        }
        ctx.emit(rec)?;
    }
    Ok(())
}

/// Runs `ioscale overhead --json` over the runnable mechanisms and the plan's idle counts;
/// returns its rows.
fn overhead(
    ctx: &mut Ctx<'_>,
    plan: &Plan,
    runnable: &[String],
) -> Result<Vec<serde_json::Value>, Error> {
    let idle: Vec<String> = num_list(plan, "idle").iter().map(|v| format!("{v}")).collect();
    ctx.message(format!("{} mechanisms × {} idle counts", runnable.len(), idle.len()));
    // `--mechanisms` takes every name of the dispatch table, the completion model included.
    let mut cmd = pinned(&ctx.cfg.exe, 0);
    cmd.args([
        "overhead",
        "--json",
        "--mechanisms",
        &runnable.join(","),
        "--idle",
        &idle.join(","),
    ])
    .args(["--rounds", &plan.rounds.to_string()])
    .args(["--round-ms", &((plan.duration * 1000.0).round().max(1.0) as u64).to_string()])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let pid = ctx.children.spawn(cmd)?;
    let child = ctx.children.take(pid).ok_or_else(|| Error("lost the overhead child".into()))?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(Error(format!(
            "ioscale overhead failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| Error(format!("ioscale overhead printed something that is not its JSON: {e}")))
}
