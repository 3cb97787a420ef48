//! `http` experiments: `ioscale serve` (or nginx, as a reference line) on CPU 0, driven by
//! `ioscale load` on CPU 1.
//!
//! For each point the runner starts a fresh server, waits until it accepts, starts the generator,
//! reads the server's CPU from `/proc/PID/task/*/schedstat` when the generator's warm-up ends and
//! again when it finishes (so opening thousands of idle connections is not charged to the
//! requests), reads the dispatch counters from the stats endpoint, and stops the server by PID.
//! Request rates are fractions of the capacity calibrated on this machine at the start of the
//! experiment (the papers' 400 MHz rates do not carry over; the fractions do).

use super::{blank, pinned, Ctx, Error};
use crate::record::Record;
use crate::spec::{LoadMode, Plan, Point, Value};
use crate::sys;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// File sizes the lab's document root holds (bytes): the papers' 1 B, 92 B and 6 KB replies.
pub const FILE_SIZES: [u64; 3] = [1, 92, 6144];

fn file_name(size: u64) -> String {
    format!("f{size}.html")
}

/// Writes the document root (idempotent).
pub fn docroot(out: &Path) -> Result<PathBuf, Error> {
    let root = out.join("docroot");
    std::fs::create_dir_all(&root)?;
    for size in FILE_SIZES {
        let p = root.join(file_name(size));
        let want: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        if std::fs::read(&p).ok().as_deref() != Some(&want[..]) {
            std::fs::write(&p, &want)?;
        }
    }
    Ok(root)
}

fn free_port(ip: Ipv4Addr) -> Result<u16, Error> {
    let l = TcpListener::bind((ip, 0))?;
    Ok(l.local_addr()?.port())
}

fn wait_listening(ip: Ipv4Addr, port: u16, within: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if TcpStream::connect_timeout(&SocketAddr::from((ip, port)), Duration::from_millis(200))
            .is_ok()
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    false
}

/// GET a small JSON document from the server (the stats endpoint).
fn get_json(ip: Ipv4Addr, port: u16, path: &str) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect((ip, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let body = text.split_once("\r\n\r\n")?.1;
    serde_json::from_str(body).ok()
}

/// A server under test: its PID (whose CPU is charged) and port.
struct Server {
    pid: u32,
    /// Where it listens (`--server-addr`, 127.0.0.1 by default).
    ip: Ipv4Addr,
    port: u16,
    /// Extra PIDs whose CPU counts too (nginx's worker).
    others: Vec<u32>,
    _dir: Option<PathBuf>,
}

impl Server {
    fn cpu_ns(&self) -> u64 {
        let mut t = sys::schedstat_ns(self.pid).unwrap_or(0);
        for p in &self.others {
            t += sys::schedstat_ns(*p).unwrap_or(0);
        }
        t
    }
}

fn start_ioscale(ctx: &mut Ctx<'_>, plan: &Plan, p: &Point, root: &Path) -> Result<Server, Error> {
    let ip = ctx.cfg.server_addr;
    let port = free_port(ip)?;
    let mut cmd = pinned(&ctx.cfg.exe, 0);
    // "select+multi-accept": the mechanism, plus server options after '+'.
    let mut parts = p.mechanism.split('+');
    let base = parts.next().unwrap_or_default().to_string();
    cmd.args([
        "serve",
        "--bind",
        &ip.to_string(),
        "--port",
        &port.to_string(),
        "--dispatch",
        &base,
    ]);
    cmd.arg("--root").arg(root);
    for opt in parts {
        cmd.arg(format!("--{opt}"));
    }
    if let Some(q) = plan.exp.server.sigqueue_max {
        if base == "rtsig-perfd" {
            // Signal-per-fd queues at most one signal per descriptor: its queue is as long as
            // the descriptor table, which is what makes it overflow-free (Chandra & Mosberger §4).
            let q = q.max(ctx.machine.nofile);
            cmd.args(["--sigqueue-max", &q.to_string()]);
        } else if base.starts_with("rtsig") || base == "hybrid" {
            cmd.args(["--sigqueue-max", &q.to_string()]);
        }
    }
    cmd.args(&plan.exp.server.args).stdout(Stdio::null()).stderr(Stdio::null());
    let pid = ctx.children.spawn(cmd)?;
    if !wait_listening(ip, port, Duration::from_secs(10)) {
        let st = ctx.children.stop(pid, Duration::from_millis(500));
        return Err(Error(format!(
            "ioscale serve --dispatch {} did not start listening ({st:?})",
            p.mechanism
        )));
    }
    Ok(Server { pid, ip, port, others: Vec::new(), _dir: None })
}

/// nginx (Debian's package), one worker, epoll, access log off: the reference line.
fn start_nginx(ctx: &mut Ctx<'_>, root: &Path) -> Result<Server, Error> {
    let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().find(|p| Path::new(p).exists());
    let Some(bin) = bin else { return Err(Error("nginx is not installed".into())) };
    let ip = ctx.cfg.server_addr;
    let port = free_port(ip)?;
    let dir = ctx.cfg.out.join(format!("nginx-{port}"));
    std::fs::create_dir_all(dir.join("logs"))?;
    let conf = format!(
        "worker_processes 1;\ndaemon off;\nmaster_process on;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\n\
events {{ use epoll; worker_connections 19000; multi_accept off; }}\n\
worker_rlimit_nofile 20000;\n\
http {{ access_log off; keepalive_requests 1000000; keepalive_timeout 300s;\n\
client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
server {{ listen {ip}:{port}; root {root}; }} }}\n",
        d = dir.display(),
        root = root.display()
    );
    std::fs::create_dir_all(dir.join("tmp"))?;
    std::fs::write(dir.join("nginx.conf"), conf)?;
    let mut cmd = pinned(Path::new(bin), 0);
    cmd.arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-p")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let pid = ctx.children.spawn(cmd)?;
    if !wait_listening(ip, port, Duration::from_secs(10)) {
        ctx.children.stop(pid, Duration::from_millis(500));
        return Err(Error("nginx did not start listening".into()));
    }
    // The worker is the master's child: its CPU is the server's CPU.
    let kids =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let others = kids.split_whitespace().filter_map(|s| s.parse().ok()).collect();
    Ok(Server { pid, ip, port, others, _dir: Some(dir) })
}

/// Runs the generator once; returns its JSON record and how long it ran.
#[allow(clippy::too_many_arguments)]
fn run_load(
    ctx: &mut Ctx<'_>,
    server: &Server,
    plan: &Plan,
    params: &BTreeMap<String, Value>,
    rate: f64,
    duration: f64,
    warmup: f64,
    cpu: &mut CpuWindow,
) -> Result<serde_json::Value, Error> {
    let size = params.get("file_size").and_then(Value::as_f64).unwrap_or(1.0) as u64;
    let url = format!("http://{}:{}/{}", server.ip, server.port, file_name(size));
    let mut cmd = pinned(&ctx.cfg.exe, 1);
    cmd.args(["load", &url, "--json"]);
    cmd.args(["--duration", &format!("{duration}s"), "--warmup", &format!("{warmup}s")]);
    let idle = params.get("idle").and_then(Value::as_f64).unwrap_or(0.0) as u64;
    if plan.exp.load.mode == LoadMode::Periodic && idle > 0 {
        // Chandra & Mosberger: the persistent connections themselves carry the rate.
        cmd.args(["--idle", &idle.to_string()]);
        cmd.args(["--idle-period", &format!("{}s", idle as f64 / rate.max(1e-9))]);
    } else if plan.exp.load.mode == LoadMode::Requests {
        cmd.args(["--request-rate", &format!("{rate:.1}")]);
        cmd.args(["--connections", &plan.exp.load.connections.unwrap_or(50).to_string()]);
        if idle > 0 {
            cmd.args(["--idle", &idle.to_string()]);
            cmd.args(["--idle-period", &format!("{}s", plan.exp.load.idle_period.unwrap_or(1.0))]);
        }
    } else {
        cmd.args(["--rate", &format!("{rate:.1}")]);
        cmd.args(["--calls", &plan.exp.load.calls.unwrap_or(1).to_string()]);
        if idle > 0 {
            cmd.args(["--idle", &idle.to_string()]);
            cmd.args(["--idle-period", &format!("{}s", plan.exp.load.idle_period.unwrap_or(1.0))]);
        }
    }
    let inactive = params.get("inactive").and_then(Value::as_f64).unwrap_or(0.0) as u64;
    if inactive > 0 {
        cmd.args(["--inactive", &inactive.to_string()]);
    }
    cmd.args(&plan.exp.load.args).stdout(Stdio::piped()).stderr(Stdio::piped());
    // With load hosts the segments start together this long after launch (docs/multihost.md).
    let lead = if ctx.cfg.load_hosts.is_empty() { 0.0 } else { 5.0 };
    if !ctx.cfg.load_hosts.is_empty() {
        // One segment of the plan per load host, merged by `ioscale load --hosts`.
        cmd.args(["--hosts", &ctx.cfg.load_hosts.join(","), "--start-in", "5s"]);
        if let Some(t) = &ctx.cfg.load_remote_cmd {
            cmd.args(["--remote-cmd", t]);
        }
    }
    let pid = ctx.children.spawn(cmd)?;
    let mut child = ctx.children.take(pid).ok_or_else(|| Error("lost the generator".into()))?;
    // Read its output while it runs: a record larger than a pipe's buffer (a merged --hosts
    // record carries every host's) must not block the generator before it exits.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_reader = drain(child.stdout.take().map(|o| Box::new(o) as Box<dyn Read + Send>));
    let err_reader = drain(child.stderr.take().map(|e| Box::new(e) as Box<dyn Read + Send>));
    let t = Instant::now();
    let deadline = Duration::from_secs_f64(lead + warmup + duration + 60.0);
    // Sample the server's CPU when the warm-up ends.
    let mut status = None;
    while status.is_none() {
        let el = t.elapsed().as_secs_f64();
        if cpu.start.is_none() && el >= lead + warmup {
            cpu.start = Some(server.cpu_ns());
        }
        if cpu.end.is_none() && el >= lead + warmup + duration {
            cpu.end = Some(server.cpu_ns());
        }
        if sys::interrupted() || t.elapsed() > deadline {
            let _ = sys::kill(pid, sys::SIGINT);
            std::thread::sleep(Duration::from_millis(500));
            let _ = child.kill();
        }
        status = child.try_wait()?;
        if status.is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    match serde_json::from_slice::<serde_json::Value>(&stdout) {
        Ok(v) => Ok(v),
        Err(_) => Err(Error(format!(
            "ioscale load gave no JSON record (exit {:?}): {}",
            status.and_then(|s| s.code()),
            String::from_utf8_lossy(&stderr).trim()
        ))),
    }
}

/// Pulls the lab's metrics out of the generator's record (from the population that carries the
/// rate: `idle` in periodic mode, `active` otherwise).
fn load_metrics(v: &serde_json::Value, rec: &mut Record) {
    let mut flat = BTreeMap::new();
    let periodic = v["mode"]["kind"] == "none";
    if periodic {
        let mut view = v.clone();
        view["active"] = v["idle"].clone();
        view["reply_rate"] = v["idle"]["reply_rate"].clone();
        super::flatten_numbers(&view, "", &mut flat);
    } else {
        super::flatten_numbers(v, "", &mut flat);
    }
    let pick = |names: &[&str]| names.iter().find_map(|n| flat.get(*n).copied());
    let pairs: [(&str, &[&str]); 13] = [
        ("reply_rate_avg", &["reply_rate.avg", "active.reply_rate.avg", "reply_rate_avg"]),
        ("reply_rate_min", &["reply_rate.min", "active.reply_rate.min", "reply_rate_min"]),
        ("reply_rate_max", &["reply_rate.max", "active.reply_rate.max", "reply_rate_max"]),
        (
            "reply_rate_stddev",
            &["reply_rate.stddev", "active.reply_rate.stddev", "reply_rate_stddev"],
        ),
        ("replies", &["active.replies", "replies", "active.responses", "responses"]),
        ("latency_p50_ms", &["active.latency_ms.p50", "latency_ms.p50", "active.latency.p50_ms"]),
        ("latency_p99_ms", &["active.latency_ms.p99", "latency_ms.p99", "active.latency.p99_ms"]),
        (
            "latency_mean_ms",
            &["active.latency_ms.mean", "latency_ms.mean", "active.latency.mean_ms"],
        ),
        ("errors", &["active.errors.total", "errors.total", "active.errors"]),
        ("sessions", &["active.sessions", "sessions", "active.connections"]),
        ("target_rate", &["target_rate", "check.target_rate", "self_check.target_rate"]),
        ("achieved_rate", &["achieved_rate", "check.achieved_rate", "self_check.achieved_rate"]),
        ("generator_cpu_util", &["generator_cpu_util", "check.cpu_util", "self_check.cpu_util"]),
    ];
    for (name, candidates) in pairs {
        if let Some(x) = pick(candidates) {
            rec.metrics.insert(name.to_string(), x);
        }
    }
    if let (Some(e), Some(s)) = (rec.metric("errors"), rec.metric("sessions")) {
        if s > 0.0 {
            rec.metrics.insert("error_pct".into(), 100.0 * e / s);
        }
    }
    let valid = v.get("valid").and_then(serde_json::Value::as_bool).unwrap_or(true);
    if !valid {
        rec.valid = false;
        rec.invalid_reason = Some(
            v.get("invalid_reason")
                .or_else(|| v.get("invalid_reasons"))
                .map_or_else(|| "the generator marked the run INVALID".into(), |r| r.to_string()),
        );
    }
}

/// Dispatch counters from the stats endpoint: the difference `after - before`.
fn counter_metrics(
    before: &Option<serde_json::Value>,
    after: &Option<serde_json::Value>,
    rec: &mut Record,
) {
    let (Some(b), Some(a)) = (before, after) else { return };
    let (mut fb, mut fa) = (BTreeMap::new(), BTreeMap::new());
    super::flatten_numbers(b, "", &mut fb);
    super::flatten_numbers(a, "", &mut fa);
    for (k, va) in &fa {
        let Some(short) = k.rsplit('.').next() else { continue };
        if [
            "signals",
            "dequeue_calls",
            "overflows",
            "recoveries",
            "mode_switches",
            "wait_calls",
            "events",
            "interest_syscalls",
        ]
        .contains(&short)
            && k.contains("dispatch")
        {
            let d = va - fb.get(k).copied().unwrap_or(0.0);
            *rec.metrics.entry(short.to_string()).or_insert(0.0) += d;
        }
    }
}

/// Finds this machine's capacity for the experiment's session shape: the highest open-loop
/// session rate the epoll server sustains (≥ 97% of the target replied, generator valid),
/// searched geometrically and then refined once.
fn calibrate(ctx: &mut Ctx<'_>, plan: &Plan, root: &Path) -> Result<(f64, String), Error> {
    let key = format!(
        "{:?}:{}:{:?}:{:?}",
        plan.exp.load.mode,
        plan.exp.load.calls.unwrap_or(1),
        plan.exp.load.connections,
        plan.exp.load.args
    );
    if let Some(c) = CAPACITY.with(|m| m.borrow().get(&key).copied()) {
        return Ok((c, "cached".into()));
    }
    let probe = Point { mechanism: "epoll".into(), params: BTreeMap::new() };
    let mut good = 0.0f64;
    let mut bad = f64::INFINITY;
    let requests = plan.exp.load.mode == LoadMode::Requests;
    let mut rate = if requests { 8000.0f64 } else { 2000.0f64 };
    let mut note = String::new();
    for _ in 0..9 {
        if sys::interrupted() {
            return Err(Error("interrupted".into()));
        }
        let unit = if requests { "requests/s" } else { "sessions/s" };
        ctx.message(format!("calibrating: {rate:.0} {unit}"));
        let server = start_ioscale(ctx, plan, &probe, root)?;
        let mut cpu = CpuWindow::default();
        let res = run_load(ctx, &server, plan, &BTreeMap::new(), rate, 2.0, 0.5, &mut cpu);
        ctx.children.stop(server.pid, Duration::from_secs(3));
        let ok = match res {
            Ok(v) => {
                let mut r = blank(plan, &probe, &ctx.machine);
                load_metrics(&v, &mut r);
                let got = r.metric("reply_rate_avg").unwrap_or(0.0);
                if !r.valid {
                    note = format!("generator limit near {rate:.0}/s");
                }
                if !(r.valid && got >= 0.97 * rate) {
                    note = format!(
                        "at {rate:.0}/s: {got:.0} replies/s{}",
                        r.invalid_reason.map(|w| format!(", {w}")).unwrap_or_default()
                    );
                }
                r.valid && got >= 0.97 * rate
            }
            Err(e) => {
                note = e.0;
                false
            }
        };
        if ok {
            good = rate;
        } else {
            bad = rate;
        }
        rate = if bad.is_finite() { (good + bad) / 2.0 } else { rate * 2.0 };
        if bad.is_finite() && (bad - good) / bad < 0.15 {
            break;
        }
    }
    if good <= 0.0 {
        return Err(Error(
            "calibration failed: the epoll server could not sustain the lowest rate tried".into(),
        ));
    }
    CAPACITY.with(|m| m.borrow_mut().insert(key, good));
    Ok((good, note))
}

thread_local! {
    static CAPACITY: std::cell::RefCell<BTreeMap<String, f64>> = const { std::cell::RefCell::new(BTreeMap::new()) };
}

/// Runs the points of one `http` experiment.
pub(super) fn run(ctx: &mut Ctx<'_>, plan: &Plan, points: &[Point]) -> Result<(), Error> {
    let root = docroot(&ctx.cfg.out)?;
    let needs_rate = points.iter().any(|p| p.params.contains_key("rate_fraction"));
    let (capacity, note) = if needs_rate {
        match calibrate(ctx, plan, &root) {
            Ok(c) => c,
            Err(e) if !sys::interrupted() => {
                // Without a capacity no rate can be placed: every point says why, and the lab
                // goes on with the next experiment.
                for p in points {
                    let mut rec = blank(plan, p, &ctx.machine);
                    rec.error = Some(format!("calibration failed: {e}"));
                    ctx.emit(rec)?;
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    } else {
        (0.0, String::new())
    };
    if plan.exp.load.ramp {
        return run_ramp(ctx, plan, points, &root, capacity);
    }
    for p in points {
        if sys::interrupted() {
            return Err(Error("interrupted".into()));
        }
        let mut rec = blank(plan, p, &ctx.machine);
        if p.mechanism != "nginx" {
            if let Some(why) = ctx.unavailable(&p.mechanism) {
                rec.error = Some(why);
                ctx.emit(rec)?;
                continue;
            }
        }
        let frac = p.num("rate_fraction").unwrap_or(0.0);
        let rate = p.num("rate").unwrap_or(frac * capacity);
        rec.params.insert("rate".into(), Value::Num(rate.round()));
        rec.metrics.insert("capacity".into(), capacity);
        if !note.is_empty() {
            rec.params.insert("calibration_note".into(), Value::Word(note.clone()));
        }
        ctx.message(format!(
            "{} {}",
            p.mechanism,
            p.params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
        ));
        measure(ctx, plan, p, &root, rate, &mut rec);
        ctx.emit(rec)?;
    }
    Ok(())
}

/// Measures one point into `rec` (errors are recorded, not returned).
fn measure(ctx: &mut Ctx<'_>, plan: &Plan, p: &Point, root: &Path, rate: f64, rec: &mut Record) {
    let server = if p.mechanism == "nginx" {
        start_nginx(ctx, root)
    } else {
        start_ioscale(ctx, plan, p, root)
    };
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            rec.error = Some(e.0);
            return;
        }
    };
    load_point(ctx, &server, plan, &p.params, rate, plan.warmup.max(0.5), rec);
    ctx.children.stop(server.pid, Duration::from_secs(3));
}

/// The server's CPU time (ns) when the generator's warm-up ended and when its measuring window
/// ended: overload points drain for long after the window, and that tail is not the point's.
#[derive(Default)]
struct CpuWindow {
    start: Option<u64>,
    end: Option<u64>,
}

/// Runs the generator for one point against a running server and fills `rec`: the generator's
/// metrics, the server's counter differences and its CPU over the window. Returns the server's
/// stats document after the run.
fn load_point(
    ctx: &mut Ctx<'_>,
    server: &Server,
    plan: &Plan,
    params: &BTreeMap<String, Value>,
    rate: f64,
    warmup: f64,
    rec: &mut Record,
) -> Option<serde_json::Value> {
    let before = get_json(server.ip, server.port, "/.ioscale/stats");
    let mut cpu = CpuWindow::default();
    let res = run_load(ctx, server, plan, params, rate, plan.duration, warmup, &mut cpu);
    let now = server.cpu_ns();
    let after = get_json(server.ip, server.port, "/.ioscale/stats");
    match res {
        Ok(v) => {
            load_metrics(&v, rec);
            counter_metrics(&before, &after, rec);
            let ns = cpu.end.unwrap_or(now).saturating_sub(cpu.start.unwrap_or(0)) as f64;
            rec.metrics.insert("server_cpu_ns".into(), ns);
            rec.metrics.insert("cpu_util".into(), 100.0 * ns / (plan.duration * 1e9));
            if let Some(replies) = rec.metric("replies").filter(|r| *r > 0.0) {
                rec.metrics.insert("cpu_us_per_req".into(), ns / 1e3 / replies);
            }
            rec.raw = v;
        }
        Err(e) => rec.error = Some(e.0),
    }
    after
}

/// The hybrid ramp: per mechanism, one server, the rate steps in order (up and down), each step
/// a generator run; the server's mode switches (from its stats) are drawn on the time axis.
fn run_ramp(
    ctx: &mut Ctx<'_>,
    plan: &Plan,
    points: &[Point],
    root: &Path,
    capacity: f64,
) -> Result<(), Error> {
    let mechs: Vec<String> = plan.mechanisms.clone();
    let steps: Vec<f64> = plan
        .grid
        .get("rate_fraction")
        .map(|v| v.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    for m in mechs {
        let mine: Vec<&Point> = points.iter().filter(|p| p.mechanism == m).collect();
        if mine.is_empty() {
            continue;
        }
        if let Some(why) = ctx.unavailable(&m) {
            for p in mine {
                let mut rec = blank(plan, p, &ctx.machine);
                rec.error = Some(why.clone());
                ctx.emit(rec)?;
            }
            continue;
        }
        let server = match start_ioscale(ctx, plan, mine[0], root) {
            Ok(s) => s,
            Err(e) => {
                for p in mine {
                    let mut rec = blank(plan, p, &ctx.machine);
                    rec.error = Some(e.0.clone());
                    ctx.emit(rec)?;
                }
                continue;
            }
        };
        let t0 = Instant::now();
        for (i, frac) in steps.iter().enumerate() {
            if sys::interrupted() {
                ctx.children.stop(server.pid, Duration::from_secs(3));
                return Err(Error("interrupted".into()));
            }
            // The grid gives each step once per distinct fraction; a ramp may repeat fractions
            // (up then down), so the step index makes each point distinct.
            let p = Point {
                mechanism: m.clone(),
                params: [
                    ("step".to_string(), Value::Num(i as f64)),
                    ("rate_fraction".to_string(), Value::Num(*frac)),
                ]
                .into_iter()
                .collect(),
            };
            let mut rec = blank(plan, &p, &ctx.machine);
            if ctx.done.contains(&rec.key) {
                continue;
            }
            let rate = frac * capacity;
            rec.params.insert("rate".into(), Value::Num(rate.round()));
            ctx.message(format!("{m} step {i}: {:.0}/s", rate));
            let start = t0.elapsed().as_secs_f64();
            let after =
                load_point(ctx, &server, plan, &p.params, rate, plan.warmup.max(0.3), &mut rec);
            rec.metrics.insert("t".into(), (start + t0.elapsed().as_secs_f64()) / 2.0);
            if let (Some(a), None) = (&after, &rec.error) {
                rec.lists.insert("switch_times".into(), switch_times(a));
            }
            ctx.emit(rec)?;
        }
        ctx.children.stop(server.pid, Duration::from_secs(3));
    }
    Ok(())
}

/// Mode-switch times (seconds) from the server's stats: any array of objects with an `at` field
/// (a number of seconds, or `{secs, nanos}`).
fn switch_times(v: &serde_json::Value) -> Vec<f64> {
    let mut out = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<f64>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(at) = m.get("at") {
                    let secs = at.as_f64().or_else(|| {
                        Some(
                            at.get("secs")?.as_f64()?
                                + at.get("nanos")
                                    .and_then(serde_json::Value::as_f64)
                                    .unwrap_or(0.0)
                                    / 1e9,
                        )
                    });
                    if let Some(s) = secs {
                        out.push(s);
                    }
                }
                for x in m.values() {
                    walk(x, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}
