//! `ioscale load`: arguments → a validated [`Plan`] → a run → summary, JSON, series.
//!
//! | exit code | meaning |
//! | --- | --- |
//! | 0 | the run kept its plan (VALID) |
//! | 1 | the run could not be made (e.g. nothing listens at the target) |
//! | 2 | a bad argument |
//! | 3 | the run finished but is INVALID: the generator could not keep its schedule or hold its connections |
//! | 4 | the run finished but replies had a status `--expect` did not ask for (the record is INVALID too) |

use crate::plan::{self, Arrival, Mode, Plan};
use crate::request::{self, RequestSpec};
use ioscale_dispatch::Mechanism;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `ioscale load`.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Target URLs, http://HOST:PORT/PATH (append @W for a weight; chosen round-robin by weight).
    #[arg(required = true, value_parser = |s: &str| plan::parse_target(s).map_err(|e| e.0))]
    pub urls: Vec<plan::Target>,
    /// Open loop: new sessions (connections) per second.
    #[arg(long, conflicts_with_all = ["request_rate", "peak"])]
    pub rate: Option<f64>,
    /// Requests per session, one after another (httperf's --num-calls).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub calls: u32,
    /// Open loop: requests per second over a pool of persistent connections (--connections).
    #[arg(long, conflicts_with = "peak")]
    pub request_rate: Option<f64>,
    /// Closed loop: every connection sends its next request as soon as a reply arrives (like wrk).
    #[arg(long)]
    pub peak: bool,
    /// Connections of the pool (--request-rate) or of the closed loop (--peak).
    #[arg(short = 'c', long, default_value_t = 50)]
    pub connections: usize,
    /// Arrival spacing: fixed or poisson.
    #[arg(long, default_value = "fixed", value_parser = ["fixed", "poisson"])]
    pub arrival: String,
    /// How long to measure (after the warm-up), e.g. 10s.
    #[arg(short = 'd', long, value_parser = ioscale_flags::duration)]
    pub duration: Option<Duration>,
    /// Stop after this many sessions (or requests) have started.
    #[arg(long)]
    pub sessions: Option<u64>,
    /// Stop after exactly N requests of the active load (warm-up included; with --rate, one
    /// request per session).
    #[arg(short = 'n', long, value_name = "N")]
    pub requests: Option<u64>,
    /// Time at the start excluded from the statistics.
    #[arg(long, default_value = "0s", value_parser = ioscale_flags::duration)]
    pub warmup: Duration,
    /// When the warm-up starts counting: at the start, or once every idle and inactive
    /// connection is established (waiting at most 5 s + 1 s per 1,000 of them; later than
    /// that, the warm-up starts anyway and the run is INVALID if they come up only after
    /// measuring began). The active load runs from the start either way.
    #[arg(long, default_value = "start", value_parser = ["start", "held"])]
    pub warmup_from: String,
    /// Write the run's events to stderr as they happen, one line each:
    /// `ioscale-load-event {"event":NAME,"t_s":SECONDS}` for `held` (every idle and inactive
    /// connection established, the first time), `window_start` and `window_end` (docs/load-json.md).
    #[arg(long)]
    pub events: bool,
    /// The status codes a reply should have: classes (2xx) and codes (200), comma-separated.
    /// Replies with others are counted apart; the run then says so on a line of its own, is
    /// INVALID and exits with code 4.
    #[arg(long, default_value = crate::expect::DEFAULT, value_parser = |s: &str| crate::expect::parse(s).map_err(|e| e.0))]
    pub expect: crate::expect::Expect,
    /// Inactive connections: each sends an incomplete request and holds; reopened when closed.
    #[arg(long, default_value_t = 0)]
    pub inactive: usize,
    /// Idle persistent connections, each sending one request every --idle-period.
    #[arg(long, default_value_t = 0)]
    pub idle: usize,
    /// Period of an idle connection's requests (jittered ±10%).
    #[arg(long, default_value = "1s", value_parser = ioscale_flags::duration)]
    pub idle_period: Duration,
    /// Connect and response timeout, each phase on its own. A connection past it is counted
    /// (connect or response timeout) and reset, which frees its descriptor and port at once.
    /// The 5 s default lets a connection whose SYN a full accept queue dropped be retried
    /// twice by the kernel (after 1 s and 3 s) before it counts; wrk uses 2 s, httperf none.
    #[arg(long, default_value = "5s", value_parser = ioscale_flags::nonzero_duration)]
    pub timeout: Duration,
    /// Source addresses, used in turn: a count N (127.0.0.1..N) or a list of 127.x.y.z.
    /// Default for loopback targets: 4 (each address has its own ~28,000 ephemeral ports).
    #[arg(long, value_parser = |s: &str| plan::parse_sources(s).map_err(|e| e.0))]
    pub source_addrs: Option<std::vec::Vec<std::net::Ipv4Addr>>,
    /// Event-dispatch mechanism of the generator itself.
    #[arg(long, default_value = "epoll", value_parser = ioscale_flags::readiness_mechanism)]
    pub dispatch: Mechanism,
    /// Generator threads, each its own event loop pinned to its own core: a count, or auto (the
    /// CPUs this process may run on). Arrivals are interleaved between them and connections
    /// divided; one summary and one record (a per-thread breakdown under `threads`).
    #[arg(short = 't', long, default_value = "1", value_parser = |s: &str| plan::parse_threads(s).map_err(|e| e.0))]
    pub threads: usize,
    /// Print the JSON record (docs/load-json.md) instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// After the summary, a table of the response time's percentiles (50 to 99.99% and max),
    /// from the intended send time (coordinated omission corrected).
    #[arg(long)]
    pub latency: bool,
    /// Write a per-second time series (JSON lines) to this file.
    #[arg(long)]
    pub series: Option<PathBuf>,
    /// Random seed (Poisson arrivals, idle phases).
    #[arg(long, default_value_t = 0x9e37_79b9_7f4a_7c15)]
    pub seed: u64,
    // --- The request (crate::request) and the HdrHistogram log (crate::hdrlog). ---
    /// Extra request header 'Name: value' (repeatable; a Host or User-Agent replaces the default).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = |s: &str| request::parse_header(s).map_err(|e| e.0))]
    pub headers: Vec<(String, String)>,
    /// Request method (GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE).
    #[arg(short = 'm', long, default_value = "GET", value_parser = |s: &str| request::parse_method(s).map_err(|e| e.0))]
    pub method: String,
    /// Request body (sent with Content-Length).
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Request body read from this file (sent with Content-Length).
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// Send HTTP/1.0 requests (the server then closes after each reply unless you add -H 'Connection: keep-alive').
    #[arg(long = "http1.0")]
    pub http10: bool,
    /// Requests in flight per connection (HTTP pipelining, like wrk's pipeline.lua); 1 = none.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=request::MAX_PIPELINE as i64))]
    pub pipeline: u32,
    /// Write per-interval latency histograms (µs) to FILE in the HdrHistogram interval log format
    /// (one process's; with several hosts give it to each --segment run instead).
    #[arg(long, value_name = "FILE", conflicts_with = "hosts")]
    pub hdr_log: Option<PathBuf>,
    /// Interval of --hdr-log (at least 1ms).
    #[arg(long, default_value = "1s", value_parser = ioscale_flags::duration)]
    pub hdr_interval: Duration,
    /// https targets: trust only the PEM CA certificates in FILE (instead of the platform's roots).
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub cacert: Option<PathBuf>,
    /// https targets: accept any certificate (self-signed, wrong name); handshake signatures are still checked.
    #[arg(long, short = 'k')]
    pub insecure: bool,

    // Several hosts, one plan (docs/multihost.md).
    /// Run slice I of N (1-based) of the global arrival plan: arrivals I, I+N, I+2N, ...;
    /// idle, inactive and pool connections divided among the N (remainders to the first).
    #[arg(long, value_name = "I/N", help_heading = "Multi-host", value_parser = |s: &str| plan::parse_segment(s).map_err(|e| e.0))]
    pub segment: Option<(u64, u64)>,
    /// Start the arrival clock at this wall-clock instant: unix seconds (1763884800.25) or RFC
    /// 3339 UTC (2025-11-23T08:00:00.25Z); the populations are set up before it.
    #[arg(long, value_name = "T", help_heading = "Multi-host", value_parser = |s: &str| plan::parse_start_at(s).map_err(|e| e.0))]
    pub start_at: Option<std::time::SystemTime>,
    /// Run one segment per host (comma-separated) through --remote-cmd and merge their records.
    #[arg(long, value_name = "H1,H2,...", help_heading = "Multi-host", value_delimiter = ',', conflicts_with_all = ["segment", "series", "coordinated"])]
    pub hosts: Vec<String>,
    /// Command that starts ioscale on a host ({host} is replaced); `load`, these load
    /// arguments and --segment I/N --start-at T --json --coordinated are appended.
    #[arg(
        long,
        value_name = "TEMPLATE",
        help_heading = "Multi-host",
        default_value = "ssh {host} ioscale"
    )]
    pub remote_cmd: String,
    /// With --hosts and no --start-at: start this long after launch (time for every host to
    /// connect and set up its populations).
    #[arg(long, value_name = "DURATION", help_heading = "Multi-host", default_value = "5s", value_parser = ioscale_flags::duration)]
    pub start_in: Duration,
    /// Run as a coordinated segment: stop when stdin closes (the coordinator, or its ssh, ended).
    #[arg(long, help_heading = "Multi-host")]
    pub coordinated: bool,
}

impl LoadArgs {
    /// The request these arguments describe (the body file is read here, once).
    pub fn request(&self) -> Result<RequestSpec, plan::PlanError> {
        let body = match (&self.body, &self.body_file) {
            (Some(b), _) => Some(b.as_bytes().to_vec()),
            (None, Some(f)) => Some(std::fs::read(f).map_err(|e| {
                plan::PlanError(format!("cannot read the body file {}: {e}", f.display()))
            })?),
            (None, None) => None,
        };
        let size = body.as_ref().map_or(0, Vec::len);
        if size.saturating_mul(self.pipeline as usize) > request::MAX_BATCH {
            return Err(plan::PlanError(format!(
                "a {size}-byte body times --pipeline {} exceeds the {} MiB the generator keeps encoded; use a smaller body or depth",
                self.pipeline,
                request::MAX_BATCH >> 20
            )));
        }
        if self.http10
            && self.pipeline > 1
            && !self.headers.iter().any(|(n, v)| {
                n.eq_ignore_ascii_case("connection")
                    && v.to_ascii_lowercase().contains("keep-alive")
            })
        {
            return Err(plan::PlanError(format!(
                "--pipeline {} with --http1.0 needs -H 'Connection: keep-alive' (an HTTP/1.0 server closes after the first reply)",
                self.pipeline
            )));
        }
        Ok(RequestSpec {
            method: self.method.clone(),
            headers: self.headers.clone(),
            body,
            http10: self.http10,
            pipeline: self.pipeline,
        })
    }

    /// The plan these arguments describe.
    pub fn plan(&self) -> Result<Plan, plan::PlanError> {
        let mode = if self.peak {
            Mode::Peak { connections: self.connections }
        } else if let Some(rate) = self.request_rate {
            Mode::RequestRate { rate, connections: self.connections }
        } else if let Some(rate) = self.rate {
            Mode::Sessions { rate, calls: self.calls }
        } else {
            Mode::None
        };
        if mode == Mode::None && self.idle == 0 && self.inactive == 0 {
            return Err(plan::PlanError(
                "nothing to send: give --rate, --request-rate or --peak (or --idle / --inactive)"
                    .into(),
            ));
        }
        let p = Plan {
            targets: self.urls.clone(),
            mode,
            arrival: if self.arrival == "poisson" { Arrival::Poisson } else { Arrival::Fixed },
            duration: self.duration,
            sessions: self.sessions,
            requests: self.requests,
            warmup: self.warmup,
            inactive: self.inactive,
            idle: self.idle,
            idle_period: self.idle_period,
            timeout: self.timeout,
            sources: self.source_addrs.clone().unwrap_or_default(),
            dispatch: self.dispatch,
            seed: self.seed,
            request: self.request()?,
            tls: crate::tls::TlsOptions { cacert: self.cacert.clone(), insecure: self.insecure },
            segment: plan::Segment { start_at: self.start_at, ..Default::default() },
            warmup_from: if self.warmup_from == "held" {
                plan::WarmupFrom::Held
            } else {
                plan::WarmupFrom::Start
            },
            events: self.events,
            expect: self.expect.clone(),
            threads: self.threads,
        };
        p.validate()?;
        if p.tls.cacert.is_some() {
            // A CA file that cannot be used is a bad argument (exit 2), found before any run.
            crate::tls::Tls::new(&p.tls).map_err(plan::PlanError)?;
        }
        match self.segment {
            Some((i, n)) => p.segment(i, n),
            None => Ok(p),
        }
    }
}

/// Runs `ioscale load`; returns the exit code.
pub fn run(a: &LoadArgs) -> ExitCode {
    let plan = match a.plan() {
        Ok(p) => p,
        Err(e) => return bad(&e.0),
    };
    if let Some(late) = a.start_at.and_then(|t| t.elapsed().ok()) {
        if late > Duration::from_secs(1) {
            return bad(&format!(
                "--start-at is {:.1} s in the past: give a future instant",
                late.as_secs_f64()
            ));
        }
    }
    if !a.hosts.is_empty() {
        return run_hosts(a, &plan);
    }
    if a.coordinated {
        crate::segment::follow_stdin();
    }
    let mut outputs = match Outputs::open(a) {
        Ok(o) => o,
        Err(e) => return bad(&e),
    };
    let bar = progress_bar(&plan);
    let series: Option<&mut dyn Write> = outputs.series.as_mut().map(|f| f as &mut dyn Write);
    let result = crate::engine::run_with_log(
        &plan,
        |secs, line| {
            if let Some(b) = &bar {
                b.set_position(secs as u64);
                b.set_message(line.to_string());
            }
        },
        series,
        outputs.hdr_log.as_mut(),
    );
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let log_error = outputs.finish();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ioscale load: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(code) = print(a, &report.record, &report.summary) {
        return code;
    }
    if let (Some(e), Some(p)) = (log_error, &a.hdr_log) {
        eprintln!("ioscale load: the HdrHistogram log {} is incomplete: {e}", p.display());
        return ExitCode::from(1);
    }
    if report.valid {
        ExitCode::SUCCESS
    } else {
        if a.json {
            eprintln!("ioscale load: INVALID: {}", report.record["invalid_reasons"]);
        }
        invalid_code(&report.record)
    }
}

/// The exit code of an INVALID record: 4 when replies were not what `--expect` asked for, else 3.
fn invalid_code(record: &serde_json::Value) -> ExitCode {
    if record["status_check"]["as_expected"] == serde_json::json!(false) {
        ExitCode::from(4)
    } else {
        ExitCode::from(3)
    }
}

/// A bad argument: one sentence, exit code 2.
fn bad(msg: &str) -> ExitCode {
    eprintln!("ioscale load: {msg}");
    ExitCode::from(2)
}

/// Prints the record (`--json`) or the summary (and the `--latency` table); a broken pipe is
/// not an error. Err: the exit code of a failed write.
fn print(a: &LoadArgs, record: &serde_json::Value, summary: &str) -> Result<(), ExitCode> {
    let mut out = std::io::stdout().lock();
    let written = if a.json {
        serde_json::to_writer_pretty(&mut out, record)
            .map_err(std::io::Error::other)
            .and_then(|_| writeln!(out))
    } else if a.latency {
        write!(out, "{summary}{}", crate::report::latency_table(record))
    } else {
        write!(out, "{summary}")
    };
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("ioscale load: {e}");
            Err(ExitCode::from(1))
        }
        _ => Ok(()),
    }
}

/// The progress bar on a terminal's stderr.
fn progress_bar(plan: &Plan) -> Option<indicatif::ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let total = plan.warmup + plan.duration.unwrap_or(Duration::ZERO);
        let b = indicatif::ProgressBar::new(total.as_secs().max(1));
        b.set_style(
            indicatif::ProgressStyle::with_template("[{bar:30}] {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    })
}

/// The files a run writes as it goes: the series (`--series`) and the HdrHistogram log
/// (`--hdr-log`).
struct Outputs {
    series: Option<SeriesWriter>,
    hdr_log: Option<crate::hdrlog::HdrLog>,
}

impl Outputs {
    /// Creates them; Err: one sentence (a bad argument).
    fn open(a: &LoadArgs) -> Result<Outputs, String> {
        let series = match &a.series {
            Some(p) => Some(SeriesWriter::start(
                std::fs::File::create(p)
                    .map_err(|e| format!("cannot write the series file {}: {e}", p.display()))?,
            )),
            None => None,
        };
        if a.hdr_log.is_some() && a.hdr_interval < Duration::from_millis(1) {
            return Err(format!(
                "invalid --hdr-interval '{:?}': expected at least 1ms",
                a.hdr_interval
            ));
        }
        let hdr_log = match &a.hdr_log {
            Some(p) => {
                let f = std::fs::File::create(p).map_err(|e| {
                    format!("cannot write the HdrHistogram log {}: {e}", p.display())
                })?;
                Some(crate::hdrlog::HdrLog::new(
                    Box::new(std::io::BufWriter::new(f)),
                    a.hdr_interval,
                ))
            }
            None => None,
        };
        Ok(Outputs { series, hdr_log })
    }

    /// Writes out what is left; the HdrHistogram log's first error, if any.
    fn finish(mut self) -> Option<std::io::Error> {
        if let Some(f) = self.series.take() {
            f.finish();
        }
        self.hdr_log.as_mut().and_then(|h| h.finish().err())
    }
}

/// `--hosts`: the coordinator's typed plan, the coordinated run, its merged record printed.
/// Exit codes: 0 VALID; 3 INVALID (a host INVALID, named); 1 a host failed (the merged record
/// of the others is still printed, INVALID, naming it); 2 bad arguments.
fn run_hosts(a: &LoadArgs, plan: &Plan) -> ExitCode {
    let argv: Vec<String> = std::env::args_os().map(|s| s.to_string_lossy().into_owned()).collect();
    let hp = match crate::hosts::HostsPlan::new(
        &a.hosts,
        &a.remote_cmd,
        a.start_at,
        a.start_in,
        plan,
        crate::hosts::forwarded_args(&argv),
    ) {
        Ok(hp) => hp,
        Err(e) => return bad(&e.0),
    };
    let out = crate::hosts::coordinate(&hp, plan);
    let name_failures = || {
        for (name, why) in &out.failures {
            eprintln!("ioscale load: host {name} {why}");
        }
    };
    if out.before_start {
        name_failures();
        if out.interrupted {
            eprintln!("ioscale load: interrupted before the start instant; every segment stopped");
        }
        return ExitCode::from(if out.interrupted { 3 } else { 1 });
    }
    let merged = match &out.record {
        Ok(m) => m,
        Err(e) => {
            name_failures();
            eprintln!("ioscale load: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(code) = print(a, merged, &crate::hosts::hosts_summary(merged)) {
        return code;
    }
    let valid = merged["valid"] == serde_json::json!(true);
    if !valid {
        eprintln!("ioscale load: INVALID: {}", merged["invalid_reasons"]);
    }
    if !out.failures.is_empty() {
        ExitCode::from(1)
    } else if valid {
        ExitCode::SUCCESS
    } else {
        invalid_code(merged)
    }
}

/// The series file, written by a thread of its own: the event loop only hands it bytes, so a
/// disk that stalls (writeback throttling on a busy machine can block a `write(2)` for seconds)
/// never stalls the schedule. Each flush from the loop is one line, written and flushed there.
struct SeriesWriter {
    buf: Vec<u8>,
    tx: Option<std::sync::mpsc::Sender<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SeriesWriter {
    fn start(f: std::fs::File) -> SeriesWriter {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let thread = std::thread::spawn(move || {
            let mut w = std::io::BufWriter::new(f);
            for chunk in rx {
                let _ = w.write_all(&chunk).and_then(|_| w.flush());
            }
        });
        SeriesWriter { buf: Vec::new(), tx: Some(tx), thread: Some(thread) }
    }

    /// Hands over what is left and waits until the thread has written everything.
    fn finish(mut self) {
        let _ = self.flush();
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Write for SeriesWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            if let Some(tx) = &self.tx {
                let _ = tx.send(std::mem::take(&mut self.buf));
            }
        }
        Ok(())
    }
}
