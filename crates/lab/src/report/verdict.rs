//! A verdict per figure, computed from the data.
//!
//! Each figure and table of an experiment file states the paper's finding as a few checkable
//! rules (`[[figure.rule]]`, `[[table.rule]]`; the vocabulary is in `experiments/README.md`):
//!
//! - `growth`: y at the largest x over y at the smallest x (within `from`..`to`), per line;
//! - `compare`: one line's y over another's, at every common x or over an aggregate;
//! - `range`: y (or an aggregate of it) between bounds, over an x range;
//! - `zero`: y is 0 at every point (within an absolute tolerance).
//!
//! Rules judge the VALID points only ([`crate::report::lines`]). A rule holds when every line it names
//! was measured and passes, fails when any measured line fails, and is not measured when none
//! was. A figure is REPRODUCED when all its rules hold, NOT REPRODUCED when none does, PARTLY in
//! between, and NOT MEASURED when no rule could be judged. Every verdict carries the numbers that
//! decided it, and a rule's `reason` (why this machine or this run may differ from the paper) is
//! printed where the rule does not hold.

use crate::record::Record;
use crate::report::lines::{self, LinePoint, Lines, Select};
use crate::report::plot::ticks::fmt_value;
pub use crate::spec::rule::{Kind, Of, Rule};
use crate::spec::Value;
use std::collections::BTreeMap;
use std::fmt;

impl Rule {
    fn bounds(&self) -> (Option<f64>, Option<f64>) {
        let slack = |b: f64| if b == 0.0 { self.tolerance } else { b.abs() * self.tolerance };
        let hi = match self.kind {
            Kind::Zero => Some(self.at_most.unwrap_or(0.0)),
            _ => self.at_most,
        };
        (self.at_least.map(|b| b - slack(b)), hi.map(|b| b + slack(b)))
    }

    fn want(&self) -> String {
        let hi =
            if self.kind == Kind::Zero { Some(self.at_most.unwrap_or(0.0)) } else { self.at_most };
        let tol = |b: f64| {
            if self.tolerance <= 0.0 {
                String::new()
            } else if b == 0.0 {
                format!(" ±{}", fmt_value(self.tolerance))
            } else {
                format!(" ±{}%", fmt_value(self.tolerance * 100.0))
            }
        };
        match (self.at_least, hi) {
            (Some(a), Some(b)) => format!("{}–{}{}", fmt_value(a), fmt_value(b), tol(b)),
            (Some(a), None) => format!("≥ {}{}", fmt_value(a), tol(a)),
            (None, Some(b)) => format!("≤ {}{}", fmt_value(b), tol(b)),
            (None, None) => String::new(),
        }
    }
}

/// How one rule came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every line it names was measured and passes.
    Holds,
    /// The lines measured pass, some were not measured.
    Incomplete,
    /// A measured line fails.
    Fails,
    /// No line it names was measured.
    NotMeasured,
}

/// A rule's outcome with the numbers that decided it.
#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    /// The rule's words.
    pub says: String,
    /// How it came out.
    pub outcome: Outcome,
    /// The bounds, in words ("≥ 2", "0.77–1.3", "≤ 0").
    pub want: String,
    /// One phrase per line judged: Some(pass) with its numbers ("poll 141→434 = 3.08x
    /// (250→3,000)"), or None with the line that could not be judged.
    pub parts: Vec<(Option<bool>, String)>,
    /// Lines it names that have no point at all in this run (left out of this variant).
    pub not_run: Vec<String>,
    /// The rule's reason, where a measured line fails it.
    pub reason: Option<String>,
}

impl Judged {
    /// The deciding numbers in one line: each judged line with ✓ or ✗, then the lines that
    /// could not be judged.
    pub fn numbers(&self) -> String {
        let mut out: Vec<String> = self
            .parts
            .iter()
            .filter_map(|(p, s)| p.map(|ok| format!("{s} {}", if ok { "✓" } else { "✗" })))
            .collect();
        let missing: Vec<&str> =
            self.parts.iter().filter(|(p, _)| p.is_none()).map(|(_, s)| s.as_str()).collect();
        if !missing.is_empty() {
            out.push(format!("no valid points: {}", missing.join(", ")));
        }
        if !self.not_run.is_empty() {
            out.push(format!("not in this run: {}", self.not_run.join(", ")));
        }
        if !self.want.is_empty() && self.parts.iter().any(|p| p.0.is_some()) {
            format!("want {}: {}", self.want, out.join("; "))
        } else {
            out.join("; ")
        }
    }
}

/// A figure's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// All rules hold.
    Reproduced,
    /// Some hold.
    Partly,
    /// None holds.
    NotReproduced,
    /// Too few valid points to judge any rule.
    NotMeasured,
    /// The experiment file states no rule for it.
    NoRule,
}

impl Status {
    /// A short lower-case word for CSS classes.
    pub fn class(self) -> &'static str {
        match self {
            Status::Reproduced => "reproduced",
            Status::Partly => "partly",
            Status::NotReproduced => "not-reproduced",
            Status::NotMeasured => "not-measured",
            Status::NoRule => "no-rule",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Reproduced => "REPRODUCED",
            Status::Partly => "PARTLY",
            Status::NotReproduced => "NOT REPRODUCED",
            Status::NotMeasured => "NOT MEASURED",
            Status::NoRule => "NO RULE",
        })
    }
}

/// A figure's verdict with its rules.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The overall verdict.
    pub status: Status,
    /// Each rule.
    pub rules: Vec<Judged>,
}

impl Verdict {
    /// Combines judged rules into a verdict.
    pub fn of(rules: Vec<Judged>) -> Verdict {
        let n = |o: Outcome| rules.iter().filter(|r| r.outcome == o).count();
        let (holds, incomplete, fails, nm) =
            (n(Outcome::Holds), n(Outcome::Incomplete), n(Outcome::Fails), n(Outcome::NotMeasured));
        let status = if rules.is_empty() {
            Status::NoRule
        } else if holds + incomplete + fails == 0 {
            Status::NotMeasured
        } else if holds == rules.len() {
            Status::Reproduced
        } else if holds + incomplete == 0 {
            // Every rule judged failed (the rest could not be judged).
            let _ = nm;
            Status::NotReproduced
        } else {
            Status::Partly
        };
        Verdict { status, rules }
    }
}

/// Where a rule's points come from: the figure's (or table's) selection.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    /// The figure's `where`.
    pub filter: &'a BTreeMap<String, Value>,
    /// What makes a line.
    pub series: &'a str,
    /// The figure's x (None for a table).
    pub x: Option<&'a str>,
    /// The figure's y (None for a table).
    pub y: Option<&'a str>,
}

/// Judges every rule of a figure or table.
pub fn judge(rules: &[Rule], src: Source<'_>, recs: &[&Record]) -> Verdict {
    Verdict::of(rules.iter().map(|r| judge_one(r, src, recs)).collect())
}

fn in_range(r: &Rule, x: f64) -> bool {
    r.from.is_none_or(|a| x >= a - 1e-9 * a.abs()) && r.to.is_none_or(|b| x <= b + 1e-9 * b.abs())
}

fn reduce(of: Of, pts: &[&LinePoint]) -> Option<f64> {
    if pts.is_empty() {
        return None;
    }
    let ys = pts.iter().map(|p| p.y);
    Some(match of {
        Of::Each | Of::Max => ys.fold(f64::NEG_INFINITY, f64::max),
        Of::Min => ys.fold(f64::INFINITY, f64::min),
        Of::Mean => ys.sum::<f64>() / pts.len() as f64,
        Of::First => pts[0].y,
        Of::Last => pts[pts.len() - 1].y,
    })
}

fn ratio(a: f64, b: f64) -> f64 {
    if b != 0.0 {
        a / b
    } else if a == 0.0 {
        1.0
    } else {
        f64::INFINITY
    }
}

fn fmt_ratio(r: f64) -> String {
    if r.is_infinite() {
        "∞".into()
    } else {
        format!("{}x", fmt_value(r))
    }
}

/// One line's part of a rule: Some(pass) with its phrase, or None (not measured) with why.
type Part = (Option<bool>, String);

fn judge_one(rule: &Rule, src: Source<'_>, recs: &[&Record]) -> Judged {
    let x = rule.x.as_deref().or(src.x).unwrap_or("rate");
    let y = rule.metric.as_deref().or(src.y).unwrap_or("");
    // `below`: only the points under every bound (a line left with none is not measured).
    let passes = |r: &&Record| {
        rule.below.iter().all(|(m, b)| matches!(lines::value(r, m), Ok(Some(v)) if v < *b))
    };
    let kept: Vec<&Record> = recs.iter().copied().filter(passes).collect();
    let select = |rs: &[&Record]| -> Lines {
        lines::collect(
            rs,
            Select {
                filter: src.filter,
                also: Some(&rule.filter),
                series: src.series,
                x,
                y,
                err: None,
                extras: &[],
            },
        )
    };
    let data = select(&kept);
    let every = (!rule.below.is_empty()).then(|| select(recs));
    let (lo, hi) = rule.bounds();
    let ok = |v: f64| lo.is_none_or(|b| v >= b) && hi.is_none_or(|b| v <= b);
    // A line with no point at all in this run (a mechanism the quick variant leaves out) is not
    // judged, and says so; a line whose points are all INVALID is "not measured".
    let ran = |n: &str| {
        let d = every.as_ref().unwrap_or(&data);
        d.get(n).is_some() || d.dropped.iter().any(|d| d.series == n)
    };
    let below: Vec<String> =
        rule.below.iter().map(|(m, b)| format!("{m} < {}", fmt_value(*b))).collect();
    let none_left = |n: &str| {
        if below.is_empty() {
            n.to_string()
        } else {
            format!("{n} (no point with {})", below.join(", "))
        }
    };
    let mut not_run: Vec<String> = Vec::new();
    for n in rule.series.iter().chain(&rule.than) {
        if !ran(n) && !not_run.contains(n) {
            not_run.push(n.clone());
        }
    }
    let names: Vec<String> = if rule.series.is_empty() {
        data.lines.iter().map(|(n, _)| n.clone()).collect()
    } else {
        rule.series.iter().filter(|n| ran(n)).cloned().collect()
    };
    let than: Vec<&String> = rule.than.iter().filter(|t| ran(t)).collect();
    let pts_of = |name: &str| -> Vec<&LinePoint> {
        data.get(name)
            .map(|p| p.iter().filter(|p| in_range(rule, p.x)).collect())
            .unwrap_or_default()
    };
    let want = rule.want();
    let mut parts: Vec<Part> = Vec::new();
    match rule.kind {
        Kind::Growth => {
            for n in &names {
                let p = pts_of(n);
                if p.len() < 2 {
                    parts.push((None, none_left(n)));
                    continue;
                }
                let (a, b) = (p[0], p[p.len() - 1]);
                let g = ratio(b.y, a.y);
                parts.push((
                    Some(ok(g)),
                    format!(
                        "{n} {}→{} = {} ({}→{})",
                        fmt_value(a.y),
                        fmt_value(b.y),
                        fmt_ratio(g),
                        fmt_value(a.x),
                        fmt_value(b.x)
                    ),
                ));
            }
        }
        Kind::Range | Kind::Zero => {
            for n in &names {
                let p = pts_of(n);
                if p.is_empty() {
                    parts.push((None, none_left(n)));
                    continue;
                }
                if rule.of == Of::Each {
                    // The point furthest outside the bounds, or the one closest to them.
                    let worst = p
                        .iter()
                        .max_by(|a, b| excess(a.y, lo, hi).total_cmp(&excess(b.y, lo, hi)))
                        .copied()
                        .unwrap_or(p[0]);
                    let all = p.iter().all(|q| ok(q.y));
                    parts.push((
                        Some(all),
                        format!("{n} {} at {}", fmt_value(worst.y), fmt_value(worst.x)),
                    ));
                } else {
                    let v = reduce(rule.of, &p).unwrap_or(f64::NAN);
                    parts.push((Some(ok(v)), format!("{n} {} {}", of_word(rule.of), fmt_value(v))));
                }
            }
        }
        Kind::Compare => {
            for n in &names {
                for t in &than {
                    let (a, b) = (pts_of(n), pts_of(t));
                    if rule.of == Of::Each {
                        let common: Vec<(f64, f64, f64)> = a
                            .iter()
                            .filter_map(|p| b.iter().find(|q| q.x == p.x).map(|q| (p.x, p.y, q.y)))
                            .collect();
                        if common.is_empty() {
                            parts.push((None, format!("{n} vs {t}")));
                            continue;
                        }
                        let worst = common
                            .iter()
                            .max_by(|u, v| {
                                excess(ratio(u.1, u.2), lo, hi).total_cmp(&excess(
                                    ratio(v.1, v.2),
                                    lo,
                                    hi,
                                ))
                            })
                            .copied()
                            .unwrap_or(common[0]);
                        let all = common.iter().all(|c| ok(ratio(c.1, c.2)));
                        parts.push((
                            Some(all),
                            format!(
                                "{n}/{t} {} at {} ({} vs {})",
                                fmt_ratio(ratio(worst.1, worst.2)),
                                fmt_value(worst.0),
                                fmt_value(worst.1),
                                fmt_value(worst.2)
                            ),
                        ));
                    } else {
                        match (reduce(rule.of, &a), reduce(rule.of, &b)) {
                            (Some(u), Some(v)) => {
                                let r = ratio(u, v);
                                parts.push((
                                    Some(ok(r)),
                                    format!(
                                        "{n}/{t} {} {} ({} vs {})",
                                        of_word(rule.of),
                                        fmt_ratio(r),
                                        fmt_value(u),
                                        fmt_value(v)
                                    ),
                                ));
                            }
                            _ => parts.push((None, format!("{n} vs {t}"))),
                        }
                    }
                }
            }
        }
    }
    if names.is_empty() && not_run.is_empty() {
        parts.push((None, "any line".into()));
    }
    let outcome = outcome_of(&parts);
    Judged {
        says: rule.says.clone(),
        outcome,
        want,
        parts,
        not_run,
        reason: if outcome == Outcome::Fails { rule.reason.clone() } else { None },
    }
}

/// A rule's outcome from its lines' parts.
fn outcome_of(parts: &[Part]) -> Outcome {
    let measured: Vec<bool> = parts.iter().filter_map(|p| p.0).collect();
    if measured.is_empty() {
        Outcome::NotMeasured
    } else if measured.iter().any(|m| !m) {
        Outcome::Fails
    } else if measured.len() < parts.len() {
        Outcome::Incomplete
    } else {
        Outcome::Holds
    }
}

/// Judges every rule in each group of records separately (a table's rows that differ in a
/// parameter other than the rule's x: points of one line at one x there are different rows,
/// not repeats of one point to take the median of), each line's phrase prefixed with its group.
pub fn judge_groups(rules: &[Rule], src: Source<'_>, groups: &[(String, Vec<&Record>)]) -> Verdict {
    if let [(_, recs)] = groups {
        return judge(rules, src, recs);
    }
    let judged = rules
        .iter()
        .map(|rule| {
            let mut all: Option<Judged> = None;
            for (label, recs) in groups {
                let mut j = judge_one(rule, src, recs);
                for part in &mut j.parts {
                    part.1 = format!("{label}: {}", part.1);
                }
                all = Some(match all {
                    None => j,
                    Some(mut a) => {
                        a.parts.extend(j.parts);
                        for n in j.not_run {
                            if !a.not_run.contains(&n) {
                                a.not_run.push(n);
                            }
                        }
                        a
                    }
                });
            }
            let mut j = all.unwrap_or_else(|| judge_one(rule, src, &[]));
            j.outcome = outcome_of(&j.parts);
            j.reason = (j.outcome == Outcome::Fails).then(|| rule.reason.clone()).flatten();
            j
        })
        .collect();
    Verdict::of(judged)
}

fn of_word(of: Of) -> &'static str {
    match of {
        Of::Each => "each",
        Of::Max => "max",
        Of::Min => "min",
        Of::Mean => "mean",
        Of::First => "first",
        Of::Last => "last",
    }
}

/// How far a value lies outside the bounds (negative: inside, by how much it clears them,
/// relative to the bound), so the worst point can be named.
fn excess(v: f64, lo: Option<f64>, hi: Option<f64>) -> f64 {
    let rel = |d: f64, b: f64| if b.abs() > 0.0 { d / b.abs() } else { d };
    let a = lo.map(|b| rel(b - v, b));
    let c = hi.map(|b| rel(v - b, b));
    match (a, c) {
        (Some(a), Some(c)) => a.max(c),
        (Some(a), None) => a,
        (None, Some(c)) => c,
        (None, None) => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::lines::tests::rec;

    fn rule(toml_text: &str) -> Rule {
        let r: Rule = toml::from_str(toml_text).unwrap();
        r.check(false).unwrap();
        r
    }

    fn recs() -> Vec<Record> {
        let mut v = Vec::new();
        for (m, ys) in [
            ("poll", [140.0, 200.0, 434.0]),
            ("epoll", [43.0, 41.0, 40.0]),
            ("select", [139.0, 500.0, 1411.0]),
        ] {
            for (x, y) in [250.0, 1000.0, 3000.0].iter().zip(ys) {
                v.push(rec(m, &[("idle", *x)], &[("cpu_us_per_req", y), ("overflows", 0.0)]));
            }
        }
        // An INVALID point that would break every rule if it were judged.
        let mut bad =
            rec("epoll", &[("idle", 6000.0)], &[("cpu_us_per_req", 9999.0), ("overflows", 7.0)]);
        bad.valid = false;
        v.push(bad);
        let mut bad = rec("uring", &[("idle", 250.0)], &[("cpu_us_per_req", 50.0)]);
        bad.valid = false;
        v.push(bad);
        v
    }

    fn run(r: &Rule) -> Judged {
        let recs = recs();
        let refs: Vec<&Record> = recs.iter().collect();
        let f = BTreeMap::new();
        judge_one(
            r,
            Source { filter: &f, series: "mechanism", x: Some("idle"), y: Some("cpu_us_per_req") },
            &refs,
        )
    }

    #[test]
    fn table_rows_of_different_populations_are_judged_apart() {
        // Two rows at one rate that differ in their idle population: a rule over the rate must
        // see both, not the median of the two.
        let a = rec("rtsig", &[("idle", 252.0), ("rate_fraction", 1.3)], &[("overflows", 4.0)]);
        let b = rec("rtsig", &[("idle", 6000.0), ("rate_fraction", 1.3)], &[("overflows", 40.0)]);
        let r = rule("kind = 'range'\nsays = 'many'\nseries = ['rtsig']\nmetric = 'overflows'\nx = 'rate_fraction'\nat_least = 10");
        let f = BTreeMap::new();
        let src = Source { filter: &f, series: "mechanism", x: None, y: None };
        let merged = judge(std::slice::from_ref(&r), src, &[&a, &b]);
        assert_eq!(merged.rules[0].outcome, Outcome::Holds, "the median hides the 4: {merged:?}");
        let groups = vec![("idle=252".to_string(), vec![&a]), ("idle=6000".to_string(), vec![&b])];
        let v = judge_groups(std::slice::from_ref(&r), src, &groups);
        assert_eq!(v.rules[0].outcome, Outcome::Fails, "{v:?}");
        assert_eq!(v.status, Status::NotReproduced);
        assert_eq!(
            v.rules[0].numbers(),
            "want ≥ 10: idle=252: rtsig 4 at 1.3 ✗; idle=6000: rtsig 40 at 1.3 ✓"
        );
    }

    #[test]
    fn growth_holds_and_fails() {
        let j = run(&rule(
            "kind = 'growth'\nsays = 'poll grows'\nseries = ['poll', 'select']\nat_least = 2.0",
        ));
        assert_eq!(j.outcome, Outcome::Holds, "{j:?}");
        assert_eq!(j.parts[0].1, "poll 140→434 = 3.1x (250→3,000)");
        assert!(
            j.numbers().starts_with("want ≥ 2: poll 140→434 = 3.1x (250→3,000) ✓; select"),
            "{j:?}"
        );
        let j =
            run(&rule("kind = 'growth'\nsays = 'epoll flat'\nseries = ['epoll']\nat_most = 1.3"));
        assert_eq!(j.outcome, Outcome::Holds, "the INVALID 6000 point is not judged: {j:?}");
        let j = run(&rule(
            "kind = 'growth'\nsays = 's'\nseries = ['poll']\nat_most = 1.3\nreason = 'why'",
        ));
        assert_eq!(j.outcome, Outcome::Fails);
        assert_eq!(j.reason.as_deref(), Some("why"));
        // Limited to an x range.
        let j = run(&rule("kind = 'growth'\nsays = 's'\nseries = ['select']\nto = 1000\nat_least = 3.5\nat_most = 3.7"));
        assert_eq!(j.outcome, Outcome::Holds, "{j:?}");
        // Tolerance widens the bound.
        let j = run(&rule(
            "kind = 'growth'\nsays = 's'\nseries = ['poll']\nat_least = 3.3\ntolerance = 0.1",
        ));
        assert_eq!(j.outcome, Outcome::Holds, "{j:?}");
    }

    #[test]
    fn compare_at_each_x_and_over_aggregates() {
        let j = run(&rule("kind = 'compare'\nsays = 'epoll cheaper'\nseries = ['epoll']\nthan = ['poll', 'select']\nat_most = 0.5"));
        assert_eq!(j.outcome, Outcome::Holds, "{j:?}");
        assert_eq!(j.parts.len(), 2);
        let j = run(&rule(
            "kind = 'compare'\nsays = 's'\nseries = ['select']\nthan = ['poll']\nat_most = 1.0",
        ));
        assert_eq!(j.outcome, Outcome::Fails, "{j:?}");
        assert_eq!(
            j.parts[0].1, "select/poll 3.25x at 3,000 (1,411 vs 434)",
            "the worst x is named"
        );
        let j = run(&rule("kind = 'compare'\nsays = 's'\nseries = ['select']\nthan = ['poll']\nof = 'max'\nat_least = 3.0"));
        assert_eq!(j.outcome, Outcome::Holds, "{j:?}");
        let j = run(&rule("kind = 'compare'\nsays = 's'\nseries = ['select']\nthan = ['poll']\nof = 'first'\nat_least = 3.0"));
        assert_eq!(j.outcome, Outcome::Fails, "{j:?}");
    }

    #[test]
    fn range_and_zero() {
        let j = run(&rule("kind = 'range'\nsays = 's'\nseries = ['epoll']\nat_most = 50"));
        assert_eq!(j.outcome, Outcome::Holds, "{j:?}");
        let j = run(&rule(
            "kind = 'range'\nsays = 's'\nseries = ['epoll']\nfrom = 1000\nat_least = 42",
        ));
        assert_eq!(j.outcome, Outcome::Fails, "{j:?}");
        let j = run(&rule(
            "kind = 'range'\nsays = 's'\nseries = ['select']\nof = 'max'\nat_least = 1000",
        ));
        assert_eq!(j.outcome, Outcome::Holds, "{j:?}");
        let j = run(&rule(
            "kind = 'range'\nsays = 's'\nseries = ['select']\nof = 'mean'\nat_most = 500",
        ));
        assert_eq!(j.outcome, Outcome::Fails, "{j:?}");
        let j = run(&rule("kind = 'zero'\nsays = 'no overflow'\nmetric = 'overflows'"));
        assert_eq!(
            j.outcome,
            Outcome::Holds,
            "the INVALID point's 7 overflows are not judged: {j:?}"
        );
        let j = run(&rule("kind = 'zero'\nsays = 's'\nmetric = 'cpu_us_per_req'\nseries = ['epoll']\nat_most = 40"));
        assert_eq!(j.outcome, Outcome::Fails);
        let j = run(&rule("kind = 'zero'\nsays = 's'\nmetric = 'cpu_us_per_req'\nseries = ['epoll']\nat_most = 40\ntolerance = 0.1"));
        assert_eq!(j.outcome, Outcome::Holds, "10% over 40 admits epoll's 43: {j:?}");
        let j = run(&rule("kind = 'range'\nsays = 's'\nmetric = 'overflows/cpu_us_per_req'\nseries = ['poll']\nat_most = 0"));
        assert_eq!(j.outcome, Outcome::Holds, "{j:?}");
    }

    #[test]
    fn below_judges_only_the_points_past_a_bound() {
        // rtsig past its capacity (replied to 80% of the rate) overflows on a large share of
        // its dequeues; where it kept up (99%) it does not, and that point is not judged.
        let kept = rec(
            "rtsig",
            &[("rate", 1000.0), ("rate_fraction", 1.3)],
            &[("reply_rate_avg", 990.0), ("overflows", 1.0), ("dequeue_calls", 100.0)],
        );
        let past = rec(
            "rtsig",
            &[("rate", 2000.0), ("rate_fraction", 1.6)],
            &[("reply_rate_avg", 1600.0), ("overflows", 30.0), ("dequeue_calls", 100.0)],
        );
        let perfd = rec(
            "rtsig-perfd",
            &[("rate", 2000.0), ("rate_fraction", 1.6)],
            &[("reply_rate_avg", 1990.0), ("overflows", 0.0), ("dequeue_calls", 100.0)],
        );
        let f = BTreeMap::new();
        let src = Source { filter: &f, series: "mechanism", x: None, y: None };
        let text = "kind = 'range'\nsays = 's'\nseries = ['rtsig', 'rtsig-perfd']\nmetric = 'overflows/dequeue_calls'\nx = 'rate_fraction'\nat_least = 0.1";
        let all = rule(text);
        let j = judge_one(&all, src, &[&kept, &past, &perfd]);
        assert_eq!(j.outcome, Outcome::Fails, "the point that kept up is judged: {j:?}");
        let past_only = rule(&format!("{text}\nbelow = {{ 'reply_rate_avg/rate' = 0.95 }}"));
        let j = judge_one(&past_only, src, &[&kept, &past, &perfd]);
        assert_eq!(j.outcome, Outcome::Incomplete, "{j:?}");
        assert_eq!(
            j.numbers(),
            "want ≥ 0.1: rtsig 0.3 at 1.6 ✓; no valid points: rtsig-perfd (no point with \
             reply_rate_avg/rate < 0.95)"
        );
        let j = judge_one(&past_only, src, &[&kept]);
        assert_eq!(j.outcome, Outcome::NotMeasured, "{j:?}");
        assert_eq!(j.not_run, ["rtsig-perfd"], "rtsig ran, it was not past the bound: {j:?}");
        let bad: Result<Rule, _> = toml::from_str(&format!("{text}\nbelow = {{ x = 'high' }}"));
        assert!(bad.is_err(), "a bound must be a number");
    }

    #[test]
    fn lines_not_measured_make_a_rule_incomplete_or_not_measured() {
        // uring ran, but its only point is INVALID: not measured.
        let j = run(&rule("kind = 'growth'\nsays = 's'\nseries = ['poll', 'uring']\nat_least = 2"));
        assert_eq!(j.outcome, Outcome::Incomplete, "{j:?}");
        assert!(j.numbers().ends_with("✓; no valid points: uring"), "{j:?}");
        let j = run(&rule("kind = 'growth'\nsays = 's'\nseries = ['uring']\nat_least = 2"));
        assert_eq!(j.outcome, Outcome::NotMeasured);
        let j =
            run(&rule("kind = 'range'\nsays = 's'\nseries = ['poll']\nfrom = 5000\nat_least = 2"));
        assert_eq!(j.outcome, Outcome::NotMeasured);
        // A line with no point at all in this run (left out of the variant) is not judged, and
        // is named.
        let j =
            run(&rule("kind = 'growth'\nsays = 's'\nseries = ['poll', 'devpoll']\nat_least = 2"));
        assert_eq!(j.outcome, Outcome::Holds, "{j:?}");
        assert!(j.numbers().ends_with("✓; not in this run: devpoll"), "{j:?}");
        let j = run(&rule(
            "kind = 'compare'\nsays = 's'\nseries = ['poll']\nthan = ['devpoll']\nat_least = 2",
        ));
        assert_eq!(j.outcome, Outcome::NotMeasured, "{j:?}");
        assert_eq!(j.numbers(), "not in this run: devpoll");
    }

    #[test]
    fn verdicts_combine_rules() {
        let j = |o| Judged {
            says: String::new(),
            outcome: o,
            want: String::new(),
            parts: vec![],
            not_run: vec![],
            reason: None,
        };
        use Outcome::*;
        assert_eq!(Verdict::of(vec![j(Holds), j(Holds)]).status, Status::Reproduced);
        assert_eq!(Verdict::of(vec![j(Holds), j(Fails)]).status, Status::Partly);
        assert_eq!(Verdict::of(vec![j(Holds), j(NotMeasured)]).status, Status::Partly);
        assert_eq!(Verdict::of(vec![j(Incomplete)]).status, Status::Partly);
        assert_eq!(Verdict::of(vec![j(Fails), j(NotMeasured)]).status, Status::NotReproduced);
        assert_eq!(Verdict::of(vec![j(NotMeasured)]).status, Status::NotMeasured);
        assert_eq!(Verdict::of(vec![]).status, Status::NoRule);
    }

    #[test]
    fn bad_rules_are_refused_with_a_sentence() {
        let r: Rule = toml::from_str("kind = 'compare'\nsays = 's'\nat_most = 1").unwrap();
        assert!(r.check(false).unwrap_err().contains("needs `than`"));
        let r: Rule = toml::from_str("kind = 'growth'\nsays = 's'").unwrap();
        assert!(r.check(false).unwrap_err().contains("at_least or at_most"));
        let r: Rule =
            toml::from_str("kind = 'range'\nsays = 's'\nat_most = 1\nfrom = 3\nto = 1").unwrap();
        assert!(r.check(false).is_err());
        let r: Rule = toml::from_str("kind = 'zero'\nsays = 's'").unwrap();
        assert!(r.check(true).unwrap_err().contains("needs `x` and `metric`"));
        assert!(toml::from_str::<Rule>("kind = 'grow'\nsays = 's'").is_err());
        assert!(toml::from_str::<Rule>("kind = 'zero'\nsays = 's'\nat_mots = 1").is_err());
    }
}
