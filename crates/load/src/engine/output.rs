//! The live outputs of a run, fed by every thread and written by one collector (the calling
//! thread): the progress line, the per-second series file, the HdrHistogram interval log — each
//! second or interval merged over the threads once all of them have handed it in — and the
//! `--events` lines, written by whichever thread gets there (once for the run).

use crate::hdrlog::{HdrLog, IntervalHists};
use crate::plan::Plan;
use crate::stats;
use hdrhistogram::Histogram;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

/// The first word of an event line on stderr (`--events`): `ioscale-load-event {"event":NAME,
/// "t_s":SECONDS}`, seconds since the run's start.
pub const EVENT: &str = "ioscale-load-event";

/// Event bits ([`super::Shared::first`]) and names.
pub(super) const EVENT_HELD: u8 = 1;
pub(super) const EVENT_WINDOW_START: u8 = 2;
pub(super) const EVENT_WINDOW_END: u8 = 4;

/// Writes event `bit` at `at` (ns after the start) once for the run, if `--events` asked.
pub(super) fn event(plan: &Plan, shared: &super::Shared, bit: u8, at: u64) {
    if !plan.events || !shared.first(bit) {
        return;
    }
    let name = match bit {
        EVENT_HELD => "held",
        EVENT_WINDOW_START => "window_start",
        _ => "window_end",
    };
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{EVENT} {}", json!({"event": name, "t_s": at as f64 / 1e9}));
    let _ = err.flush();
}

/// One whole second of the window, as one thread saw it.
pub(super) struct Second {
    pub(super) index: usize,
    pub(super) active_replies: u64,
    pub(super) idle_replies: u64,
    /// Replies (active and idle) by status class ([`stats::CLASSES`]), and those `--expect`
    /// did not ask for.
    pub(super) status: [u64; 6],
    pub(super) unexpected: u64,
    /// Errors so far, connections open, reconnections so far.
    pub(super) errors_total: u64,
    pub(super) open: usize,
    pub(super) reconnects: u64,
    /// Active latencies recorded since the previous second (µs).
    pub(super) latency: Histogram<u64>,
}

/// A thread's once-a-second figures.
pub(super) struct Progress {
    /// ns after the start.
    pub(super) t: u64,
    pub(super) replies: u64,
    pub(super) open: usize,
    pub(super) errors: u64,
    /// Window seconds completed since the last tick.
    pub(super) seconds: Vec<Second>,
}

pub(super) enum Msg {
    Tick(usize, Progress),
    /// Interval number, start and length (ns after the start), its histograms.
    Interval(u64, u64, u64, Box<IntervalHists>),
}

/// A thread's end of the outputs.
pub(super) struct Sink {
    thread: usize,
    tx: Sender<Msg>,
}

impl Sink {
    pub(super) fn new(thread: usize, tx: Sender<Msg>) -> Sink {
        Sink { thread, tx }
    }

    pub(super) fn tick(&self, p: Progress) {
        let _ = self.tx.send(Msg::Tick(self.thread, p));
    }

    /// Hands over interval `index` and resets `h` for the next.
    pub(super) fn interval(&self, index: u64, from: u64, len: u64, h: &mut IntervalHists) {
        let full = std::mem::take(h);
        let _ = self.tx.send(Msg::Interval(index, from, len, Box::new(full)));
    }
}

/// A second or interval being merged: how many threads handed it in, and the sum so far.
struct Pending<T> {
    count: usize,
    value: T,
}

/// The collector: runs on the calling thread until every thread has dropped its sink.
pub(super) fn collect(
    rx: Receiver<Msg>,
    threads: usize,
    mut progress: impl FnMut(f64, &str),
    mut series: Option<&mut dyn Write>,
    mut hdr: Option<&mut HdrLog>,
    idle: bool,
) {
    let mut latest: Vec<Option<(u64, u64, usize, u64)>> = (0..threads).map(|_| None).collect();
    let mut seconds: BTreeMap<usize, Pending<Second>> = BTreeMap::new();
    let mut intervals: BTreeMap<u64, Pending<(u64, u64, IntervalHists)>> = BTreeMap::new();
    for msg in rx {
        match msg {
            Msg::Tick(i, p) => {
                latest[i] = Some((p.t, p.replies, p.open, p.errors));
                if latest.iter().all(Option::is_some) {
                    show_progress(&latest, &mut progress);
                }
                for s in p.seconds {
                    merge_second(&mut seconds, s);
                }
                write_seconds(&mut seconds, threads, series.as_deref_mut(), false);
            }
            Msg::Interval(index, from, len, h) => {
                merge_interval(&mut intervals, index, from, len, *h);
                write_intervals(&mut intervals, threads, hdr.as_deref_mut(), idle, false);
            }
        }
    }
    write_seconds(&mut seconds, threads, series, true);
    write_intervals(&mut intervals, threads, hdr, idle, true);
}

fn show_progress(latest: &[Option<(u64, u64, usize, u64)>], progress: &mut impl FnMut(f64, &str)) {
    let (mut t, mut replies, mut open, mut errors) = (0, 0, 0, 0);
    for (pt, r, o, e) in latest.iter().flatten() {
        t = t.max(*pt);
        replies += r;
        open += o;
        errors += e;
    }
    let s = t as f64 / 1e9;
    progress(s, &format!("{s:.0}s  replies {replies}  open {open}  errors {errors}"));
}

fn merge_second(seconds: &mut BTreeMap<usize, Pending<Second>>, s: Second) {
    match seconds.get_mut(&s.index) {
        None => {
            seconds.insert(s.index, Pending { count: 1, value: s });
        }
        Some(p) => {
            let v = &mut p.value;
            v.active_replies += s.active_replies;
            v.idle_replies += s.idle_replies;
            for (a, b) in v.status.iter_mut().zip(s.status) {
                *a += b;
            }
            v.unexpected += s.unexpected;
            v.errors_total += s.errors_total;
            v.open += s.open;
            v.reconnects += s.reconnects;
            let _ = v.latency.add(&s.latency);
            p.count += 1;
        }
    }
}

/// Writes the seconds every thread has handed in, in order (at the end: all that are left).
fn write_seconds<'w>(
    seconds: &mut BTreeMap<usize, Pending<Second>>,
    threads: usize,
    series: Option<&mut (dyn Write + 'w)>,
    all: bool,
) {
    let Some(w) = series else {
        seconds.clear();
        return;
    };
    let mut wrote = false;
    while let Some(entry) = seconds.first_entry() {
        if !all && entry.get().count < threads {
            break;
        }
        let s = entry.remove().value;
        let status: serde_json::Map<String, serde_json::Value> = stats::CLASSES
            .iter()
            .zip(s.status)
            .filter(|(_, n)| *n > 0)
            .map(|(c, n)| ((*c).to_string(), n.into()))
            .collect();
        let _ = writeln!(
            w,
            "{}",
            json!({
                "second": s.index,
                "active_replies": s.active_replies,
                "idle_replies": s.idle_replies,
                "status": status,
                "unexpected": s.unexpected,
                "errors_total": s.errors_total,
                "open_connections": s.open,
                "reconnects": s.reconnects,
                "latency_ms": stats::percentiles_ms(&s.latency),
                "latency_us_histogram": stats::encode(&s.latency),
            })
        );
        wrote = true;
    }
    if wrote {
        // Line by line, so a soak or a plot can follow the run as it goes.
        let _ = w.flush();
    }
}

fn merge_interval(
    intervals: &mut BTreeMap<u64, Pending<(u64, u64, IntervalHists)>>,
    index: u64,
    from: u64,
    len: u64,
    h: IntervalHists,
) {
    match intervals.get_mut(&index) {
        None => {
            intervals.insert(index, Pending { count: 1, value: (from, len, h) });
        }
        Some(p) => {
            let (_, l, sum) = &mut p.value;
            *l = (*l).max(len);
            let _ = sum.active.add(&h.active);
            let _ = sum.actual.add(&h.actual);
            let _ = sum.idle.add(&h.idle);
            p.count += 1;
        }
    }
}

/// Writes the intervals every thread has handed in, in order (at the end: all that are left).
fn write_intervals(
    intervals: &mut BTreeMap<u64, Pending<(u64, u64, IntervalHists)>>,
    threads: usize,
    hdr: Option<&mut HdrLog>,
    idle: bool,
    all: bool,
) {
    let Some(h) = hdr else {
        intervals.clear();
        return;
    };
    while let Some(entry) = intervals.first_entry() {
        if !all && entry.get().count < threads {
            break;
        }
        let (from, len, mut hists) = entry.remove().value;
        h.write(&mut hists, Duration::from_nanos(from), Duration::from_nanos(len), idle);
    }
}
