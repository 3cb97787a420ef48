//! `GET /.ioscale/metrics`: the workers' counters for Prometheus, in the OpenMetrics 1.0 text
//! format, or in the Prometheus text format 0.0.4 when the scraper asks for it with
//! `Accept: text/plain;version=0.0.4` ([`Format::negotiate`]).
//!
//! Nothing is added to the request path: a scrape reads the per-worker atomics of
//! [`crate::stats`] that the stats endpoint already reads, builds the families ([`Snapshot`]) and
//! writes them in the format asked for. One family per counter, each with its own help and unit
//! (`ioscale_dispatch_signals_total`, `ioscale_dispatch_overflows_total`, ...), labels only where
//! the values are parts of one whole (responses by `code`, timeouts by `phase`, HTTP errors by
//! `kind`); the standard `process_*` families of the official clients; the request-duration
//! histogram from 50 µs with its real sum. Both formats are checked by the Prometheus project's
//! own parsers: `promtool check metrics` and the Python client's two parsers
//! (`crates/server/tests/observability.rs`).

use crate::stats::{Counts, ServerError, Shared};
use ioscale_http::ErrorKind;
use std::fmt::Write as _;

/// The OpenMetrics 1.0 content type (what Prometheus prefers).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Prometheus text format 0.0.4 content type.
pub const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition formats.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (counters' families without `_total`, `# UNIT`, `# EOF`).
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (no `# EOF`, info families as gauges).
    Text004,
}

impl Format {
    /// The format the raw request `head` asks for in its `Accept` header(s): the Prometheus
    /// text format when `text/plain` (version 0.0.4 or none) is preferred — by a higher `q`,
    /// or an equal one against only a wildcard — to `application/openmetrics-text`;
    /// OpenMetrics otherwise (no `Accept`, `*/*`, or what Prometheus itself sends).
    pub fn negotiate(head: &[u8]) -> Format {
        // (q, named explicitly) of the best range that accepts each format.
        let (mut om, mut text) = ((0.0f32, false), (0.0f32, false));
        let mut any = false;
        for line in crate::access_log::header_lines(head) {
            let Some(value) = strip_name(line, b"accept:") else { continue };
            any = true;
            for range in String::from_utf8_lossy(value).split(',') {
                let mut parts = range.split(';');
                let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
                let (mut q, mut version) = (1.0f32, None);
                for p in parts {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    match k.trim().to_ascii_lowercase().as_str() {
                        "q" => q = v.trim().parse().unwrap_or(0.0),
                        "version" => version = Some(v.trim().trim_matches('"').to_string()),
                        _ => {}
                    }
                }
                let better = |cur: (f32, bool), new: (f32, bool)| {
                    if new.0 > cur.0 || (new.0 == cur.0 && new.1 && !cur.1) {
                        new
                    } else {
                        cur
                    }
                };
                match media.as_str() {
                    "application/openmetrics-text" => om = better(om, (q, true)),
                    "text/plain" if matches!(version.as_deref(), None | Some("0.0.4")) => {
                        text = better(text, (q, true));
                    }
                    "*/*" | "application/*" => om = better(om, (q, false)),
                    _ => {}
                }
            }
        }
        let text_wins = text.0 > 0.0 && (text.0 > om.0 || (text.0 == om.0 && !om.1));
        if any && text_wins {
            Format::Text004
        } else {
            Format::OpenMetrics
        }
    }

    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS,
            Format::Text004 => TEXT_004,
        }
    }
}

/// The value after a header's name (`name` lower-case, with its colon), trimmed.
fn strip_name<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    (line.len() >= name.len() && line[..name.len()].eq_ignore_ascii_case(name))
        .then(|| line[name.len()..].trim_ascii())
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Type {
    Counter,
    Gauge,
    Info,
    Histogram,
}

#[derive(Clone, Debug)]
enum Value {
    Int(u64),
    Float(f64),
    /// Cumulative buckets (upper bound, count) ending with +Inf, and the sum.
    Histogram(Vec<(f64, u64)>, f64),
}

#[derive(Clone, Debug)]
struct Sample {
    labels: Vec<(&'static str, String)>,
    value: Value,
}

/// One metric family: its name (with its unit's suffix; a counter's without `_total`), help,
/// unit, type and samples.
#[derive(Clone, Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    unit: Option<&'static str>,
    kind: Type,
    samples: Vec<Sample>,
}

/// Every family, read at one scrape.
#[derive(Clone, Debug)]
pub struct Snapshot {
    families: Vec<Family>,
}

impl Snapshot {
    fn add(&mut self, name: &'static str, help: &'static str, kind: Type, value: Value) {
        let unit = ["seconds", "bytes"].into_iter().find(|u| name.ends_with(&format!("_{u}")));
        self.families.push(Family {
            name,
            help,
            unit,
            kind,
            samples: vec![Sample { labels: Vec::new(), value }],
        });
    }

    fn counter(&mut self, name: &'static str, help: &'static str, v: u64) {
        self.add(name, help, Type::Counter, Value::Int(v));
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, v: Value) {
        self.add(name, help, Type::Gauge, v);
    }

    fn labelled(
        &mut self,
        name: &'static str,
        help: &'static str,
        label: &'static str,
        values: impl IntoIterator<Item = (String, u64)>,
    ) {
        let samples = values
            .into_iter()
            .map(|(l, v)| Sample { labels: vec![(label, l)], value: Value::Int(v) })
            .collect();
        self.families.push(Family { name, help, unit: None, kind: Type::Counter, samples });
    }

    /// Reads the counters of every worker and of the process (`open`: connections open now).
    pub fn take(s: &Shared, open: u64) -> Snapshot {
        let c = s.counts();
        let mut m = Snapshot { families: Vec::with_capacity(64) };
        m.families.push(Family {
            name: "ioscale_server",
            help: "The engine serving (--dispatch)",
            unit: None,
            kind: Type::Info,
            samples: vec![Sample {
                labels: vec![("mechanism", s.mechanism.name().to_string())],
                value: Value::Int(1),
            }],
        });
        m.gauge("ioscale_workers", "Worker event loops", Value::Int(s.workers.len() as u64));
        let up = s.started.elapsed().as_secs_f64();
        m.gauge("ioscale_uptime_seconds", "Time since the server started", Value::Float(up));
        m.gauge("ioscale_connections_open", "Connections open now", Value::Int(open));
        m.counter("ioscale_connections_accepted", "Connections accepted", c.accepted);
        m.counter("ioscale_connections_closed", "Connections closed", c.closed);
        m.counter(
            "ioscale_requests",
            "Requests parsed (requests refused before they parse are in ioscale_http_errors)",
            c.requests,
        );
        let codes = c.status.iter().map(|(code, n)| (code.to_string(), *n));
        m.labelled("ioscale_responses", "Responses sent, by status code", "code", codes);
        m.counter("ioscale_received_bytes", "Bytes read from clients", c.bytes_in);
        m.counter("ioscale_sent_bytes", "Bytes sent to clients, sendfile included", c.bytes_out);
        dispatch_families(&mut m, &c);
        if s.mechanism.is_completion() {
            completion_families(&mut m, &c);
        }
        error_families(&mut m, &c);
        m.counter(
            "ioscale_listener_notices",
            "Wakeups that reported the listener ready (the thundering herd seen from user space)",
            c.listener_notices,
        );
        m.counter(
            "ioscale_accept_eagain",
            "Listener notices whose first accept found nothing: another worker took the connection",
            c.accept_eagain,
        );
        m.counter("ioscale_access_log_lines", "Access-log lines written", c.log_lines);
        m.counter(
            "ioscale_access_log_dropped_lines",
            "Access-log lines lost because a write failed",
            c.log_dropped,
        );
        let u = ioscale_sys::cpu::usage().unwrap_or_default();
        let cpu = [("user", u.user), ("system", u.system)];
        m.families.push(Family {
            name: "ioscale_cpu_seconds",
            help: "CPU time of the process, by mode (process_cpu_seconds_total is their sum)",
            unit: Some("seconds"),
            kind: Type::Counter,
            samples: cpu
                .iter()
                .map(|(mode, d)| Sample {
                    labels: vec![("mode", (*mode).to_string())],
                    value: Value::Float(d.as_secs_f64()),
                })
                .collect(),
        });
        let (buckets, sum) = c.duration_buckets(s.ticks_per_s);
        m.add(
            "ioscale_request_duration_seconds",
            "Time a request spent in the server: from the start of the loop pass in which its head \
             was complete (of its first byte for a head that took several passes) until its \
             response was ready to send",
            Type::Histogram,
            Value::Histogram(buckets, sum),
        );
        process_families(&mut m, u.total().as_secs_f64());
        m
    }

    /// The exposition text in `format`.
    pub fn encode(&self, format: Format) -> String {
        let mut out = String::with_capacity(16 * 1024);
        for f in &self.families {
            encode_family(&mut out, f, format);
        }
        if format == Format::OpenMetrics {
            out.push_str("# EOF\n");
        }
        out
    }
}

/// The dispatcher's counters, one family each (the names of [`crate::stats::DISPATCH_NAMES`]).
fn dispatch_families(m: &mut Snapshot, c: &Counts) {
    let d = |name: &str| c.dispatch(name);
    m.counter(
        "ioscale_dispatch_waits",
        "Calls that waited for events: select, poll, epoll_wait, sigtimedwait, a signalfd read, \
         io_uring_enter (uring-completion: every io_uring_enter)",
        d("wait_calls"),
    );
    m.counter(
        "ioscale_dispatch_events",
        "Events the dispatcher returned (uring-completion: completions)",
        d("events"),
    );
    m.counter(
        "ioscale_dispatch_interest_syscalls",
        "System calls that changed the interest set: epoll_ctl, fcntl, /dev/poll writes, ring \
         submissions (select and poll keep it in user space: 0)",
        d("interest_syscalls"),
    );
    m.counter("ioscale_dispatch_signals", "RT signals dequeued (rtsig*, hybrid)", d("signals"));
    m.counter(
        "ioscale_dispatch_dequeue_calls",
        "System calls that dequeued RT signals to dispatch them: sigtimedwait or signalfd reads \
         (rtsig --rtsig-recovery fallback: also its attempts to go back to signals)",
        d("dequeue_calls"),
    );
    m.counter(
        "ioscale_dispatch_flush_reads",
        "Reads that drained the RT-signal queue after an overflow: stale notices dropped, not \
         dispatched",
        d("flush_reads"),
    );
    m.counter(
        "ioscale_dispatch_overflows",
        "RT-signal queue overflows: dequeues that ended in SIGIO (the kernel could not queue a \
         notice), or completion-queue overflows",
        d("overflows"),
    );
    m.counter(
        "ioscale_dispatch_recoveries",
        "Recoveries from an RT-signal queue overflow: a full poll of the interest set",
        d("recoveries"),
    );
    m.counter(
        "ioscale_dispatch_mode_switches",
        "Switches between RT signals and epoll (hybrid)",
        d("mode_switches"),
    );
    m.counter(
        "ioscale_dispatch_interrupted_waits",
        "Waits a signal interrupted (EINTR) before any event",
        d("interrupted"),
    );
    m.counter(
        "ioscale_dispatch_fallback_scans",
        "rtsig with --rtsig-recovery fallback: scans of the whole interest set made while serving \
         from the fallback after an overflow",
        d("fallback_scans"),
    );
    m.add(
        "ioscale_dispatch_fallback_seconds",
        "rtsig with --rtsig-recovery fallback: time served from the fallback after an overflow",
        Type::Counter,
        Value::Float(d("fallback_ns") as f64 / 1e9),
    );
}

/// The completion engine's ring counters, one family each.
fn completion_families(m: &mut Snapshot, c: &Counts) {
    let v = |i: usize| c.completion.get(i).copied().unwrap_or(0);
    m.counter("ioscale_uring_submissions", "Operations submitted to the io_uring", v(0));
    m.counter("ioscale_uring_completions", "Completions reaped from the io_uring", v(1));
    m.counter("ioscale_uring_enter_calls", "io_uring_enter system calls", v(2));
    m.counter(
        "ioscale_uring_enobufs",
        "Receives that found the provided-buffer ring empty (ENOBUFS; re-armed, nothing lost)",
        v(3),
    );
    m.counter("ioscale_uring_cq_overflows", "Completion-queue overflows", v(4));
    m.counter(
        "ioscale_uring_short_sends",
        "Sends the kernel finished short (the rest sent again)",
        v(5),
    );
}

/// The HTTP errors by kind, and each server failure in its own family.
fn error_families(m: &mut Snapshot, c: &Counts) {
    let http = ErrorKind::ALL
        .iter()
        .map(|k| (k.name().to_string(), c.http_errors.get(k.index()).copied().unwrap_or(0)));
    m.labelled(
        "ioscale_http_errors",
        "Requests answered with an HTTP error, by kind (their statuses are in ioscale_responses)",
        "kind",
        http,
    );
    let e = |x: ServerError| c.server_errors.get(x as usize).copied().unwrap_or(0);
    let phases = [
        ("header", ServerError::TimeoutHeader),
        ("idle", ServerError::TimeoutIdle),
        ("send", ServerError::TimeoutSend),
    ];
    m.labelled(
        "ioscale_timeouts",
        "Connections closed by a timeout, by phase: header (the head did not arrive in time: \
         408), idle (keep-alive), send (the client stopped reading)",
        "phase",
        phases.iter().map(|(p, x)| ((*p).to_string(), e(*x))),
    );
    let shed = [("emfile", ServerError::ShedEmfile), ("max_conns", ServerError::ShedMaxConns)];
    m.labelled(
        "ioscale_connections_shed",
        "Connections accepted and closed at once: no descriptor left (emfile) or --max-conns \
         reached (max_conns)",
        "reason",
        shed.iter().map(|(r, x)| ((*r).to_string(), e(*x))),
    );
    m.counter("ioscale_connection_resets", "Connections the client reset", e(ServerError::Reset));
    m.counter("ioscale_io_errors", "Connections closed on another I/O error", e(ServerError::Io));
    m.counter(
        "ioscale_register_failures",
        "Connections the dispatcher could not register (closed at once)",
        e(ServerError::RegisterFailed),
    );
    m.counter(
        "ioscale_accept_failures",
        "Accepts that failed for a reason other than a lack of descriptors",
        e(ServerError::AcceptFailed),
    );
    m.counter(
        "ioscale_file_unavailable",
        "Requests answered 503 because their file could not be opened",
        e(ServerError::Unavailable),
    );
}

/// The standard `process_*` families, as the official clients export them (from `/proc`).
fn process_families(m: &mut Snapshot, cpu_s: f64) {
    m.add(
        "process_cpu_seconds",
        "Total user and system CPU time spent in seconds",
        Type::Counter,
        Value::Float(cpu_s),
    );
    let page = crate::sys::page_size();
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let mut pages = statm.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
    let (vm, rss) = (pages.next().unwrap_or(0) * page, pages.next().unwrap_or(0) * page);
    m.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes", Value::Int(vm));
    m.gauge("process_resident_memory_bytes", "Resident memory size in bytes", Value::Int(rss));
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    m.gauge("process_open_fds", "Number of open file descriptors", Value::Int(fds));
    let max = ioscale_sys::limits::nofile().map_or(0, |(soft, _)| soft);
    m.gauge("process_max_fds", "Maximum number of open file descriptors", Value::Int(max));
    if let Some(start) = process_start_time() {
        m.gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            Value::Float(start),
        );
    }
}

/// The process's start time in seconds since the epoch: the boot time (`btime` of
/// `/proc/stat`) plus the process's start in clock ticks after boot (field 22 of
/// `/proc/self/stat`).
fn process_start_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name is in parentheses and may hold spaces: count fields after its end.
    let after = &stat[stat.rfind(')')? + 1..];
    let ticks: f64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: f64 = boot.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
    Some(btime + ticks / crate::sys::clock_ticks() as f64)
}

/// A number as the Python client writes it (its OpenMetrics parser wants `le` values in that
/// form): `+Inf`, `1.0`, `0.25`, `5e-05`.
fn number(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v.is_nan() {
        return "NaN".into();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        // Rust's "5e-5" is Python's "5e-05".
        let s = format!("{v:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
        return format!("{mant}e{sign}{digits:0>2}");
    }
    if v.fract() == 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// Escapes a label value (both formats) or, with `help`, a help text (the 0.0.4 format leaves
/// quotes alone there).
fn escape(out: &mut String, s: &str, quotes: bool) {
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

fn labels(out: &mut String, labels: &[(&str, String)], extra: Option<(&str, &str)>) {
    if labels.is_empty() && extra.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().map(|(k, v)| (*k, v.as_str())).chain(extra) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        escape(out, v, true);
        out.push('"');
    }
    out.push('}');
}

fn encode_family(out: &mut String, f: &Family, format: Format) {
    let om = format == Format::OpenMetrics;
    // The name on the TYPE and HELP lines: OpenMetrics names the family, 0.0.4 the samples.
    let (meta_name, type_name) = match (f.kind, om) {
        (Type::Counter, false) => (format!("{}_total", f.name), "counter"),
        (Type::Info, false) => (format!("{}_info", f.name), "gauge"),
        (Type::Counter, true) => (f.name.to_string(), "counter"),
        (Type::Info, true) => (f.name.to_string(), "info"),
        (Type::Gauge, _) => (f.name.to_string(), "gauge"),
        (Type::Histogram, _) => (f.name.to_string(), "histogram"),
    };
    let _ = writeln!(out, "# HELP {meta_name} {}", {
        let mut h = String::new();
        escape(&mut h, f.help, om);
        h
    });
    let _ = writeln!(out, "# TYPE {meta_name} {type_name}");
    if let (true, Some(unit)) = (om, f.unit) {
        let _ = writeln!(out, "# UNIT {meta_name} {unit}");
    }
    let sample_name = match f.kind {
        Type::Counter => format!("{}_total", f.name),
        Type::Info => format!("{}_info", f.name),
        _ => f.name.to_string(),
    };
    for s in &f.samples {
        match &s.value {
            Value::Int(v) => {
                out.push_str(&sample_name);
                labels(out, &s.labels, None);
                let _ = writeln!(out, " {v}");
            }
            Value::Float(v) => {
                out.push_str(&sample_name);
                labels(out, &s.labels, None);
                let _ = writeln!(out, " {}", number(*v));
            }
            Value::Histogram(buckets, sum) => {
                for (le, n) in buckets {
                    let _ = write!(out, "{}_bucket", f.name);
                    labels(out, &s.labels, Some(("le", &number(*le))));
                    let _ = writeln!(out, " {n}");
                }
                let count = buckets.last().map_or(0, |b| b.1);
                let _ = write!(out, "{}_sum", f.name);
                labels(out, &s.labels, None);
                let _ = writeln!(out, " {}", number(*sum));
                let _ = write!(out, "{}_count", f.name);
                labels(out, &s.labels, None);
                let _ = writeln!(out, " {count}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_the_python_client_writes_them() {
        for (v, s) in [
            (5e-5, "5e-05"),
            (1e-4, "0.0001"),
            (2.5e-4, "0.00025"),
            (1.0, "1.0"),
            (10.0, "10.0"),
            (2.5, "2.5"),
            (0.0, "0.0"),
            (f64::INFINITY, "+Inf"),
            (123.456, "123.456"),
            (1e20, "1e+20"),
        ] {
            assert_eq!(number(v), s, "{v}");
        }
    }

    #[test]
    fn negotiation() {
        let f = |accept: &str| {
            Format::negotiate(format!("GET / HTTP/1.1\r\nHost: t\r\n{accept}\r\n\r\n").as_bytes())
        };
        assert_eq!(f(""), Format::OpenMetrics);
        assert_eq!(f("Accept: */*"), Format::OpenMetrics);
        assert_eq!(f("Accept: text/plain;version=0.0.4"), Format::Text004);
        assert_eq!(f("accept: text/plain; version=0.0.4; q=0.5"), Format::Text004);
        assert_eq!(f("Accept: text/plain"), Format::Text004);
        assert_eq!(f("Accept: text/plain;version=0.0.4, */*;q=0.1"), Format::Text004);
        assert_eq!(f("Accept: text/plain;version=0.0.4,*/*"), Format::Text004);
        assert_eq!(f("Accept: text/plain;version=1.0"), Format::OpenMetrics);
        // What Prometheus 2.x sends.
        let prom = "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(f(prom), Format::OpenMetrics);
        assert_eq!(
            f("Accept: application/openmetrics-text;q=0.2, text/plain;version=0.0.4;q=0.9"),
            Format::Text004
        );
        assert_eq!(f("Accept: text/html"), Format::OpenMetrics);
    }
}
