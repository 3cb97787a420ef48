//! The runner: experiments → processes → one JSON line per point → the report.
//!
//! Every measuring process is a child of the lab, started from the `ioscale` binary itself
//! (`serve`, `load`, `overhead`, `herd`), pinned with `taskset` (server on CPU 0, generator on
//! CPU 1) when the machine has two or more CPUs ([`children`]). Each experiment's points are
//! measured by the runner of its kind ([`crate::kinds`]), which writes one record per point
//! through the run's shared context. Ctrl-C stops the children by PID and keeps every point
//! already written; `--resume` skips the points already in `results.jsonl`.

use crate::record::{self, Machine};
use crate::spec::{self, Experiment, Kind, Plan, Point, Which};
use crate::sys;
use std::collections::BTreeSet;

use std::path::{Path, PathBuf};

pub mod children;
pub(crate) mod context;
pub mod progress;

pub use crate::error::Error;
pub use children::{pinned, Children};
pub use context::Config;
pub(crate) use context::Ctx;

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

/// Runs the selected experiments and renders the report.
pub fn run(cfg: &Config) -> Result<Outcome, Error> {
    let exps = select(&cfg.experiments_dir, &cfg.only)?;
    std::fs::create_dir_all(&cfg.out).map_err(|e| {
        Error(format!("cannot create the output directory {}: {e}", cfg.out.display()))
    })?;
    let results = cfg.out.join("results.jsonl");
    let (done, appender) = prepare_results(cfg, &results)?;
    // Every experiment's points not yet done, so progress can count the whole run.
    let work: Vec<(Plan, Vec<Point>)> = exps
        .iter()
        .map(|e| {
            let plan = plan_with_reference(e, cfg.which);
            let points = plan
                .points()
                .into_iter()
                .filter(|p| !done.contains(&p.key(&e.name, cfg.which)))
                .collect();
            (plan, points)
        })
        .collect();
    let total: usize = work.iter().map(|(_, p)| p.len()).sum();
    let total_ms: u64 =
        work.iter().map(|(plan, p)| progress::weight_ms(plan) * p.len() as u64).sum();
    let _ = sys::catch_interrupt(); // without it Ctrl-C kills the run, as before
    let mut ctx = Ctx {
        cfg,
        machine: Machine::detect(),
        results: appender,
        done,
        children: Children::default(),
        available: context::availability(&cfg.exe),
        measured: 0,
        invalid: 0,
        progress: progress::Progress::new(cfg.progress, total, total_ms),
    };
    let total_before = ctx.done.len();
    let mut interrupted = false;
    for (plan, points) in &work {
        if sys::interrupted() {
            interrupted = true;
            break;
        }
        if let Err(err) = run_experiment(&mut ctx, plan, points) {
            if sys::interrupted() {
                interrupted = true;
                break;
            }
            return Err(Error(format!("experiment {}: {err}", plan.exp.name)));
        }
    }
    let (measured, invalid) = (ctx.measured, ctx.invalid);
    drop(ctx);
    let (report, summary) = crate::report::render_dir(&cfg.out, &cfg.experiments_dir)?;
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

/// Opens the results file for appending. With `--resume`, a torn last line is cut first and
/// the keys of the points already measured are returned (lines that cannot be read are named
/// and their points measured again); otherwise the previous results file (if any) is kept
/// aside under a dated name and the run starts empty.
fn prepare_results(
    cfg: &Config,
    results: &Path,
) -> Result<(BTreeSet<String>, record::Appender), Error> {
    let mut done = BTreeSet::new();
    if !cfg.resume && results.exists() {
        let old = cfg.out.join(format!("results.{}.jsonl.old", context::now_unix()));
        std::fs::rename(results, &old)?;
        eprintln!("lab: kept the previous results as {}", old.display());
    }
    let (appender, repaired) = record::Appender::open(results)?;
    if let Some(w) = repaired {
        eprintln!("lab: {w}");
    }
    if cfg.resume {
        let contents = record::read_all(results)?;
        for w in contents.warnings(results) {
            eprintln!("lab: {w}");
        }
        done.extend(contents.records.into_iter().map(|r| r.key));
    }
    Ok((done, appender))
}

/// Measures the points of one experiment not yet done, with its kind's runner.
fn run_experiment(ctx: &mut Ctx<'_>, plan: &Plan, points: &[Point]) -> Result<(), Error> {
    if points.is_empty() {
        return Ok(());
    }
    ctx.progress.start(plan, points.len());
    let r = crate::kinds::run(ctx, plan, points);
    ctx.progress.finish();
    ctx.children.stop_all();
    r
}

/// The experiment's plan, with nginx added as a reference line where it asks for one and
/// nginx is installed.
fn plan_with_reference(e: &Experiment, which: Which) -> Plan {
    let mut plan = e.plan(which);
    if e.kind == Kind::Http && e.nginx {
        if ["/usr/sbin/nginx", "/usr/bin/nginx"].iter().any(|p| Path::new(p).exists()) {
            plan.mechanisms.push("nginx".into());
        } else {
            eprintln!("lab: {}: nginx is not installed; its reference line is skipped", e.name);
        }
    }
    plan
}
