//! Axes whose labelled ticks cover the data: nice linear steps, and log axes labelled at the
//! decades and, where there is room, at 2 and 5 or at every digit between them.
//!
//! A log axis cannot show 0; when the data hold zeros (a count that stayed at 0, no idle
//! descriptors) the axis gets a separate slot for 0 at its start, set off by a break, so a zero is
//! drawn where it is and never on the smallest positive value.

/// Linear or logarithmic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Equal steps.
    Linear,
    /// Equal ratios.
    Log,
}

/// One tick.
#[derive(Clone, Debug, PartialEq)]
pub struct Tick {
    /// Its value.
    pub v: f64,
    /// Its label, or None for an unlabelled minor tick.
    pub label: Option<String>,
}

/// A laid-out axis: values to positions along it, and its ticks.
#[derive(Clone, Debug)]
pub struct Axis {
    /// Its scale.
    pub scale: Scale,
    /// The smallest value of the continuous part (positive on a log axis).
    pub lo: f64,
    /// The largest value.
    pub hi: f64,
    /// On a log axis: the fraction of the length given to the separate slot for 0 (0 = none).
    pub zero_slot: f64,
    /// Ticks, labelled and not, in increasing order.
    pub ticks: Vec<Tick>,
}

/// What the axis must fit.
#[derive(Clone, Copy, Debug)]
pub struct Fit {
    /// Length of the axis in pixels.
    pub len: f64,
    /// Pixels a label needs along the axis, per character (0 for a vertical axis, whose labels
    /// need `fixed` each).
    pub per_char: f64,
    /// Pixels every label needs along the axis besides its characters (its height on a vertical
    /// axis, a gap on a horizontal one).
    pub fixed: f64,
    /// Whether a linear axis may start at 0 when the data start near it (the y axis of a rate or
    /// a share); an x axis starts where its data start.
    pub zero_baseline: bool,
    /// Whether the values are counts (no fractional ticks).
    pub integer: bool,
}

impl Axis {
    /// Lays out an axis for `data` (non-finite values are ignored).
    pub fn new(scale: Scale, data: &[f64], fit: Fit) -> Axis {
        let vals: Vec<f64> = data.iter().copied().filter(|v| v.is_finite()).collect();
        if scale == Scale::Log {
            let pos: Vec<f64> = vals.iter().copied().filter(|v| *v > 0.0).collect();
            if !pos.is_empty() {
                let has_zero = vals.iter().any(|v| *v <= 0.0);
                return log_axis(&pos, has_zero, fit);
            }
        }
        linear_axis(&vals, fit)
    }

    /// Where `v` falls along the axis, from 0 (start) to 1 (end). On a log axis, values ≤ 0 fall
    /// in the zero slot.
    pub fn frac(&self, v: f64) -> f64 {
        match self.scale {
            Scale::Linear => {
                if self.hi > self.lo {
                    (v - self.lo) / (self.hi - self.lo)
                } else {
                    0.5
                }
            }
            Scale::Log => {
                if v <= 0.0 {
                    return 0.0;
                }
                let z = self.zero_slot;
                let t = (v / self.lo).log10() / (self.hi / self.lo).log10();
                z + (1.0 - z) * t
            }
        }
    }

    /// The labelled ticks.
    pub fn labels(&self) -> impl Iterator<Item = (f64, &str)> {
        self.ticks.iter().filter_map(|t| t.label.as_deref().map(|l| (t.v, l)))
    }

    /// Whether `v` can be drawn on this axis (a log axis without a zero slot cannot draw 0).
    pub fn shows(&self, v: f64) -> bool {
        v.is_finite() && (self.scale == Scale::Linear || v > 0.0 || self.zero_slot > 0.0)
    }
}

/// The smallest "nice" number (1, 2, 2.5 or 5 times a power of ten) not below `x`, for x > 0.
fn nice_step_at_least(x: f64) -> f64 {
    let p = 10f64.powf(x.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= x * (1.0 - 1e-9) {
            return m * p;
        }
    }
    10.0 * p
}

fn next_nice(step: f64) -> f64 {
    nice_step_at_least(step * 1.0001)
}

fn decimals_for(step: f64) -> usize {
    let mut d = 0;
    while d < 9
        && ((step * 10f64.powi(d as i32)).round() - step * 10f64.powi(d as i32)).abs() > 1e-6
    {
        d += 1;
    }
    d
}

fn linear_axis(vals: &[f64], fit: Fit) -> Axis {
    let (mut lo, mut hi) =
        vals.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo <= hi.abs().max(lo.abs()) * 1e-9 {
        if lo == 0.0 {
            hi = 1.0;
        } else {
            let m = lo.abs() * 0.25;
            (lo, hi) = (lo - m, hi + m);
        }
    }
    if fit.zero_baseline && lo > 0.0 && lo <= 0.5 * hi {
        lo = 0.0;
    }
    if fit.zero_baseline && hi < 0.0 && hi >= 0.5 * lo {
        hi = 0.0;
    }
    let mut step = nice_step_at_least((hi - lo) / 15.0);
    if fit.integer {
        step = step.max(1.0).round();
    }
    loop {
        let first = (lo / step + 1e-9).floor() * step;
        let last = (hi / step - 1e-9).ceil() * step;
        let n = ((last - first) / step).round() as usize;
        let dec = decimals_for(step);
        let labels: Vec<(f64, String)> = (0..=n)
            .map(|i| {
                let v = first + i as f64 * step;
                let v = if v.abs() < step * 1e-9 { 0.0 } else { v };
                (v, fmt_tick(v, dec))
            })
            .collect();
        let widest = labels.iter().map(|(_, l)| l.chars().count()).max().unwrap_or(1) as f64;
        let need = widest * fit.per_char + fit.fixed;
        let px = fit.len / n.max(1) as f64;
        if px >= need || n <= 2 {
            return Axis {
                scale: Scale::Linear,
                lo: first,
                hi: last,
                zero_slot: 0.0,
                ticks: labels.into_iter().map(|(v, l)| Tick { v, label: Some(l) }).collect(),
            };
        }
        step = next_nice(step);
        if fit.integer {
            step = step.round().max(1.0);
        }
    }
}

/// Mantissas of the labelled log ticks, densest first.
const LOG_SETS: &[&[f64]] = &[
    &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
    &[1.0, 2.0, 3.0, 5.0],
    &[1.0, 2.0, 5.0],
    &[1.0, 3.0],
    &[1.0],
];

/// Values m·10^k (m in `set`, k every `every` decades) from the largest ≤ lo to the smallest ≥ hi.
fn grid(set: &[f64], every: i32, lo: f64, hi: f64) -> Vec<f64> {
    let k0 = lo.log10().floor() as i32 - 1;
    let k1 = hi.log10().ceil() as i32 + 1;
    let mut all = Vec::new();
    for k in k0..=k1 {
        if k.rem_euclid(every) != 0 && every > 1 {
            continue;
        }
        for m in set {
            all.push(m * 10f64.powi(k));
        }
    }
    let start = all.iter().rposition(|v| *v <= lo * (1.0 + 1e-9)).unwrap_or(0);
    let end = all.iter().position(|v| *v >= hi * (1.0 - 1e-9)).unwrap_or(all.len() - 1);
    all[start..=end].to_vec()
}

fn log_axis(pos: &[f64], has_zero: bool, fit: Fit) -> Axis {
    let (mut lo, mut hi) =
        pos.iter().fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(*v), b.max(*v)));
    if hi / lo < 1.0 + 1e-9 {
        (lo, hi) = (lo / 1.5, hi * 1.5);
    }
    let zero_px = if has_zero { (fit.fixed + 3.0 * fit.per_char).max(24.0) + 14.0 } else { 0.0 };
    let zero_slot = if has_zero { (zero_px / fit.len).min(0.25) } else { 0.0 };
    let len = fit.len * (1.0 - zero_slot);
    let fits = |vals: &[f64], a: f64, b: f64| -> bool {
        let span = (b / a).log10();
        vals.windows(2).all(|w| {
            let px = len * (w[1] / w[0]).log10() / span;
            let widest = fmt_value(w[0]).chars().count().max(fmt_value(w[1]).chars().count());
            px >= widest as f64 * fit.per_char + fit.fixed
        })
    };
    let mut choice: Option<Vec<f64>> = None;
    // Narrow ranges: the digits of one decade may leave fewer than three labels; take linear
    // steps inside the range, placed on the log scale.
    let dense = grid(LOG_SETS[0], 1, lo, hi);
    if dense.len() < 4 {
        let mut step = nice_step_at_least((hi - lo) / 5.0);
        loop {
            let first = (lo / step + 1e-9).floor() * step;
            let last = (hi / step - 1e-9).ceil() * step;
            if first <= 0.0 {
                break;
            }
            let n = ((last - first) / step).round() as usize;
            let vals: Vec<f64> = (0..=n).map(|i| first + i as f64 * step).collect();
            if fits(&vals, first, last) || n <= 2 {
                if vals.len() >= dense.len() {
                    choice = Some(vals);
                }
                break;
            }
            step = next_nice(step);
        }
    }
    if choice.is_none() {
        for set in LOG_SETS {
            let g = grid(set, 1, lo, hi);
            if fits(&g, g[0], g[g.len() - 1]) {
                choice = Some(g);
                break;
            }
        }
    }
    let labelled = choice.unwrap_or_else(|| {
        let mut every = 2;
        loop {
            let g = grid(&[1.0], every, lo, hi);
            if fits(&g, g[0], g[g.len() - 1]) || every > 6 {
                break g;
            }
            every += 1;
        }
    });
    let (a, b) = (labelled[0], labelled[labelled.len() - 1]);
    let mut ticks: Vec<Tick> = Vec::new();
    if has_zero {
        ticks.push(Tick { v: 0.0, label: Some("0".into()) });
    }
    // Unlabelled minor ticks at every digit of every decade in range.
    let mut all: Vec<(f64, bool)> = grid(LOG_SETS[0], 1, a, b)
        .into_iter()
        .filter(|v| *v >= a * (1.0 - 1e-9) && *v <= b * (1.0 + 1e-9))
        .map(|v| (v, false))
        .collect();
    all.extend(labelled.iter().map(|v| (*v, true)));
    all.sort_by(|x, y| x.0.total_cmp(&y.0).then(y.1.cmp(&x.1)));
    all.dedup_by(|x, y| (x.0 - y.0).abs() <= y.0.abs() * 1e-9);
    for (v, lab) in all {
        if fit.integer && lab && v.fract().abs() > 1e-9 {
            ticks.push(Tick { v, label: None });
            continue;
        }
        ticks.push(Tick { v, label: lab.then(|| fmt_value(v)) });
    }
    Axis { scale: Scale::Log, lo: a, hi: b, zero_slot, ticks }
}

fn fmt_tick(v: f64, decimals: usize) -> String {
    if v.abs() >= 1e4 || decimals == 0 {
        fmt_value(v)
    } else {
        format!("{v:.decimals$}")
    }
}

/// A number as a tick label or a table cell: integers with thousands separators up to 99,999,
/// then `k` and `M`; fractions with three significant digits at most, trailing zeros trimmed.
pub fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    let trim = |s: String| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if a >= 1e6 {
        return trim(format!("{:.2}", v / 1e6)) + "M";
    }
    if a >= 1e5 {
        return trim(format!("{:.1}", v / 1e3)) + "k";
    }
    if a >= 1e4 {
        return trim(format!("{:.2}", v / 1e3)) + "k";
    }
    if (v - v.round()).abs() < 1e-9 * a.max(1.0) {
        return fmt_int(v);
    }
    let dec = (2 - a.log10().floor() as i32).clamp(0, 6) as usize;
    let s = trim(format!("{v:.dec$}"));
    if a >= 1000.0 {
        // 1234.5 → "1,235": three significant digits are already integers here.
        return fmt_int(v.round());
    }
    s
}

/// An integer with thousands separators ("54,612").
pub fn fmt_int(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

/// Parses a label written by [`fmt_value`] or [`fmt_tick`] back to its value (for tests and
/// checks of a drawn figure).
pub fn parse_label(s: &str) -> Option<f64> {
    let s = s.trim().replace(',', "");
    let (num, mult) = if let Some(n) = s.strip_suffix('k') {
        (n.to_string(), 1e3)
    } else if let Some(n) = s.strip_suffix('M') {
        (n.to_string(), 1e6)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    const Y: Fit =
        Fit { len: 360.0, per_char: 0.0, fixed: 20.0, zero_baseline: true, integer: false };
    const X: Fit =
        Fit { len: 560.0, per_char: 8.0, fixed: 14.0, zero_baseline: false, integer: false };

    fn labels(a: &Axis) -> Vec<f64> {
        a.labels().map(|(v, _)| v).collect()
    }

    /// Labelled ticks bracket the data, at least three of them, and every label reads back as
    /// its own value.
    fn covers(a: &Axis, data: &[f64]) {
        let l = labels(a);
        let pos: Vec<f64> =
            data.iter().copied().filter(|v| *v > 0.0 || a.scale == Scale::Linear).collect();
        let lo = pos.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = pos.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert!(l.iter().any(|v| *v <= lo * (1.0 + 1e-9) + 1e-12), "{l:?} vs {lo}");
        assert!(l.iter().any(|v| *v >= hi * (1.0 - 1e-9)), "{l:?} vs {hi}");
        assert!(l.len() >= 3, "{l:?}");
        for (v, s) in a.labels() {
            let back = parse_label(s).unwrap();
            assert!((back - v).abs() <= v.abs() * 0.02 + 1e-12, "{s} for {v}");
        }
        for d in data {
            let f = a.frac(*d);
            assert!((-1e-9..=1.0 + 1e-9).contains(&f), "{d} at {f}");
        }
    }

    #[test]
    fn a_narrow_log_range_gets_labels_inside_it() {
        // Server CPU per request: 7 of 8 lines between 40 and 62 µs, one at 140.
        let d = [40.5, 43.0, 61.6, 55.0];
        let a = Axis::new(Scale::Log, &d, Y);
        covers(&a, &d);
        assert!(labels(&a).iter().filter(|v| **v > 40.0 && **v < 62.0).count() >= 1);
        let d = [0.2, 0.35, 0.9];
        let a = Axis::new(Scale::Log, &d, Y);
        covers(&a, &d);
        assert!(labels(&a).len() >= 5, "{:?}", labels(&a));
        let d = [41.0, 44.0, 47.0];
        let a = Axis::new(Scale::Log, &d, Y);
        covers(&a, &d);
    }

    #[test]
    fn a_wide_log_range_labels_decades_and_some_minor_ticks() {
        let d = [7600.0, 8000.0, 3.72e6];
        let a = Axis::new(Scale::Log, &d, Y);
        covers(&a, &d);
        let l = labels(&a);
        assert!(l.contains(&1e4) && l.contains(&1e5) && l.contains(&1e6), "{l:?}");
        assert!(l.iter().any(|v| (v / 10f64.powf(v.log10().floor()) - 1.0).abs() > 1e-9), "{l:?}");
        assert!(a.ticks.iter().filter(|t| t.label.is_none()).count() > 10);
        // Eight decades on a short axis: every other decade.
        let d = [1.0, 1e8];
        let a = Axis::new(Scale::Log, &d, Fit { len: 120.0, ..Y });
        covers(&a, &d);
    }

    #[test]
    fn zeros_on_a_log_axis_get_their_own_slot() {
        let d = [0.0, 1000.0, 10000.0];
        let a = Axis::new(Scale::Log, &d, X);
        assert!(a.zero_slot > 0.0);
        assert_eq!(a.frac(0.0), 0.0);
        assert!(a.frac(1000.0) >= a.zero_slot && a.zero_slot * X.len >= 24.0, "1,000 on 0");
        assert_eq!(a.labels().next().map(|(v, l)| (v, l.to_string())), Some((0.0, "0".into())));
        covers(&a, &d);
    }

    #[test]
    fn a_rate_sweep_starts_where_its_data_start() {
        let d = [3600.0, 8400.0, 13200.0];
        let a = Axis::new(Scale::Linear, &d, X);
        covers(&a, &d);
        assert!(a.lo >= 2000.0, "{}", a.lo);
        // A y axis of rates starts at 0 when the data come near it.
        let a = Axis::new(Scale::Linear, &d, Y);
        assert_eq!(a.lo, 0.0);
    }

    #[test]
    fn counts_are_integers_and_degenerate_ranges_still_get_an_axis() {
        let a = Axis::new(Scale::Linear, &[0.0, 3.0], Fit { integer: true, ..Y });
        assert!(a.labels().all(|(v, l)| v.fract() == 0.0 && !l.contains('.')), "{:?}", a.ticks);
        for d in [&[0.0, 0.0][..], &[5.0][..], &[][..], &[-3.0, -3.0][..]] {
            let a = Axis::new(Scale::Linear, d, Y);
            assert!(a.hi > a.lo && a.labels().count() >= 2, "{d:?}: {a:?}");
        }
        let a = Axis::new(Scale::Log, &[5.0], Y);
        covers(&a, &[5.0]);
    }

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(fmt_value(14.0), "14");
        assert_eq!(fmt_value(54612.0), "54.61k");
        assert_eq!(fmt_value(9999.0), "9,999");
        assert_eq!(fmt_value(0.25), "0.25");
        assert_eq!(fmt_value(0.2), "0.2");
        assert_eq!(fmt_value(43.08), "43.1");
        assert_eq!(fmt_value(1234.5), "1,235");
        assert_eq!(fmt_value(3.72e6), "3.72M");
        assert_eq!(fmt_value(150000.0), "150k");
        assert_eq!(fmt_int(-1234567.0), "-1,234,567");
        assert_eq!(parse_label("12.5k"), Some(12500.0));
        assert_eq!(parse_label("1,000"), Some(1000.0));
    }
}
