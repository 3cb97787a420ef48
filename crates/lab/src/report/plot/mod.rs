//! Figures as SVG, written directly: the lab's own line charts.
//!
//! A [`Chart`] is lines of points with a fixed look per mechanism ([`style`]), axes whose labelled
//! ticks cover the data ([`ticks`]), the legend outside the plot area on the right, INVALID points
//! as hollow marks whose reason shows on hover (an SVG `<title>`), and points that coincide with
//! another line's set side by side so that no line hides another. The SVG carries `class` and
//! `data-*` attributes (tick values, point values, the legend's box) so that a test can check
//! a drawn figure without a browser.

pub mod style;
pub mod ticks;

use std::fmt::Write as _;
use style::Style;
use ticks::{Axis, Fit, Scale};

/// One point of a line.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// x.
    pub x: f64,
    /// y.
    pub y: f64,
    /// Half the height of an error bar (e.g. a standard deviation), drawn around y.
    pub err: Option<f64>,
    /// Why the point is not the server's figure (drawn hollow, left out of the line), or None.
    pub invalid: Option<String>,
    /// The smallest and largest y of the rounds the point is the median of, drawn as a pale
    /// bar behind it.
    pub spread: Option<(f64, f64)>,
}

/// A thinner dashed line in a series' colour (e.g. its minimum or maximum).
#[derive(Clone, Debug, PartialEq)]
pub struct Extra {
    /// What it is ("min", "max").
    pub label: String,
    /// Its points.
    pub points: Vec<(f64, f64)>,
}

/// One line.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Its name in the legend.
    pub name: String,
    /// How it looks.
    pub style: Style,
    /// Its points (any order).
    pub points: Vec<Point>,
    /// Dashed companions.
    pub extras: Vec<Extra>,
}

/// A figure.
#[derive(Clone, Debug)]
pub struct Chart {
    /// Its id (the SVG's `data-figure`).
    pub id: String,
    /// Its title (the SVG's accessible name; the caption shows it).
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Scale of x.
    pub x_scale: Scale,
    /// Scale of y.
    pub y_scale: Scale,
    /// Whether y values are counts.
    pub y_integer: bool,
    /// The lines, in legend order.
    pub series: Vec<Series>,
    /// x values marked by a vertical grey line (e.g. a mode switch), and what they mean.
    pub marks: Vec<f64>,
    /// The legend's entry for the marks.
    pub marks_label: String,
}

/// Width of every figure in SVG pixels (the page's text column).
pub const WIDTH: f64 = 880.0;
/// Height of every figure.
pub const HEIGHT: f64 = 430.0;
const TICK_FONT: f64 = 13.0;
const LABEL_FONT: f64 = 14.0;
const LEGEND_FONT: f64 = 13.0;
/// Width of a digit or letter of the figures' sans-serif face, per pixel of font size.
const CHAR_W: f64 = 0.62;
const MARKER_R: f64 = 4.6;
/// The widest spread of markers set side by side at one x, in pixels.
const MAX_DODGE: f64 = 32.0;
/// Margins inside the plot area, between the axes and the first and last values.
const PAD_X: f64 = 16.0;
const PAD_Y: f64 = 10.0;
const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn text_w(s: &str, font: f64) -> f64 {
    s.chars().count() as f64 * font * CHAR_W
}

/// The box an SVG element occupies (x, y, width, height).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    /// Left.
    pub x: f64,
    /// Top.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

impl Rect {
    /// Whether (px, py), widened by `r`, falls inside.
    pub fn contains(&self, px: f64, py: f64, r: f64) -> bool {
        px + r >= self.x
            && px - r <= self.x + self.w
            && py + r >= self.y
            && py - r <= self.y + self.h
    }
}

/// A laid-out chart: where the plot area is, its axes, and its legend's entries.
struct Frame {
    plot: Rect,
    x: Axis,
    y: Axis,
    entries: Vec<(String, Option<Style>, &'static str)>,
    legend_w: f64,
}

impl Frame {
    /// The pixel column of x: values map inside the plot area with a margin, so no point sits
    /// on an axis.
    fn px(&self, v: f64) -> f64 {
        self.plot.x + PAD_X + self.x.frac(v) * (self.plot.w - 2.0 * PAD_X)
    }

    /// The pixel row of y.
    fn py(&self, v: f64) -> f64 {
        self.plot.y + self.plot.h - PAD_Y - self.y.frac(v) * (self.plot.h - 2.0 * PAD_Y)
    }

    /// Whether a point can be drawn on these axes.
    fn drawable(&self, p: &Point) -> bool {
        self.x.shows(p.x) && self.y.shows(p.y)
    }
}

impl Chart {
    fn y_values(&self) -> Vec<f64> {
        let mut v = Vec::new();
        for s in &self.series {
            for p in &s.points {
                v.push(p.y);
                if let Some((a, b)) = p.spread {
                    v.push(b);
                    if self.y_scale == Scale::Linear || a > 0.0 {
                        v.push(a);
                    }
                }
                if let Some(e) = p.err {
                    v.push(p.y + e);
                    let lo = p.y - e;
                    if self.y_scale == Scale::Linear || lo > 0.0 {
                        v.push(lo);
                    }
                }
            }
            for e in &s.extras {
                v.extend(e.points.iter().map(|p| p.1));
            }
        }
        v
    }

    fn x_values(&self) -> Vec<f64> {
        let mut v: Vec<f64> =
            self.series.iter().flat_map(|s| s.points.iter().map(|p| p.x)).collect();
        v.extend(self.marks.iter().copied());
        v
    }

    /// Legend entries: (name, style, kind) where kind is "series", "extra", "invalid", "marks".
    fn legend_entries(&self) -> Vec<(String, Option<Style>, &'static str)> {
        let mut out: Vec<(String, Option<Style>, &'static str)> =
            self.series.iter().map(|s| (s.name.clone(), Some(s.style), "series")).collect();
        let mut extras: Vec<&str> = Vec::new();
        for s in &self.series {
            for e in &s.extras {
                if !extras.contains(&e.label.as_str()) {
                    extras.push(&e.label);
                }
            }
        }
        if !extras.is_empty() {
            out.push((format!("thin dashed: {}", extras.join(", ")), None, "extra"));
        }
        if self.series.iter().any(|s| s.points.iter().any(|p| p.err.is_some())) {
            out.push(("bars: ± 1 stddev".into(), None, "err"));
        }
        let rounds = self.series.iter().flat_map(|s| &s.points).any(|p| p.spread.is_some());
        if rounds {
            out.push(("pale bar: range of the rounds".into(), None, "spread"));
        }
        if self.series.iter().any(|s| s.points.iter().any(|p| p.invalid.is_some())) {
            out.push(("hollow: INVALID (hover)".into(), None, "invalid"));
        }
        if !self.marks.is_empty() {
            out.push((self.marks_label.clone(), None, "marks"));
        }
        out
    }

    /// Draws the chart as a standalone `<svg>` element.
    pub fn svg(&self) -> String {
        let f = self.frame();
        let mut s = String::new();
        let _ = write!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
width=\"100%\" role=\"img\" aria-label=\"{}\" class=\"chart\" data-figure=\"{}\" \
data-x-scale=\"{}\" data-y-scale=\"{}\" font-family=\"{FONT}\"><title>{}</title>",
            esc(&self.title),
            esc(&self.id),
            scale_name(self.x_scale),
            scale_name(self.y_scale),
            esc(&self.title)
        );
        let _ = write!(
            s,
            "<rect class=\"plot-area\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
fill=\"#fff\" stroke=\"none\"/>",
            f.plot.x, f.plot.y, f.plot.w, f.plot.h
        );
        self.axes(&f, &mut s);
        self.labels(&f, &mut s);
        self.lines(&f, &mut s);
        self.markers(&f, &mut s);
        self.legend(&f, &mut s);
        s.push_str("</svg>");
        s
    }

    /// Lays out the plot area, the axes and the legend.
    fn frame(&self) -> Frame {
        let entries = self.legend_entries();
        let legend_w = 14.0
            + 34.0
            + entries.iter().map(|e| text_w(&e.0, LEGEND_FONT)).fold(0.0, f64::max)
            + 10.0;
        let top = 14.0;
        let bottom = 5.0 + 4.0 + TICK_FONT + 10.0 + LABEL_FONT + 10.0;
        let plot_h = HEIGHT - top - bottom;
        let y_axis = Axis::new(
            self.y_scale,
            &self.y_values(),
            Fit {
                len: plot_h - 2.0 * PAD_Y,
                per_char: 0.0,
                fixed: TICK_FONT + 22.0,
                zero_baseline: true,
                integer: self.y_integer,
            },
        );
        let y_label_w = y_axis.labels().map(|(_, l)| text_w(l, TICK_FONT)).fold(0.0f64, f64::max);
        let left = 10.0 + LABEL_FONT + 10.0 + y_label_w + 5.0 + 5.0;
        let right = legend_w + 16.0;
        let plot_w = WIDTH - left - right;
        let x_axis = Axis::new(
            self.x_scale,
            &self.x_values(),
            Fit {
                len: plot_w - 2.0 * PAD_X,
                per_char: TICK_FONT * CHAR_W,
                fixed: 16.0,
                zero_baseline: false,
                integer: false,
            },
        );
        let plot = Rect { x: left, y: top, w: plot_w, h: plot_h };
        Frame { plot, x: x_axis, y: y_axis, entries, legend_w }
    }

    /// The grid, the axes (with a break at a zero slot) and their ticks.
    fn axes(&self, f: &Frame, s: &mut String) {
        // Grid and ticks.
        s.push_str("<g class=\"grid\" stroke-width=\"1\">");
        for t in &f.y.ticks {
            let y = f.py(t.v);
            let c = if t.label.is_some() { "#e3e3e3" } else { "#f2f2f2" };
            let _ = write!(
                s,
                "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{c}\"/>",
                f.plot.x,
                f.plot.x + f.plot.w
            );
        }
        for t in &f.x.ticks {
            let x = f.px(t.v);
            let c = if t.label.is_some() { "#e3e3e3" } else { "#f2f2f2" };
            let _ = write!(
                s,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{c}\"/>",
                f.plot.y,
                f.plot.y + f.plot.h
            );
        }
        s.push_str("</g>");
        // Axes, with a break where a log axis leaves its slot for 0.
        s.push_str("<g class=\"axes\" stroke=\"#333\" stroke-width=\"1.2\" fill=\"none\">");
        let _ = write!(
            s,
            "<path d=\"M{:.1},{:.1}V{:.1}H{:.1}\"/>",
            f.plot.x,
            f.plot.y,
            f.plot.y + f.plot.h,
            f.plot.x + f.plot.w
        );
        if f.x.zero_slot > 0.0 {
            let bx = f.plot.x + PAD_X + f.x.zero_slot * (f.plot.w - 2.0 * PAD_X) * 0.5 + 3.0;
            let by = f.plot.y + f.plot.h;
            let _ = write!(
                s,
                "<path class=\"axis-break\" d=\"M{:.1},{:.1}l6,-12M{:.1},{:.1}l6,-12\" stroke-width=\"1.4\"/>\
<rect x=\"{:.1}\" y=\"{:.1}\" width=\"4\" height=\"4\" fill=\"#fff\" stroke=\"none\"/>",
                bx - 5.0,
                by + 6.0,
                bx,
                by + 6.0,
                bx - 1.0,
                by - 2.0
            );
        }
        if f.y.zero_slot > 0.0 {
            let by =
                f.plot.y + f.plot.h - PAD_Y - f.y.zero_slot * (f.plot.h - 2.0 * PAD_Y) * 0.5 + 3.0;
            let _ = write!(
                s,
                "<path class=\"axis-break\" d=\"M{:.1},{:.1}l12,-6M{:.1},{:.1}l12,-6\" stroke-width=\"1.4\"/>",
                f.plot.x - 6.0,
                by + 5.0,
                f.plot.x - 6.0,
                by
            );
        }
        for t in &f.y.ticks {
            let y = f.py(t.v);
            let len = if t.label.is_some() { 5.0 } else { 3.0 };
            let _ = write!(s, "<path d=\"M{:.1},{y:.1}h{:.1}\"/>", f.plot.x, -len);
        }
        for t in &f.x.ticks {
            let x = f.px(t.v);
            let len = if t.label.is_some() { 5.0 } else { 3.0 };
            let _ = write!(s, "<path d=\"M{x:.1},{:.1}v{len:.1}\"/>", f.plot.y + f.plot.h);
        }
        s.push_str("</g>");
    }

    /// The tick labels, the axis labels and the marks.
    fn labels(&self, f: &Frame, s: &mut String) {
        let _ = write!(s, "<g class=\"tick-labels\" font-size=\"{TICK_FONT}\" fill=\"#222\">");
        for (v, l) in f.y.labels() {
            let _ = write!(
                s,
                "<text class=\"tick-label\" data-axis=\"y\" data-v=\"{v}\" x=\"{:.1}\" y=\"{:.1}\" \
text-anchor=\"end\">{}</text>",
                f.plot.x - 8.0,
                f.py(v) + TICK_FONT * 0.35,
                esc(l)
            );
        }
        for (v, l) in f.x.labels() {
            let _ = write!(
                s,
                "<text class=\"tick-label\" data-axis=\"x\" data-v=\"{v}\" x=\"{:.1}\" y=\"{:.1}\" \
text-anchor=\"middle\">{}</text>",
                f.px(v),
                f.plot.y + f.plot.h + 9.0 + TICK_FONT,
                esc(l)
            );
        }
        s.push_str("</g>");
        let _ = write!(
            s,
            "<text class=\"axis-label\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"{LABEL_FONT}\" \
text-anchor=\"middle\">{}</text>",
            f.plot.x + f.plot.w / 2.0,
            HEIGHT - 10.0,
            esc(&self.x_label)
        );
        let _ = write!(
            s,
            "<text class=\"axis-label\" transform=\"translate({:.1},{:.1}) rotate(-90)\" \
font-size=\"{LABEL_FONT}\" text-anchor=\"middle\">{}</text>",
            10.0 + LABEL_FONT,
            f.plot.y + f.plot.h / 2.0,
            esc(&self.y_label)
        );
        // Marks (e.g. mode switches).
        for m in &self.marks {
            let x = f.px(*m);
            let _ = write!(
                s,
                "<line class=\"mark\" data-x=\"{m}\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" \
y2=\"{:.1}\" stroke=\"#777\" stroke-width=\"1.2\" stroke-dasharray=\"3 3\"/>",
                f.plot.y,
                f.plot.y + f.plot.h
            );
        }
    }

    /// Each line (broken at INVALID points), its dashed companions, error bars and rounds.
    fn lines(&self, f: &Frame, s: &mut String) {
        // Series: lines first (all of them), then markers on top.
        for (si, ser) in self.series.iter().enumerate() {
            let st = ser.style;
            let mut valid: Vec<&Point> =
                ser.points.iter().filter(|p| p.invalid.is_none() && f.drawable(p)).collect();
            valid.sort_by(|a, b| a.x.total_cmp(&b.x));
            let _ = write!(
                s,
                "<g class=\"series-lines\" data-series=\"{}\" data-color=\"{}\">",
                esc(&ser.name),
                st.color
            );
            for e in &ser.extras {
                let mut pts: Vec<(f64, f64)> =
                    e.points.iter().copied().filter(|p| f.x.shows(p.0) && f.y.shows(p.1)).collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                if pts.len() >= 2 {
                    let d: Vec<String> =
                        pts.iter().map(|p| format!("{:.1},{:.1}", f.px(p.0), f.py(p.1))).collect();
                    let _ = write!(
                        s,
                        "<polyline class=\"extra\" data-label=\"{}\" points=\"{}\" fill=\"none\" \
stroke=\"{}\" stroke-width=\"1.2\" stroke-dasharray=\"4 3\" opacity=\"0.8\"/>",
                        esc(&e.label),
                        d.join(" "),
                        st.color
                    );
                }
            }
            // A line joins valid points only; it breaks where an INVALID point lies between two.
            let invalid_x: Vec<f64> =
                ser.points.iter().filter(|p| p.invalid.is_some()).map(|p| p.x).collect();
            let mut segments: Vec<Vec<&Point>> = Vec::new();
            for p in &valid {
                let joins = segments
                    .last()
                    .and_then(|seg| seg.last())
                    .is_some_and(|q| !invalid_x.iter().any(|x| *x > q.x && *x < p.x));
                match segments.last_mut() {
                    Some(seg) if joins => seg.push(*p),
                    _ => segments.push(vec![*p]),
                }
            }
            for seg in segments.iter().filter(|seg| seg.len() >= 2) {
                let d: Vec<String> =
                    seg.iter().map(|p| format!("{:.1},{:.1}", f.px(p.x), f.py(p.y))).collect();
                let dash = if st.dash.is_empty() {
                    String::new()
                } else {
                    format!(" stroke-dasharray=\"{}\"", st.dash)
                };
                let _ = write!(
                    s,
                    "<polyline class=\"line\" points=\"{}\" fill=\"none\" stroke=\"{}\" \
stroke-width=\"2\" stroke-linejoin=\"round\" opacity=\"0.9\"{dash}/>",
                    d.join(" "),
                    st.color
                );
            }
            for p in &valid {
                if let Some((a, b)) = p.spread {
                    let (x, y0, y1) = (f.px(p.x), f.py(a.max(f.y.lo)), f.py(b));
                    let _ = write!(
                        s,
                        "<path class=\"spread\" d=\"M{x:.1},{y0:.1}V{y1:.1}\" stroke=\"{}\" \
stroke-width=\"7\" stroke-linecap=\"round\" opacity=\"0.25\"/>",
                        st.color
                    );
                }
                if let Some(e) = p.err {
                    let (x, y0, y1) = (f.px(p.x), f.py((p.y - e).max(f.y.lo)), f.py(p.y + e));
                    let _ = write!(
                        s,
                        "<path class=\"err\" d=\"M{x:.1},{y0:.1}V{y1:.1}M{:.1},{y0:.1}h8M{:.1},{y1:.1}h8\" \
stroke=\"{}\" stroke-width=\"1.2\"/>",
                        x - 4.0,
                        x - 4.0,
                        st.color
                    );
                }
            }
            s.push_str("</g>");
            let _ = si;
        }
    }

    /// The points, set side by side where several lines' points coincide; INVALID ones hollow.
    fn markers(&self, f: &Frame, s: &mut String) {
        // Markers, set side by side where points of several lines coincide.
        let mut placed: Vec<(usize, usize, f64, f64)> = Vec::new(); // (series, point, px, py)
        for (si, ser) in self.series.iter().enumerate() {
            for (pi, p) in ser.points.iter().enumerate() {
                if f.drawable(p) {
                    placed.push((si, pi, f.px(p.x), f.py(p.y)));
                }
            }
        }
        let mut dodge = dodge_offsets(&placed, 2.0 * MARKER_R + 1.0);
        for (k, p) in placed.iter().enumerate() {
            let x = (p.2 + dodge[k]).clamp(f.plot.x + MARKER_R, f.plot.x + f.plot.w - MARKER_R);
            dodge[k] = x - p.2;
        }
        for (si, ser) in self.series.iter().enumerate() {
            let st = ser.style;
            let _ = write!(
                s,
                "<g class=\"series\" data-series=\"{}\" data-color=\"{}\" data-marker=\"{}\">",
                esc(&ser.name),
                st.color,
                st.marker.name()
            );
            for (k, (psi, pi, x, y)) in placed.iter().enumerate() {
                if *psi != si {
                    continue;
                }
                let p = &ser.points[*pi];
                let x = x + dodge[k];
                let what = format!(
                    "{}: {} = {}, {} = {}",
                    ser.name,
                    self.x_label,
                    ticks::fmt_value(p.x),
                    self.y_label,
                    ticks::fmt_value(p.y)
                );
                let (class, fill, title) = match &p.invalid {
                    None => ("pt", st.color.to_string(), what),
                    Some(why) => {
                        ("pt invalid", "#fff".to_string(), format!("INVALID — {why}. {what}"))
                    }
                };
                let _ = write!(
                    s,
                    "<path class=\"{class}\" data-x=\"{}\" data-y=\"{}\" data-px=\"{x:.1}\" data-py=\"{y:.1}\" \
d=\"{}\" fill=\"{fill}\" stroke=\"{}\" stroke-width=\"{}\"><title>{}</title></path>",
                    p.x,
                    p.y,
                    st.marker.path(x, *y, MARKER_R),
                    if p.invalid.is_some() { st.color } else { "#fff" },
                    if p.invalid.is_some() { 1.8 } else { 0.8 },
                    esc(&title)
                );
            }
            s.push_str("</g>");
        }
    }

    /// The legend, right of the plot area.
    fn legend(&self, f: &Frame, s: &mut String) {
        // The legend, right of the plot area.
        let row = LEGEND_FONT + 8.0;
        let legend = Rect {
            x: f.plot.x + f.plot.w + 16.0,
            y: f.plot.y,
            w: f.legend_w,
            h: f.entries.len() as f64 * row + 10.0,
        };
        let _ = write!(
            s,
            "<g class=\"legend\" data-box=\"{:.1},{:.1},{:.1},{:.1}\" font-size=\"{LEGEND_FONT}\">",
            legend.x, legend.y, legend.w, legend.h
        );
        for (i, (name, st, kind)) in f.entries.iter().enumerate() {
            let y = legend.y + 5.0 + row * (i as f64 + 0.5);
            let x = legend.x + 4.0;
            match (st, *kind) {
                (Some(st), _) => {
                    let dash = if st.dash.is_empty() {
                        String::new()
                    } else {
                        format!(" stroke-dasharray=\"{}\"", st.dash)
                    };
                    let _ = write!(
                        s,
                        "<g class=\"legend-entry\" data-series=\"{}\" data-color=\"{}\">\
<line x1=\"{x:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{}\" stroke-width=\"2\"{dash}/>\
<path d=\"{}\" fill=\"{}\" stroke=\"#fff\" stroke-width=\"0.8\"/>",
                        esc(name),
                        st.color,
                        x + 30.0,
                        st.color,
                        st.marker.path(x + 15.0, y, MARKER_R),
                        st.color
                    );
                }
                (None, "extra") => {
                    let _ = write!(
                        s,
                        "<g class=\"legend-key\"><line x1=\"{x:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" \
stroke=\"#555\" stroke-width=\"1.2\" stroke-dasharray=\"4 3\"/>",
                        x + 30.0
                    );
                }
                (None, "err") => {
                    let _ = write!(
                        s,
                        "<g class=\"legend-key\"><path d=\"M{:.1},{:.1}v14M{:.1},{:.1}h8M{:.1},{:.1}h8\" \
stroke=\"#555\" stroke-width=\"1.2\"/>",
                        x + 15.0,
                        y - 7.0,
                        x + 11.0,
                        y - 7.0,
                        x + 11.0,
                        y + 7.0
                    );
                }
                (None, "spread") => {
                    let _ = write!(
                        s,
                        "<g class=\"legend-key\"><path d=\"M{:.1},{:.1}v14\" stroke=\"#555\" \
stroke-width=\"7\" stroke-linecap=\"round\" opacity=\"0.25\"/>",
                        x + 15.0,
                        y - 7.0
                    );
                }
                (None, "invalid") => {
                    let _ = write!(
                        s,
                        "<g class=\"legend-key\"><path d=\"{}\" fill=\"#fff\" stroke=\"#555\" stroke-width=\"1.8\"/>",
                        style::Marker::Circle.path(x + 15.0, y, MARKER_R)
                    );
                }
                _ => {
                    let _ = write!(
                        s,
                        "<g class=\"legend-key\"><line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" \
stroke=\"#777\" stroke-width=\"1.2\" stroke-dasharray=\"3 3\"/>",
                        x + 15.0,
                        x + 15.0,
                        y - 8.0,
                        y + 8.0
                    );
                }
            }
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#222\">{}</text></g>",
                x + 38.0,
                y + LEGEND_FONT * 0.35,
                esc(name)
            );
        }
        s.push_str("</g>");
    }
}

fn scale_name(s: Scale) -> &'static str {
    match s {
        Scale::Linear => "linear",
        Scale::Log => "log",
    }
}

/// Horizontal offsets that set markers side by side where several lines' points would cover
/// each other (same x, y within `gap` pixels). Points of one x are grouped by proximity in y and
/// each group is centred on its x.
fn dodge_offsets(placed: &[(usize, usize, f64, f64)], gap: f64) -> Vec<f64> {
    let mut out = vec![0.0; placed.len()];
    let mut idx: Vec<usize> = (0..placed.len()).collect();
    idx.sort_by(|a, b| {
        placed[*a].2.total_cmp(&placed[*b].2).then(placed[*a].3.total_cmp(&placed[*b].3))
    });
    let mut i = 0;
    while i < idx.len() {
        // One column: the same pixel x.
        let mut j = i;
        while j < idx.len() && (placed[idx[j]].2 - placed[idx[i]].2).abs() < 0.5 {
            j += 1;
        }
        let mut col: Vec<usize> = idx[i..j].to_vec();
        col.sort_by(|a, b| {
            placed[*a].3.total_cmp(&placed[*b].3).then(placed[*a].0.cmp(&placed[*b].0))
        });
        let mut k = 0;
        while k < col.len() {
            let mut m = k + 1;
            while m < col.len() && placed[col[m]].3 - placed[col[m - 1]].3 < gap {
                m += 1;
            }
            let n = m - k;
            if n > 1 {
                // Keep the lines' own order within the group; a crowd overlaps partly rather than
                // drifting far from its x.
                let step = gap.min(MAX_DODGE / (n as f64 - 1.0)).max(gap / 3.0);
                let mut group: Vec<usize> = col[k..m].to_vec();
                group.sort_by_key(|g| placed[*g].0);
                for (r, g) in group.iter().enumerate() {
                    out[*g] = (r as f64 - (n as f64 - 1.0) / 2.0) * step;
                }
            }
            k = m;
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(points: Vec<(f64, f64)>, invalid_at: Option<f64>) -> Chart {
        let mk = |name: &str, dy: f64| Series {
            name: name.into(),
            style: style::of_mechanism(name),
            points: points
                .iter()
                .map(|(x, y)| Point {
                    x: *x,
                    y: y + dy,
                    err: None,
                    invalid: (Some(*x) == invalid_at).then(|| "schedule lag p99 15 ms".to_string()),
                    spread: None,
                })
                .collect(),
            extras: vec![],
        };
        Chart {
            id: "t".into(),
            title: "T & <t>".into(),
            x_label: "idle".into(),
            y_label: "µs".into(),
            x_scale: Scale::Log,
            y_scale: Scale::Log,
            y_integer: false,
            series: vec![mk("epoll", 0.0), mk("poll", 0.0), mk("select", 100.0)],
            marks: vec![],
            marks_label: String::new(),
        }
    }

    #[test]
    fn coinciding_points_are_set_side_by_side_and_invalid_ones_are_hollow_with_a_reason() {
        let c = chart(vec![(0.0, 40.0), (1000.0, 41.0), (10000.0, 45.0)], Some(10000.0));
        let svg = c.svg();
        assert!(svg.contains("T &amp; &lt;t&gt;"));
        assert_eq!(svg.matches("class=\"pt invalid\"").count(), 3);
        assert!(svg.contains("INVALID — schedule lag p99 15 ms"));
        // epoll and poll coincide: their markers are not at the same place.
        let pxs: Vec<&str> =
            svg.split("data-px=\"").skip(1).map(|r| &r[..r.find('"').unwrap()]).collect();
        let mut uniq = pxs.clone();
        uniq.sort();
        uniq.dedup();
        assert!(uniq.len() > 3, "{pxs:?}");
        // The legend sits right of the plot area.
        let b = svg.split("data-box=\"").nth(1).unwrap();
        let lx: f64 = b[..b.find(',').unwrap()].parse().unwrap();
        let pa = svg.split("class=\"plot-area\" x=\"").nth(1).unwrap();
        let px: f64 = pa[..pa.find('"').unwrap()].parse().unwrap();
        let pw = pa.split("width=\"").nth(1).unwrap();
        let pw: f64 = pw[..pw.find('"').unwrap()].parse().unwrap();
        assert!(lx > px + pw);
    }

    #[test]
    fn rounds_are_drawn_as_their_median_with_a_pale_range() {
        let mut c = chart(vec![(1.0, 10.0), (2.0, 20.0)], None);
        c.series[0].points[0].spread = Some((8.0, 400.0));
        let svg = c.svg();
        assert_eq!(svg.matches("class=\"spread\"").count(), 1);
        assert!(svg.contains("range of the rounds"));
        // The axis covers the whole range, not only the medians.
        assert!(svg.contains("data-axis=\"y\" data-v=\"500\"") || svg.contains("data-v=\"400\""));
    }

    #[test]
    fn dodge_centres_groups() {
        let placed = vec![(0, 0, 10.0, 50.0), (1, 0, 10.0, 51.0), (2, 0, 10.0, 90.0)];
        let d = dodge_offsets(&placed, 10.0);
        assert_eq!(d, vec![-5.0, 5.0, 0.0]);
    }
}
