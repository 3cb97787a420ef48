//! `herd` experiments: one `ioscale herd --json` child per wait mode and dup count.

use super::{describe, flatten_numbers};
use crate::error::Error;
use crate::runner::context::{blank, Ctx};
use crate::spec::{Plan, Point};
use crate::sys;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs the points of one `herd` experiment.
pub(crate) fn run(ctx: &mut Ctx<'_>, plan: &Plan, points: &[Point]) -> Result<(), Error> {
    if !ctx.available.is_empty() && !herd_available(&ctx.cfg.exe) {
        return ctx.emit_errors(plan, points, "this ioscale build has no `herd` command");
    }
    for p in points {
        if sys::interrupted() {
            return Err(Error("interrupted".into()));
        }
        ctx.message(describe(p));
        let mut rec = blank(plan, p, &ctx.machine);
        let mut cmd = Command::new(&ctx.cfg.exe);
        cmd.args(["herd", "--json", "--wait-in", &p.mechanism]);
        for (k, v) in &p.params {
            cmd.arg(format!("--{k}")).arg(v.to_string());
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let pid = ctx.children.spawn(cmd)?;
        let child = ctx.children.take(pid).ok_or_else(|| Error("lost the herd child".into()))?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            rec.error = Some(String::from_utf8_lossy(&out.stderr).trim().to_string());
        } else {
            match serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                Ok(v) => {
                    let row = if let serde_json::Value::Array(a) = &v {
                        a.first().cloned().unwrap_or_default()
                    } else {
                        v
                    };
                    flatten_numbers(&row, "", &mut rec.metrics);
                    rec.raw = row;
                }
                Err(e) => rec.error = Some(format!("ioscale herd printed no JSON: {e}")),
            }
        }
        ctx.emit(rec)?;
    }
    Ok(())
}

fn herd_available(exe: &Path) -> bool {
    Command::new(exe)
        .args(["herd", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
