//! The experiment kinds, one file each, all of the same shape: a `run(ctx, plan, points)` that
//! measures the points it is given with the processes of its kind and writes one record per
//! point through the run's context.
//!
//! | kind       | processes                                    | file          |
//! |------------|----------------------------------------------|---------------|
//! | `dispatch` | one `ioscale overhead --json` per experiment | [`dispatch`]  |
//! | `http`     | `ioscale serve` (or nginx) + `ioscale load`  | [`http`]      |
//! | `herd`     | one `ioscale herd --json` per point          | [`herd`]      |
//!
//! [`soak`] is the long-running sibling of `http` (`ioscale soak`): one server under one
//! generator for minutes, sampled as it goes, rather than a grid of points.

use crate::error::Error;
use crate::runner::context::Ctx;
use crate::spec::{Kind, Plan, Point, Value};
use std::collections::BTreeMap;

pub(crate) mod dispatch;
pub(crate) mod herd;
pub mod http;
pub mod soak;

/// Measures `points` of `plan` with the runner of the experiment's kind.
pub(crate) fn run(ctx: &mut Ctx<'_>, plan: &Plan, points: &[Point]) -> Result<(), Error> {
    match plan.exp.kind {
        Kind::Dispatch => dispatch::run(ctx, plan, points),
        Kind::Http => http::run(ctx, plan, points),
        Kind::Herd => herd::run(ctx, plan, points),
    }
}

/// A grid parameter's numeric values.
pub(crate) fn num_list(plan: &Plan, name: &str) -> Vec<f64> {
    plan.grid.get(name).map(|v| v.iter().filter_map(Value::as_f64).collect()).unwrap_or_default()
}

/// A point's parameters as `k=v` words, for progress messages.
pub(crate) fn describe(p: &Point) -> String {
    format!(
        "{} {}",
        p.mechanism,
        p.params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    )
}

/// Copies every number of a JSON object into `out`, nested keys joined with '.'.
pub(crate) fn flatten_numbers(
    v: &serde_json::Value,
    prefix: &str,
    out: &mut BTreeMap<String, f64>,
) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten_numbers(v, &key, out);
            }
        }
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                out.insert(prefix.to_string(), f);
            }
        }
        _ => {}
    }
}
