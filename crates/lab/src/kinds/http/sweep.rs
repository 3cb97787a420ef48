//! A rate sweep against one server: the held populations (idle, inactive) opened once by a
//! holder process, then the active load at each rate in turn.
//!
//! Provos & Lever held their inactive connections with "an extra program" beside httperf, and
//! Chandra & Mosberger kept their idle set fixed while the rate varied; the lab does the same:
//! for each mechanism and held population it starts one server, a holder (`ioscale load` with
//! only the idle and inactive connections) that opens them while the server has its whole core,
//! puts the server under its budget once they are up, and then runs the generator once per rate,
//! lowest first, letting an overloaded server drain between rates. Opening 6,000 connections to
//! a select server once instead of once per rate is most of what makes a quick run fit in
//! minutes.

use super::generator::{LoadRun, HELD};
use super::server::{self, file_name, Server};
use crate::error::Error;
use crate::record::Record;
use crate::runner::context::{blank, Ctx};
use crate::spec::{Plan, Point, Value};
use crate::sys;
use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// How many connections `params` holds.
pub(crate) fn held(params: &BTreeMap<String, Value>) -> u64 {
    HELD.iter().map(|k| params.get(*k).and_then(Value::as_f64).unwrap_or(0.0).max(0.0) as u64).sum()
}

/// What identifies a sweep: the mechanism and every parameter but the rate.
pub(crate) fn key(p: &Point) -> String {
    let rest: Vec<String> = p
        .params
        .iter()
        .filter(|(k, _)| k.as_str() != "rate_fraction" && k.as_str() != "rate")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!("{}|{}", p.mechanism, rest.join(","))
}

/// Established TCP connections whose local port is `port` (the server's side), from
/// `/proc/net/tcp` and `tcp6`: works for any server, nginx included.
pub(crate) fn established(port: u16) -> usize {
    let want = format!(":{port:04X}");
    let mut n = 0;
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(f) else { continue };
        for line in text.lines().skip(1) {
            let mut cols = line.split_whitespace();
            let (_, local, _, state) = (cols.next(), cols.next(), cols.next(), cols.next());
            if state == Some("01") && local.is_some_and(|l| l.ends_with(&want)) {
                n += 1;
            }
        }
    }
    n
}

/// The holder: `ioscale load` with only the held populations, for as long as the sweep lasts.
struct Holder {
    child: Child,
    out: std::thread::JoinHandle<Vec<u8>>,
}

fn start_holder(
    ctx: &mut Ctx<'_>,
    server: &Server,
    plan: &Plan,
    params: &BTreeMap<String, Value>,
) -> Result<Holder, Error> {
    let size = params.get("file_size").and_then(Value::as_f64).unwrap_or(1.0) as u64;
    let url = format!("http://{}:{}/{}", server.ip, server.port, file_name(size));
    let mut cmd = super::priority::launch(&ctx.cfg.exe, super::priority::Role::Generator);
    // Bounded: the sweep stops it long before; a lab killed outright leaves nothing running.
    cmd.args(["load", &url, "--json", "--duration", "3600s"]);
    let n = |k: &str| params.get(k).and_then(Value::as_f64).unwrap_or(0.0) as u64;
    if n("idle") > 0 {
        cmd.args(["--idle", &n("idle").to_string()]);
        cmd.args(["--idle-period", &format!("{}s", plan.exp.load.idle_period.unwrap_or(30.0))]);
    }
    if n("inactive") > 0 {
        cmd.args(["--inactive", &n("inactive").to_string()]);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let pid = ctx.children.spawn(cmd)?;
    let mut child = ctx.children.take(pid).ok_or_else(|| Error("lost the holder".into()))?;
    let pipe = child.stdout.take();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    });
    Ok(Holder { child, out })
}

impl Holder {
    /// Stops the holder (SIGINT: it reports) and returns its record.
    fn stop(mut self) -> Option<serde_json::Value> {
        let _ = sys::kill(self.child.id(), sys::SIGINT);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let out = self.out.join().ok()?;
        serde_json::from_slice(&out).ok()
    }
}

/// Waits until `want` connections are established on the server's port; how long it took, or
/// how many were up when `within` ran out.
fn wait_held(port: u16, want: usize, within: Duration) -> Result<f64, usize> {
    let t = Instant::now();
    loop {
        let n = established(port);
        if n >= want {
            return Ok(t.elapsed().as_secs_f64());
        }
        if t.elapsed() > within || sys::interrupted() {
            return Err(n);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (at most `within`) until the previous rate's load has drained: the server holds no
/// more than the `held` connections plus a few (every active connection, queued for accept or
/// with a request in flight, is an established one on the server's port).
fn wait_drained(server: &Server, held: usize, within: Duration) -> f64 {
    let t = Instant::now();
    while t.elapsed() < within && !sys::interrupted() {
        if established(server.port) <= held + 16 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    t.elapsed().as_secs_f64()
}

/// Runs one sweep: `points` share a mechanism and held populations; `rates[i]` is point i's
/// offered rate. Each point's record is filled by `fill` (the budget and calibration) and
/// emitted; errors go into the records.
pub(crate) fn run(
    ctx: &mut Ctx<'_>,
    plan: &Plan,
    points: &[(&Point, f64)],
    root: &std::path::Path,
    prep: &super::calibrate::Prepared,
    fill: &dyn Fn(&mut Record),
) -> Result<(), Error> {
    let Some(&(first, _)) = points.first() else { return Ok(()) };
    let emit_all = |ctx: &mut Ctx<'_>, why: &str| emit_failed(ctx, plan, points, fill, why);
    let server = match server::start(ctx, plan, first, root) {
        Ok(s) => s,
        Err(e) => return emit_all(ctx, &e.0),
    };
    let want = held(&first.params) as usize;
    let mut holder = None;
    let mut held_after = 0.0;
    if want > 0 {
        ctx.message(format!("{}: opening {want} held connections", first.mechanism));
        holder = Some(start_holder(ctx, &server, plan, &first.params)?);
        // Opening is set-up, done while the server has its whole core; a server that cannot
        // accept its held connections in this long cannot be measured with them.
        let within = Duration::from_secs_f64(10.0 + want as f64 / 500.0);
        match wait_held(server.port, want, within) {
            Ok(s) => held_after = s,
            Err(up) => {
                let why = format!(
                    "the server accepted only {up} of the {want} held connections in {:.0} s (with its whole core): not measured",
                    within.as_secs_f64()
                );
                if let Some(h) = holder.take() {
                    h.stop();
                }
                ctx.children.stop(server.pid, Duration::from_secs(3));
                return emit_all(ctx, &why);
            }
        }
    }
    if let Some(b) = &prep.budget {
        for pid in server.pids() {
            if let Err(e) = b.add(pid) {
                let why = format!("cannot put the server under its CPU budget: {e}");
                if let Some(h) = holder.take() {
                    h.stop();
                }
                ctx.children.stop(server.pid, Duration::from_secs(3));
                return emit_all(ctx, &why);
            }
        }
    }
    let mut result = Ok(());
    for (p, rate) in points {
        if sys::interrupted() {
            result = Err(Error("interrupted".into()));
            break;
        }
        let mut rec = blank(plan, p, &ctx.machine);
        rec.params.insert("rate".into(), Value::Num(rate.round()));
        fill(&mut rec);
        let drained = wait_drained(&server, want, Duration::from_secs(15));
        rec.metrics.insert("drain_wait_s".into(), drained);
        if want > 0 {
            rec.metrics.insert("held_open_s".into(), held_after);
        }
        ctx.message(super::super::describe(p));
        // The active load alone: the holder keeps the rest.
        let active: BTreeMap<String, Value> = p
            .params
            .iter()
            .filter(|(k, _)| !HELD.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let run = LoadRun {
            params: &active,
            rate: *rate,
            duration: plan.duration,
            warmup: plan.warmup.max(0.5),
            budget: prep.budget.as_ref(),
        };
        super::load_point(ctx, &server, plan, &run, &mut rec);
        if want > 0 && established(server.port) < want / 2 {
            // The held set collapsed during this rate (the server closed them, or the holder
            // died): later rates would not be measured against it.
            rec.metrics.insert("held_lost".into(), 1.0);
        }
        // Each point is written as soon as it is measured (a line per point in the log).
        if let Err(e) = ctx.emit(rec) {
            result = Err(e);
            break;
        }
    }
    let report = holder.map(Holder::stop).unwrap_or_default();
    ctx.children.stop(server.pid, Duration::from_secs(3));
    if let Some(h) = report {
        eprintln!("lab: {}: {}: {}", plan.exp.name, first.mechanism, held_account(&h));
    }
    result
}

/// The holder's account of the held populations over the whole sweep, in words.
fn held_account(h: &serde_json::Value) -> String {
    let mut parts = Vec::new();
    for pop in ["idle", "inactive"] {
        let v = &h[pop];
        let n = |k: &serde_json::Value| k.as_f64().unwrap_or(0.0);
        if n(&v["connections_asked"]) <= 0.0 {
            continue;
        }
        parts.push(format!(
            "{pop} connections held over the sweep: {:.0} established, {:.0} reconnects, {:.0} errors, {:.0} replies",
            n(&v["connections_established"]),
            n(&v["reconnects"]),
            n(&v["errors"]["total"]),
            n(&v["replies"])
        ));
    }
    parts.join("; ")
}

/// Records every point of a sweep that could not be measured, with why.
fn emit_failed(
    ctx: &mut Ctx<'_>,
    plan: &Plan,
    points: &[(&Point, f64)],
    fill: &dyn Fn(&mut Record),
    why: &str,
) -> Result<(), Error> {
    for (p, rate) in points {
        let mut rec = blank(plan, p, &ctx.machine);
        rec.params.insert("rate".into(), Value::Num(rate.round()));
        fill(&mut rec);
        rec.error = Some(why.to_string());
        ctx.emit(rec)?;
    }
    Ok(())
}

/// Measures `points` whose rate is placed by the calibration in sweeps: grouped by mechanism
/// and held populations, each group lowest rate first.
pub(crate) fn run_all(
    ctx: &mut Ctx<'_>,
    plan: &Plan,
    points: &[(Point, f64)],
    root: &std::path::Path,
    prep: &super::calibrate::Prepared,
    fill: &dyn Fn(&mut Record),
) -> Result<(), Error> {
    let mut groups: BTreeMap<String, Vec<(&Point, f64)>> = BTreeMap::new();
    let mut order = Vec::new();
    for (p, r) in points {
        let k = key(p);
        if !groups.contains_key(&k) {
            order.push(k.clone());
        }
        groups.entry(k).or_default().push((p, *r));
    }
    for k in order {
        let mut g = groups.remove(&k).unwrap_or_default();
        g.sort_by(|a, b| a.1.total_cmp(&b.1));
        if let Some(why) = g.first().and_then(|(p, _)| {
            (p.mechanism != "nginx").then(|| ctx.unavailable(&p.mechanism)).flatten()
        }) {
            emit_failed(ctx, plan, &g, fill, &why)?;
            continue;
        }
        run(ctx, plan, &g, root, prep, fill)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_group_by_everything_but_the_rate() {
        let p = |m: &str, idle: f64, f: f64| Point {
            mechanism: m.into(),
            params: [
                ("idle".to_string(), Value::Num(idle)),
                ("rate_fraction".to_string(), Value::Num(f)),
            ]
            .into_iter()
            .collect(),
        };
        assert_eq!(key(&p("rtsig", 252.0, 0.5)), key(&p("rtsig", 252.0, 1.3)));
        assert_ne!(key(&p("rtsig", 252.0, 0.5)), key(&p("rtsig", 6000.0, 0.5)));
        assert_ne!(key(&p("rtsig", 252.0, 0.5)), key(&p("epoll", 252.0, 0.5)));
        assert_eq!(held(&p("x", 252.0, 1.0).params), 252);
    }

    #[test]
    fn established_connections_are_counted_by_local_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let c: Vec<_> =
            (0..3).map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
        // Accepted or queued, the server's sides are ESTABLISHED.
        let t = Instant::now();
        while established(port) < 3 && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(established(port), 3);
        drop(c);
    }
}
