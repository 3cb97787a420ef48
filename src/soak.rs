//! `ioscale soak`: the command line of the lab's soak ([`ioscale_lab::kinds::soak`]): flags
//! become its typed plan, its outcome an exit code.

use anyhow::{Context, Result};
use ioscale_lab::kinds::soak;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// `ioscale soak` arguments.
#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// How long to measure (after the warm-up), e.g. 30m, 2m, 10s.
    #[arg(long, default_value = "30m", value_parser = ioscale_flags::duration)]
    duration: Duration,
    /// Sampling period.
    #[arg(long, default_value = "5s", value_parser = ioscale_flags::duration)]
    every: Duration,
    /// Idle persistent connections the generator holds (each sends one request per --idle-period).
    #[arg(long, default_value_t = 15_000)]
    idle: usize,
    /// Period of an idle connection's requests; below the server's --idle-timeout (60 s) so
    /// they stay open.
    #[arg(long, default_value = "30s", value_parser = ioscale_flags::duration)]
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
    #[arg(long, default_value = "epoll", value_parser = ioscale_flags::mechanism)]
    dispatch: ioscale_dispatch::Mechanism,
    /// Time for the idle connections to open, excluded from the generator's statistics.
    #[arg(long, default_value = "15s", value_parser = ioscale_flags::duration)]
    warmup: Duration,
    /// Where the samples, the summary and the children's logs go.
    #[arg(long, default_value = "soak-out")]
    out: PathBuf,
    /// Document root to serve (default: one generated in OUT/www with a 6 KB file).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Source addresses for the generator's connections (127.0.0.1..N): 15,000 held
    /// connections plus the sessions' TIME_WAIT would nearly exhaust one address's ephemeral
    /// ports, and a connect() that has to search an exhausted range costs a millisecond.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=64))]
    sources: u8,
    /// The path requested.
    #[arg(long, default_value = "/6k.html")]
    path: String,
}

impl SoakArgs {
    fn plan(self) -> soak::Plan {
        soak::Plan {
            duration: self.duration,
            every: self.every,
            idle: self.idle,
            idle_period: self.idle_period,
            rate: self.rate,
            calls: self.calls,
            connections: self.connections,
            dispatch: self.dispatch.name().to_string(),
            warmup: self.warmup,
            out: self.out,
            root: self.root,
            sources: self.sources,
            path: self.path,
        }
    }
}

/// Runs `ioscale soak`; returns the exit code (0 done and VALID, 1 a child failed, 2 a bad
/// value, 3 INVALID or interrupted).
pub fn run(a: SoakArgs) -> Result<ExitCode> {
    let plan = a.plan();
    if let Err(e) = soak::check(&plan) {
        eprintln!("ioscale soak: {e}");
        return Ok(ExitCode::from(2));
    }
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    let o = soak::run(&plan, &exe)?;
    print!("{}", o.text);
    Ok(if !o.children_ok {
        ExitCode::from(1)
    } else if o.interrupted || !o.valid {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}
