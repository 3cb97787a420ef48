//! Being one segment of a run split over several hosts (`--segment I/N`, `--start-at T`,
//! `--coordinated`; docs/multihost.md): the READY line once the populations are up, the clock
//! answers and the stop when stdin closes, and the `segment` object of the record. The
//! coordinator's side is [`crate::hosts`].

use crate::plan::Plan;
use crate::report::{summary_text, Report};
use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (negative before it).
pub fn unix(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// The first word of a segment's readiness line on stderr.
pub const READY: &str = "ioscale-load READY";

/// The first word of a segment's answer, on stderr, to a `ping T` line on its stdin.
pub const PONG: &str = "ioscale-load PONG";

/// A segment's start offset beyond which its record is INVALID, ms.
pub const MAX_START_OFFSET_MS: f64 = 10.0;

/// Prints the segment's READY line (its populations are set up, before the start instant).
pub fn ready(segment: &crate::plan::Segment) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "{READY} segment={}/{} host_time={:.6}",
        segment.index + 1,
        segment.count,
        unix(SystemTime::now())
    );
    let _ = err.flush();
}

/// `--coordinated`: stop the run (as SIGINT would) when stdin reaches end of file, i.e. when the
/// coordinator closed it, or died, or the ssh connection carrying it ended; and answer each
/// `ping T` line with `ioscale-load PONG t=T host_time=NOW` on stderr (the coordinator's clock
/// check).
pub fn follow_stdin() {
    std::thread::spawn(|| {
        let mut line = Vec::new();
        let mut stdin = std::io::stdin().lock();
        loop {
            line.clear();
            match stdin.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    if let Some(t) = text.trim().strip_prefix("ping ") {
                        let mut err = std::io::stderr().lock();
                        let now = unix(SystemTime::now());
                        let _ = writeln!(err, "{PONG} t={t} host_time={now:.6}");
                        let _ = err.flush();
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        STDIN_CLOSED.store(true, Ordering::SeqCst);
        ioscale_sys::interrupt::request();
    });
}

/// Set when `--coordinated` saw its stdin close (the stop came from the coordinator).
static STDIN_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Adds the `segment` object to a segment's record (which slice, the shared start instant, the
/// measured start offset) and marks the record INVALID when the segment started more than
/// [`MAX_START_OFFSET_MS`] late or before its populations were set up.
/// `started`: the wall-clock time the arrival clock actually started, and whether every
/// population was set up by then (`None`: the run ended before the start instant).
pub fn annotate_segment(report: &mut Report, plan: &Plan, started: Option<(SystemTime, bool)>) {
    let seg = plan.segment;
    let offset_ms = match (seg.start_at, started) {
        (Some(at), Some((t, _))) => Some((unix(t) - unix(at)) * 1000.0),
        _ => None,
    };
    report.record["segment"] = json!({
        "index": seg.index + 1,
        "count": seg.count,
        "start_at": seg.start_at.map(|t| humantime::format_rfc3339_micros(t).to_string()),
        "start_at_unix": seg.start_at.map(unix),
        "start_offset_ms": offset_ms,
        "ready_at_start": started.map(|s| s.1),
    });
    if STDIN_CLOSED.load(Ordering::SeqCst) {
        // Say who stopped it: the engine only knows it was asked to stop.
        if let Some(r) = report.record["invalid_reasons"].as_array_mut() {
            for v in
                r.iter_mut().filter(|v| v.as_str().is_some_and(|s| s.starts_with("interrupted")))
            {
                *v = json!(
                    "interrupted: stopped by the coordinator (stdin closed) before the planned end"
                );
            }
        }
    }
    let mut reasons = Vec::new();
    if let Some(ms) = offset_ms.filter(|ms| *ms > MAX_START_OFFSET_MS) {
        reasons.push(format!(
            "started {ms:.1} ms after --start-at (more than {MAX_START_OFFSET_MS} ms late)"
        ));
    }
    if seg.start_at.is_some() && started.is_some_and(|s| !s.1) {
        reasons.push("its connections were not all set up by the start instant".to_string());
    }
    if !reasons.is_empty() {
        report.valid = false;
        report.record["valid"] = json!(false);
        if let Some(r) = report.record["invalid_reasons"].as_array_mut() {
            r.extend(reasons.into_iter().map(Value::from));
        }
    }
    report.summary = summary_text(&report.record);
    if let Some(ms) = offset_ms {
        report.summary.push_str(&format!(
            "segment {}/{}: start offset {ms:+.3} ms from --start-at\n",
            seg.index + 1,
            seg.count
        ));
    }
}
