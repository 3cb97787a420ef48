//! `ioscale soak`: the server under a long open-loop load with thousands of idle connections,
//! sampled every few seconds — is its memory, its descriptor count and its latency flat?
//!
//! It starts `ioscale serve` and `ioscale load` as child processes of this same binary (so the
//! server's and the generator's descriptors live in separate processes, each under its own
//! 20,000-descriptor limit), samples the server's `/proc/PID/status` (VmRSS, RssAnon),
//! `/proc/PID/fd`, CPU (`/proc/PID/task/*/schedstat`) and stats endpoint, and the generator's
//! per-second series (replies, errors, a latency histogram per second, merged losslessly per
//! sample). Every sample is a CSV row and a JSON line; the summary compares the first and the
//! last quarter of the run. Children are ended by PID, on Ctrl-C too.

use crate::error::Error;
use crate::runner::children::Children;
use crate::sys as lsys;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What `ioscale soak` runs: the command line's typed plan.
#[derive(Clone, Debug)]
pub struct Plan {
    /// How long to measure (after the warm-up).
    pub duration: Duration,
    /// Sampling period.
    pub every: Duration,
    /// Idle persistent connections the generator holds.
    pub idle: usize,
    /// Period of an idle connection's requests.
    pub idle_period: Duration,
    /// Open loop: new sessions (or requests, with `connections`) per second; 0 for none.
    pub rate: f64,
    /// Requests per session.
    pub calls: u32,
    /// Offer `rate` as requests per second over this many persistent connections.
    pub connections: Option<usize>,
    /// The server's dispatch mechanism (its CLI name).
    pub dispatch: String,
    /// Time for the idle connections to open, excluded from the generator's statistics.
    pub warmup: Duration,
    /// Where the samples, the summary and the children's logs go.
    pub out: PathBuf,
    /// Document root to serve (default: one generated in `out/www` with a 6 KB file).
    pub root: Option<PathBuf>,
    /// Source addresses for the generator's connections (127.0.0.1..N).
    pub sources: u8,
    /// The path requested.
    pub path: String,
}

/// How a soak ended.
#[derive(Debug)]
pub struct Outcome {
    /// The summary as text (also written to `summary.md`).
    pub text: String,
    /// Both children ran to a normal end (the server exited 0, the generator 0 or 3).
    pub children_ok: bool,
    /// The generator's record is VALID.
    pub valid: bool,
    /// Ctrl-C ended it early.
    pub interrupted: bool,
}

/// One line of `/proc/PID/status` in kB.
fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|r| r.trim_start_matches(':').split_whitespace().next()?.parse().ok())
}

fn fd_count(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// The server's stats document, over a fresh loopback connection (HTTP/1.0: it closes).
fn server_stats(port: u16) -> Option<Value> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(b"GET /.ioscale/stats HTTP/1.0\r\n\r\n").ok()?;
    let mut all = Vec::new();
    s.read_to_end(&mut all).ok()?;
    let at = all.windows(4).position(|w| w == b"\r\n\r\n")?;
    serde_json::from_slice(&all[at + 4..]).ok()
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds")
}

fn pct(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
}

/// Reads the complete lines the generator appended to its series file since the last call.
struct SeriesTail {
    path: PathBuf,
    pos: u64,
    partial: String,
}

impl SeriesTail {
    fn read(&mut self) -> Vec<Value> {
        let Ok(mut f) = std::fs::File::open(&self.path) else { return Vec::new() };
        if f.seek(SeekFrom::Start(self.pos)).is_err() {
            return Vec::new();
        }
        let mut more = String::new();
        let n = f.read_to_string(&mut more).unwrap_or(0);
        self.pos += n as u64;
        self.partial.push_str(&more);
        let mut out = Vec::new();
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            if let Ok(v) = serde_json::from_str(line.trim()) {
                out.push(v);
            }
        }
        out
    }
}

fn make_root(dir: &Path) -> Result<PathBuf, Error> {
    let root = dir.join("www");
    std::fs::create_dir_all(&root)
        .map_err(|e| Error(format!("cannot create {}: {e}", root.display())))?;
    std::fs::write(root.join("6k.html"), vec![b'y'; 6144])?;
    std::fs::write(root.join("1b.txt"), b"x")?;
    Ok(root)
}

const CSV_HEAD: &str = "t_s,phase,server_rss_kb,server_rss_anon_kb,server_fds,server_cpu_pct,server_open,gen_rss_kb,gen_fds,gen_open,replies,idle_replies,errors_total,p50_ms,p99_ms,max_ms,overflows,recoveries,mode_switches";

/// Runs a soak with the `ioscale` binary `exe` (checked with [`check`] first).
pub fn run(plan: &Plan, exe: &Path) -> Result<Outcome, Error> {
    std::fs::create_dir_all(&plan.out).map_err(|e| {
        Error(format!("cannot create the output directory {}: {e}", plan.out.display()))
    })?;
    let root = match &plan.root {
        Some(r) => r.clone(),
        None => make_root(&plan.out)?,
    };
    let _ = lsys::catch_interrupt(); // without it Ctrl-C kills the run, as before
    let mut kids = Children::default();
    let (spid, port) = start_server(&mut kids, exe, plan, &root)?;
    // The baseline: the server with no connection.
    std::thread::sleep(Duration::from_millis(300));
    let base = (
        status_kb(spid, "VmRSS").unwrap_or(0),
        status_kb(spid, "RssAnon").unwrap_or(0),
        fd_count(spid).unwrap_or(0),
    );
    let series_path = plan.out.join("series.jsonl");
    let _ = std::fs::remove_file(&series_path);
    let lpid = start_load(&mut kids, exe, plan, port, &series_path)?;
    eprintln!(
        "ioscale soak: server pid {spid} ({}, port {port}), generator pid {lpid}: {} idle, {} for {:?} after a {:?} warm-up; samples in {}",
        plan.dispatch,
        plan.idle,
        match plan.connections {
            Some(n) => format!("{} requests/s over {n} connections", plan.rate),
            None => format!("{} sessions/s × {} calls", plan.rate, plan.calls),
        },
        plan.duration,
        plan.warmup,
        plan.out.display()
    );
    let mut sampler = Sampler::new(plan, spid, lpid, port, series_path)?;
    let (interrupted, server_died) = sampler.run(&mut kids)?;
    // Stop the generator (by PID; SIGINT makes it print its record), then the server.
    if interrupted {
        eprintln!("ioscale soak: interrupted; stopping the children and writing the summary");
    }
    let grace = Duration::from_secs(15);
    let load_status = kids.stop_with(lpid, lsys::SIGINT, grace);
    let server_status = match server_died {
        Some(st) => {
            kids.forget(spid);
            Some(st)
        }
        None => kids.stop_with(spid, lsys::SIGTERM, grace),
    };
    let record: Value = std::fs::read(plan.out.join("load.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let ending = Ending {
        load_exit: load_status.and_then(|s| s.code()),
        server_exit: server_status.and_then(|s| s.code()),
        interrupted,
        pids: (spid, lpid),
    };
    let summary = summarize(plan, &sampler.samples, &sampler.hists, base, &record, &ending);
    std::fs::write(
        plan.out.join("summary.json"),
        serde_json::to_vec_pretty(&summary).map_err(|e| Error(e.to_string()))?,
    )?;
    let text = summary_text(&summary);
    std::fs::write(plan.out.join("summary.md"), &text)?;
    let children_ok = server_died.is_none()
        && summary["server_exit"] == json!(0)
        && matches!(summary["load_exit"].as_i64(), Some(0 | 3));
    Ok(Outcome { text, children_ok, valid: summary["load_valid"] == json!(true), interrupted })
}

/// Starts the server; its first stderr line names the port it bound, the rest goes to
/// `serve.log`. Returns its PID and port.
fn start_server(
    kids: &mut Children,
    exe: &Path,
    plan: &Plan,
    root: &Path,
) -> Result<(u32, u16), Error> {
    let mut cmd = Command::new(exe);
    cmd.args(["serve", "--port", "0", "--dispatch", &plan.dispatch, "--root"])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let spid = kids.spawn(cmd).map_err(|e| Error(format!("cannot start ioscale serve: {e}")))?;
    let err = kids.get_mut(spid).and_then(|c| c.stderr.take());
    let Some(err) = err else { return Err(Error("ioscale serve has no stderr pipe".into())) };
    let mut err = BufReader::new(err);
    let mut first = String::new();
    err.read_line(&mut first).map_err(|e| Error(format!("ioscale serve said nothing: {e}")))?;
    let port: u16 = first
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(['/', ' ', '\n']).next())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| Error(format!("ioscale serve did not start: {}", first.trim())))?;
    let mut serve_log = std::fs::File::create(plan.out.join("serve.log"))?;
    serve_log.write_all(first.as_bytes())?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut err, &mut serve_log);
    });
    Ok((spid, port))
}

/// Starts the generator against the server on `port`, its per-second series into
/// `series_path`; returns its PID.
fn start_load(
    kids: &mut Children,
    exe: &Path,
    plan: &Plan,
    port: u16,
    series_path: &Path,
) -> Result<u32, Error> {
    let url = format!("http://127.0.0.1:{port}{}", plan.path);
    let mut load = Command::new(exe);
    load.arg("load").arg(&url);
    if plan.rate > 0.0 {
        match plan.connections {
            Some(n) => load
                .args(["--request-rate", &plan.rate.to_string(), "--connections"])
                .arg(n.to_string()),
            None => {
                load.args(["--rate", &plan.rate.to_string(), "--calls", &plan.calls.to_string()])
            }
        };
    }
    load.args(["--source-addrs", &plan.sources.to_string()]);
    load.args(["--idle", &plan.idle.to_string(), "--idle-period"])
        .arg(format!("{}ms", plan.idle_period.as_millis()))
        .arg("--duration")
        .arg(format!("{}ms", plan.duration.as_millis()))
        .arg("--warmup")
        .arg(format!("{}ms", plan.warmup.as_millis()))
        .arg("--series")
        .arg(series_path)
        .arg("--json")
        .stdout(std::fs::File::create(plan.out.join("load.json"))?)
        .stderr(std::fs::File::create(plan.out.join("load.log"))?);
    let lpid = kids.spawn(load).map_err(|e| Error(format!("cannot start ioscale load: {e}")))?;
    Ok(lpid)
}

/// The sampling loop's state: its output files, the generator's series, and the samples so far.
struct Sampler<'a> {
    plan: &'a Plan,
    spid: u32,
    lpid: u32,
    port: u16,
    csv: std::fs::File,
    jsonl: std::fs::File,
    tail: SeriesTail,
    t0: Instant,
    cpu_prev: (Instant, u64),
    samples: Vec<Value>,
    hists: Vec<Histogram<u64>>,
}

impl<'a> Sampler<'a> {
    fn new(
        plan: &'a Plan,
        spid: u32,
        lpid: u32,
        port: u16,
        series_path: PathBuf,
    ) -> Result<Self, Error> {
        let mut csv = std::fs::File::create(plan.out.join("samples.csv"))?;
        writeln!(csv, "{CSV_HEAD}")?;
        let jsonl = std::fs::File::create(plan.out.join("samples.jsonl"))?;
        Ok(Sampler {
            plan,
            spid,
            lpid,
            port,
            csv,
            jsonl,
            tail: SeriesTail { path: series_path, pos: 0, partial: String::new() },
            t0: Instant::now(),
            cpu_prev: (Instant::now(), lsys::schedstat_ns(spid).unwrap_or(0)),
            samples: Vec::new(),
            hists: Vec::new(),
        })
    }

    /// Samples every `plan.every` until the generator is done, the server dies or Ctrl-C.
    /// Returns whether it was interrupted and, if the server died on its own, its status.
    fn run(&mut self, kids: &mut Children) -> Result<(bool, Option<ExitStatus>), Error> {
        let mut next = self.t0 + self.plan.every;
        loop {
            while Instant::now() < next {
                if lsys::interrupted() {
                    return Ok((true, None));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            next += self.plan.every;
            if let Some(c) = kids.get_mut(self.spid) {
                if let Ok(Some(st)) = c.try_wait() {
                    // Ctrl-C in a terminal reaches the whole process group: the server may have
                    // drained and exited before this loop saw the interrupt.
                    return Ok(if lsys::interrupted() { (true, None) } else { (false, Some(st)) });
                }
            }
            let load_done =
                kids.get_mut(self.lpid).is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            self.sample(load_done)?;
            if load_done {
                return Ok((false, None));
            }
        }
    }

    /// Takes one sample: a CSV row, a JSON line and a line on stderr.
    fn sample(&mut self, load_done: bool) -> Result<(), Error> {
        let (spid, lpid) = (self.spid, self.lpid);
        let now = Instant::now();
        let cpu = lsys::schedstat_ns(spid).unwrap_or(self.cpu_prev.1);
        let cpu_pct = (cpu.saturating_sub(self.cpu_prev.1)) as f64
            / now.duration_since(self.cpu_prev.0).as_nanos().max(1) as f64
            * 100.0;
        self.cpu_prev = (now, cpu);
        let mut h = new_hist();
        let (mut replies, mut idle_replies, mut errors, mut gen_open) = (0u64, 0u64, None, None);
        for line in self.tail.read() {
            replies += line["active_replies"].as_u64().unwrap_or(0);
            idle_replies += line["idle_replies"].as_u64().unwrap_or(0);
            errors = line["errors_total"].as_u64().or(errors);
            gen_open = line["open_connections"].as_u64().or(gen_open);
            if let Some(s) = line["latency_us_histogram"].as_str() {
                if let Ok(x) = ioscale_load::stats::decode(s) {
                    let _ = h.add(&x);
                }
            }
        }
        let elapsed = self.t0.elapsed();
        let t = elapsed.as_secs_f64();
        // A sample taken after the generator finished shows the server winding down.
        // So is one taken past the planned end (the generator closing its connections).
        let phase = if load_done || elapsed > self.plan.warmup + self.plan.duration {
            "end"
        } else if elapsed < self.plan.warmup {
            "warmup"
        } else {
            "measure"
        };
        let stats = server_stats(self.port);
        let row = json!({
            "t_s": (t * 10.0).round() / 10.0,
            "phase": phase,
            "server_rss_kb": status_kb(spid, "VmRSS"),
            "server_rss_anon_kb": status_kb(spid, "RssAnon"),
            "server_fds": fd_count(spid),
            "server_cpu_pct": (cpu_pct * 10.0).round() / 10.0,
            "server_open": stats.as_ref().and_then(|s| s["connections"]["open"].as_u64()),
            "gen_rss_kb": status_kb(lpid, "VmRSS"),
            "gen_fds": fd_count(lpid),
            "gen_open": gen_open,
            "replies": replies,
            "idle_replies": idle_replies,
            "errors_total": errors,
            "p50_ms": pct(&h, 0.5),
            "p99_ms": pct(&h, 0.99),
            "max_ms": (!h.is_empty()).then(|| h.max() as f64 / 1000.0),
            // The RT-signal mechanisms' counters (cumulative; 0 on the others).
            "overflows": stats.as_ref().and_then(|s| s["dispatch"]["overflows"].as_u64()),
            "recoveries": stats.as_ref().and_then(|s| s["dispatch"]["recoveries"].as_u64()),
            "mode_switches": stats.as_ref().and_then(|s| s["dispatch"]["mode_switches"].as_u64()),
        });
        let cells: Vec<String> = CSV_HEAD
            .split(',')
            .map(|k| match &row[k] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                v => v.to_string(),
            })
            .collect();
        writeln!(self.csv, "{}", cells.join(","))?;
        writeln!(self.jsonl, "{row}")?;
        eprintln!(
            "{:>7.1}s {phase:<7} rss {} kB (anon {}) fds {} cpu {:.0}% open {} replies {} p99 {} ms errors {}",
            t,
            row["server_rss_kb"],
            row["server_rss_anon_kb"],
            row["server_fds"],
            cpu_pct,
            row["server_open"],
            replies + idle_replies,
            row["p99_ms"],
            row["errors_total"]
        );
        self.samples.push(row);
        self.hists.push(h);
        Ok(())
    }
}

/// How the children ended.
struct Ending {
    load_exit: Option<i32>,
    server_exit: Option<i32>,
    interrupted: bool,
    /// (server, generator).
    pids: (u32, u32),
}

/// Checks a plan before anything starts: a bad value gets one sentence naming it and what is
/// accepted.
pub fn check(a: &Plan) -> Result<(), String> {
    if a.every < Duration::from_millis(200) {
        return Err(format!("--every {:?} is too short: give at least 200ms", a.every));
    }
    if a.duration.is_zero() {
        return Err("--duration 0 measures nothing: give a length such as 30m or 10s".into());
    }
    if !(a.rate >= 0.0 && a.rate.is_finite()) {
        return Err(format!(
            "--rate {} is not a rate: give sessions per second, 0 or more",
            a.rate
        ));
    }
    if !a.path.starts_with('/') {
        return Err(format!("--path '{}' must start with '/', e.g. /6k.html", a.path));
    }
    if a.rate == 0.0 && a.idle == 0 {
        return Err("nothing to load: give --rate above 0 or --idle above 0".into());
    }
    let limit = ioscale_sys::limits::nofile().map_or(0, |(soft, hard)| soft.max(hard));
    if (a.idle as u64) + 256 > limit {
        return Err(format!(
            "--idle {} needs more descriptors than a process may open here ({limit}): give at most {}",
            a.idle,
            limit.saturating_sub(256)
        ));
    }
    Ok(())
}

/// The summary document: the server's memory and descriptors over the run, latency in the
/// first and last quarter, and the generator's totals.
fn summarize(
    a: &Plan,
    samples: &[Value],
    hists: &[Histogram<u64>],
    base: (u64, u64, u64),
    record: &Value,
    end: &Ending,
) -> Value {
    let (load_exit, server_exit, interrupted, pids) =
        (end.load_exit, end.server_exit, end.interrupted, end.pids);
    let measured: Vec<usize> =
        (0..samples.len()).filter(|&i| samples[i]["phase"] == "measure").collect();
    let get = |i: usize, k: &str| samples[i][k].as_u64();
    let col = |k: &str| -> Vec<u64> { measured.iter().filter_map(|&i| get(i, k)).collect() };
    let first = measured.first().copied();
    let last = measured.last().copied();
    let quarter = (measured.len() / 4).max(2).min(measured.len());
    let merged = |idx: &[usize]| {
        let mut h = new_hist();
        for &i in idx {
            let _ = h.add(&hists[i]);
        }
        h
    };
    let head = merged(&measured[..quarter.min(measured.len())]);
    let tail = merged(&measured[measured.len().saturating_sub(quarter)..]);
    let rss = col("server_rss_kb");
    let anon = col("server_rss_anon_kb");
    let fds = col("server_fds");
    let open = col("server_open");
    let held = open.iter().copied().max().unwrap_or(0);
    let anon_first = first.and_then(|i| get(i, "server_rss_anon_kb"));
    let per_conn = |kb: Option<u64>, base: u64| {
        kb.filter(|_| held > 0).map(|kb| ((kb as f64 - base as f64) * 1024.0 / held as f64).round())
    };
    json!({
        "dispatch": a.dispatch,
        "idle": a.idle,
        "rate": a.rate,
        "calls": a.calls,
        "connections": a.connections,
        "duration_s": a.duration.as_secs_f64(),
        "every_s": a.every.as_secs_f64(),
        "samples": samples.len(),
        "measured_samples": measured.len(),
        "interrupted": interrupted,
        "baseline": {"rss_kb": base.0, "rss_anon_kb": base.1, "fds": base.2},
        "server_rss_kb": {"first": first.and_then(|i| get(i, "server_rss_kb")), "last": last.and_then(|i| get(i, "server_rss_kb")), "min": rss.iter().min(), "max": rss.iter().max()},
        "server_rss_anon_kb": {"first": anon_first, "last": last.and_then(|i| get(i, "server_rss_anon_kb")), "min": anon.iter().min(), "max": anon.iter().max()},
        "server_fds": {"first": first.and_then(|i| get(i, "server_fds")), "last": last.and_then(|i| get(i, "server_fds")), "min": fds.iter().min(), "max": fds.iter().max()},
        "server_open_max": held,
        "dispatch_at_end": {
            "overflows": last.and_then(|i| get(i, "overflows")),
            "recoveries": last.and_then(|i| get(i, "recoveries")),
            "mode_switches": last.and_then(|i| get(i, "mode_switches")),
        },
        "bytes_per_connection_rss_anon": per_conn(anon_first, base.1),
        "p99_ms": {"first_quarter": pct(&head, 0.99), "last_quarter": pct(&tail, 0.99)},
        "p50_ms": {"first_quarter": pct(&head, 0.5), "last_quarter": pct(&tail, 0.5)},
        "load_valid": record["valid"],
        "load_invalid_reasons": record["invalid_reasons"],
        "active_requests": record["active"]["requests"],
        "active_replies": record["active"]["replies"],
        "idle_replies": record["idle"]["replies"],
        "errors": {"active": record["active"]["errors"]["total"], "idle": record["idle"]["errors"]["total"]},
        "idle_reconnects": record["idle"]["reconnects"],
        "load_exit": load_exit,
        "server_exit": server_exit,
        "table": table_rows(samples, &measured, a.every),
        "server_pid": pids.0,
        "load_pid": pids.1,
    })
}

/// About a dozen samples evenly spread over the measured ones (first and last included), for
/// the summary's table.
fn table_rows(samples: &[Value], measured: &[usize], every: Duration) -> Vec<Value> {
    if measured.is_empty() {
        return Vec::new();
    }
    let k = 12.min(measured.len());
    let mut idx: Vec<usize> = (0..k)
        .map(|j| measured[if k == 1 { 0 } else { j * (measured.len() - 1) / (k - 1) }])
        .collect();
    idx.dedup();
    let secs = every.as_secs_f64().max(1e-3);
    idx.iter()
        .map(|&i| {
            let r = &samples[i];
            let per_s = |k: &str| r[k].as_u64().map(|v| (v as f64 / secs).round());
            json!({
                "t_s": r["t_s"], "rss_kb": r["server_rss_kb"], "rss_anon_kb": r["server_rss_anon_kb"],
                "fds": r["server_fds"], "cpu_pct": r["server_cpu_pct"], "open": r["server_open"],
                "replies_per_s": per_s("replies"), "idle_replies_per_s": per_s("idle_replies"),
                "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "errors_total": r["errors_total"],
            })
        })
        .collect()
}

/// The summary as text: tables of the server's memory and descriptors, and the totals.
fn summary_text(s: &Value) -> String {
    let kb = |v: &Value| v.as_u64().map_or("-".into(), |x| format!("{x}"));
    let ms = |v: &Value| v.as_f64().map_or("-".into(), |x| format!("{x:.2}"));
    let mut t = String::new();
    t.push_str(&format!(
        "ioscale soak: {} server, {} idle connections, {} sessions/s × {} calls{}, {} s measured, {} samples every {} s{}\n\n",
        s["dispatch"].as_str().unwrap_or("?"),
        s["idle"],
        s["rate"],
        s["calls"],
        s["connections"].as_u64().map_or(String::new(), |n| format!(" (as requests/s over {n} connections)")),
        s["duration_s"],
        s["samples"],
        s["every_s"],
        if s["interrupted"] == json!(true) { " (INTERRUPTED)" } else { "" }
    ));
    t.push_str("| server | baseline (no connection) | first measured | last | min | max |\n|---|---|---|---|---|---|\n");
    for (name, key, base) in [
        ("VmRSS kB", "server_rss_kb", "rss_kb"),
        ("RssAnon kB", "server_rss_anon_kb", "rss_anon_kb"),
        ("descriptors", "server_fds", "fds"),
    ] {
        let r = &s[key];
        t.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} |\n",
            kb(&s["baseline"][base]),
            kb(&r["first"]),
            kb(&r["last"]),
            kb(&r["min"]),
            kb(&r["max"])
        ));
    }
    if let Some(rows) = s["table"].as_array().filter(|r| !r.is_empty()) {
        t.push_str("\n| t (s) | VmRSS kB | RssAnon kB | descriptors | server CPU % | open | active replies/s | idle replies/s | p50 ms | p99 ms | errors (total) |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
        for r in rows {
            let cell = |v: &Value| match v {
                Value::Null => "-".to_string(),
                Value::Number(n) if n.is_f64() => format!("{:.2}", n.as_f64().unwrap_or(0.0)),
                v => v.to_string(),
            };
            t.push_str(&format!(
                "| {:.0} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} |\n",
                r["t_s"].as_f64().unwrap_or(0.0),
                cell(&r["rss_kb"]),
                cell(&r["rss_anon_kb"]),
                cell(&r["fds"]),
                r["cpu_pct"].as_f64().unwrap_or(0.0),
                cell(&r["open"]),
                r["replies_per_s"].as_f64().map_or("-".into(), |v| format!("{v:.0}")),
                r["idle_replies_per_s"].as_f64().map_or("-".into(), |v| format!("{v:.0}")),
                cell(&r["p50_ms"]),
                cell(&r["p99_ms"]),
                cell(&r["errors_total"]),
            ));
        }
    }
    t.push_str(&format!(
        "\nconnections open at most: {}; RssAnon per connection over the baseline: {} B; RT-signal overflows {}, recoveries {}, mode switches {}\n",
        s["server_open_max"],
        s["bytes_per_connection_rss_anon"].as_f64().map_or("-".into(), |b| format!("{b:.0}")),
        s["dispatch_at_end"]["overflows"],
        s["dispatch_at_end"]["recoveries"],
        s["dispatch_at_end"]["mode_switches"]
    ));
    t.push_str(&format!(
        "active latency p50 {} → {} ms, p99 {} → {} ms (first vs last quarter of the samples)\n",
        ms(&s["p50_ms"]["first_quarter"]),
        ms(&s["p50_ms"]["last_quarter"]),
        ms(&s["p99_ms"]["first_quarter"]),
        ms(&s["p99_ms"]["last_quarter"])
    ));
    t.push_str(&format!(
        "requests: active {} sent, {} replies; idle {} replies, {} reconnects; errors: active {}, idle {}\n",
        s["active_requests"], s["active_replies"], s["idle_replies"], s["idle_reconnects"], s["errors"]["active"], s["errors"]["idle"]
    ));
    t.push_str(&format!(
        "generator record valid: {} {}; exit codes: load {}, server {}\n",
        s["load_valid"],
        s["load_invalid_reasons"]
            .as_array()
            .filter(|r| !r.is_empty())
            .map_or(String::new(), |r| format!("{r:?}")),
        s["load_exit"],
        s["server_exit"]
    ));
    t
}
