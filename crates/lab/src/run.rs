//! The runner: experiments → processes → one JSON line per point → the report.
//!
//! Every measuring process is a child of the lab, started from the `ioscale` binary itself
//! (`serve`, `load`, `overhead`, `herd`), pinned with `taskset` (server on CPU 0, generator on
//! CPU 1) when the machine has two or more CPUs. Ctrl-C stops the children by PID and keeps every
//! point already written; `--resume` skips the points already in `results.jsonl`.

use crate::record::{self, Machine, Record};
use crate::spec::{self, Experiment, Kind, Plan, Point, Value, Which};
use crate::sys;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod http;

/// What to run and where.
#[derive(Clone, Debug)]
pub struct Config {
    /// The `ioscale` binary (normally the running one).
    pub exe: PathBuf,
    /// Where the experiment files are.
    pub experiments_dir: PathBuf,
    /// Where results and the report go.
    pub out: PathBuf,
    /// quick or full.
    pub which: Which,
    /// Skip points already in `results.jsonl`.
    pub resume: bool,
    /// Run only these experiments (all when empty).
    pub only: Vec<String>,
    /// Show progress bars (on a terminal).
    pub progress: bool,
    /// Drive the http experiments from these load hosts (`ioscale load --hosts`), not locally.
    pub load_hosts: Vec<String>,
    /// The command template that reaches a load host (`ioscale load --remote-cmd`).
    pub load_remote_cmd: Option<String>,
    /// The address the server under test listens on (one the load hosts reach).
    pub server_addr: std::net::Ipv4Addr,
}

/// A runner failure: one sentence.
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error(e.to_string())
    }
}

impl From<spec::SpecError> for Error {
    fn from(e: spec::SpecError) -> Self {
        Error(e.to_string())
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// `results.jsonl`.
    pub results: PathBuf,
    /// `report.html`.
    pub report: PathBuf,
    /// `summary.md`.
    pub summary: PathBuf,
    /// Points measured in this run.
    pub measured: usize,
    /// Points skipped because `--resume` found them.
    pub skipped: usize,
    /// Points that were invalid or failed.
    pub invalid: usize,
    /// Whether Ctrl-C stopped the run early.
    pub interrupted: bool,
}

/// Loads the experiments, keeping `only` (and refusing unknown names with the list).
pub fn select(dir: &Path, only: &[String]) -> Result<Vec<Experiment>, Error> {
    let all = spec::load_dir(dir)?;
    if only.is_empty() {
        return Ok(all);
    }
    for o in only {
        if !all.iter().any(|e| &e.name == o) {
            let names: Vec<&str> = all.iter().map(|e| e.name.as_str()).collect();
            return Err(Error(format!(
                "unknown experiment '{o}': expected one of {}",
                names.join(", ")
            )));
        }
    }
    Ok(all.into_iter().filter(|e| only.contains(&e.name)).collect())
}

/// The children the lab started, ended by PID on interrupt or error.
#[derive(Default)]
pub(crate) struct Children {
    list: Vec<Child>,
}

impl Children {
    pub(crate) fn spawn(&mut self, mut cmd: Command) -> Result<u32, Error> {
        let child =
            cmd.spawn().map_err(|e| Error(format!("cannot start {:?}: {e}", cmd.get_program())))?;
        let pid = child.id();
        self.list.push(child);
        Ok(pid)
    }

    /// Takes a child back (to wait for its output).
    pub(crate) fn take(&mut self, pid: u32) -> Option<Child> {
        let i = self.list.iter().position(|c| c.id() == pid)?;
        Some(self.list.swap_remove(i))
    }

    /// SIGTERM, a grace period, then SIGKILL, and reap.
    pub(crate) fn stop(&mut self, pid: u32, grace: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.take(pid)?;
        let _ = sys::kill(pid, sys::SIGTERM);
        let t = Instant::now();
        while t.elapsed() < grace {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    pub(crate) fn stop_all(&mut self) {
        let pids: Vec<u32> = self.list.iter().map(Child::id).collect();
        for pid in pids {
            self.stop(pid, Duration::from_secs(2));
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Prefixes a command with `taskset -c CPU` when the machine has a CPU to spare for it.
pub(crate) fn pinned(exe: &Path, cpu: usize) -> Command {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if cores >= 2 && Path::new("/usr/bin/taskset").exists() {
        let mut c = Command::new("/usr/bin/taskset");
        c.arg("-c").arg(cpu.to_string()).arg(exe);
        c
    } else {
        Command::new(exe)
    }
}

/// What this binary and kernel can run: mechanism name → None if supported, or why not.
pub(crate) fn availability(exe: &Path) -> BTreeMap<String, Option<String>> {
    let out = Command::new(exe).args(["mechanisms", "--json"]).stderr(Stdio::null()).output();
    let mut map = BTreeMap::new();
    if let Ok(out) = out {
        if let Ok(serde_json::Value::Array(rows)) =
            serde_json::from_slice::<serde_json::Value>(&out.stdout)
        {
            for r in rows {
                let name = r["name"].as_str().unwrap_or_default().to_string();
                let why = if r["supported"].as_bool() == Some(true) {
                    None
                } else {
                    Some(r["reason"].as_str().unwrap_or("not supported by this kernel").to_string())
                };
                map.insert(name, why);
            }
        }
    }
    map
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A record with no measurement yet.
pub(crate) fn blank(plan: &Plan, p: &Point, machine: &Machine) -> Record {
    Record {
        experiment: plan.exp.name.clone(),
        variant: plan.which,
        key: p.key(&plan.exp.name, plan.which),
        mechanism: p.mechanism.clone(),
        params: p.params.clone(),
        metrics: BTreeMap::new(),
        lists: BTreeMap::new(),
        valid: true,
        invalid_reason: None,
        error: None,
        unix_time: now_unix(),
        machine: machine.clone(),
        raw: serde_json::Value::Null,
    }
}

/// The shared state of one lab run.
pub(crate) struct Ctx<'a> {
    pub(crate) cfg: &'a Config,
    pub(crate) machine: Machine,
    pub(crate) results: PathBuf,
    pub(crate) done: BTreeSet<String>,
    pub(crate) children: Children,
    pub(crate) available: BTreeMap<String, Option<String>>,
    pub(crate) measured: usize,
    pub(crate) invalid: usize,
    pub(crate) bar: Option<indicatif::ProgressBar>,
}

impl Ctx<'_> {
    /// Writes a record (and counts it).
    pub(crate) fn emit(&mut self, mut rec: Record) -> Result<(), Error> {
        rec.unix_time = now_unix();
        if !rec.usable() {
            self.invalid += 1;
        }
        record::append(&self.results, &rec)?;
        self.done.insert(rec.key.clone());
        self.measured += 1;
        if let Some(b) = &self.bar {
            b.inc(1);
        }
        Ok(())
    }

    pub(crate) fn message(&self, msg: String) {
        if let Some(b) = &self.bar {
            b.set_message(msg);
        }
    }

    /// Why a mechanism cannot run here, if it cannot ("select+multi-accept" is select).
    pub(crate) fn unavailable(&self, mech: &str) -> Option<String> {
        let mech = mech.split('+').next().unwrap_or(mech);
        match self.available.get(mech) {
            None => Some(format!("'{mech}' is not a mechanism of this ioscale build")),
            Some(why) => why.clone(),
        }
    }
}

/// Runs the selected experiments and renders the report.
pub fn run(cfg: &Config) -> Result<Outcome, Error> {
    let exps = select(&cfg.experiments_dir, &cfg.only)?;
    std::fs::create_dir_all(&cfg.out).map_err(|e| {
        Error(format!("cannot create the output directory {}: {e}", cfg.out.display()))
    })?;
    let results = cfg.out.join("results.jsonl");
    let mut done = BTreeSet::new();
    if cfg.resume {
        let (recs, _) = record::read_all(&results)?;
        done.extend(recs.into_iter().map(|r| r.key));
    } else if results.exists() {
        let old = cfg.out.join(format!("results.{}.jsonl.old", now_unix()));
        std::fs::rename(&results, &old)?;
        eprintln!("lab: kept the previous results as {}", old.display());
    }
    sys::catch_interrupt();
    let mut ctx = Ctx {
        cfg,
        machine: Machine::detect(),
        results: results.clone(),
        done,
        children: Children::default(),
        available: availability(&cfg.exe),
        measured: 0,
        invalid: 0,
        bar: None,
    };
    let total_before = ctx.done.len();
    let mut interrupted = false;
    for e in &exps {
        if sys::interrupted() {
            interrupted = true;
            break;
        }
        let mut plan = e.plan(cfg.which);
        if e.kind == Kind::Http && e.nginx {
            if ["/usr/sbin/nginx", "/usr/bin/nginx"].iter().any(|p| Path::new(p).exists()) {
                plan.mechanisms.push("nginx".into());
            } else {
                eprintln!("lab: {}: nginx is not installed; its reference line is skipped", e.name);
            }
        }
        let points: Vec<Point> = plan
            .points()
            .into_iter()
            .filter(|p| !ctx.done.contains(&p.key(&e.name, cfg.which)))
            .collect();
        if points.is_empty() {
            continue;
        }
        if cfg.progress {
            let bar = indicatif::ProgressBar::new(points.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix:>18} [{bar:30}] {pos}/{len} ETA {eta} {wide_msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(e.name.clone());
            ctx.bar = Some(bar);
        }
        let r = match e.kind {
            Kind::Dispatch => run_dispatch(&mut ctx, &plan, &points),
            Kind::Http => http::run(&mut ctx, &plan, &points),
            Kind::Herd => run_herd(&mut ctx, &plan, &points),
        };
        if let Some(b) = ctx.bar.take() {
            b.finish();
        }
        ctx.children.stop_all();
        if let Err(err) = r {
            if sys::interrupted() {
                interrupted = true;
                break;
            }
            return Err(Error(format!("experiment {}: {err}", e.name)));
        }
    }
    let (measured, invalid) = (ctx.measured, ctx.invalid);
    drop(ctx);
    let (report, summary) = render_dir(&cfg.out, &cfg.experiments_dir)?;
    Ok(Outcome {
        results,
        report,
        summary,
        measured,
        skipped: total_before,
        invalid,
        interrupted: interrupted || sys::interrupted(),
    })
}

/// Re-renders `report.html` and `summary.md` in `out` from its `results.jsonl`.
pub fn render_dir(out: &Path, experiments_dir: &Path) -> Result<(PathBuf, PathBuf), Error> {
    let (recs, bad) = record::read_all(&out.join("results.jsonl"))?;
    if recs.is_empty() {
        return Err(Error(format!(
            "{} holds no results to report",
            out.join("results.jsonl").display()
        )));
    }
    let exps = spec::load_dir(experiments_dir)?;
    let machine = recs.last().map(|r| r.machine.clone()).unwrap_or_default();
    let when = recs.iter().map(|r| r.unix_time).max().unwrap_or(0);
    let note = format!(
        "{} points from {} ({} damaged lines skipped); last point at {} (Unix time {when}).",
        recs.len(),
        out.join("results.jsonl").display(),
        bad,
        fmt_date(when)
    );
    let (html, md) = crate::report::render(&exps, &recs, &machine, &note);
    let report = out.join("report.html");
    let summary = out.join("summary.md");
    std::fs::write(&report, html)?;
    std::fs::write(&summary, md)?;
    Ok((report, summary))
}

/// Replaces the text between `<!-- lab-results:begin -->` and `<!-- lab-results:end -->` in the
/// README at `readme` with the summary of the run in `out` (its date and machine facts come from
/// the results themselves), so the README's results are generated, never typed.
pub fn splice_readme(out: &Path, readme: &Path) -> Result<(), Error> {
    const BEGIN: &str = "<!-- lab-results:begin -->";
    const END: &str = "<!-- lab-results:end -->";
    let summary = std::fs::read_to_string(out.join("summary.md")).map_err(|e| {
        Error(format!(
            "{}: {e}; run `ioscale lab report {}` first",
            out.join("summary.md").display(),
            out.display()
        ))
    })?;
    let text = std::fs::read_to_string(readme)?;
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        return Err(Error(format!("{} has no {BEGIN} ... {END} markers", readme.display())));
    };
    if e < b {
        return Err(Error(format!("{}: {END} comes before {BEGIN}", readme.display())));
    }
    // The summary's own title becomes a sub-heading of the README's section.
    let body = summary.replacen("# ioscale lab summary", "", 1).replace("\n## ", "\n### ");
    let new = format!("{}{BEGIN}\n{}\n{}", &text[..b], body.trim(), &text[e..]);
    std::fs::write(readme, new)?;
    Ok(())
}

/// A UTC date for a Unix time (civil-from-days; no time-zone database needed).
pub fn fmt_date(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", secs / 3600, (secs % 3600) / 60)
}

fn num_list(plan: &Plan, name: &str) -> Vec<f64> {
    plan.grid.get(name).map(|v| v.iter().filter_map(Value::as_f64).collect()).unwrap_or_default()
}

/// `dispatch` experiments: one `ioscale overhead --json` child for the whole plan (it
/// interleaves mechanisms and idle counts itself), pinned to CPU 0.
fn run_dispatch(ctx: &mut Ctx<'_>, plan: &Plan, points: &[Point]) -> Result<(), Error> {
    let mut runnable = Vec::new();
    for m in &plan.mechanisms {
        if let Some(why) = ctx.unavailable(m) {
            for p in points.iter().filter(|p| &p.mechanism == m) {
                let mut rec = blank(plan, p, &ctx.machine);
                rec.error = Some(why.clone());
                ctx.emit(rec)?;
            }
        } else if points.iter().any(|p| &p.mechanism == m) {
            runnable.push(m.clone());
        }
    }
    if runnable.is_empty() {
        return Ok(());
    }
    let idle: Vec<String> = num_list(plan, "idle").iter().map(|v| format!("{v}")).collect();
    ctx.message(format!("{} mechanisms × {} idle counts", runnable.len(), idle.len()));
    // The completion model is measured by `--completion`, not named in `--mechanisms` (which
    // takes readiness mechanisms; with none left, epoll is measured and its points unused).
    let completion = runnable.iter().any(|m| m == "uring-completion");
    let mut readiness: Vec<&str> =
        runnable.iter().map(String::as_str).filter(|m| *m != "uring-completion").collect();
    if readiness.is_empty() {
        readiness.push("epoll");
    }
    let mut cmd = pinned(&ctx.cfg.exe, 0);
    cmd.args([
        "overhead",
        "--json",
        "--mechanisms",
        &readiness.join(","),
        "--idle",
        &idle.join(","),
    ])
    .args(["--rounds", &plan.rounds.to_string()])
    .args(["--round-ms", &((plan.duration * 1000.0).round().max(1.0) as u64).to_string()])
    .args(completion.then_some("--completion"))
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let pid = ctx.children.spawn(cmd)?;
    let child = ctx.children.take(pid).ok_or_else(|| Error("lost the overhead child".into()))?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(Error(format!(
            "ioscale overhead failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).map_err(|e| {
        Error(format!("ioscale overhead printed something that is not its JSON: {e}"))
    })?;
    for p in points.iter().filter(|p| runnable.contains(&p.mechanism)) {
        let mut rec = blank(plan, p, &ctx.machine);
        let idle = p.num("idle").unwrap_or(0.0);
        let row = rows
            .iter()
            .find(|r| r["mechanism"] == p.mechanism.as_str() && r["idle"].as_f64() == Some(idle));
        match row {
            Some(r) => {
                if let Some(e) = r["error"].as_str() {
                    rec.error = Some(e.to_string());
                }
                for (k, src) in [
                    ("ns_per_cycle", "ns_per_cycle"),
                    ("ratio_to_smallest", "ratio_to_smallest"),
                    ("waits_per_event", "waits_per_event"),
                    ("interest_syscalls_per_cycle", "interest_syscalls_per_cycle"),
                ] {
                    if let Some(v) = r[src].as_f64() {
                        rec.metrics.insert(k.to_string(), v);
                    }
                }
                if let Some(c) = r["counters"].as_object() {
                    for (k, v) in c {
                        if let Some(v) = v.as_f64() {
                            rec.metrics.insert(k.clone(), v);
                        }
                    }
                }
                rec.raw = r.clone();
            }
            None => rec.error = Some("ioscale overhead returned no row for this point".into()),
        }
        ctx.emit(rec)?;
    }
    Ok(())
}

/// `herd` experiments: one `ioscale herd --json` child per wait mode and dup count.
fn run_herd(ctx: &mut Ctx<'_>, plan: &Plan, points: &[Point]) -> Result<(), Error> {
    if !ctx.available.is_empty() && !herd_available(&ctx.cfg.exe) {
        for p in points {
            let mut rec = blank(plan, p, &ctx.machine);
            rec.error = Some("this ioscale build has no `herd` command".into());
            ctx.emit(rec)?;
        }
        return Ok(());
    }
    for p in points {
        if sys::interrupted() {
            return Err(Error("interrupted".into()));
        }
        ctx.message(format!(
            "{} {}",
            p.mechanism,
            p.params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
        ));
        let mut rec = blank(plan, p, &ctx.machine);
        let mut cmd = Command::new(&ctx.cfg.exe);
        cmd.args(["herd", "--json", "--wait-in", &p.mechanism]);
        for (k, v) in &p.params {
            cmd.arg(format!("--{k}")).arg(v.to_string());
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let pid = ctx.children.spawn(cmd)?;
        let child = ctx.children.take(pid).ok_or_else(|| Error("lost the herd child".into()))?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            rec.error = Some(String::from_utf8_lossy(&out.stderr).trim().to_string());
        } else {
            match serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                Ok(v) => {
                    let row = if let serde_json::Value::Array(a) = &v {
                        a.first().cloned().unwrap_or_default()
                    } else {
                        v
                    };
                    flatten_numbers(&row, "", &mut rec.metrics);
                    rec.raw = row;
                }
                Err(e) => rec.error = Some(format!("ioscale herd printed no JSON: {e}")),
            }
        }
        ctx.emit(rec)?;
    }
    Ok(())
}

fn herd_available(exe: &Path) -> bool {
    Command::new(exe)
        .args(["herd", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Copies every number of a JSON object into `out`, nested keys joined with '.'.
pub(crate) fn flatten_numbers(
    v: &serde_json::Value,
    prefix: &str,
    out: &mut BTreeMap<String, f64>,
) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten_numbers(v, &key, out);
            }
        }
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                out.insert(prefix.to_string(), f);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        assert_eq!(fmt_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(fmt_date(1_795_401_000), "2026-11-23 02:30 UTC");
    }
}
