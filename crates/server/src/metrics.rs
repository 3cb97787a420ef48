//! `GET /.ioscale/metrics`: the workers' counters in the OpenMetrics / Prometheus text format.
//!
//! Nothing is added to the request path: the counters are the per-worker atomics of
//! [`crate::stats`] that the stats endpoint already reads. A scrape sums them into a
//! [`Snapshot`] and encodes it with `prometheus-client` (the official Rust client), so the
//! format — names, `# TYPE`/`# HELP`, `_total` suffixes, histogram buckets, `# EOF` — is the
//! crate's, not hand-written.

use crate::stats::{Shared, COMPLETION_NAMES, DISPATCH_NAMES, DURATION_BOUNDS, SERVER_ERRORS};
use ioscale_http::ErrorKind;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

/// The content type of the exposition (OpenMetrics 1.0, which Prometheus reads and prefers).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every counter summed over the workers at one scrape.
#[derive(Debug, Clone)]
pub struct Snapshot {
    mechanism: &'static str,
    workers: usize,
    uptime_s: f64,
    open: u64,
    accepted: u64,
    closed: u64,
    requests: u64,
    responses: [u64; 4],
    bytes_in: u64,
    bytes_out: u64,
    dispatch: Vec<(&'static str, u64)>,
    completion: Vec<(&'static str, u64)>,
    errors: Vec<(&'static str, u64)>,
    listener_notices: u64,
    accept_eagain: u64,
    durations: Vec<(f64, u64)>,
    duration_sum_s: f64,
    log_lines: u64,
    log_dropped: u64,
    cpu_user_s: f64,
    cpu_system_s: f64,
}

impl Snapshot {
    /// Reads the counters of every worker (`open`: connections open now).
    pub fn take(s: &Shared, open: u64) -> Snapshot {
        let c = s.counts();
        let dispatch = DISPATCH_NAMES.iter().copied().zip(c.dispatch.iter().copied()).collect();
        let completion = if s.mechanism.is_completion() {
            COMPLETION_NAMES.iter().copied().zip(c.completion.iter().copied()).collect()
        } else {
            Vec::new()
        };
        let mut errors: Vec<(&'static str, u64)> = ErrorKind::ALL
            .iter()
            .map(|k| (k.name(), c.http_errors.get(k.index()).copied().unwrap_or(0)))
            .collect();
        errors.extend(SERVER_ERRORS.iter().copied().zip(c.server_errors.iter().copied()));
        let slot = |i: usize| c.durations.get(i).copied().unwrap_or(0);
        let mut durations: Vec<(f64, u64)> =
            DURATION_BOUNDS.iter().enumerate().map(|(i, b)| (*b as f64 / 1e9, slot(i))).collect();
        durations.push((f64::INFINITY, slot(DURATION_BOUNDS.len())));
        // The first bucket: every request (counted when parsed, so the scrape's own request is
        // in it, answered at once) less those in the others.
        let slower: u64 = durations.iter().map(|d| d.1).sum();
        durations[0].1 = c.requests.saturating_sub(slower);
        let u = ioscale_sys::cpu::usage().unwrap_or_default();
        let (user, system) = (u.user, u.system);
        Snapshot {
            mechanism: s.mechanism.name(),
            workers: s.workers.len(),
            uptime_s: s.started.elapsed().as_secs_f64(),
            open,
            accepted: c.accepted,
            closed: c.closed,
            requests: c.requests,
            responses: [2, 3, 4, 5].map(|k| c.class(k)),
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
            dispatch,
            completion,
            errors,
            listener_notices: c.listener_notices,
            accept_eagain: c.accept_eagain,
            durations,
            duration_sum_s: c.duration_sum_ns as f64 / 1e9,
            log_lines: c.log_lines,
            log_dropped: c.log_dropped,
            cpu_user_s: user.as_secs_f64(),
            cpu_system_s: system.as_secs_f64(),
        }
    }

    /// The exposition text, ending with `# EOF`.
    pub fn encode(self) -> String {
        let mut registry = Registry::with_prefix("ioscale");
        registry.register_collector(Box::new(self));
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

type Fmt = Result<(), std::fmt::Error>;

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, unit: Option<&Unit>, v: u64) -> Fmt {
    ConstCounter::new(v).encode(e.encode_descriptor(name, help, unit, MetricType::Counter)?)
}

fn gauge<N: prometheus_client::encoding::EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: N,
) -> Fmt {
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, unit, MetricType::Gauge)?)
}

fn labelled<N: prometheus_client::encoding::EncodeCounterValue + Copy>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    label: &str,
    values: &[(&str, N)],
) -> Fmt {
    let mut m = e.encode_descriptor(name, help, unit, MetricType::Counter)?;
    for (l, v) in values {
        let labels = [(label, *l)];
        ConstCounter::new(*v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> Fmt {
        let e = &mut e;
        let info = [("mechanism", self.mechanism)];
        let m = e.encode_descriptor("server", "The engine serving", None, MetricType::Info)?;
        let mut m = m;
        m.encode_info(&info)?;
        gauge(e, "workers", "Worker event loops", None, self.workers as i64)?;
        gauge(e, "uptime", "Time since the server started", Some(&Unit::Seconds), self.uptime_s)?;
        gauge(e, "connections_open", "Connections open now", None, self.open as i64)?;
        counter(e, "connections_accepted", "Connections accepted", None, self.accepted)?;
        counter(e, "connections_closed", "Connections closed", None, self.closed)?;
        counter(e, "requests", "Requests parsed", None, self.requests)?;
        let classes = ["2xx", "3xx", "4xx", "5xx"];
        let responses: Vec<(&str, u64)> = classes.into_iter().zip(self.responses).collect();
        labelled(e, "responses", "Responses by status class", None, "class", &responses)?;
        let bytes = [("in", self.bytes_in), ("out", self.bytes_out)];
        labelled(e, "transfer", "Bytes read and sent", Some(&Unit::Bytes), "direction", &bytes)?;
        labelled(e, "dispatch", "The dispatcher's counters", None, "counter", &self.dispatch)?;
        if !self.completion.is_empty() {
            let help = "The completion engine's ring counters";
            labelled(e, "completion", help, None, "counter", &self.completion)?;
        }
        labelled(e, "errors", "Errors by kind (HTTP and server)", None, "kind", &self.errors)?;
        let help = "Wakeups that reported the listener ready";
        counter(e, "listener_notices", help, None, self.listener_notices)?;
        let help = "Listener notices whose first accept found nothing (another worker took it)";
        counter(e, "accept_eagain", help, None, self.accept_eagain)?;
        let help = "Access-log lines written";
        counter(e, "access_log_lines", help, None, self.log_lines)?;
        let help = "Access-log lines lost because a write failed";
        counter(e, "access_log_dropped", help, None, self.log_dropped)?;
        let cpu = [("user", self.cpu_user_s), ("system", self.cpu_system_s)];
        labelled(e, "cpu", "CPU time of the process", Some(&Unit::Seconds), "mode", &cpu)?;
        let help = "Request duration, from the loop pass in which its head began to arrive to the \
                    pass in which its response was written (per-wait clock: 0 within one pass)";
        let count = self.durations.iter().map(|d| d.1).sum();
        let mut m = e.encode_descriptor(
            "request_duration",
            help,
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        m.encode_histogram::<NoLabelSet>(self.duration_sum_s, count, &self.durations, None)
    }
}
