//! `ioscale lab`: run the experiments, list them, or re-render a report.

use anyhow::{bail, Result};
use ioscale_lab::{report, runner, spec};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// `ioscale lab [list | report DIR | NAME...] [--full] [--out DIR] [--resume]`.
#[derive(clap::Args, Debug)]
pub struct LabArgs {
    /// `list` shows the experiments; `report DIR` re-renders a report; otherwise the names of
    /// experiments to run (all when none).
    #[arg(value_name = "list | report DIR | EXPERIMENT")]
    what: Vec<String>,
    /// Run the papers' full grids instead of the quick suite.
    #[arg(long)]
    full: bool,
    /// Where results and the report go.
    #[arg(long, default_value = "lab-out")]
    out: PathBuf,
    /// Continue a run: skip the points already in OUT/results.jsonl.
    #[arg(long)]
    resume: bool,
    /// Where the experiment files are.
    #[arg(long, default_value = "experiments")]
    experiments: PathBuf,
    /// With `report DIR`: also write the run's summary into this README, between its
    /// `<!-- lab-results:begin -->` and `<!-- lab-results:end -->` markers.
    #[arg(long, value_name = "README")]
    readme: Option<PathBuf>,
    /// Drive the http experiments from several load hosts: each point's load is split into one
    /// segment per host and merged (`ioscale load --hosts`, docs/multihost.md).
    #[arg(long, value_name = "H1,H2,...", value_delimiter = ',')]
    load_hosts: Vec<String>,
    /// How to reach a load host ({host} is replaced), as `ioscale load --remote-cmd`; default
    /// `ssh {host} ioscale`.
    #[arg(long, value_name = "TEMPLATE", requires = "load_hosts")]
    load_remote_cmd: Option<String>,
    /// The address the server under test listens on; with --load-hosts, one they reach.
    #[arg(long, value_name = "IPV4", default_value = "127.0.0.1")]
    server_addr: std::net::Ipv4Addr,
    /// The server's CPU budget for every http experiment, overriding each experiment's own
    /// (`server_cpu`): a fraction of one core (0.2 or 20%), `auto` (the largest that lets the
    /// generator offer the top rate with headroom), or `none`. A budget needs a cgroup with the
    /// cpu controller (v2 `cpu.max` or v1 `cpu.cfs_quota_us`); without one the lab refuses.
    #[arg(long, value_name = "FRACTION|auto|none", value_parser = parse_server_cpu)]
    server_cpu: Option<spec::Budgeting>,
}

fn parse_server_cpu(s: &str) -> Result<spec::Budgeting, String> {
    ioscale_lab::budget::parse_setting(s)
}

fn experiments_dir(given: &PathBuf) -> PathBuf {
    if given.is_dir() {
        return given.clone();
    }
    // Run from elsewhere: fall back to the source tree the binary was built from.
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("experiments");
    if given == &PathBuf::from("experiments") && built.is_dir() {
        built
    } else {
        given.clone()
    }
}

/// Runs the subcommand.
pub fn run(a: LabArgs) -> Result<ExitCode> {
    let dir = experiments_dir(&a.experiments);
    let mut out = std::io::stdout().lock();
    match a.what.first().map(String::as_str) {
        Some("list") => {
            let exps = spec::load_dir(&dir)?;
            for e in exps {
                let q = e.plan(spec::Which::Quick).points().len();
                let f = e.plan(spec::Which::Full).points().len();
                writeln!(
                    out,
                    "{:<18} {:<55} [{} | quick {q} / full {f} points]",
                    e.name, e.summary, e.reproduces
                )?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        Some("report") => {
            let Some(d) = a.what.get(1) else {
                bail!("lab report needs the directory of a run, e.g. `ioscale lab report lab-out`")
            };
            let (report, summary) = report::render_dir(&PathBuf::from(d), &dir)?;
            writeln!(out, "report: {}\nsummary: {}", report.display(), summary.display())?;
            if let Some(readme) = &a.readme {
                report::splice_readme(&PathBuf::from(d), readme)?;
                writeln!(out, "results written into {}", readme.display())?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let cfg = runner::Config {
        exe: std::env::current_exe()?,
        experiments_dir: dir,
        out: a.out,
        which: if a.full { spec::Which::Full } else { spec::Which::Quick },
        resume: a.resume,
        only: a.what,
        progress: runner::progress::Mode::detect(),
        load_hosts: a.load_hosts,
        load_remote_cmd: a.load_remote_cmd,
        server_addr: a.server_addr,
        server_cpu: a.server_cpu,
    };
    let o = runner::run(&cfg)?;
    writeln!(
        out,
        "{} points measured ({} skipped as already done, {} invalid or not measured){}\nresults: {}\nreport:  {}\nsummary: {}",
        o.measured,
        o.skipped,
        o.invalid,
        if o.interrupted { " — interrupted; continue with --resume" } else { "" },
        o.results.display(),
        o.report.display(),
        o.summary.display()
    )?;
    Ok(if o.interrupted { ExitCode::from(130) } else { ExitCode::SUCCESS })
}
