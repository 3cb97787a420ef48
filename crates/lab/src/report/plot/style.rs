//! One fixed look per mechanism, the same in every figure of every report.
//!
//! Colours come from Paul Tol's colour-blind-safe "muted" scheme, completed with his "bright"
//! blue, his "vibrant" orange, black and greys; no palette of fourteen hues is safe for every
//! reader, so no two entries share both colour and marker, and the variants of a mechanism differ
//! from it in dash as well. The order of the table is the order of every legend.

/// The shape drawn at each point. Every shape can be filled (a valid point) or hollow (an INVALID
/// one), so the hollow mark always means the same thing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Marker {
    /// ●
    Circle,
    /// ■
    Square,
    /// ◆
    Diamond,
    /// ▲
    TriangleUp,
    /// ▼
    TriangleDown,
    /// ⬟
    Pentagon,
}

impl Marker {
    /// Its name in the SVG's `data-marker`.
    pub fn name(self) -> &'static str {
        match self {
            Marker::Circle => "circle",
            Marker::Square => "square",
            Marker::Diamond => "diamond",
            Marker::TriangleUp => "triangle-up",
            Marker::TriangleDown => "triangle-down",
            Marker::Pentagon => "pentagon",
        }
    }

    /// An SVG path of the shape centred on (x, y), `r` its rough radius in pixels.
    pub fn path(self, x: f64, y: f64, r: f64) -> String {
        let poly = |pts: &[(f64, f64)]| {
            let mut s = String::new();
            for (i, (dx, dy)) in pts.iter().enumerate() {
                s.push_str(if i == 0 { "M" } else { "L" });
                s.push_str(&format!("{:.1},{:.1}", x + dx * r, y + dy * r));
            }
            s.push('Z');
            s
        };
        match self {
            Marker::Circle => format!(
                "M{:.1},{:.1}a{r:.1},{r:.1} 0 1,0 {:.1},0a{r:.1},{r:.1} 0 1,0 {:.1},0Z",
                x - r,
                y,
                2.0 * r,
                -2.0 * r
            ),
            Marker::Square => poly(&[(-0.9, -0.9), (0.9, -0.9), (0.9, 0.9), (-0.9, 0.9)]),
            Marker::Diamond => poly(&[(0.0, -1.25), (1.15, 0.0), (0.0, 1.25), (-1.15, 0.0)]),
            Marker::TriangleUp => poly(&[(0.0, -1.2), (1.1, 0.85), (-1.1, 0.85)]),
            Marker::TriangleDown => poly(&[(0.0, 1.2), (1.1, -0.85), (-1.1, -0.85)]),
            Marker::Pentagon => {
                poly(&[(0.0, -1.15), (1.1, -0.36), (0.68, 0.93), (-0.68, 0.93), (-1.1, -0.36)])
            }
        }
    }
}

/// How one line looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Style {
    /// `#rrggbb`.
    pub color: &'static str,
    /// The point shape.
    pub marker: Marker,
    /// An SVG `stroke-dasharray`, or "" for a solid line.
    pub dash: &'static str,
}

const fn s(color: &'static str, marker: Marker, dash: &'static str) -> Style {
    Style { color, marker, dash }
}

/// Every mechanism (and wait mode, and reference server) the lab draws, in legend order.
pub const TABLE: &[(&str, Style)] = &[
    ("select", s("#CC6677", Marker::Square, "")),
    ("select+multi-accept", s("#882255", Marker::Diamond, "")),
    ("poll", s("#999933", Marker::TriangleUp, "")),
    ("devpoll", s("#AA4499", Marker::TriangleDown, "")),
    ("epoll", s("#332288", Marker::Circle, "")),
    ("epoll-et", s("#4477AA", Marker::Circle, "7 3")),
    ("epoll-oneshot", s("#88CCEE", Marker::Circle, "2 3")),
    ("epoll-exclusive", s("#4477AA", Marker::Square, "")),
    ("epoll-exclusive-rotate", s("#88CCEE", Marker::Square, "")),
    ("reuseport", s("#EE7733", Marker::Square, "")),
    ("rtsig", s("#117733", Marker::Diamond, "")),
    ("rtsig-batch", s("#DDCC77", Marker::Diamond, "7 3")),
    ("rtsig-perfd", s("#44AA99", Marker::Square, "")),
    ("hybrid", s("#EE7733", Marker::Pentagon, "")),
    ("uring", s("#555555", Marker::TriangleUp, "")),
    ("uring-completion", s("#000000", Marker::TriangleDown, "")),
    ("nginx", s("#999999", Marker::Circle, "8 4")),
];

/// Lines that are not mechanisms (e.g. one per inactive-connection count), by their rank.
const OTHERS: &[Style] = &[
    s("#332288", Marker::Circle, ""),
    s("#CC6677", Marker::Square, ""),
    s("#117733", Marker::Diamond, ""),
    s("#DDAA33", Marker::TriangleUp, ""),
    s("#88CCEE", Marker::TriangleDown, ""),
    s("#AA4499", Marker::Pentagon, ""),
    s("#555555", Marker::Circle, "7 3"),
];

/// The style of a mechanism. A name not in [`TABLE`] that extends one that is (`select+x`,
/// `rtsig-y`) takes the longest such entry's colour with a pentagon and a dashed line; anything
/// else is grey.
pub fn of_mechanism(name: &str) -> Style {
    if let Some((_, st)) = TABLE.iter().find(|(n, _)| *n == name) {
        return *st;
    }
    let base = TABLE
        .iter()
        .filter(|(n, _)| {
            name.starts_with(n) && matches!(name.as_bytes().get(n.len()), Some(b'+' | b'-'))
        })
        .max_by_key(|(n, _)| n.len());
    match base {
        Some((_, st)) => Style { marker: Marker::Pentagon, dash: "4 2 1 2", ..*st },
        None => s("#777777", Marker::Pentagon, "4 2 1 2"),
    }
}

/// Where a mechanism comes in a legend (unknown names last, in name order).
pub fn rank(name: &str) -> usize {
    TABLE.iter().position(|(n, _)| *n == name).unwrap_or(TABLE.len())
}

/// The style of the `i`-th line of a figure whose lines are not mechanisms.
pub fn of_other(i: usize) -> Style {
    OTHERS[i % OTHERS.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn no_two_entries_look_alike() {
        let mut seen = HashSet::new();
        for (n, st) in TABLE {
            assert!(seen.insert((st.color, st.marker)), "{n} repeats another's colour and marker");
        }
        let names: HashSet<_> = TABLE.iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), TABLE.len());
    }

    #[test]
    fn every_mechanism_and_variant_has_an_entry() {
        for m in [
            "select",
            "poll",
            "devpoll",
            "epoll",
            "epoll-et",
            "epoll-oneshot",
            "rtsig",
            "rtsig-batch",
            "rtsig-perfd",
            "hybrid",
            "uring",
            "uring-completion",
            "nginx",
            "select+multi-accept",
        ] {
            assert!(TABLE.iter().any(|(n, _)| *n == m), "{m}");
        }
        assert_eq!(of_mechanism("rtsig+paper-fallback").color, of_mechanism("rtsig").color);
        assert_eq!(of_mechanism("rtsig+paper-fallback").marker, Marker::Pentagon);
        assert_eq!(of_mechanism("kqueue").color, "#777777");
    }
}
