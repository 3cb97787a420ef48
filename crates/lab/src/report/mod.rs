//! The report: `report.html` (self-contained, inline SVG drawn with plotters), `summary.md`,
//! and the README's generated results section.
//!
//! Each figure is drawn with the paper's axes from the points of its experiment, captioned with
//! the figure it reproduces, what the paper found, and what this run found (computed from the
//! points, never typed). Points the generator flagged INVALID are never drawn as the server's
//! figure: they are listed under the figure with their reason.

pub mod lines;
pub mod plot;
pub mod verdict;

use crate::record::{self, Machine, Record};
use crate::runner::Error;
use crate::spec::{self, Experiment, Figure, Table, Value};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One line of a figure: (x, y, y_err, extras) sorted by x.
type Line = Vec<(f64, f64, Option<f64>, Vec<Option<f64>>)>;

fn matches(rec: &Record, filter: &BTreeMap<String, Value>) -> bool {
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

fn series_name(rec: &Record, series: &str) -> String {
    if series == "mechanism" {
        rec.mechanism.clone()
    } else {
        rec.params.get(series).map_or_else(|| "?".into(), |v| format!("{series}={v}"))
    }
}

/// Collects the lines of a figure; points that are invalid or failed are returned apart.
fn lines(fig: &Figure, recs: &[&Record]) -> (BTreeMap<String, Line>, Vec<String>) {
    let mut out: BTreeMap<String, Line> = BTreeMap::new();
    let mut excluded = Vec::new();
    for r in recs.iter().filter(|r| matches(r, &fig.filter)) {
        let (Some(x), Some(y)) = (r.value(&fig.x), r.metric(&fig.y)) else {
            if let Some(e) = &r.error {
                excluded.push(format!("{} {}: not measured ({e})", r.mechanism, fmt_params(r)));
            }
            continue;
        };
        if !r.usable() {
            let why = r.invalid_reason.clone().or_else(|| r.error.clone()).unwrap_or_default();
            excluded.push(format!("{} {}: INVALID ({why})", r.mechanism, fmt_params(r)));
            continue;
        }
        let err = fig.y_err.as_ref().and_then(|m| r.metric(m));
        let extras = fig.y_extra.iter().map(|m| r.metric(m)).collect();
        out.entry(series_name(r, &fig.series)).or_default().push((x, y, err, extras));
    }
    for line in out.values_mut() {
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Several rounds at one x: keep the median y (the lab's rule for repeated points).
        let mut merged: Line = Vec::new();
        let mut i = 0;
        while i < line.len() {
            let mut j = i;
            while j < line.len() && line[j].0 == line[i].0 {
                j += 1;
            }
            let mut group: Vec<_> = line[i..j].to_vec();
            group.sort_by(|a, b| a.1.total_cmp(&b.1));
            merged.push(group[group.len() / 2].clone());
            i = j;
        }
        *line = merged;
    }
    (out, excluded)
}

fn fmt_params(r: &Record) -> String {
    r.params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".to_string()
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Draws one figure as an SVG string.
///
/// Over 120 lines: the figure redesign (issue 21 item 1, owner `report`) replaces this body;
/// it was moved here whole so that work rebases onto a move, not onto a rewrite.
pub fn svg(fig: &Figure, recs: &[&Record]) -> Result<String, String> {
    let (data, _) = lines(fig, recs);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let all: Vec<(f64, f64)> = data
            .values()
            .flat_map(|l| {
                l.iter().flat_map(|(x, y, e, ex)| {
                    let mut v = vec![(*x, *y)];
                    if let Some(e) = e {
                        v.push((*x, y + e));
                        v.push((*x, (y - e).max(0.0)));
                    }
                    v.extend(ex.iter().flatten().map(|y2| (*x, *y2)));
                    v
                })
            })
            .collect();
        let (mut x0, mut x1) =
            all.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
        let (mut y0, mut y1) =
            all.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
        if all.is_empty() {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        if fig.log_x {
            x0 = x0.max(1e-3) * 0.8;
            x1 = x1.max(x0 * 2.0) * 1.25;
        } else {
            let pad = ((x1 - x0) * 0.05).max(0.5);
            x0 = (x0 - pad).min(0.0).max(if x0 >= 0.0 { 0.0 } else { f64::MIN });
            x1 += pad;
        }
        if fig.log_y {
            y0 = y0.max(1e-3) * 0.7;
            y1 = y1.max(y0 * 2.0) * 1.5;
        } else {
            y0 = 0.0f64.min(y0);
            y1 = if y1 <= y0 { y0 + 1.0 } else { y1 * 1.1 };
        }
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(&fig.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(64);
        macro_rules! draw {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(fig.x_label.as_str())
                    .y_desc(fig.y_label.as_str())
                    .x_label_formatter(&|v| fmt_num(*v))
                    .y_label_formatter(&|v| fmt_num(*v))
                    .light_line_style(RGBColor(235, 235, 235))
                    .draw()
                    .map_err(|e| e.to_string())?;
                for (i, (name, line)) in data.iter().enumerate() {
                    let color = PALETTE[i % PALETTE.len()];
                    let pts: Vec<(f64, f64)> = line.iter().map(|p| (p.0, p.1)).collect();
                    chart
                        .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                        .map_err(|e| e.to_string())?
                        .label(name.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                        });
                    chart
                        .draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled())))
                        .map_err(|e| e.to_string())?;
                    for p in line {
                        if let Some(e) = p.2 {
                            let lo = if fig.log_y { (p.1 - e).max(y0) } else { p.1 - e };
                            chart
                                .draw_series(std::iter::once(PathElement::new(
                                    vec![(p.0, lo), (p.0, p.1 + e)],
                                    color,
                                )))
                                .map_err(|e| e.to_string())?;
                        }
                    }
                    for k in 0..fig.y_extra.len() {
                        let extra: Vec<(f64, f64)> = line
                            .iter()
                            .filter_map(|p| p.3.get(k).copied().flatten().map(|y| (p.0, y)))
                            .collect();
                        chart
                            .draw_series(DashedLineSeries::new(
                                extra,
                                4,
                                3,
                                color.stroke_width(1).into(),
                            ))
                            .map_err(|e| e.to_string())?;
                    }
                }
                if let Some(mark) = &fig.marks {
                    for r in recs.iter().filter(|r| matches(r, &fig.filter)) {
                        for t in r.lists.get(mark).into_iter().flatten() {
                            chart
                                .draw_series(std::iter::once(PathElement::new(
                                    vec![(*t, y0), (*t, y1)],
                                    RGBColor(120, 120, 120).stroke_width(1),
                                )))
                                .map_err(|e| e.to_string())?;
                        }
                    }
                }
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(RGBColor(200, 200, 200))
                    .position(SeriesLabelPosition::UpperLeft)
                    .draw()
                    .map_err(|e| e.to_string())?;
            }};
        }
        match (fig.log_x, fig.log_y) {
            (false, false) => {
                draw!(builder.build_cartesian_2d(x0..x1, y0..y1).map_err(|e| e.to_string())?)
            }
            (true, false) => draw!(builder
                .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
                .map_err(|e| e.to_string())?),
            (false, true) => draw!(builder
                .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                .map_err(|e| e.to_string())?),
            (true, true) => {
                draw!(builder
                    .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
                    .map_err(|e| e.to_string())?)
            }
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// What this run found, in words computed from the points: each line's y at its smallest and
/// largest x, and the ratio.
pub fn finding(fig: &Figure, recs: &[&Record]) -> String {
    let (data, excluded) = lines(fig, recs);
    if data.is_empty() {
        return "no valid points were measured for this figure in this run".into();
    }
    let mut parts = Vec::new();
    for (name, line) in &data {
        let (first, last) = (&line[0], &line[line.len() - 1]);
        if line.len() == 1 {
            parts.push(format!(
                "{name}: {} at {} = {}",
                fig.y_label,
                fmt_num(first.0),
                fmt_num(first.1)
            ));
            continue;
        }
        let ratio = if first.1.abs() > 1e-12 {
            format!(" ({:.2}x)", last.1 / first.1)
        } else {
            String::new()
        };
        parts.push(format!(
            "{name}: {} → {}{ratio} as {} goes {} → {}",
            fmt_num(first.1),
            fmt_num(last.1),
            fig.x_label,
            fmt_num(first.0),
            fmt_num(last.0)
        ));
    }
    let mut s = parts.join("; ");
    if let Some(reference) = &fig.reference {
        let growth = |line: &Line| {
            let (a, b) = (line[0].1, line[line.len() - 1].1);
            (line.len() > 1 && a.abs() > 1e-12).then(|| b / a)
        };
        if let Some(g_ref) = data.get(reference).and_then(growth) {
            let rel: Vec<String> = data
                .iter()
                .filter(|(n, _)| *n != reference)
                .filter_map(|(n, l)| growth(l).map(|g| format!("{n} {:.2}x", g / g_ref)))
                .collect();
            let _ = write!(
                s,
                ". Growth divided by {reference}'s own ({g_ref:.2}x, the cost every server pays per connection): {}",
                rel.join(", ")
            );
        }
    }
    if !excluded.is_empty() {
        let _ = write!(s, ". {} point(s) not drawn (invalid or not measured)", excluded.len());
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn table_rows(t: &Table, recs: &[&Record]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header: Vec<String> = vec!["mechanism".into()];
    header.extend(t.rows.iter().cloned());
    header.extend(t.columns.iter().cloned());
    let mut rows: Vec<(String, Vec<f64>, Vec<String>)> = Vec::new();
    for r in recs.iter().filter(|r| matches(r, &t.filter)) {
        let keys: Vec<f64> = t.rows.iter().map(|k| r.value(k).unwrap_or(f64::NAN)).collect();
        let mut cells: Vec<String> =
            t.rows.iter().map(|k| r.params.get(k).map_or("-".into(), |v| v.to_string())).collect();
        for c in &t.columns {
            cells.push(match (r.metric(c), r.usable()) {
                (Some(v), true) => fmt_num(v),
                (Some(v), false) => format!("{} (INVALID)", fmt_num(v)),
                (None, _) => "-".into(),
            });
        }
        rows.push((r.mechanism.clone(), keys, cells));
    }
    rows.sort_by(|a, b| {
        a.0.cmp(&b.0).then(
            a.1.iter()
                .zip(&b.1)
                .fold(std::cmp::Ordering::Equal, |o, (x, y)| o.then(x.total_cmp(y))),
        )
    });
    (
        header,
        rows.into_iter()
            .map(|(m, _, mut c)| {
                c.insert(0, m);
                c
            })
            .collect(),
    )
}

/// Per-mechanism summary over the HTTP points: server CPU per request at the smallest and
/// largest idle count of the `cm-overhead` experiment (or any experiment with idle counts),
/// peak reply rate, and p50/p99 latency at the smallest idle count.
pub fn summary_rows(recs: &[Record]) -> Vec<[String; 7]> {
    let mut by_mech: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.usable() && r.metric("cpu_us_per_req").is_some()) {
        by_mech.entry(r.mechanism.as_str()).or_default().push(r);
    }
    let mut out = Vec::new();
    for (m, rs) in by_mech {
        let over: Vec<&&Record> = rs.iter().filter(|r| r.experiment == "cm-overhead").collect();
        let base: Vec<&&Record> = if over.is_empty() { rs.iter().collect() } else { over };
        let idle = |r: &Record| r.value("idle").unwrap_or(0.0);
        let lo = base.iter().map(|r| idle(r)).fold(f64::MAX, f64::min);
        let hi = base.iter().map(|r| idle(r)).fold(f64::MIN, f64::max);
        let med = |v: Vec<f64>| -> Option<f64> {
            let mut v = v;
            v.sort_by(f64::total_cmp);
            (!v.is_empty()).then(|| v[v.len() / 2])
        };
        let at = |x: f64, m: &str| {
            med(base.iter().filter(|r| idle(r) == x).filter_map(|r| r.metric(m)).collect())
        };
        let (c_lo, c_hi) = (at(lo, "cpu_us_per_req"), at(hi, "cpu_us_per_req"));
        let peak = rs.iter().filter_map(|r| r.metric("reply_rate_avg")).fold(f64::NAN, f64::max);
        let f = |v: Option<f64>| v.map_or("-".to_string(), fmt_num);
        out.push([
            m.to_string(),
            format!("{} @ {}", f(c_lo), fmt_num(lo)),
            format!("{} @ {}", f(c_hi), fmt_num(hi)),
            match (c_lo, c_hi) {
                (Some(a), Some(b)) if a > 0.0 => format!("{:.2}x", b / a),
                _ => "-".into(),
            },
            f(Some(peak).filter(|p| p.is_finite())),
            f(at(lo, "latency_p50_ms")),
            f(at(lo, "latency_p99_ms")),
        ]);
    }
    out
}

const SUMMARY_HEAD: [&str; 7] = [
    "mechanism",
    "server CPU µs/req at fewest idle",
    "at most idle",
    "ratio",
    "peak replies/s",
    "p50 ms",
    "p99 ms",
];

/// Renders the whole report. Returns (html, markdown summary).
///
/// Over 120 lines: the report redesign (issue 21 item 1, owner `report`) replaces this body;
/// it was moved here whole so that work rebases onto a move, not onto a rewrite.
pub fn render(
    exps: &[Experiment],
    recs: &[Record],
    machine: &Machine,
    title_note: &str,
) -> (String, String) {
    let mut html = String::new();
    let mut md = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ioscale lab report</title><style>\
body{{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}}figure{{margin:2em 0}}\
figcaption{{font-size:.92em;line-height:1.4}}table{{border-collapse:collapse;margin:1em 0}}\
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#f3f3f3}}\
.invalid{{color:#a00;font-size:.85em}}code{{background:#f4f4f4}}</style></head><body>\
<h1>ioscale lab report</h1><p>{}</p>",
        esc(title_note)
    );
    let _ = write!(
        html,
        "<h2>Machine</h2><table><tr><th>kernel</th><td>{}</td></tr><tr><th>CPU</th><td>{}</td></tr>\
<tr><th>cores</th><td>{}</td></tr><tr><th>memory</th><td>{} MiB</td></tr><tr><th>open files</th><td>{}</td></tr></table>",
        esc(&machine.kernel),
        esc(&machine.cpu),
        machine.cores,
        machine.memory_mib,
        machine.nofile
    );
    let _ = writeln!(md, "# ioscale lab summary\n\n{title_note}\n");
    let _ = writeln!(
        md,
        "Machine: {}, {} ({} cores, {} MiB, open files {}).\n",
        machine.kernel, machine.cpu, machine.cores, machine.memory_mib, machine.nofile
    );
    let rows = summary_rows(recs);
    if !rows.is_empty() {
        html.push_str("<h2>Summary</h2><table><tr>");
        for h in SUMMARY_HEAD {
            let _ = write!(html, "<th>{}</th>", esc(h));
        }
        html.push_str("</tr>");
        let _ = writeln!(
            md,
            "| {} |\n|{}",
            SUMMARY_HEAD.join(" | "),
            "---|".repeat(SUMMARY_HEAD.len())
        );
        for r in &rows {
            html.push_str("<tr>");
            for c in r {
                let _ = write!(html, "<td>{}</td>", esc(c));
            }
            html.push_str("</tr>");
            let _ = writeln!(md, "| {} |", r.join(" | "));
        }
        html.push_str("</table>");
        md.push('\n');
    }
    for e in exps {
        let mine: Vec<&Record> = recs.iter().filter(|r| r.experiment == e.name).collect();
        if mine.is_empty() {
            continue;
        }
        let invalid = mine.iter().filter(|r| !r.usable()).count();
        let _ = write!(
            html,
            "<h2 id=\"{0}\">{0}</h2><p>{1}. Reproduces {2}. {3} points, {4} invalid or not measured.</p>",
            esc(&e.name),
            esc(&e.summary),
            esc(&e.reproduces),
            mine.len(),
            invalid
        );
        let _ = writeln!(
            md,
            "## {}\n\n{} — reproduces {}. {} points, {} invalid or not measured.\n",
            e.name,
            e.summary,
            e.reproduces,
            mine.len(),
            invalid
        );
        for f in &e.figures {
            if !mine.iter().any(|r| matches(r, &f.filter)) {
                // The variant that ran has no point for this figure (e.g. 6 KB replies only in --full).
                let _ = write!(html, "<p><i>{} ({}): no point of this run's variant falls in this figure; `--full` measures it.</i></p>", esc(&f.title), esc(&f.reproduces));
                let _ = writeln!(
                    md,
                    "- **{}** ({}): not in this run's variant (`--full` measures it)",
                    f.title, f.reproduces
                );
                continue;
            }
            let body = svg(f, &mine).unwrap_or_else(|err| {
                format!("<p class=\"invalid\">figure could not be drawn: {}</p>", esc(&err))
            });
            let found = finding(f, &mine);
            let (_, excluded) = lines(f, &mine);
            let _ = write!(
                html,
                "<figure id=\"{}-{}\">{body}<figcaption><b>Reproduces {}.</b> {}<br><b>Paper:</b> {}<br><b>This run:</b> {}",
                esc(&e.name),
                esc(&f.id),
                esc(&f.reproduces),
                esc(&f.title),
                esc(&f.paper_finding),
                esc(&found)
            );
            if !excluded.is_empty() {
                html.push_str("<br><span class=\"invalid\">Not drawn: ");
                html.push_str(&esc(&excluded.join("; ")));
                html.push_str("</span>");
            }
            html.push_str("</figcaption></figure>");
            let _ = writeln!(
                md,
                "- **{}** ({}): paper — {}; this run — {}",
                f.title, f.reproduces, f.paper_finding, found
            );
        }
        for t in &e.tables {
            let (header, rows) = table_rows(t, &mine);
            let _ = write!(html, "<h3>{} ({})</h3><table><tr>", esc(&t.title), esc(&t.reproduces));
            for h in &header {
                let _ = write!(html, "<th>{}</th>", esc(h));
            }
            html.push_str("</tr>");
            let _ = writeln!(
                md,
                "\n**{}** ({}) — paper: {}\n\n| {} |\n|{}",
                t.title,
                t.reproduces,
                t.paper_finding,
                header.join(" | "),
                "---|".repeat(header.len())
            );
            for r in &rows {
                html.push_str("<tr>");
                for c in r {
                    let _ = write!(html, "<td>{}</td>", esc(c));
                }
                html.push_str("</tr>");
                let _ = writeln!(md, "| {} |", r.join(" | "));
            }
            let _ = write!(html, "</table><p><b>Paper:</b> {}</p>", esc(&t.paper_finding));
            md.push('\n');
        }
    }
    html.push_str("</body></html>\n");
    (html, md)
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
    // The summary's own title becomes a sub-heading of the README's section.
    let body = summary.replacen("# ioscale lab summary", "", 1).replace("\n## ", "\n### ");
    let new = format!("{}{BEGIN}\n{}\n{}", &text[..b], body.trim(), &text[e..]);
    std::fs::write(readme, new)?;
    Ok(())
}

/// A UTC date for a Unix time (civil-from-days; no time-zone database needed).
pub fn fmt_date(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", secs / 3600, (secs % 3600) / 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Which;

    fn rec(m: &str, idle: f64, y: f64, valid: bool) -> Record {
        Record {
            experiment: "e".into(),
            variant: Which::Quick,
            key: format!("{m}{idle}"),
            mechanism: m.into(),
            params: [("idle".to_string(), Value::Num(idle))].into_iter().collect(),
            metrics: [("cpu_us_per_req".to_string(), y)].into_iter().collect(),
            lists: BTreeMap::new(),
            valid,
            invalid_reason: (!valid).then(|| "schedule lag".into()),
            error: None,
            unix_time: 0,
            machine: Machine::default(),
            raw: serde_json::Value::Null,
        }
    }

    fn fig() -> Figure {
        toml::from_str(
            r#"id = "f"
reproduces = "Fig. 4"
title = "CPU"
x = "idle"
x_label = "idle connections"
y = "cpu_us_per_req"
y_label = "µs/req"
paper_finding = "grows"
"#,
        )
        .unwrap()
    }

    #[test]
    fn invalid_points_are_not_drawn_and_findings_are_computed() {
        let recs = [
            rec("poll", 0.0, 10.0, true),
            rec("poll", 1000.0, 40.0, true),
            rec("poll", 2000.0, 99.0, false),
        ];
        let refs: Vec<&Record> = recs.iter().collect();
        let (data, excluded) = lines(&fig(), &refs);
        assert_eq!(data["poll"].len(), 2);
        assert_eq!(excluded.len(), 1);
        assert!(excluded[0].contains("INVALID"));
        let f = finding(&fig(), &refs);
        assert!(f.contains("(4.00x)"), "{f}");
        let s = svg(&fig(), &refs).unwrap();
        assert!(s.starts_with("<svg") && s.contains("poll"), "{}", &s[..200]);
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(fmt_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(fmt_date(1_795_401_000), "2026-11-23 02:30 UTC");
    }
}
