//! Load from several hosts: one global arrival plan split into segments (`--segment I/N`), all
//! started at one wall-clock instant (`--start-at`), coordinated over the standard
//! remote-execution tool (`--hosts`, `--remote-cmd`, by default `ssh {host} ioscale`), their
//! records merged losslessly ([`crate::stats::merge`]) into one record with a `hosts` array.
//!
//! The protocol between the coordinator and a segment (docs/multihost.md):
//! - the coordinator starts, for host number `i` of `n`, the command template with `{host}`
//!   replaced, followed by `load`, the user's load arguments, and
//!   `--segment i/n --start-at T --json --coordinated`;
//! - the segment sets up its populations (idle, inactive, pool connections) and, once they are
//!   all established and before `T`, prints one line on stderr:
//!   `ioscale-load READY segment=i/n host_time=UNIX_SECONDS`; a host whose READY line has not
//!   arrived shortly after `T` fails the run, named;
//! - at `T` (its own clock) the segment starts its arrival clock and measures how late it did
//!   (the start offset, in its record's `segment` object);
//! - `--coordinated` makes the segment stop when its stdin closes: the coordinator keeps every
//!   child's stdin open and closes it to stop the segment; through ssh the close travels as EOF
//!   to the remote segment, and if the coordinator or the ssh client dies, the remote side sees
//!   EOF too — so no remote segment outlives its coordinator, without a pseudo-terminal (which
//!   would mix stderr into the JSON on stdout);
//! - the segment prints its JSON record on stdout and exits (0 valid, 3 INVALID).

use crate::plan::{Mode, Plan, PlanError};
use crate::report::summary_text;
use crate::segment::{unix, PONG, READY};
use crate::sys;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Clock pings per host (the one with the shortest round trip is kept, as NTP does).
const PINGS: u32 = 5;

/// How long after the start instant the coordinator still accepts a READY line sent before it
/// (the line's own transit), s.
const READY_GRACE: Duration = Duration::from_millis(500);

/// Builds the command that starts segment `i` (0-based) of `n` on `host`.
fn command_for(
    template: &[String],
    host: &str,
    forwarded: &[String],
    i: usize,
    n: usize,
    start_at: f64,
) -> Command {
    let words: Vec<String> = template.iter().map(|w| w.replace("{host}", host)).collect();
    let mut tail: Vec<String> = vec!["load".into()];
    tail.extend(forwarded.iter().cloned());
    tail.extend([
        "--segment".into(),
        format!("{}/{n}", i + 1),
        "--start-at".into(),
        format!("{start_at:.6}"),
        "--json".into(),
        "--coordinated".into(),
    ]);
    // ssh joins its arguments with spaces for the remote shell: quote them for it.
    let via_ssh = std::path::Path::new(&words[0]).file_name().is_some_and(|f| f == "ssh");
    if via_ssh {
        tail = tail
            .into_iter()
            .map(|a| shlex::try_quote(&a).map(|q| q.into_owned()).unwrap_or(a))
            .collect();
    }
    let mut c = Command::new(&words[0]);
    c.args(&words[1..]).args(tail);
    c
}

/// The user's load arguments as given (after `load`), without the coordinator's own options.
pub fn forwarded_args(argv: &[String]) -> Vec<String> {
    const WITH_VALUE: [&str; 6] =
        ["--hosts", "--remote-cmd", "--start-in", "--start-at", "--series", "--segment"];
    const FLAGS: [&str; 2] = ["--json", "--coordinated"];
    let start = argv.iter().position(|a| a == "load").map_or(argv.len(), |p| p + 1);
    let mut out = Vec::new();
    let mut it = argv[start..].iter();
    while let Some(a) = it.next() {
        let name = a.split_once('=').map_or(a.as_str(), |(n, _)| n);
        if WITH_VALUE.contains(&name) {
            if !a.contains('=') {
                it.next();
            }
        } else if !FLAGS.contains(&a.as_str()) {
            out.push(a.clone());
        }
    }
    out
}

struct Host {
    name: String,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stdout: Option<mpsc::Receiver<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    ready: Option<(f64, f64)>,
    pings: u32,
    /// The best clock sample: (round trip, host clock − coordinator clock), s.
    clock: Option<(f64, f64)>,
    exit: Option<std::process::ExitStatus>,
    record: Option<Value>,
    failure: Option<String>,
}

enum Note {
    /// Host, its clock at READY, ours on receipt.
    Ready(usize, f64, f64),
    /// Host, our clock when we pinged, its clock on answering, ours on receipt.
    Pong(usize, f64, f64, f64),
}

/// Sends a clock ping (`ping T`, T our wall clock) on the host's stdin.
fn ping(h: &mut Host) {
    if let Some(s) = h.stdin.as_mut() {
        let _ = writeln!(s, "ping {:.6}", unix(SystemTime::now()));
        let _ = s.flush();
        h.pings += 1;
    }
}

/// Takes in what the hosts' stderr readers noticed: READY lines (judged against the start
/// instant, then the clock pings begin) and clock answers (the shortest round trip kept; the
/// skew is the host's clock minus the midpoint of our send and receipt, within ± half the round
/// trip).
fn take_notes(rx: &mpsc::Receiver<Note>, hosts: &mut [Host], start_unix: f64) {
    while let Ok(note) = rx.try_recv() {
        match note {
            Note::Ready(i, host_time, recv) => {
                hosts[i].ready = Some((host_time, recv));
                if host_time > start_unix {
                    hosts[i].failure = Some(format!(
                        "was not ready by the start instant: its READY line is {:.0} ms after it by its own clock",
                        (host_time - start_unix) * 1000.0
                    ));
                }
                ping(&mut hosts[i]);
            }
            Note::Pong(i, sent, host_time, recv) => {
                let h = &mut hosts[i];
                let rtt = recv - sent;
                if rtt >= 0.0 && !h.clock.is_some_and(|(best, _)| rtt >= best) {
                    h.clock = Some((rtt, host_time - (sent + recv) / 2.0));
                }
                if h.pings < PINGS {
                    ping(h);
                }
            }
        }
    }
}

impl Host {
    /// The last line the host wrote on stderr (without waiting for the pipe to close: a
    /// grandchild may still hold it).
    fn tail(&mut self) -> String {
        self.stderr.lock().map(|l| l.last().cloned().unwrap_or_default()).unwrap_or_default()
    }

    /// Its stdout, once it has exited (bounded wait: a grandchild may hold the pipe).
    fn output(&mut self) -> Vec<u8> {
        self.stdout
            .take()
            .and_then(|rx| rx.recv_timeout(Duration::from_secs(2)).ok())
            .unwrap_or_default()
    }
}

/// The coordinator's typed plan, made once from the command line ([`crate::cli`]).
#[derive(Clone, Debug)]
pub struct HostsPlan {
    /// The hosts, one segment each, in order.
    pub hosts: Vec<String>,
    /// The command that starts ioscale on a host, split into words; `{host}` is replaced.
    pub template: Vec<String>,
    /// The shared start instant.
    pub start_at: SystemTime,
    /// The user's load arguments, passed on to every segment.
    pub forwarded: Vec<String>,
    /// The segments' `--timeout` (how long a stopped segment may drain).
    pub timeout: Duration,
}

impl HostsPlan {
    /// Checks the coordinator's options: host names, a command template with a `{host}`
    /// placeholder, a start instant far enough ahead (`start_at`, or `start_in` from now), a
    /// plan that splits over the hosts.
    pub fn new(
        hosts: &[String],
        remote_cmd: &str,
        start_at: Option<SystemTime>,
        start_in: Duration,
        plan: &Plan,
        forwarded: Vec<String>,
    ) -> Result<HostsPlan, PlanError> {
        if let Some(h) = hosts.iter().find(|h| h.trim().is_empty()) {
            return Err(PlanError(format!(
                "invalid --hosts entry '{h}': expected host names separated by commas"
            )));
        }
        for i in 0..hosts.len() as u64 {
            plan.segment(i, hosts.len() as u64)?;
        }
        let template = match shlex::split(remote_cmd) {
            Some(w) if !w.is_empty() => w,
            _ => {
                return Err(PlanError(format!(
                    "invalid --remote-cmd '{remote_cmd}': expected a command line such as 'ssh {{host}} ioscale' (balanced quotes)"
                )))
            }
        };
        if !template.iter().any(|w| w.contains("{host}")) {
            return Err(PlanError(format!(
                "--remote-cmd '{remote_cmd}' has no {{host}} placeholder: each host needs its own command"
            )));
        }
        let start_at = start_at.unwrap_or_else(|| SystemTime::now() + start_in);
        let lead = start_at.duration_since(SystemTime::now()).unwrap_or_default();
        if lead < Duration::from_millis(200) {
            return Err(PlanError(format!(
                "--start-at {} is less than 0.2 s away: give a later instant so that every host can get ready",
                humantime::format_rfc3339_millis(start_at)
            )));
        }
        Ok(HostsPlan {
            hosts: hosts.to_vec(),
            template,
            start_at,
            forwarded,
            timeout: plan.timeout,
        })
    }
}

/// How a coordinated run ended.
#[derive(Debug)]
pub struct Outcome {
    /// The merged record (INVALID, naming them, when hosts failed or were INVALID), or why
    /// there is none.
    pub record: Result<Value, String>,
    /// Hosts that failed, and how.
    pub failures: Vec<(String, String)>,
    /// Interrupted (SIGINT/SIGTERM at the coordinator).
    pub interrupted: bool,
    /// Stopped before the start instant (a host not ready, or an interrupt): nothing measured.
    pub before_start: bool,
}

/// Runs one segment per host of `hp` (`plan` being the whole, global plan) and merges their
/// records. Hosts that could not start, were not ready by the start instant, or ended without
/// a record are failures; one failure (or an interrupt) stops every segment.
pub fn coordinate(hp: &HostsPlan, plan: &Plan) -> Outcome {
    let _ = sys::install_signals(); // as before: a run without the handlers still runs
    let lead = hp.start_at.duration_since(SystemTime::now()).unwrap_or_default();
    let t_start = Instant::now() + lead;
    let start_unix = unix(hp.start_at);
    let (tx, rx) = mpsc::channel::<Note>();
    let mut hosts: Vec<Host> =
        (0..hp.hosts.len()).map(|i| launch(hp, i, start_unix, &tx)).collect();
    drop(tx);
    let mut interrupted = wait_ready(hp, &rx, &mut hosts, t_start, start_unix);
    let mut stopping: Option<Instant> = None;
    let before_start = hosts.iter().any(|h| h.failure.is_some()) || interrupted;
    if before_start {
        // Nothing measured yet: the segments need no time to drain.
        stop_all(&mut hosts, &mut stopping, Duration::ZERO);
    }
    let run_for = plan.warmup
        + plan.duration.unwrap_or_else(|| match plan.mode {
            Mode::Sessions { rate, .. } | Mode::RequestRate { rate, .. } => {
                Duration::from_secs_f64(plan.arrival_bound().unwrap_or(0) as f64 / rate)
            }
            _ => Duration::from_secs(3600),
        });
    let deadline = t_start + run_for + hp.timeout + Duration::from_secs(30);
    let run = Collecting { rx: &rx, start_unix, deadline, drain: hp.timeout, before_start };
    interrupted |= run.collect(&mut hosts, stopping);
    let failures: Vec<(String, String)> =
        hosts.iter().filter_map(|h| h.failure.clone().map(|f| (h.name.clone(), f))).collect();
    let record = if before_start {
        Err("stopped before the start instant".into())
    } else {
        merged_record(plan, &hosts).map(|mut m| {
            if interrupted {
                if let Some(r) = m["invalid_reasons"].as_array_mut() {
                    r.insert(0, json!("interrupted (SIGINT/SIGTERM at the coordinator): every segment was stopped"));
                }
                m["valid"] = json!(false);
            }
            m
        })
    };
    Outcome { record, failures, interrupted, before_start }
}

/// Starts host `i`'s segment, with readers of its stdout (the record) and stderr (READY and
/// clock answers to `tx`, other lines echoed with the host's name).
fn launch(hp: &HostsPlan, i: usize, start_unix: f64, tx: &mpsc::Sender<Note>) -> Host {
    let name = &hp.hosts[i];
    let mut cmd = command_for(&hp.template, name, &hp.forwarded, i, hp.hosts.len(), start_unix);
    // Its own process group: Ctrl-C reaches the coordinator, which stops every segment in
    // order (and collects their records) instead of killing ssh clients under them.
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let mut h = Host {
        name: name.clone(),
        child: None,
        stdin: None,
        stdout: None,
        stderr: Arc::new(Mutex::new(Vec::new())),
        ready: None,
        pings: 0,
        clock: None,
        exit: None,
        record: None,
        failure: None,
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            h.failure = Some(format!("cannot run '{}': {e}", hp.template[0]));
            return h;
        }
    };
    h.stdin = child.stdin.take();
    let mut out = child.stdout.take().expect("piped");
    let (otx, orx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        let _ = otx.send(buf);
    });
    h.stdout = Some(orx);
    let err = child.stderr.take().expect("piped");
    let (tx, label, tail) = (tx.clone(), name.clone(), h.stderr.clone());
    std::thread::spawn(move || read_stderr(err, i, &label, &tx, &tail));
    h.child = Some(child);
    h
}

/// Reads a segment's stderr: READY lines and clock answers become notes, the rest is echoed
/// with the host's name and kept (the last 20) for failure messages.
fn read_stderr(
    err: std::process::ChildStderr,
    i: usize,
    label: &str,
    tx: &mpsc::Sender<Note>,
    tail: &Mutex<Vec<String>>,
) {
    for line in BufReader::new(err).lines() {
        let Ok(line) = line else { break };
        let field = |rest: &str, k: &str| {
            rest.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .and_then(|v| v.parse::<f64>().ok())
        };
        if let Some(rest) = line.strip_prefix(READY) {
            let host_time = field(rest, "host_time=").unwrap_or(f64::NAN);
            let _ = tx.send(Note::Ready(i, host_time, unix(SystemTime::now())));
            continue;
        }
        if let Some(rest) = line.strip_prefix(PONG) {
            let recv = unix(SystemTime::now());
            if let (Some(t), Some(h)) = (field(rest, "t="), field(rest, "host_time=")) {
                let _ = tx.send(Note::Pong(i, t, h, recv));
            }
            continue;
        }
        eprintln!("[{label}] {line}");
        if let Ok(mut t) = tail.lock() {
            t.push(line);
            if t.len() > 20 {
                t.remove(0);
            }
        }
    }
}

/// Phase 1: every host READY before the start instant (a host that exits, or is not ready
/// shortly after the instant, fails). Returns whether the coordinator was interrupted.
fn wait_ready(
    hp: &HostsPlan,
    rx: &mpsc::Receiver<Note>,
    hosts: &mut [Host],
    t_start: Instant,
    start_unix: f64,
) -> bool {
    loop {
        take_notes(rx, hosts, start_unix);
        for h in hosts.iter_mut().filter(|h| h.ready.is_none() && h.failure.is_none()) {
            if let Some(st) = h.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                h.exit = Some(st);
                let tail = h.tail();
                h.failure = Some(format!("exited ({st}) before it was ready: {tail}"));
            }
        }
        if ioscale_sys::interrupt::requested() {
            return true;
        }
        if hosts.iter().any(|h| h.failure.is_some()) || hosts.iter().all(|h| h.ready.is_some()) {
            return false;
        }
        if Instant::now() > t_start + READY_GRACE {
            for h in hosts.iter_mut().filter(|h| h.ready.is_none()) {
                h.failure = Some(format!(
                    "was not ready by the start instant {} (no READY line: is the host reachable without a password prompt, and 'ioscale' on its PATH?)",
                    humantime::format_rfc3339_millis(hp.start_at)
                ));
            }
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Phase 2's settings: collecting every record.
struct Collecting<'a> {
    rx: &'a mpsc::Receiver<Note>,
    start_unix: f64,
    /// When a segment still running has overrun the plan.
    deadline: Instant,
    /// How long a stopped segment may drain.
    drain: Duration,
    before_start: bool,
}

impl Collecting<'_> {
    /// Waits for every segment's exit and record; one failure, an overrun or an interrupt stops
    /// them all (each drains, then whatever still runs is killed by PID). Returns whether the
    /// coordinator was interrupted.
    fn collect(&self, hosts: &mut [Host], mut stopping: Option<Instant>) -> bool {
        let mut interrupted = false;
        loop {
            take_notes(self.rx, hosts, self.start_unix);
            let mut running = 0;
            for h in hosts.iter_mut() {
                running += usize::from(self.still_running(h));
            }
            if running == 0 {
                break;
            }
            if ioscale_sys::interrupt::requested() && stopping.is_none() {
                interrupted = true;
            }
            let failed = hosts.iter().any(|h| h.failure.is_some());
            if stopping.is_none() && (interrupted || failed) {
                stop_all(hosts, &mut stopping, self.drain);
            }
            if stopping.is_none() && Instant::now() > self.deadline {
                for h in hosts.iter_mut().filter(|h| h.exit.is_none()) {
                    h.failure = Some("did not finish within 30 s after the planned end".into());
                }
                stop_all(hosts, &mut stopping, self.drain);
            }
            if stopping.is_some_and(|t| Instant::now() > t) {
                kill_rest(hosts, interrupted);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for h in hosts.iter_mut() {
            if let Some(c) = h.child.as_mut() {
                let _ = c.wait();
            }
        }
        interrupted
    }

    /// Whether host `h` still runs; when it has just exited, takes its record (and notes a
    /// failure when it ended otherwise than with a record, valid or INVALID).
    fn still_running(&self, h: &mut Host) -> bool {
        let Some(c) = h.child.as_mut() else { return false };
        if h.exit.is_some() {
            return false;
        }
        match c.try_wait() {
            Ok(Some(st)) => {
                h.exit = Some(st);
                let out = h.output();
                let rec: Option<Value> =
                    serde_json::from_slice(&out).ok().filter(|v: &Value| v.is_object());
                let tail = h.tail();
                match (st.code(), rec) {
                    (Some(0 | 3), Some(r)) => h.record = Some(r),
                    (_, r) => {
                        h.record = r;
                        if h.failure.is_none() && !self.before_start {
                            let how = if h.record.is_some() { "" } else { " without a record" };
                            h.failure = Some(format!("ended mid-run ({st}){how}: {tail}"));
                        }
                    }
                }
                false
            }
            Ok(None) | Err(_) => true,
        }
    }
}

/// Kills (by PID) every segment still running after its drain time.
fn kill_rest(hosts: &mut [Host], interrupted: bool) {
    for h in hosts.iter_mut().filter(|h| h.exit.is_none()) {
        if let Some(c) = h.child.as_mut() {
            // By PID (Child::kill): the local child, or the ssh client whose death ends the
            // remote segment through its stdin.
            let _ = c.kill();
            h.exit = c.wait().ok();
        }
        if h.failure.is_none() && !interrupted {
            h.failure = Some("did not stop when asked and was killed".into());
        }
    }
}

/// Closes every segment's stdin (its lifeline: the segment stops, drains its requests in flight
/// for at most `drain` and prints its record); whatever still runs 2 s after that is killed by
/// PID.
fn stop_all(hosts: &mut [Host], stopping: &mut Option<Instant>, drain: Duration) {
    for h in hosts.iter_mut() {
        h.stdin = None;
    }
    stopping.get_or_insert(Instant::now() + drain + Duration::from_secs(2));
}

/// The merged record: every host's record merged losslessly, with the global plan's mode and
/// target, a `hosts` array, and INVALID (naming the host) when any host was INVALID or failed.
fn merged_record(plan: &Plan, hosts: &[Host]) -> Result<Value, String> {
    let records: Vec<Value> = hosts.iter().filter_map(|h| h.record.clone()).collect();
    if records.is_empty() {
        return Err("no host returned a record".into());
    }
    let mut m = crate::stats::merge(&records)?;
    let n = hosts.len();
    let mut reasons: Vec<String> = Vec::new();
    let mut list = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let r = h.record.as_ref();
        let valid = h.failure.is_none() && r.is_some_and(|r| r["valid"] == json!(true));
        let mut why: Vec<String> = r
            .and_then(|r| r["invalid_reasons"].as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default();
        if let Some(f) = &h.failure {
            why.insert(0, format!("failed: {f}"));
        }
        if !valid {
            reasons.push(format!("host {} (segment {}/{n}): {}", h.name, i + 1, why.join("; ")));
        }
        list.push(json!({
            "name": h.name,
            "segment": format!("{}/{n}", i + 1),
            "status": if h.failure.is_some() { "failed" } else if valid { "valid" } else { "INVALID" },
            "valid": valid,
            "invalid_reasons": why,
            "exit_code": h.exit.and_then(|s| s.code()),
            "start_offset_ms": r.map(|r| r["segment"]["start_offset_ms"].clone()).unwrap_or(Value::Null),
            "clock_skew_ms": h.clock.map(|(_, skew)| skew * 1000.0)
                .or(h.ready.map(|(host, recv)| (host - recv) * 1000.0)),
            "clock_rtt_ms": h.clock.map(|(rtt, _)| rtt * 1000.0),
            "target_rate": r.map(|r| r["target_rate"].clone()).unwrap_or(Value::Null),
            "achieved_rate": r.map(|r| r["achieved_rate"].clone()).unwrap_or(Value::Null),
            "replies": r.map(|r| r["active"]["replies"].clone()).unwrap_or(Value::Null),
            "record": r.cloned().unwrap_or(Value::Null),
        }));
    }
    let obj = m.as_object_mut().ok_or("merged record is not an object")?;
    obj.remove("segment");
    m["hosts"] = json!(list);
    m["valid"] = json!(reasons.is_empty());
    m["invalid_reasons"] = json!(reasons);
    // The global plan, not the first segment's share.
    let whole = Plan { segment: crate::plan::Segment::default(), ..plan.clone() };
    if let Mode::RequestRate { connections, .. } | Mode::Peak { connections } = whole.mode {
        m["mode"]["connections"] = json!(connections);
    }
    m["target_rate"] = json!(whole.segment_rate());
    m["self_check"]["target_rate"] = json!(whole.segment_rate());
    Ok(m)
}

/// The human summary of a merged record, with one line per host.
pub fn hosts_summary(m: &Value) -> String {
    let mut s = summary_text(m);
    let f = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:+.3} ms"));
    for h in m["hosts"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "host {} segment {}: {}  target {:.1}/s achieved {:.1}/s replies {}  start offset {}  clock skew {} (round trip {})\n",
            h["name"].as_str().unwrap_or(""),
            h["segment"].as_str().unwrap_or(""),
            h["status"].as_str().unwrap_or(""),
            h["target_rate"].as_f64().unwrap_or(0.0),
            h["achieved_rate"].as_f64().unwrap_or(0.0),
            h["replies"],
            f(&h["start_offset_ms"]),
            f(&h["clock_skew_ms"]),
            h["clock_rtt_ms"].as_f64().map_or("-".to_string(), |x| format!("{x:.3} ms")),
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_options_are_not_forwarded() {
        let argv: Vec<String> = [
            "ioscale",
            "load",
            "http://10.0.0.1:80/",
            "--rate",
            "100",
            "--hosts",
            "a,b",
            "--remote-cmd=ssh {host} x",
            "--json",
            "--start-in",
            "2s",
            "--duration",
            "3s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            forwarded_args(&argv),
            ["http://10.0.0.1:80/", "--rate", "100", "--duration", "3s"]
        );
    }

    #[test]
    fn ssh_arguments_are_quoted_for_the_remote_shell() {
        let t: Vec<String> = ["ssh", "-p", "22", "{host}", "ioscale"].map(String::from).into();
        let c = command_for(&t, "h1", &["http://x/?a=1&b=2".into()], 1, 3, 5.5);
        let args: Vec<String> = c.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(&args[..4], ["-p", "22", "h1", "ioscale"]);
        assert_eq!(args[5], "'http://x/?a=1&b=2'");
        assert!(args.ends_with(&[
            "--segment".into(),
            "2/3".into(),
            "--start-at".into(),
            "5.500000".into(),
            "--json".into(),
            "--coordinated".into()
        ]));
        let t: Vec<String> =
            ["ip", "netns", "exec", "{host}", "/x/ioscale"].map(String::from).into();
        let c = command_for(&t, "ns1", &["http://x/?a=1&b=2".into()], 0, 1, 5.5);
        assert_eq!(c.get_args().nth(5).unwrap(), "http://x/?a=1&b=2");
    }
}
