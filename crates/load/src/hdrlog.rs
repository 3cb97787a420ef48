//! `--hdr-log FILE`: per-interval latency histograms in the standard HdrHistogram interval log
//! format, so HdrHistogram's own tools (HistogramLogProcessor, HistogramLogAnalyzer, the `hdrh`
//! Python package's `HistogramLogReader`, ...) read a run as it went.
//!
//! Written with the `hdrhistogram` crate's `IntervalLogWriterBuilder` and `V2DeflateSerializer`
//! (the "V2 compressed" encoding, base64, one line per interval): a comment, `#[StartTime: ...]`
//! and `#[BaseTime: ...]` headers (both the wall-clock start of the run, seconds since the epoch,
//! so interval timestamps are seconds since the run started), the format version comment and the
//! legend line the Java writer puts there. Values are **microseconds**, like every histogram of
//! the `--json` record; the `Interval_Max` column is in microseconds too (max value divisor 1).
//!
//! Lines: untagged, the active population's response time from the *intended* send time (the
//! record's `active.latency_us`); `Tag=actual`, from the actual send time; `Tag=idle`, the idle
//! population's (only when there is one). Only replies counted in the record (intended in the
//! measured window) are logged, so the intervals add up to the record's histograms exactly.

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use std::io::{self, Write};
use std::time::{Duration, SystemTime};

/// Where the interval histograms go, and how often.
pub struct HdrLog {
    out: Box<dyn Write>,
    ser: V2DeflateSerializer,
    /// Length of one interval.
    pub interval: Duration,
    error: Option<io::Error>,
}

/// The histograms of the interval being filled (µs): active from intended, active from
/// actual, idle from intended.
#[derive(Debug, Clone)]
pub struct IntervalHists {
    /// Active population, from the intended send time.
    pub active: Histogram<u64>,
    /// Active population, from the actual send time.
    pub actual: Histogram<u64>,
    /// Idle population, from the intended send time.
    pub idle: Histogram<u64>,
}

impl Default for IntervalHists {
    fn default() -> Self {
        let h = || Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        IntervalHists { active: h(), actual: h(), idle: h() }
    }
}

impl HdrLog {
    /// A log written to `out`, one line set every `interval`.
    pub fn new(out: Box<dyn Write>, interval: Duration) -> HdrLog {
        HdrLog { out, ser: V2DeflateSerializer::new(), interval, error: None }
    }

    fn keep(&mut self, r: io::Result<()>) {
        if let (Err(e), None) = (r, &self.error) {
            self.error = Some(e);
        }
    }

    /// Writes the headers; `start` is the wall-clock time interval timestamps count from.
    pub fn begin(&mut self, start: SystemTime, comment: &str) {
        let r = IntervalLogWriterBuilder::new()
            .add_comment(comment)
            .with_start_time(start)
            .with_base_time(start)
            .begin_log_with(&mut self.out, &mut self.ser)
            .map(|_| ())
            .and_then(|_| {
                self.out.write_all(
                    b"#[Histogram log format version 1.3]\n\
                      \"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
                )
            });
        self.keep(r);
    }

    /// Writes one interval (`start` after the base time, lasting `length`) and resets `h`.
    pub fn write(&mut self, h: &mut IntervalHists, start: Duration, length: Duration, idle: bool) {
        if self.error.is_none() {
            let r = (|| -> io::Result<()> {
                // No headers configured: this builder only lends its writer for these lines.
                let mut w =
                    IntervalLogWriterBuilder::new().begin_log_with(&mut self.out, &mut self.ser)?;
                let mut line = |hist: &Histogram<u64>, tag: Option<&str>| {
                    w.write_histogram(hist, start, length, tag.and_then(Tag::new))
                        .map_err(|e| io::Error::other(e.to_string()))
                };
                line(&h.active, None)?;
                line(&h.actual, Some("actual"))?;
                if idle {
                    line(&h.idle, Some("idle"))?;
                }
                Ok(())
            })();
            let r = r.and_then(|_| self.out.flush());
            self.keep(r);
        }
        h.active.reset();
        h.actual.reset();
        h.idle.reset();
    }

    /// Flushes; the first error met while writing, if any.
    pub fn finish(&mut self) -> io::Result<()> {
        let r = self.out.flush();
        self.keep(r);
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
