//! The report: `report.html` (self-contained, inline SVG figures), `summary.md`, and the
//! README's generated results section.
//!
//! Each figure is drawn with the paper's axes from the VALID points of its experiment
//! ([`lines`], [`plot`]) and carries a verdict computed from them by the rules its experiment
//! file states ([`verdict`]): REPRODUCED, PARTLY, NOT REPRODUCED or NOT MEASURED, with the numbers
//! that decided it. Points that are not the server's figure are drawn hollow (their reason on
//! hover) and listed under the figure in a short table. summary.md starts with the verdict
//! table, then one short table per experiment on its own axis; it states nothing the data do
//! not show.

pub mod lines;
pub mod plot;
pub mod verdict;

use crate::error::Error;
use crate::record::{self, Machine, Record};
use crate::spec::{self, Experiment, Figure, Table, Value};
use lines::{Lines, Select};
use plot::ticks::{fmt_int, fmt_value, Scale};
use plot::{style, Chart, Extra, Point, Series};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use verdict::{Outcome, Source, Status, Verdict};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Text from an experiment file as HTML: escaped, with `code` spans.
fn inline_html(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in esc(s).split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// Text for a markdown table cell.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The lines of a figure.
fn figure_lines(fig: &Figure, recs: &[&Record]) -> Lines {
    lines::collect(
        recs,
        Select {
            filter: &fig.filter,
            also: None,
            series: &fig.series,
            x: &fig.x,
            y: &fig.y,
            err: fig.y_err.as_deref(),
            extras: &fig.y_extra,
        },
    )
}

/// What an extra metric is, relative to y ("reply_rate_min" beside "reply_rate_avg" → "min").
fn extra_label(y: &str, extra: &str) -> String {
    let common = y.chars().zip(extra.chars()).take_while(|(a, b)| a == b).count();
    let cut = extra[..common].rfind('_').map_or(0, |i| i + 1);
    extra[cut..].replace('_', " ")
}

/// The chart of a figure.
pub fn chart(fig: &Figure, recs: &[&Record]) -> (Chart, Lines) {
    let data = figure_lines(fig, recs);
    let mut series: Vec<Series> = Vec::new();
    let mut names: Vec<String> = data.lines.iter().map(|(n, _)| n.clone()).collect();
    for d in &data.dropped {
        if d.x.is_some() && d.y.is_some() && !names.contains(&d.series) {
            names.push(d.series.clone());
        }
    }
    lines::sort_lines(&mut names, &fig.series, |n| n.as_str());
    for (i, name) in names.iter().enumerate() {
        let st =
            if fig.series == "mechanism" { style::of_mechanism(name) } else { style::of_other(i) };
        let pts = data.get(name).unwrap_or(&[]);
        let mut points: Vec<Point> = pts
            .iter()
            .map(|p| Point { x: p.x, y: p.y, err: p.err, invalid: None, spread: p.spread })
            .collect();
        for d in data.dropped.iter().filter(|d| &d.series == name) {
            if let (Some(x), Some(y)) = (d.x, d.y) {
                points.push(Point {
                    x,
                    y,
                    err: None,
                    invalid: Some(d.reason.clone()),
                    spread: None,
                });
            }
        }
        let extras = fig
            .y_extra
            .iter()
            .enumerate()
            .map(|(k, m)| Extra {
                label: extra_label(&fig.y, m),
                points: pts.iter().filter_map(|p| p.extras[k].map(|v| (p.x, v))).collect(),
            })
            .collect();
        series.push(Series { name: name.clone(), style: st, points, extras });
    }
    let mut marks: Vec<f64> = Vec::new();
    if let Some(m) = &fig.marks {
        for r in recs.iter().filter(|r| lines::matches(r, &fig.filter)) {
            marks.extend(r.lists.get(m).into_iter().flatten().copied());
        }
        marks.sort_by(f64::total_cmp);
        marks.dedup();
    }
    // Counts (overflows, errors) get integer ticks; a line of zeros alone does not make a count.
    let ys: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.y)).collect();
    let y_integer = is_count(&fig.y, &ys) && ys.iter().any(|y| *y >= 3.0);
    let chart = Chart {
        id: fig.id.clone(),
        title: fig.title.clone(),
        x_label: fig.x_label.clone(),
        y_label: fig.y_label.clone(),
        x_scale: if fig.log_x { Scale::Log } else { Scale::Linear },
        y_scale: if fig.log_y { Scale::Log } else { Scale::Linear },
        y_integer,
        series,
        marks,
        marks_label: fig.marks.as_deref().map_or(String::new(), |m| m.replace('_', " ")),
    };
    (chart, data)
}

/// A figure's verdict.
pub fn figure_verdict(fig: &Figure, recs: &[&Record]) -> Verdict {
    verdict::judge(
        &fig.rules,
        Source { filter: &fig.filter, series: &fig.series, x: Some(&fig.x), y: Some(&fig.y) },
        recs,
    )
}

/// A table's verdict: its rules judged in each group of rows that share every row parameter
/// but the rate (Table 1's 252 and 6,000 idle rows are judged apart, not merged into a median).
pub fn table_verdict(t: &Table, recs: &[&Record]) -> Verdict {
    let keys: Vec<&String> = t
        .rows
        .iter()
        .filter(|k| !matches!(k.as_str(), "rate" | "rate_fraction" | "mechanism"))
        .collect();
    let mut groups: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for r in recs {
        let label: Vec<String> = keys
            .iter()
            .map(|k| format!("{k}={}", r.params.get(*k).map_or("?".to_string(), |v| v.to_string())))
            .collect();
        groups.entry(label.join(",")).or_default().push(r);
    }
    let mut groups: Vec<(String, Vec<&Record>)> = groups.into_iter().collect();
    // Numeric parameters in numeric order (idle=252 before idle=6000).
    groups.sort_by(|a, b| {
        let num = |g: &(String, Vec<&Record>)| {
            keys.first()
                .and_then(|k| g.1.first().and_then(|r| r.params.get(*k)).and_then(Value::as_f64))
        };
        num(a).partial_cmp(&num(b)).unwrap_or(std::cmp::Ordering::Equal).then(a.0.cmp(&b.0))
    });
    verdict::judge_groups(
        &t.rules,
        Source { filter: &t.filter, series: "mechanism", x: None, y: None },
        &groups,
    )
}

/// Whether a metric counts things (printed as an integer).
fn is_count(name: &str, values: &[f64]) -> bool {
    !values.is_empty() && values.iter().all(|v| v.fract() == 0.0) && !name.contains("ms")
}

/// A table's rows: (mechanism, row-key values for sorting, cells, invalid reason).
/// A table row: its cells, and why the point is not the server's figure (None when valid).
type TableRow = (Vec<String>, Option<String>);

fn table_rows(t: &Table, recs: &[&Record]) -> (Vec<String>, Vec<TableRow>) {
    let mine: Vec<&&Record> = recs.iter().filter(|r| lines::matches(r, &t.filter)).collect();
    let mut header: Vec<String> = vec!["mechanism".into()];
    header.extend(t.rows.iter().cloned());
    header.extend(t.columns.iter().cloned());
    let counts: Vec<bool> = t
        .columns
        .iter()
        .map(|c| is_count(c, &mine.iter().filter_map(|r| r.metric(c)).collect::<Vec<_>>()))
        .collect();
    // Sorted by (legend rank, mechanism, row keys).
    type Key = (usize, String, Vec<f64>);
    let mut rows: Vec<(Key, TableRow)> = Vec::new();
    for r in mine {
        let keys: Vec<f64> = t.rows.iter().map(|k| r.value(k).unwrap_or(f64::NAN)).collect();
        let mut cells = vec![r.mechanism.clone()];
        cells.extend(t.rows.iter().map(|k| match r.value(k) {
            Some(v) => fmt_int_or_value(v),
            None => r.params.get(k).map_or("-".into(), |v| v.to_string()),
        }));
        for (c, count) in t.columns.iter().zip(&counts) {
            cells.push(match r.metric(c) {
                Some(v) if *count => fmt_int(v),
                Some(v) => fmt_value(v),
                None => "-".into(),
            });
        }
        let why = r
            .error
            .as_deref()
            .map(|e| format!("not measured: {}", lines::short_reason(e)))
            .or_else(|| {
                (!r.valid).then(|| {
                    format!(
                        "INVALID: {}",
                        lines::short_reason(
                            r.invalid_reason.as_deref().unwrap_or("flagged invalid")
                        )
                    )
                })
            });
        rows.push(((style::rank(&r.mechanism), r.mechanism.clone(), keys), (cells, why)));
    }
    rows.sort_by(|(a, _), (b, _)| {
        a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(
            a.2.iter()
                .zip(&b.2)
                .fold(std::cmp::Ordering::Equal, |o, (x, y)| o.then(x.total_cmp(y))),
        )
    });
    (header, rows.into_iter().map(|(_, row)| row).collect())
}

fn fmt_int_or_value(v: f64) -> String {
    if v.fract() == 0.0 {
        fmt_int(v)
    } else {
        fmt_value(v)
    }
}

const STYLE: &str = "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;max-width:960px;\
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
h1{font-size:1.6em}h2{margin-top:2.2em;border-bottom:1px solid #ddd;padding-bottom:.2em}\
figure{margin:2.2em 0}figure svg{display:block;max-width:100%;height:auto}\
figcaption{font-size:.95em;margin-top:.4em}figcaption p{margin:.35em 0}\
.cap{display:flex;gap:.8em;align-items:baseline}\
.badge{display:inline-block;white-space:nowrap;font-size:.78em;font-weight:bold;letter-spacing:.03em;\
padding:.15em .55em;border-radius:.3em;border:1px solid}\
.reproduced{background:#e3f4e8;color:#135e2a;border-color:#7cc291}\
.partly{background:#fdf3d8;color:#6b4c00;border-color:#e0b94f}\
.not-reproduced{background:#fbe3e3;color:#8a1c1c;border-color:#e08a8a}\
.not-measured,.no-rule{background:#eee;color:#444;border-color:#bbb}\
ul.rules{margin:.3em 0;padding-left:1.2em}ul.rules li{margin:.15em 0}\
.holds::marker{content:'✓ ';color:#135e2a}.fails::marker{content:'✗ ';color:#8a1c1c}\
.unmeasured::marker{content:'– ';color:#777}.nums{color:#444;font-size:.92em}\
.why{color:#6b4c00;font-size:.92em}\
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;vertical-align:top}\
th{background:#f3f3f3}td.l,th.l{text-align:left}\
table.dropped{font-size:.85em}table.dropped caption{text-align:left;color:#444}\
code{background:#f4f4f4;padding:0 .2em}ul.conditions{font-size:.9em;color:#333}\
p.empty{color:#666;font-style:italic;border:1px dashed #ccc;padding:2em;text-align:center}";

fn rule_items_html(v: &Verdict) -> String {
    let mut s = String::from("<ul class=\"rules\">");
    for r in &v.rules {
        let class = match r.outcome {
            Outcome::Holds => "holds",
            Outcome::Fails => "fails",
            Outcome::Incomplete | Outcome::NotMeasured => "unmeasured",
        };
        let _ = write!(
            s,
            "<li class=\"{class}\">{}<br><span class=\"nums\">{}</span>",
            inline_html(&r.says),
            esc(&r.numbers())
        );
        if let Some(why) = &r.reason {
            let _ = write!(
                s,
                "<br><span class=\"why\">Why this may differ: {}</span>",
                inline_html(why)
            );
        }
        s.push_str("</li>");
    }
    s.push_str("</ul>");
    s
}

fn badge(st: Status) -> String {
    format!("<span class=\"badge {}\">{st}</span>", st.class())
}

/// The deciding numbers of a verdict in one markdown cell.
fn mark(o: Outcome) -> &'static str {
    match o {
        Outcome::Holds => "✓",
        Outcome::Fails => "✗",
        Outcome::Incomplete => "✓?",
        Outcome::NotMeasured => "–",
    }
}

/// The deciding numbers of a verdict in one markdown cell, a line per rule (the rules' words
/// are in the experiment's section).
fn md_numbers(v: &Verdict) -> String {
    v.rules
        .iter()
        .map(|r| format!("{} {}", mark(r.outcome), r.numbers()))
        .collect::<Vec<_>>()
        .join("<br>")
}

/// One row of the verdict table.
struct VerdictRow {
    experiment: String,
    anchor: String,
    what: String,
    finding: String,
    verdict: Verdict,
    note: Option<String>,
}

fn dropped_table(data: &Lines) -> String {
    if data.dropped.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "<table class=\"dropped\"><caption>{} point(s) not drawn as the server's figure \
(hollow where they have a value):</caption><tr><th class=\"l\">line</th><th>x</th><th class=\"l\">why</th></tr>",
        data.dropped.len()
    );
    for d in &data.dropped {
        let _ = write!(
            s,
            "<tr><td class=\"l\">{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
            esc(&d.series),
            d.x.map_or_else(|| "-".into(), fmt_value),
            esc(&d.reason)
        );
    }
    s.push_str("</table>");
    s
}

/// The experiment's short table for summary.md: the summary figure's lines (rows) at each x
/// (columns). Where x is a measurement rather than a grid parameter (time over a ramp), the
/// columns are the steps in order, headed by the first line's x.
fn summary_table(e: &Experiment, mine: &[&Record]) -> Option<String> {
    let fig = e.figures.iter().find(|f| f.in_summary).or(e.figures.first())?;
    let data = figure_lines(fig, mine);
    if data.lines.is_empty() {
        return None;
    }
    let is_param = mine.iter().any(|r| r.params.contains_key(&fig.x));
    let cols: Vec<f64> = if is_param {
        let mut xs: Vec<f64> = data.lines.iter().flat_map(|(_, p)| p.iter().map(|p| p.x)).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        xs
    } else {
        data.lines[0].1.iter().map(|p| p.x).collect()
    };
    let ncols = if is_param {
        cols.len()
    } else {
        data.lines.iter().map(|(_, p)| p.len()).max().unwrap_or(0)
    };
    let count = is_count(
        &fig.y,
        &data.lines.iter().flat_map(|(_, p)| p.iter().map(|p| p.y)).collect::<Vec<_>>(),
    );
    let fmt = |v: f64| if count { fmt_int(v) } else { fmt_value(v) };
    let mut s = format!(
        "{} ({}; valid points only, the median of a point's rounds, \"-\" where none):\n\n| {} \\ {} |",
        fig.y_label,
        fig.title,
        if fig.series == "mechanism" { "mechanism" } else { &fig.series },
        fig.x_label
    );
    for i in 0..ncols {
        let h = match cols.get(i) {
            Some(x) if is_param => fmt_value(*x),
            Some(x) => format!("≈{}", fmt_value(*x)),
            None => format!("step {}", i + 1),
        };
        let _ = write!(s, " {} |", md_cell(&h));
    }
    let _ = write!(s, "\n|---|{}\n", "---|".repeat(ncols));
    for (name, pts) in &data.lines {
        let _ = write!(s, "| {} |", md_cell(name));
        for i in 0..ncols {
            let v = if is_param {
                cols.get(i).and_then(|x| pts.iter().find(|p| p.x == *x)).map(|p| p.y)
            } else {
                pts.get(i).map(|p| p.y)
            };
            let _ = write!(s, " {} |", v.map_or("-".into(), fmt));
        }
        s.push('\n');
    }
    Some(s)
}

/// The report as it is written: its HTML body, its markdown body, and the verdicts so far.
#[derive(Default)]
struct Doc {
    html: String,
    md: String,
    verdicts: Vec<VerdictRow>,
}

impl Doc {
    /// One experiment: what it is and how it was measured, its figures, its summary table, its
    /// tables, and the words and numbers of its verdicts.
    fn experiment(&mut self, e: &Experiment, mine: &[&Record]) {
        let dropped = mine.iter().filter(|r| !r.usable()).count();
        let _ = write!(
            self.html,
            "<h2 id=\"{0}\">{0}</h2><p>{1} Reproduces {2}. {3} points, {4} INVALID or not \
measured.</p>",
            esc(&e.name),
            inline_html(&with_period(&e.summary)),
            inline_html(&e.reproduces),
            mine.len(),
            dropped
        );
        let _ = writeln!(
            self.md,
            "## {}\n\n{} Reproduces {}. {} points, {} INVALID or not measured.\n",
            e.name,
            with_period(&e.summary),
            e.reproduces,
            mine.len(),
            dropped
        );
        let cond = conditions(mine);
        if !cond.is_empty() {
            self.html.push_str("<ul class=\"conditions\">");
            for (k, v) in &cond {
                let _ = write!(self.html, "<li><b>{}:</b> {}</li>", esc(k), esc(v));
                let _ = writeln!(self.md, "- {k}: {v}");
            }
            self.html.push_str("</ul>");
            self.md.push('\n');
        }
        let first = self.verdicts.len();
        for f in &e.figures {
            self.figure(e, f, mine);
        }
        if let Some(t) = summary_table(e, mine) {
            self.md.push_str(&t);
            self.md.push('\n');
        }
        for t in &e.tables {
            self.table(e, t, mine);
        }
        self.md.push_str("Verdicts:\n\n");
        for v in &self.verdicts[first..] {
            let _ = writeln!(self.md, "- {} — **{}**", v.what, v.verdict.status);
            for r in &v.verdict.rules {
                let _ = writeln!(self.md, "  - {} {} — {}", mark(r.outcome), r.says, r.numbers());
                if let Some(why) = &r.reason {
                    let _ = writeln!(self.md, "    (why this may differ here: {why})");
                }
            }
        }
        self.md.push('\n');
    }

    /// One figure: its chart, caption, verdict with its rules, and the points not drawn.
    fn figure(&mut self, e: &Experiment, f: &Figure, mine: &[&Record]) {
        let anchor = format!("{}-{}", e.name, f.id);
        let in_variant = mine.iter().any(|r| lines::matches(r, &f.filter));
        let v = figure_verdict(f, mine);
        let note = (!in_variant).then(|| {
            "no point of this run's variant falls in this figure; `--full` measures it".to_string()
        });
        let _ = write!(self.html, "<figure id=\"{}\">", esc(&anchor));
        let mut data = Lines::default();
        if in_variant {
            let (c, d) = chart(f, mine);
            if c.series.iter().any(|s| !s.points.is_empty()) {
                self.html.push_str(&c.svg());
            } else {
                self.html.push_str(
                    "<p class=\"empty\">No point of this figure has a value to draw.</p>",
                );
            }
            data = d;
        }
        let _ = write!(
            self.html,
            "<figcaption><div class=\"cap\">{}<span><b>{}</b> — {}</span></div>\
<p><b>Paper:</b> {}</p>",
            badge(v.status),
            inline_html(&f.reproduces),
            inline_html(&f.title),
            inline_html(&f.paper_finding)
        );
        if let Some(n) = &note {
            let _ = write!(self.html, "<p><i>{}</i></p>", inline_html(n));
        }
        let fig_recs: Vec<&Record> =
            mine.iter().copied().filter(|r| lines::matches(r, &f.filter)).collect();
        let budgets = distinct_words(&fig_recs, "server_cpu");
        if !budgets.is_empty() {
            let _ =
                write!(self.html, "<p><b>Server CPU budget:</b> {}</p>", esc(&budgets.join("; ")));
        }
        self.html.push_str(&rule_items_html(&v));
        self.html.push_str(&dropped_table(&data));
        self.html.push_str("</figcaption></figure>");
        self.verdicts.push(VerdictRow {
            experiment: e.name.clone(),
            anchor,
            what: f.reproduces.clone(),
            finding: f.paper_finding.clone(),
            verdict: v,
            note,
        });
    }

    /// One table (Chandra & Mosberger's Table 1): its rows, validity, and verdict.
    fn table(&mut self, e: &Experiment, t: &Table, mine: &[&Record]) {
        let anchor = format!("{}-{}", e.name, t.id);
        let v = table_verdict(t, mine);
        let (header, rows) = table_rows(t, mine);
        let _ = write!(
            self.html,
            "<div id=\"{}\"><div class=\"cap\">{}<span><b>{}</b> — {}</span></div><table><tr>",
            esc(&anchor),
            badge(v.status),
            inline_html(&t.reproduces),
            inline_html(&t.title)
        );
        for (i, h) in header.iter().enumerate() {
            let l = if i == 0 { " class=\"l\"" } else { "" };
            let _ = write!(self.html, "<th{l}>{}</th>", esc(&h.replace('_', " ")));
        }
        self.html.push_str("<th class=\"l\">validity</th></tr>");
        let _ = write!(
            self.md,
            "**{}** ({}):\n\n| {} | validity |\n|{}---|\n",
            t.title,
            t.reproduces,
            header.iter().map(|h| h.replace('_', " ")).collect::<Vec<_>>().join(" | "),
            "---|".repeat(header.len())
        );
        for (cells, why) in &rows {
            self.html.push_str("<tr>");
            for (i, c) in cells.iter().enumerate() {
                let l = if i == 0 { " class=\"l\"" } else { "" };
                let _ = write!(self.html, "<td{l}>{}</td>", esc(c));
            }
            let w = why.clone().unwrap_or_else(|| "valid".into());
            let _ = write!(self.html, "<td class=\"l\">{}</td></tr>", esc(&w));
            let _ = writeln!(self.md, "| {} | {} |", cells.join(" | "), md_cell(&w));
        }
        let _ = write!(self.html, "</table><p><b>Paper:</b> {}</p>", inline_html(&t.paper_finding));
        self.html.push_str(&rule_items_html(&v));
        self.html.push_str("</div>");
        self.md.push('\n');
        self.verdicts.push(VerdictRow {
            experiment: e.name.clone(),
            anchor,
            what: t.reproduces.clone(),
            finding: t.paper_finding.clone(),
            verdict: v,
            note: None,
        });
    }
}

/// Renders the whole report. Returns (html, markdown summary).
pub fn render(
    exps: &[Experiment],
    recs: &[Record],
    machine: &Machine,
    title_note: &str,
) -> (String, String) {
    let mut doc = Doc::default();
    for e in exps {
        let mine: Vec<&Record> = recs.iter().filter(|r| r.experiment == e.name).collect();
        if !mine.is_empty() {
            doc.experiment(e, &mine);
        }
    }
    let Doc { html: body, md: md_body, verdicts } = doc;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ioscale lab report</title>\
<style>{STYLE}</style></head><body><h1>ioscale lab report</h1><p>{}</p>",
        esc(title_note)
    );
    let _ = write!(
        html,
        "<p><b>Machine:</b> {}, {} ({} cores, {} MiB, open files {}).</p>",
        esc(&machine.kernel),
        esc(&machine.cpu),
        machine.cores,
        fmt_int(machine.memory_mib as f64),
        fmt_int(machine.nofile as f64)
    );
    let mut md = String::new();
    let _ = writeln!(md, "# ioscale lab summary\n\n{title_note}\n");
    let _ = writeln!(
        md,
        "Machine: {}, {} ({} cores, {} MiB, open files {}).\n",
        machine.kernel,
        machine.cpu,
        machine.cores,
        fmt_int(machine.memory_mib as f64),
        fmt_int(machine.nofile as f64)
    );
    if !verdicts.is_empty() {
        let count = |s: Status| verdicts.iter().filter(|v| v.verdict.status == s).count();
        let tally = format!(
            "{} figures and tables: {} reproduced, {} partly, {} not reproduced, {} not measured.",
            verdicts.len(),
            count(Status::Reproduced),
            count(Status::Partly),
            count(Status::NotReproduced),
            count(Status::NotMeasured) + count(Status::NoRule)
        );
        let _ = write!(
            html,
            "<h2 id=\"verdicts\">Verdicts</h2><p>{}</p><table><tr><th class=\"l\">experiment</th>\
<th class=\"l\">figure</th><th class=\"l\">paper's finding</th><th class=\"l\">verdict</th></tr>",
            esc(&tally)
        );
        let _ = writeln!(
            md,
            "## Verdicts\n\n{tally}\n\n| figure | paper's finding | verdict | deciding numbers |\n|---|---|---|---|"
        );
        for v in &verdicts {
            let _ = write!(
                html,
                "<tr><td class=\"l\">{}</td><td class=\"l\"><a href=\"#{}\">{}</a></td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
                esc(&v.experiment),
                esc(&v.anchor),
                inline_html(&v.what),
                inline_html(&v.finding),
                badge(v.verdict.status)
            );
            let mut nums = md_numbers(&v.verdict);
            if let Some(n) = &v.note {
                nums = if nums.is_empty() { n.clone() } else { format!("{n}<br>{nums}") };
            }
            let _ = writeln!(
                md,
                "| {}: {} | {} | **{}** | {} |",
                v.experiment,
                md_cell(&v.what),
                md_cell(&v.finding),
                v.verdict.status,
                md_cell(&nums)
            );
        }
        html.push_str("</table>");
        md.push('\n');
    }
    html.push_str(&body);
    html.push_str("</body></html>\n");
    md.push_str(&md_body);
    (html, md)
}

/// The distinct values of a word parameter among some records, in order of first appearance.
fn distinct_words(recs: &[&Record], key: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in recs {
        if let Some(v) = r.params.get(key) {
            let v = v.to_string();
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

/// How an experiment's points were measured, as the runner recorded it: the server's CPU
/// budget and why, the capacity and how it was found, the generator's ceiling, scheduling.
fn conditions(recs: &[&Record]) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (key, label) in [
        ("server_cpu", "server CPU budget"),
        ("budget_why", "why this budget"),
        ("capacity_method", "capacity found by"),
        ("scheduling", "scheduling"),
        ("counters", "server counters over the"),
    ] {
        let v = distinct_words(recs, key);
        if !v.is_empty() {
            out.push((label, v.join("; ")));
        }
    }
    for (key, label) in [
        ("capacity", "server capacity (replies/s)"),
        ("generator_ceiling", "generator ceiling (requests/s)"),
    ] {
        let mut v: Vec<f64> = recs.iter().filter_map(|r| r.metric(key)).collect();
        v.sort_by(f64::total_cmp);
        v.dedup();
        if !v.is_empty() {
            let words: Vec<String> = v.iter().map(|x| fmt_int(*x)).collect();
            out.push((label, words.join(", ")));
        }
    }
    out
}

fn with_period(s: &str) -> String {
    let t = s.trim_end();
    if t.ends_with('.') {
        t.to_string()
    } else {
        format!("{t}.")
    }
}

/// Re-renders `report.html` and `summary.md` in `out` from its `results.jsonl`.
pub fn render_dir(out: &Path, experiments_dir: &Path) -> Result<(PathBuf, PathBuf), Error> {
    let path = out.join("results.jsonl");
    let contents = record::read_all(&path).map_err(|e| Error(e.to_string()))?;
    for w in contents.warnings(&path) {
        eprintln!("lab: {w}");
    }
    let (recs, bad) = (contents.records, contents.unreadable.len());
    if recs.is_empty() {
        return Err(Error(format!(
            "{} holds no results to report",
            out.join("results.jsonl").display()
        )));
    }
    let exps = spec::load_dir(experiments_dir)?;
    let machine = recs.last().map(|r| r.machine.clone()).unwrap_or_default();
    let when = recs.iter().map(|r| r.unix_time).max().unwrap_or(0);
    let note = format!(
        "{} points from {} ({} unreadable lines skipped); last point at {} (Unix time {when}).",
        recs.len(),
        out.join("results.jsonl").display(),
        bad,
        fmt_date(when)
    );
    let (html, md) = render(&exps, &recs, &machine, &note);
    let report = out.join("report.html");
    let summary = out.join("summary.md");
    std::fs::write(&report, html)?;
    std::fs::write(&summary, md)?;
    Ok((report, summary))
}

/// Replaces the text between `<!-- lab-results:begin -->` and `<!-- lab-results:end -->` in the
/// README at `readme` with the summary of the run in `out` (its date and machine facts come from
/// the results themselves), so the README's results are generated, never typed.
pub fn splice_readme(out: &Path, readme: &Path) -> Result<(), Error> {
    const BEGIN: &str = "<!-- lab-results:begin -->";
    const END: &str = "<!-- lab-results:end -->";
    let summary = std::fs::read_to_string(out.join("summary.md")).map_err(|e| {
        Error(format!(
            "{}: {e}; run `ioscale lab report {}` first",
            out.join("summary.md").display(),
            out.display()
        ))
    })?;
    let text = std::fs::read_to_string(readme)?;
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        return Err(Error(format!("{} has no {BEGIN} ... {END} markers", readme.display())));
    };
    if e < b {
        return Err(Error(format!("{}: {END} comes before {BEGIN}", readme.display())));
    }
    let new = format!("{}{BEGIN}\n{}\n{}", &text[..b], readme_part(&summary), &text[e..]);
    std::fs::write(readme, new)?;
    Ok(())
}

/// The README's part of a summary: everything up to the first experiment's section (the run,
/// the machine, the verdict table), its headings one level down, and where the rest is.
fn readme_part(summary: &str) -> String {
    let body = summary.replacen("# ioscale lab summary", "", 1);
    let cut = body
        .find("## Verdicts")
        .and_then(|v| body[v + 3..].find("\n## ").map(|i| v + 3 + i))
        .unwrap_or(body.len());
    let mut part = body[..cut].replace("## ", "### ").trim().to_string();
    if cut < body.len() {
        part.push_str(
            "\n\nEach experiment's own table and the words of every rule are in the run's \
             `summary.md`; its `report.html` draws every figure.",
        );
    }
    part
}

/// A UTC date for a Unix time, to the minute: `YYYY-MM-DD HH:MM UTC`.
pub fn fmt_date(t: u64) -> String {
    let t = ioscale_sys::time::UtcTime::from_unix(t as i64);
    format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", t.year, t.month, t.day, t.hour, t.minute)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lines::tests::rec;

    fn fig(rules: &str) -> Figure {
        toml::from_str(&format!(
            r#"id = "f"
reproduces = "Fig. 4"
title = "CPU"
x = "idle"
x_label = "idle connections"
y = "cpu_us_per_req"
y_label = "µs/req"
paper_finding = "grows"
{rules}"#
        ))
        .unwrap()
    }

    #[test]
    fn invalid_points_are_hollow_and_listed_and_the_verdict_is_computed() {
        let mut bad = rec("poll", &[("idle", 2000.0)], &[("cpu_us_per_req", 99.0)]);
        bad.valid = false;
        bad.invalid_reason = Some("[\"schedule lag p99 31.4 ms > 10 ms\"]".into());
        let recs = [
            rec("poll", &[("idle", 0.0)], &[("cpu_us_per_req", 10.0)]),
            rec("poll", &[("idle", 1000.0)], &[("cpu_us_per_req", 40.0)]),
            bad,
        ];
        let refs: Vec<&Record> = recs.iter().collect();
        let f = fig(
            "[[rule]]\nkind = 'growth'\nsays = 'poll grows 2x'\nseries = ['poll']\nat_least = 2",
        );
        let (c, data) = chart(&f, &refs);
        assert_eq!(data.get("poll").unwrap().len(), 2);
        assert_eq!(data.dropped.len(), 1);
        let svg = c.svg();
        assert_eq!(svg.matches("class=\"pt invalid\"").count(), 1);
        assert!(svg.contains("schedule lag p99 31.4 ms"), "the reason is on hover");
        let v = figure_verdict(&f, &refs);
        assert_eq!(v.status, Status::Reproduced);
        assert_eq!(v.rules[0].numbers(), "want ≥ 2: poll 10→40 = 4x (0→1,000) ✓");
    }

    #[test]
    fn extra_labels_name_what_differs() {
        assert_eq!(extra_label("reply_rate_avg", "reply_rate_min"), "min");
        assert_eq!(extra_label("connect_p50_us", "connect_cpu_p50_us"), "cpu p50 us");
    }

    #[test]
    fn the_readme_gets_the_run_and_the_verdict_table() {
        let s = "# ioscale lab summary\n\nrun\n\n## Verdicts\n\n| a |\n\n## exp\n\ntable\n";
        let p = readme_part(s);
        assert!(p.starts_with("run\n\n### Verdicts\n\n| a |"), "{p}");
        assert!(!p.contains("### exp") && p.contains("`summary.md`"), "{p}");
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(fmt_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(fmt_date(1_795_401_000), "2026-11-23 02:30 UTC");
    }
}
