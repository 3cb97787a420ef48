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

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use ioscale_lab::sys as lsys;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// `ioscale soak` arguments.
#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// How long to measure (after the warm-up), e.g. 30m, 2m, 10s.
    #[arg(long, default_value = "30m", value_parser = ioscale_load::plan::parse_duration)]
    duration: Duration,
    /// Sampling period.
    #[arg(long, default_value = "5s", value_parser = ioscale_load::plan::parse_duration)]
    every: Duration,
    /// Idle persistent connections the generator holds (each sends one request per --idle-period).
    #[arg(long, default_value_t = 15_000)]
    idle: usize,
    /// Period of an idle connection's requests; below the server's --idle-timeout (60 s) so
    /// they stay open.
    #[arg(long, default_value = "30s", value_parser = ioscale_load::plan::parse_duration)]
    idle_period: Duration,
    /// Open loop: new sessions (connections) per second (0: idle connections only).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Requests per session.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    calls: u32,
    /// Offer --rate as requests per second over this many persistent connections instead of
    /// new sessions.
    #[arg(long)]
    connections: Option<usize>,
    /// The server's dispatch mechanism.
    #[arg(long, default_value = "epoll", value_parser = crate::cli::parse_mechanism)]
    dispatch: ioscale_dispatch::Mechanism,
    /// Time for the idle connections to open, excluded from the generator's statistics.
    #[arg(long, default_value = "15s", value_parser = ioscale_load::plan::parse_duration)]
    warmup: Duration,
    /// Where the samples, the summary and the children's logs go.
    #[arg(long, default_value = "soak-out")]
    out: PathBuf,
    /// Document root to serve (default: one generated in OUT/www with a 6 KB file).
    #[arg(long)]
    root: Option<PathBuf>,
    /// The path requested.
    #[arg(long, default_value = "/6k.html")]
    path: String,
}

/// The children, ended by PID when dropped (panics and errors included).
struct Kids(Vec<Child>);

impl Kids {
    fn stop(&mut self, pid: u32, sig: i32, grace: Duration) -> Option<std::process::ExitStatus> {
        let i = self.0.iter().position(|c| c.id() == pid)?;
        let mut c = self.0.swap_remove(i);
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        let _ = lsys::kill(pid, sig);
        let t = Instant::now();
        while t.elapsed() < grace {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        c.wait().ok()
    }
}

impl Drop for Kids {
    fn drop(&mut self) {
        let pids: Vec<u32> = self.0.iter().map(Child::id).collect();
        for pid in pids {
            self.stop(pid, lsys::SIGTERM, Duration::from_secs(3));
        }
    }
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

fn make_root(dir: &Path) -> Result<PathBuf> {
    let root = dir.join("www");
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    std::fs::write(root.join("6k.html"), vec![b'y'; 6144])?;
    std::fs::write(root.join("1b.txt"), b"x")?;
    Ok(root)
}

const CSV_HEAD: &str = "t_s,phase,server_rss_kb,server_rss_anon_kb,server_fds,server_cpu_pct,server_open,gen_rss_kb,gen_fds,gen_open,replies,idle_replies,errors_total,p50_ms,p99_ms,max_ms,overflows,recoveries,mode_switches";

/// Runs `ioscale soak`; returns the exit code (0 done and VALID, 1 a child failed, 3 INVALID or
/// interrupted).
pub fn run(a: SoakArgs) -> Result<ExitCode> {
    if let Err(e) = check(&a) {
        eprintln!("ioscale soak: {e}");
        return Ok(ExitCode::from(2));
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create the output directory {}", a.out.display()))?;
    let root = match &a.root {
        Some(r) => r.clone(),
        None => make_root(&a.out)?,
    };
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    lsys::catch_interrupt();
    let mut kids = Kids(Vec::new());

    // The server; its first stderr line names the port it bound.
    let mut server = Command::new(&exe)
        .args(["serve", "--port", "0", "--dispatch", a.dispatch.name(), "--root"])
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start ioscale serve")?;
    let spid = server.id();
    let err = server.stderr.take().expect("piped");
    kids.0.push(server);
    let mut err = BufReader::new(err);
    let mut first = String::new();
    err.read_line(&mut first).context("ioscale serve said nothing")?;
    let port: u16 = first
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(['/', ' ', '\n']).next())
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("ioscale serve did not start: {}", first.trim()))?;
    let mut serve_log = std::fs::File::create(a.out.join("serve.log"))?;
    serve_log.write_all(first.as_bytes())?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut err, &mut serve_log);
    });
    // The baseline: the server with no connection.
    std::thread::sleep(Duration::from_millis(300));
    let base_rss = status_kb(spid, "VmRSS").unwrap_or(0);
    let base_anon = status_kb(spid, "RssAnon").unwrap_or(0);
    let base_fds = fd_count(spid).unwrap_or(0);

    let series_path = a.out.join("series.jsonl");
    let _ = std::fs::remove_file(&series_path);
    let url = format!("http://127.0.0.1:{port}{}", a.path);
    let mut load = Command::new(&exe);
    load.arg("load").arg(&url);
    if a.rate > 0.0 {
        match a.connections {
            Some(n) => load
                .args(["--request-rate", &a.rate.to_string(), "--connections"])
                .arg(n.to_string()),
            None => load.args(["--rate", &a.rate.to_string(), "--calls", &a.calls.to_string()]),
        };
    }
    load.args(["--idle", &a.idle.to_string(), "--idle-period"])
        .arg(format!("{}ms", a.idle_period.as_millis()))
        .arg("--duration")
        .arg(format!("{}ms", a.duration.as_millis()))
        .arg("--warmup")
        .arg(format!("{}ms", a.warmup.as_millis()))
        .arg("--series")
        .arg(&series_path)
        .arg("--json")
        .stdout(std::fs::File::create(a.out.join("load.json"))?)
        .stderr(std::fs::File::create(a.out.join("load.log"))?);
    let load = load.spawn().context("cannot start ioscale load")?;
    let lpid = load.id();
    kids.0.push(load);
    eprintln!(
        "ioscale soak: server pid {spid} ({}, port {port}), generator pid {lpid}: {} idle, {} for {:?} after a {:?} warm-up; samples in {}",
        a.dispatch,
        a.idle,
        match a.connections {
            Some(n) => format!("{} requests/s over {n} connections", a.rate),
            None => format!("{} sessions/s × {} calls", a.rate, a.calls),
        },
        a.duration,
        a.warmup,
        a.out.display()
    );

    let mut csv = std::fs::File::create(a.out.join("samples.csv"))?;
    writeln!(csv, "{CSV_HEAD}")?;
    let mut jsonl = std::fs::File::create(a.out.join("samples.jsonl"))?;
    let mut tail = SeriesTail { path: series_path, pos: 0, partial: String::new() };
    let t0 = Instant::now();
    let mut samples: Vec<Value> = Vec::new();
    let mut hists: Vec<Histogram<u64>> = Vec::new();
    let mut cpu_prev = (Instant::now(), lsys::schedstat_ns(spid).unwrap_or(0));
    let mut next = t0 + a.every;
    let mut interrupted = false;
    let mut server_died = None;
    loop {
        while Instant::now() < next {
            if lsys::interrupted() {
                interrupted = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if interrupted {
            break;
        }
        next += a.every;
        if let Some(c) = kids.0.iter_mut().find(|c| c.id() == spid) {
            if let Ok(Some(st)) = c.try_wait() {
                // Ctrl-C in a terminal reaches the whole process group: the server may have
                // drained and exited before this loop saw the interrupt.
                if lsys::interrupted() {
                    interrupted = true;
                } else {
                    server_died = Some(st);
                }
                break;
            }
        }
        let load_done = kids
            .0
            .iter_mut()
            .find(|c| c.id() == lpid)
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
        // One sample.
        let now = Instant::now();
        let cpu = lsys::schedstat_ns(spid).unwrap_or(cpu_prev.1);
        let cpu_pct = (cpu.saturating_sub(cpu_prev.1)) as f64
            / now.duration_since(cpu_prev.0).as_nanos().max(1) as f64
            * 100.0;
        cpu_prev = (now, cpu);
        let mut h = new_hist();
        let (mut replies, mut idle_replies, mut errors, mut gen_open) = (0u64, 0u64, None, None);
        for line in tail.read() {
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
        let t = t0.elapsed().as_secs_f64();
        // A sample taken after the generator finished shows the server winding down.
        // So is one taken past the planned end (the generator closing its connections).
        let phase = if load_done || t0.elapsed() > a.warmup + a.duration {
            "end"
        } else if t0.elapsed() < a.warmup {
            "warmup"
        } else {
            "measure"
        };
        let stats = server_stats(port);
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
        writeln!(csv, "{}", cells.join(","))?;
        writeln!(jsonl, "{row}")?;
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
        samples.push(row);
        hists.push(h);
        if load_done {
            break;
        }
    }
    // Stop the generator (by PID; SIGINT makes it print its record), then the server.
    if interrupted {
        eprintln!("ioscale soak: interrupted; stopping the children and writing the summary");
    }
    let grace = Duration::from_secs(15);
    let load_status = kids.stop(lpid, lsys::SIGINT, grace);
    let server_status = match server_died {
        Some(st) => {
            kids.0.retain(|c| c.id() != spid);
            Some(st)
        }
        None => kids.stop(spid, lsys::SIGTERM, grace),
    };
    let record: Value = std::fs::read(a.out.join("load.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let summary = summarize(
        &a,
        &samples,
        &hists,
        (base_rss, base_anon, base_fds),
        &record,
        load_status.and_then(|s| s.code()),
        server_status.and_then(|s| s.code()),
        interrupted,
        (spid, lpid),
    );
    std::fs::write(a.out.join("summary.json"), serde_json::to_vec_pretty(&summary)?)?;
    let text = summary_text(&summary);
    std::fs::write(a.out.join("summary.md"), &text)?;
    print!("{text}");
    let children_ok = server_died.is_none()
        && summary["server_exit"] == json!(0)
        && matches!(summary["load_exit"].as_i64(), Some(0 | 3));
    Ok(if !children_ok {
        ExitCode::from(1)
    } else if interrupted || summary["load_valid"] != json!(true) {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// A bad argument: one sentence naming the value and what is accepted.
fn check(a: &SoakArgs) -> Result<(), String> {
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
    let limit = lsys::nofile_soft().max(hard_nofile().unwrap_or(0));
    if (a.idle as u64) + 256 > limit {
        return Err(format!(
            "--idle {} needs more descriptors than a process may open here ({limit}): give at most {}",
            a.idle,
            limit.saturating_sub(256)
        ));
    }
    Ok(())
}

fn hard_nofile() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/limits").ok()?;
    let l = s.lines().find(|l| l.starts_with("Max open files"))?;
    l.split_whitespace().nth(4)?.parse().ok()
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    a: &SoakArgs,
    samples: &[Value],
    hists: &[Histogram<u64>],
    base: (u64, u64, u64),
    record: &Value,
    load_exit: Option<i32>,
    server_exit: Option<i32>,
    interrupted: bool,
    pids: (u32, u32),
) -> Value {
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
        "dispatch": a.dispatch.name(),
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
