//! The lines of a figure, from its records: what the plots draw and what the verdict rules judge.
//!
//! Only VALID points make a line. The rest are kept apart with the reason they are not the
//! server's figure: the generator flagged them INVALID, the point could not be measured, or a CPU
//! reading is missing (a CPU metric of 0 is a failed reading, never a measurement). Several
//! rounds of one point are merged into their median.

use crate::record::Record;
use crate::spec::Value;
use std::collections::BTreeMap;

/// What to take from the records.
#[derive(Clone, Copy, Debug)]
pub struct Select<'a> {
    /// Only records whose parameters match these.
    pub filter: &'a BTreeMap<String, Value>,
    /// A second filter (a rule's own `where`), or None.
    pub also: Option<&'a BTreeMap<String, Value>>,
    /// What makes a line: "mechanism" or a parameter name.
    pub series: &'a str,
    /// The x value: a parameter or a metric.
    pub x: &'a str,
    /// The y value: a metric or parameter, or `a/b` of two of them.
    pub y: &'a str,
    /// A metric drawn as an error bar around y.
    pub err: Option<&'a str>,
    /// Metrics drawn beside y (e.g. min and max).
    pub extras: &'a [String],
}

/// One point of a line.
#[derive(Clone, Debug, PartialEq)]
pub struct LinePoint {
    /// x.
    pub x: f64,
    /// y (the median over the rounds at this x).
    pub y: f64,
    /// The error-bar metric of the median round.
    pub err: Option<f64>,
    /// The extra metrics of the median round.
    pub extras: Vec<Option<f64>>,
    /// How many valid rounds were merged.
    pub rounds: usize,
    /// The smallest and largest y over the rounds, when there were two or more.
    pub spread: Option<(f64, f64)>,
}

/// A point left out of the lines, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Dropped {
    /// The line it would belong to.
    pub series: String,
    /// Its x, if it has one.
    pub x: Option<f64>,
    /// Its y, if it has one (drawn hollow when both are known).
    pub y: Option<f64>,
    /// Its parameters, as `k=v` words.
    pub params: String,
    /// Why it is left out (one sentence at most).
    pub reason: String,
}

/// The lines of a figure.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lines {
    /// (name, points sorted by x), in legend order.
    pub lines: Vec<(String, Vec<LinePoint>)>,
    /// The points left out.
    pub dropped: Vec<Dropped>,
}

impl Lines {
    /// The points of one line, if it has any.
    pub fn get(&self, name: &str) -> Option<&[LinePoint]> {
        self.lines.iter().find(|(n, _)| n == name).map(|(_, p)| p.as_slice())
    }
}

/// Whether a metric is a CPU reading, for which 0 means the reading failed.
pub fn is_cpu_reading(name: &str) -> bool {
    name.contains("cpu") || name.starts_with("ns_per")
}

/// Whether a record's parameters match a filter (`mechanism` may be filtered on too).
pub fn matches(rec: &Record, filter: &BTreeMap<String, Value>) -> bool {
    filter.iter().all(|(k, v)| matches_one(rec, k, v))
}

fn matches_one(rec: &Record, k: &str, v: &Value) -> bool {
    match (rec.params.get(k), v) {
        (_, Value::Any(list)) => list.iter().any(|x| matches_one(rec, k, x)),
        (Some(Value::Num(a)), Value::Num(b)) => (a - b).abs() < 1e-9,
        (Some(a), b) => a == b,
        (None, Value::Word(w)) => k == "mechanism" && &rec.mechanism == w,
        (None, _) => false,
    }
}

/// The name of the line a record belongs to.
pub fn series_name(rec: &Record, series: &str) -> String {
    if series == "mechanism" {
        rec.mechanism.clone()
    } else {
        rec.params.get(series).map_or_else(|| format!("{series}=?"), |v| format!("{series}={v}"))
    }
}

/// A value of a record: `name` (a parameter, else a metric) or `a/b`. Returns Err with a reason
/// when a CPU reading in it is 0.
pub fn value(rec: &Record, expr: &str) -> Result<Option<f64>, String> {
    let one = |name: &str| -> Result<Option<f64>, String> {
        let v = rec.value(name.trim());
        match v {
            Some(v) if v <= 0.0 && is_cpu_reading(name) => {
                Err(format!("no CPU reading ({} = 0)", name.trim()))
            }
            _ => Ok(v),
        }
    };
    match expr.split_once('/') {
        None => one(expr),
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            Ok(match (a, b) {
                (Some(a), Some(b)) if b != 0.0 => Some(a / b),
                (Some(0.0), Some(_)) => Some(0.0),
                _ => None,
            })
        }
    }
}

/// The point's numeric parameters (the words — budgets, methods, notes — are stated once per
/// experiment and figure instead).
fn fmt_params(r: &Record) -> String {
    r.params
        .iter()
        .filter(|(_, v)| matches!(v, Value::Num(_)))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A reason in plain words: a JSON list of sentences (as the generator writes them) joined with
/// "; ", cut at about 160 characters.
pub fn short_reason(s: &str) -> String {
    let s = s.trim();
    let joined = match serde_json::from_str::<Vec<String>>(s) {
        Ok(list) => list.join("; "),
        Err(_) => s.to_string(),
    };
    let mut end = joined.len().min(160);
    while !joined.is_char_boundary(end) {
        end -= 1;
    }
    if end < joined.len() {
        format!("{}…", &joined[..end])
    } else {
        joined
    }
}

/// Collects the lines.
pub fn collect(recs: &[&Record], sel: Select<'_>) -> Lines {
    let mut by: BTreeMap<String, Vec<(f64, f64, &Record)>> = BTreeMap::new();
    let mut dropped = Vec::new();
    for r in recs {
        if !matches(r, sel.filter) || !sel.also.is_none_or(|f| matches(r, f)) {
            continue;
        }
        let name = series_name(r, sel.series);
        let x = value(r, sel.x).ok().flatten();
        let y = value(r, sel.y);
        let drop = |reason: String, y: Option<f64>| Dropped {
            series: name.clone(),
            x,
            y,
            params: fmt_params(r),
            reason,
        };
        if let Some(e) = &r.error {
            dropped.push(drop(format!("not measured: {}", short_reason(e)), None));
            continue;
        }
        let y = match y {
            Err(why) => {
                dropped.push(drop(why, None));
                continue;
            }
            Ok(y) => y,
        };
        if !r.valid {
            let why = r.invalid_reason.as_deref().unwrap_or("flagged invalid");
            dropped.push(drop(format!("INVALID: {}", short_reason(why)), y));
            continue;
        }
        match (x, y) {
            (Some(x), Some(y)) => by.entry(name).or_default().push((x, y, r)),
            _ => dropped.push(drop(format!("{} not recorded", sel.y), None)),
        }
    }
    let mut lines: Vec<(String, Vec<LinePoint>)> = by
        .into_iter()
        .map(|(name, mut pts)| {
            pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
            let mut out = Vec::new();
            let mut i = 0;
            while i < pts.len() {
                let mut j = i;
                while j < pts.len() && pts[j].0 == pts[i].0 {
                    j += 1;
                }
                let (x, y, r) = pts[i + (j - i) / 2];
                let m = |name: &str| value(r, name).ok().flatten();
                out.push(LinePoint {
                    x,
                    y,
                    err: sel.err.and_then(m),
                    extras: sel.extras.iter().map(|e| m(e)).collect(),
                    rounds: j - i,
                    spread: (j - i >= 2).then(|| (pts[i].1, pts[j - 1].1)),
                });
                i = j;
            }
            (name, out)
        })
        .collect();
    sort_lines(&mut lines, sel.series, |(n, _)| n.as_str());
    Lines { lines, dropped }
}

/// Orders lines as legends show them: mechanisms by the style table, parameter lines by value.
pub fn sort_lines<T>(v: &mut [T], series: &str, name: impl Fn(&T) -> &str) {
    if series == "mechanism" {
        v.sort_by(|a, b| {
            let (a, b) = (name(a), name(b));
            crate::report::plot::style::rank(a)
                .cmp(&crate::report::plot::style::rank(b))
                .then(a.cmp(b))
        });
    } else {
        let num = |s: &str| {
            s.split_once('=').and_then(|(_, v)| v.parse::<f64>().ok()).unwrap_or(f64::INFINITY)
        };
        v.sort_by(|a, b| num(name(a)).total_cmp(&num(name(b))).then(name(a).cmp(name(b))));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::record::Machine;
    use crate::spec::Which;

    /// A record of mechanism `m` with parameters and metrics.
    pub(crate) fn rec(m: &str, params: &[(&str, f64)], metrics: &[(&str, f64)]) -> Record {
        Record {
            experiment: "e".into(),
            variant: Which::Quick,
            key: format!("{m}{params:?}"),
            mechanism: m.into(),
            params: params.iter().map(|(k, v)| (k.to_string(), Value::Num(*v))).collect(),
            metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            lists: BTreeMap::new(),
            valid: true,
            invalid_reason: None,
            error: None,
            unix_time: 0,
            machine: Machine::default(),
            raw: serde_json::Value::Null,
        }
    }

    #[test]
    fn invalid_zero_cpu_and_failed_points_are_left_out_with_their_reason() {
        let mut bad = rec("poll", &[("idle", 2000.0)], &[("cpu_util", 90.0)]);
        bad.valid = false;
        bad.invalid_reason =
            Some("[\"schedule lag p99 812 ms > 10 ms\",\"achieved 2128.5/s\"]".into());
        let mut failed = rec("poll", &[("idle", 3000.0)], &[]);
        failed.error = Some("the server did not start".into());
        let recs = [
            rec("poll", &[("idle", 0.0)], &[("cpu_util", 10.0)]),
            rec("poll", &[("idle", 1000.0)], &[("cpu_util", 0.0)]),
            bad,
            failed,
            rec("epoll", &[("idle", 0.0)], &[("cpu_util", 9.0)]),
            rec("epoll", &[("idle", 0.0)], &[("cpu_util", 30.0)]),
            rec("epoll", &[("idle", 0.0)], &[("cpu_util", 11.0)]),
            rec("select", &[("idle", 0.0)], &[("cpu_util", 11.0)]),
        ];
        let refs: Vec<&Record> = recs.iter().collect();
        let f = BTreeMap::new();
        let l = collect(
            &refs,
            Select {
                filter: &f,
                also: None,
                series: "mechanism",
                x: "idle",
                y: "cpu_util",
                err: None,
                extras: &[],
            },
        );
        let names: Vec<&str> = l.lines.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["select", "poll", "epoll"]);
        assert_eq!(l.get("poll").unwrap().len(), 1);
        assert_eq!(l.get("epoll").unwrap()[0].y, 11.0);
        assert_eq!(l.get("epoll").unwrap()[0].rounds, 3);
        assert_eq!(l.get("epoll").unwrap()[0].spread, Some((9.0, 30.0)));
        assert_eq!(l.get("select").unwrap()[0].spread, None);
        assert_eq!(l.dropped.len(), 3);
        assert!(l.dropped[0].reason.contains("no CPU reading"), "{:?}", l.dropped);
        assert_eq!(
            l.dropped[1].reason,
            "INVALID: schedule lag p99 812 ms > 10 ms; achieved 2128.5/s"
        );
        assert_eq!(l.dropped[1].y, Some(90.0));
        assert!(l.dropped[2].reason.starts_with("not measured"));
    }

    #[test]
    fn ratios_of_two_values() {
        let r = rec("rtsig", &[("rate", 1000.0)], &[("overflows", 5.0), ("dequeue_calls", 50.0)]);
        assert_eq!(value(&r, "overflows/dequeue_calls"), Ok(Some(0.1)));
        assert_eq!(value(&r, "overflows/rate"), Ok(Some(0.005)));
        assert_eq!(value(&r, "missing/rate"), Ok(None));
    }
}
