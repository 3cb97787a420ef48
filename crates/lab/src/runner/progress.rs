//! Progress that fits the output: bars on a terminal (one for the experiment, one for the whole
//! run with its ETA), one plain line per point where the output is a file or a pipe.
//!
//! The plain line is written to stdout as soon as the point's record is on disk, so
//! `ioscale lab > log` (or a CI log) shows each point as it is measured, with no escape codes:
//!
//! ```text
//! lab: cm-overhead 3/21 (12/199, 2m31s): epoll idle=1000 rate_fraction=0.15: 2,345 replies/s, server CPU 45.1%, VALID
//! ```

use crate::record::Record;
use crate::spec::{Kind, Plan};
use std::io::Write;
use std::time::{Duration, Instant};

/// Where progress goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mode {
    /// Bars on stderr (it is a terminal).
    pub bars: bool,
    /// One plain line per point on stdout (it is not a terminal, or stderr is not).
    pub lines: bool,
}

impl Mode {
    /// Bars where stderr is a terminal; plain lines on stdout unless both are terminals (where
    /// the bars say it all).
    pub fn detect() -> Mode {
        use std::io::IsTerminal;
        let (out, err) = (std::io::stdout().is_terminal(), std::io::stderr().is_terminal());
        Mode { bars: err, lines: !(out && err) }
    }
}

/// A run's progress: points done of the experiment and of the run, and the estimated time.
pub(crate) struct Progress {
    mode: Mode,
    multi: Option<indicatif::MultiProgress>,
    overall: Option<indicatif::ProgressBar>,
    current: Option<indicatif::ProgressBar>,
    started: Instant,
    /// Points in the run, and done so far.
    total: usize,
    done: usize,
    /// The experiment being measured: its name, points, done so far, and the estimated
    /// milliseconds each point adds to the overall bar.
    experiment: String,
    kind: Kind,
    points: usize,
    done_here: usize,
    weight_ms: u64,
}

/// Estimated milliseconds one point takes, for the overall ETA: experiments of different
/// kinds take very different times per point.
pub(crate) fn weight_ms(plan: &Plan) -> u64 {
    let s = match plan.exp.kind {
        // Server start, warm-up, the window, and the stop.
        Kind::Http => plan.warmup.max(0.5) + plan.duration + 1.5,
        Kind::Dispatch => plan.duration * f64::from(plan.rounds) + 0.05,
        Kind::Herd => 1.0,
    };
    (s * 1000.0).round().max(1.0) as u64
}

impl Progress {
    /// Progress over `total` points whose estimated time is `total_ms`.
    pub(crate) fn new(mode: Mode, total: usize, total_ms: u64) -> Progress {
        let (multi, overall) = if mode.bars && total > 0 {
            let multi = indicatif::MultiProgress::new();
            let bar = multi.add(indicatif::ProgressBar::new(total_ms));
            bar.set_style(style(
                "{prefix:>18} [{bar:30}] {percent:>3}% {elapsed} ETA {eta} {wide_msg}",
            ));
            bar.set_prefix("all experiments");
            bar.set_message(format!("0/{total} points"));
            bar.enable_steady_tick(Duration::from_secs(1));
            (Some(multi), Some(bar))
        } else {
            (None, None)
        };
        Progress {
            mode,
            multi,
            overall,
            current: None,
            started: Instant::now(),
            total,
            done: 0,
            experiment: String::new(),
            kind: Kind::Http,
            points: 0,
            done_here: 0,
            weight_ms: 1,
        }
    }

    /// An experiment of `points` points starts.
    pub(crate) fn start(&mut self, plan: &Plan, points: usize) {
        self.experiment = plan.exp.name.clone();
        self.kind = plan.exp.kind;
        self.points = points;
        self.done_here = 0;
        self.weight_ms = weight_ms(plan);
        if let Some(multi) = &self.multi {
            let bar = multi.insert_before(
                self.overall.as_ref().expect("bars have an overall bar"),
                indicatif::ProgressBar::new(points as u64),
            );
            bar.set_style(style("{prefix:>18} [{bar:30}] {pos}/{len} {wide_msg}"));
            bar.set_prefix(self.experiment.clone());
            self.current = Some(bar);
        }
    }

    /// What is being measured now (shown on the bar).
    pub(crate) fn message(&self, msg: String) {
        if let Some(b) = &self.current {
            b.set_message(msg);
        }
    }

    /// A point's record was written.
    pub(crate) fn point(&mut self, rec: &Record) {
        self.done += 1;
        self.done_here += 1;
        if let Some(b) = &self.current {
            b.inc(1);
        }
        if let Some(b) = &self.overall {
            b.inc(self.weight_ms);
            b.set_message(format!("{}/{} points", self.done, self.total));
        }
        if self.mode.lines {
            let line = format!(
                "lab: {} {}/{} ({}/{}, {}): {}",
                self.experiment,
                self.done_here,
                self.points,
                self.done,
                self.total,
                fmt_elapsed(self.started.elapsed()),
                describe(self.kind, rec)
            );
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    /// The experiment's points are done (or it stopped).
    pub(crate) fn finish(&mut self) {
        if let Some(b) = self.current.take() {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
        if let Some(b) = self.overall.take() {
            b.finish();
            // The bars leave the cursor at the end of their last line: what is printed next
            // starts on a line of its own.
            eprintln!();
        }
    }
}

fn style(template: &str) -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn fmt_elapsed(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// A number with thousands separators (or 3 significant digits when small).
fn fmt_figure(v: f64) -> String {
    if v.abs() >= 1000.0 {
        let n = v.round() as i64;
        let digits = n.unsigned_abs().to_string();
        let head = match digits.len() % 3 {
            0 => 3,
            r => r,
        };
        let mut out = digits[..head].to_string();
        for group in digits.as_bytes()[head..].chunks(3) {
            out.push(',');
            out.push_str(std::str::from_utf8(group).unwrap_or_default());
        }
        if n < 0 {
            out.insert(0, '-');
        }
        out
    } else {
        let decimals = match v.abs() {
            a if a >= 100.0 => 0,
            a if a >= 10.0 => 1,
            a if a >= 1.0 => 2,
            _ => 3,
        };
        let s = format!("{v:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}

/// The point in one line: its mechanism and parameters, its key figures, and whether it is
/// valid.
fn describe(kind: Kind, rec: &Record) -> String {
    // The grid's values; how the experiment was run (the same sentence on every point) is in
    // the records and the report.
    let params: Vec<String> = rec
        .params
        .iter()
        .filter(|(k, _)| !crate::record::CONDITIONS.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let what = format!("{} {}", rec.mechanism, params.join(" "));
    if let Some(e) = &rec.error {
        return format!("{}: NOT MEASURED ({})", what.trim_end(), first_line(e));
    }
    let m = |name: &str| rec.metric(name).map(fmt_figure);
    let figures: Vec<String> = match kind {
        Kind::Http => [
            m("reply_rate_avg").map(|v| format!("{v} replies/s")),
            m("cpu_util").map(|v| format!("server CPU {v}%")),
            m("errors").filter(|e| e != "0").map(|v| format!("{v} errors")),
        ]
        .into_iter()
        .flatten()
        .collect(),
        Kind::Dispatch => [
            m("ns_per_cycle").map(|v| format!("{v} ns per cycle")),
            m("ratio_to_smallest").map(|v| format!("{v}x the smallest")),
        ]
        .into_iter()
        .flatten()
        .collect(),
        Kind::Herd => [
            m("connect_p50_us").map(|v| format!("connect p50 {v} µs")),
            m("woken_per_connect").map(|v| format!("{v} woken per connect")),
        ]
        .into_iter()
        .flatten()
        .collect(),
    };
    let validity = if rec.valid {
        "VALID".to_string()
    } else {
        let why = rec.invalid_reason.as_deref().unwrap_or("the generator said so");
        // The generator gives its reasons as a JSON list of sentences.
        let why = match serde_json::from_str::<Vec<String>>(why) {
            Ok(list) => list.join("; "),
            Err(_) => why.to_string(),
        };
        format!("INVALID ({})", first_line(&why))
    };
    if figures.is_empty() {
        format!("{}: {validity}", what.trim_end())
    } else {
        format!("{}: {}, {validity}", what.trim_end(), figures.join(", "))
    }
}

fn first_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or("").trim();
    if l.chars().count() > 160 {
        format!("{}…", l.chars().take(160).collect::<String>())
    } else {
        l.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_well() {
        assert_eq!(fmt_figure(2345.4), "2,345");
        assert_eq!(fmt_figure(1_234_567.0), "1,234,567");
        assert_eq!(fmt_figure(45.123), "45.1");
        assert_eq!(fmt_figure(6.439), "6.44");
        assert_eq!(fmt_figure(2.0), "2");
        assert_eq!(fmt_figure(0.1234), "0.123");
        assert_eq!(fmt_figure(450.0), "450");
        assert_eq!(fmt_figure(0.0), "0");
        assert_eq!(fmt_elapsed(Duration::from_secs(151)), "2m31s");
    }
}
