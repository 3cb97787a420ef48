//! The figures of a real quick run, checked as drawn (issue 21 item 1).
//!
//! `data/quick-results.jsonl` is the `results.jsonl` of `cargo run --release -- lab` (the quick
//! suite, 169 points, 2 INVALID) on this project's 2-core machine on 2026-12-03 (05:55-06:05
//! UTC), with each record's `raw` generator output dropped to keep it small.The report is
//! rendered from it with the shipped experiment files and every SVG is parsed back: each axis's
//! labelled ticks cover the values drawn on it, a mechanism has one colour in every figure, no
//! point lies under the legend, and INVALID points are hollow with their reason on hover.

use ioscale_lab::record::{self, Record};
use ioscale_lab::report;
use ioscale_lab::spec::{self, Which};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn load() -> (Vec<spec::Experiment>, Vec<Record>) {
    let exps = spec::load_dir(&root().join("../../experiments")).expect("experiment files");
    let c = record::read_all(&root().join("tests/data/quick-results.jsonl")).expect("fixture");
    assert!(c.unreadable.is_empty());
    let recs = c.records;
    assert!(recs.len() > 100, "{}", recs.len());
    (exps, recs)
}

/// One element of the SVG: its name, attributes and the text up to its closing tag.
struct El {
    name: String,
    attrs: HashMap<String, String>,
    text: String,
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&")
}

/// A small parser for the SVG this project writes: every start tag with its attributes.
fn elements(svg: &str) -> Vec<El> {
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        if rest.starts_with('/') {
            continue;
        }
        let end = rest.find('>').expect("tag closes");
        let tag = &rest[..end];
        let name: String = tag.chars().take_while(|c| !c.is_whitespace() && *c != '/').collect();
        let mut attrs = HashMap::new();
        let mut t = &tag[name.len()..];
        while let Some(eq) = t.find("=\"") {
            let key = t[..eq].trim().to_string();
            let v_end = t[eq + 2..].find('"').expect("attribute closes");
            attrs.insert(key, unescape(&t[eq + 2..eq + 2 + v_end]));
            t = &t[eq + 2 + v_end + 1..];
        }
        let after = &rest[end + 1..];
        let text = unescape(&after[..after.find('<').unwrap_or(after.len())]);
        out.push(El { name, attrs, text });
        rest = after;
    }
    out
}

fn num(e: &El, k: &str) -> f64 {
    e.attrs.get(k).unwrap_or_else(|| panic!("{k} on <{}>", e.name)).parse().unwrap()
}

fn has_class(e: &El, c: &str) -> bool {
    e.attrs.get("class").is_some_and(|v| v.split(' ').any(|x| x == c))
}

fn svgs(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("<svg") {
        let j = rest[i..].find("</svg>").expect("svg closes") + i + 6;
        out.push(&rest[i..j]);
        rest = &rest[j..];
    }
    out
}

#[test]
fn every_figure_is_drawn_with_ticks_over_its_data_one_colour_per_mechanism_and_a_clear_legend() {
    let (exps, recs) = load();
    let (html, _) = report::render(&exps, &recs, &recs[0].machine, "fixture");
    let all = svgs(&html);
    let expected: usize = exps
        .iter()
        .flat_map(|e| {
            let mine: Vec<&Record> = recs.iter().filter(|r| r.experiment == e.name).collect();
            e.figures
                .iter()
                .map(move |f| mine.iter().any(|r| report::lines::matches(r, &f.filter)) as usize)
        })
        .sum();
    assert!(expected >= 25, "{expected}");
    let empty = html.matches("<p class=\"empty\">").count();
    assert_eq!(all.len() + empty, expected);
    // A figure whose metric this (older) run did not record is a placeholder, not an SVG; most
    // figures must still be drawn.
    assert!(all.len() >= 20, "{} figures drawn", all.len());
    let mut colours: BTreeMap<String, (String, String)> = BTreeMap::new();
    for svg in all {
        let els = elements(svg);
        let id = els[0].attrs["data-figure"].clone();
        let pts: Vec<&El> = els.iter().filter(|e| e.name == "path" && has_class(e, "pt")).collect();
        assert!(!pts.is_empty(), "{id}: no point drawn");
        // Ticks cover the data, on both axes.
        for axis in ["x", "y"] {
            let labels: Vec<(f64, f64)> = els
                .iter()
                .filter(|e| has_class(e, "tick-label") && e.attrs["data-axis"] == axis)
                .map(|e| {
                    let v = num(e, "data-v");
                    let back = report::plot::ticks::parse_label(&e.text)
                        .unwrap_or_else(|| panic!("{id}: label {:?}", e.text));
                    assert!((back - v).abs() <= v.abs() * 0.02 + 1e-9, "{id}: {} for {v}", e.text);
                    let pos = if axis == "x" { num(e, "x") } else { -num(e, "y") };
                    (v, pos)
                })
                .collect();
            assert!(labels.len() >= 3, "{id} {axis}: {labels:?}");
            assert!(labels.windows(2).all(|w| w[1].0 > w[0].0 && w[1].1 > w[0].1), "{id} {axis}");
            let mut data: Vec<f64> = pts.iter().map(|p| num(p, &format!("data-{axis}"))).collect();
            if axis == "x" {
                data.extend(els.iter().filter(|e| has_class(e, "mark")).map(|e| num(e, "data-x")));
            }
            let (lo, hi) =
                data.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
            let (l0, l1) = (labels[0].0, labels[labels.len() - 1].0);
            assert!(
                l0 <= lo + lo.abs() * 1e-9,
                "{id} {axis}: first label {l0} above the data's {lo}"
            );
            assert!(
                l1 >= hi - hi.abs() * 1e-9,
                "{id} {axis}: last label {l1} below the data's {hi}"
            );
            // The data fill a fair share of the labelled span (no axis that starts far from its data).
            let log = els[0].attrs[&format!("data-{axis}-scale")] == "log";
            let share = if log {
                let pos: Vec<f64> = data.iter().copied().filter(|v| *v > 0.0).collect();
                let (a, b) =
                    pos.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
                let l0 = labels.iter().find(|l| l.0 > 0.0).map_or(l0, |l| l.0);
                (b / a).log10() / (l1 / l0).log10()
            } else {
                (hi - lo) / (l1 - l0)
            };
            if hi > lo * 1.05 && lo > 0.0 {
                assert!(share >= 0.2, "{id} {axis}: the data span only {share:.2} of the axis");
            }
        }
        // One colour per mechanism, in every figure, in the legend as on the plot.
        for g in els.iter().filter(|e| has_class(e, "series") || has_class(e, "legend-entry")) {
            let name = &g.attrs["data-series"];
            if name.contains('=') {
                continue;
            }
            let c = g.attrs["data-color"].clone();
            let prev = colours.entry(name.clone()).or_insert((c.clone(), id.clone()));
            assert_eq!(prev.0, c, "{name} is {c} in {id} but {} in {}", prev.0, prev.1);
        }
        // No point under the legend.
        let legend = els.iter().find(|e| has_class(e, "legend")).expect("legend");
        let b: Vec<f64> = legend.attrs["data-box"].split(',').map(|v| v.parse().unwrap()).collect();
        for p in &pts {
            let (x, y) = (num(p, "data-px"), num(p, "data-py"));
            let inside = x + 5.0 >= b[0]
                && x - 5.0 <= b[0] + b[2]
                && y + 5.0 >= b[1]
                && y - 5.0 <= b[1] + b[3];
            assert!(!inside, "{id}: a point at ({x}, {y}) lies under the legend {b:?}");
        }
        // INVALID points are hollow, with their reason on hover.
        for (k, p) in pts.iter().enumerate() {
            if has_class(p, "invalid") {
                assert_eq!(p.attrs["fill"], "#fff", "{id}");
                let title = els.iter().skip_while(|e| !std::ptr::eq(*e, pts[k])).nth(1).unwrap();
                assert!(title.name == "title" && title.text.starts_with("INVALID — "), "{id}");
            }
        }
    }
    for m in ["select+multi-accept", "devpoll", "epoll", "rtsig", "rtsig-perfd", "poll", "uring"] {
        assert!(colours.contains_key(m), "{m} was drawn: {:?}", colours.keys());
    }
    let distinct: std::collections::HashSet<&String> = colours.values().map(|v| &v.0).collect();
    assert!(distinct.len() >= 12, "{colours:?}");
}

#[test]
fn every_figure_and_table_states_the_papers_finding_as_rules() {
    let (exps, recs) = load();
    for e in &exps {
        for f in &e.figures {
            assert!(!f.rules.is_empty(), "{} figure {} has no rule", e.name, f.id);
        }
        for t in &e.tables {
            assert!(!t.rules.is_empty(), "{} table {} has no rule", e.name, t.id);
        }
        assert!(!e.plan(Which::Quick).points().is_empty());
    }
    let (_, md) = report::render(&exps, &recs, &recs[0].machine, "fixture");
    let verdicts = md.split("## Verdicts").nth(1).expect("the verdict table comes first");
    assert!(md.find("## Verdicts") < md.find("## cm-overflow"));
    for status in ["REPRODUCED", "PARTLY"] {
        assert!(verdicts.contains(&format!("**{status}**")), "{status}");
    }
    // What the summary must no longer say.
    assert!(!md.contains("divided by"), "no growth divided by nginx's");
    assert!(!md.contains(".00 |") && !md.contains(".00 "), "counts are integers");
    assert!(!md.contains("@ 0 →"), "no cross-experiment headline row");
}
