//! The rules of a figure or table (`[[figure.rule]]`, `[[table.rule]]`): what the experiment
//! file says, and their own consistency check. Judging them against the data is
//! [`crate::report::verdict`]'s job; the types live here, with the rest of the file's schema, so
//! that the spec does not depend on the report.

use super::Value;
use serde::Deserialize;
use std::collections::BTreeMap;

/// What a rule measures.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// y(largest x) / y(smallest x), per line.
    Growth,
    /// y of each `series` line over y of each `than` line.
    Compare,
    /// y, or an aggregate of it, between bounds.
    Range,
    /// y is 0 everywhere (`at_most` widens it).
    Zero,
}

/// How the points of a line are reduced before the bounds are applied (`range`, `compare`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Of {
    /// Every point (every common x, for `compare`) must pass.
    #[default]
    Each,
    /// The largest y.
    Max,
    /// The smallest y.
    Min,
    /// The mean y.
    Mean,
    /// y at the smallest x.
    First,
    /// y at the largest x.
    Last,
}

/// One checkable statement of a paper's finding.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// What it measures.
    pub kind: Kind,
    /// The finding in words, as the verdict table prints it ("poll's CPU per request grows ≥ 2x").
    pub says: String,
    /// The lines it is about (names as in the legend: a mechanism, or `inactive=251`); empty =
    /// every line of the figure.
    #[serde(default)]
    pub series: Vec<String>,
    /// `compare`: the lines the `series` are compared with.
    #[serde(default)]
    pub than: Vec<String>,
    /// The value judged, default the figure's y: a metric or parameter, or `a/b`.
    pub metric: Option<String>,
    /// The x the range is taken on, default the figure's x (e.g. `rate_fraction` where the figure
    /// draws the absolute `rate`). Required in a table's rules.
    pub x: Option<String>,
    /// Only points whose parameters match these (besides the figure's own `where`).
    #[serde(default, rename = "where")]
    pub filter: BTreeMap<String, Value>,
    /// Only points whose value of each key (a metric, or `a/b`) is below its bound, e.g.
    /// `below = { "reply_rate_avg/rate" = 0.95 }`: where the server replied to less than 95% of
    /// the offered rate, i.e. was past its capacity. A line with no such point is not measured.
    #[serde(default)]
    pub below: BTreeMap<String, f64>,
    /// The smallest x considered.
    pub from: Option<f64>,
    /// The largest x considered.
    pub to: Option<f64>,
    /// Lower bound (on the growth, the ratio, or the value).
    pub at_least: Option<f64>,
    /// Upper bound.
    pub at_most: Option<f64>,
    /// How points are reduced (`range`, `compare`).
    #[serde(default)]
    pub of: Of,
    /// Slack on the bounds: a fraction of the bound (0.1 = 10%), or an absolute amount where the
    /// bound is 0.
    #[serde(default)]
    pub tolerance: f64,
    /// Why this machine or this run may differ from the paper, printed where the rule does not
    /// hold (a modern kernel's genuine difference, or a limit of the run).
    pub reason: Option<String>,
}

impl Rule {
    /// Checks the rule's own consistency; `table` rules must name their x and metric.
    pub fn check(&self, table: bool) -> Result<(), String> {
        let who = format!("rule \"{}\"", self.says);
        if self.kind == Kind::Compare && self.than.is_empty() {
            return Err(format!("{who}: a compare rule needs `than` (the lines to compare with)"));
        }
        if self.kind != Kind::Zero && self.at_least.is_none() && self.at_most.is_none() {
            return Err(format!("{who}: needs at_least or at_most"));
        }
        if let (Some(a), Some(b)) = (self.from, self.to) {
            if a > b {
                return Err(format!("{who}: from {a} is above to {b}"));
            }
        }
        if !(self.tolerance >= 0.0 && self.tolerance.is_finite()) {
            return Err(format!("{who}: tolerance {} must be 0 or more", self.tolerance));
        }
        if let Some((k, b)) = self.below.iter().find(|(_, b)| !b.is_finite()) {
            return Err(format!("{who}: below.{k} = {b} must be a finite number"));
        }
        if table && (self.x.is_none() || self.metric.is_none()) {
            return Err(format!("{who}: a table's rule needs `x` and `metric`"));
        }
        Ok(())
    }
}
