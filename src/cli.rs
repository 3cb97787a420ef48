//! Subcommands: raw arguments become typed plans here, then each subcommand runs its library.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ioscale_dispatch::{overhead, Mechanism, Options};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// Scalable network I/O on Linux: every event-dispatch mechanism, measured.
#[derive(Parser, Debug)]
#[command(name = "ioscale", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the papers' experiments on this machine and draw their figures (the main job).
    Lab(crate::lab_cmd::LabArgs),
    /// Cost of one wait-and-dispatch cycle vs idle descriptors, per mechanism (no HTTP).
    Overhead(OverheadArgs),
    /// List every mechanism, its kernel facility and whether this kernel supports it now.
    Mechanisms {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Thundering herd: connect() cost and wakeups vs processes waiting on one listening socket.
    Herd(HerdArgs),
    /// Serve static files over HTTP/1.x with any dispatch mechanism (the papers' micro web server).
    Serve(ioscale_server::cli::ServeArgs),
    /// Load an HTTP server: open-loop sessions or requests, idle and inactive populations, a self-check.
    Load(Box<ioscale_load::cli::LoadArgs>),
    /// Soak: the server under open-loop load plus thousands of idle connections for a long
    /// run, sampling its memory, descriptors and latency (docs/reliability.md).
    Soak(crate::soak::SoakArgs),
    /// Print a shell completion script: `ioscale completions bash > /etc/bash_completion.d/ioscale`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write the man page (roff) to stdout: `ioscale man > ioscale.1`.
    Man,
}

#[derive(clap::Args, Debug)]
struct OverheadArgs {
    /// Mechanisms to compare, comma-separated (default: every readiness mechanism; name
    /// uring-completion, or give --completion, to measure the completion model too).
    #[arg(long, value_delimiter = ',', value_parser = ioscale_flags::mechanism)]
    mechanisms: Vec<Mechanism>,
    /// Idle connection counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,100,1000,10000")]
    idle: Vec<usize>,
    /// Rounds per point (the median is reported).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    rounds: u64,
    /// Milliseconds of cycling per round.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    round_ms: u64,
    /// Cap the RT signal queue of this process (RLIMIT_SIGPENDING) for the RT-signal mechanisms.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    sigqueue_max: Option<u64>,
    /// Also measure the completion model (uring-completion: a multishot receive on every
    /// connection) at the same idle counts, after the mechanisms.
    #[arg(long)]
    completion: bool,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Lab(a) => crate::lab_cmd::run(a),
        Command::Overhead(a) => overhead_cmd(a),
        Command::Mechanisms { json } => mechanisms_cmd(json),
        Command::Herd(a) => herd_cmd(a),
        Command::Serve(a) => Ok(ioscale_server::cli::run(&a)),
        Command::Load(a) => Ok(ioscale_load::cli::run(&a)),
        Command::Soak(a) => crate::soak::run(a),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "ioscale", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => man_page(),
    }
}

/// Where a measurement's progress messages go: one line redrawn in place when stderr is a
/// terminal, one plain line per message otherwise (never escape codes in a file), nowhere with
/// `--json`.
#[derive(Clone, Copy)]
enum StatusLine {
    Off,
    Terminal,
    Plain,
}

impl StatusLine {
    fn new(quiet: bool) -> StatusLine {
        use std::io::IsTerminal;
        if quiet {
            StatusLine::Off
        } else if std::io::stderr().is_terminal() {
            StatusLine::Terminal
        } else {
            StatusLine::Plain
        }
    }

    fn show(self, msg: &str) {
        match self {
            StatusLine::Off => {}
            StatusLine::Terminal => eprint!("\r\x1b[K{msg}"),
            StatusLine::Plain => eprintln!("{msg}"),
        }
    }

    /// Clears the redrawn line before the results are printed.
    fn clear(self) {
        if let StatusLine::Terminal = self {
            eprint!("\r\x1b[K");
        }
    }
}

fn overhead_cmd(a: OverheadArgs) -> Result<ExitCode> {
    let mut mechanisms =
        if a.mechanisms.is_empty() { Mechanism::READINESS.to_vec() } else { a.mechanisms };
    if a.completion && !mechanisms.contains(&Mechanism::UringCompletion) {
        mechanisms.push(Mechanism::UringCompletion);
    }
    if a.idle.is_empty() {
        bail!("--idle needs at least one count, e.g. --idle 0,1000,10000");
    }
    let cfg = overhead::Config {
        mechanisms,
        idle: a.idle,
        rounds: a.rounds as usize,
        round_time: Duration::from_millis(a.round_ms),
        options: {
            let mut o = Options::default();
            o.sigqueue_max = a.sigqueue_max;
            o
        },
    };
    let status = StatusLine::new(a.json);
    let points = overhead::run(&cfg, |msg| status.show(msg))
        .context("dispatch overhead measurement failed")?;
    status.clear();
    print(a.json, |w| serde_json::to_writer_pretty(w, &points), || overhead::table(&points))
}

fn mechanisms_cmd(json: bool) -> Result<ExitCode> {
    let rows = ioscale_dispatch::probe::describe();
    print(
        json,
        |w| serde_json::to_writer_pretty(w, &rows),
        || ioscale_dispatch::probe::table(&rows),
    )
}

/// Prints a command's result on stdout: as JSON (`write_json`, then a newline) or as the text
/// `table` makes.
fn print(
    json: bool,
    write_json: impl FnOnce(&mut dyn Write) -> serde_json::Result<()>,
    table: impl FnOnce() -> String,
) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if json {
        write_json(&mut out)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", table())?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
struct HerdArgs {
    /// Herd sizes (processes waiting on the listening socket), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256,1024")]
    waiters: Vec<usize>,
    /// How each waits, comma-separated: select, poll, epoll, epoll-exclusive,
    /// epoll-exclusive-rotate, reuseport (default: all).
    #[arg(long = "wait-in", value_delimiter = ',', value_parser = parse_wait_in)]
    wait_in: Vec<ioscale_herd::WaitIn>,
    /// Duplicates of the listening socket in each waiter's wait set, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    dups: Vec<usize>,
    /// Timed connections per point.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    connects: u64,
    /// Untimed connections before them.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    warmup: u64,
    /// Print one JSON array (a record per point, with the machine's facts) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Parses a `--wait-in` name; an unknown one lists the valid names.
fn parse_wait_in(s: &str) -> Result<ioscale_herd::WaitIn, String> {
    s.parse().map_err(|e: ioscale_herd::ParseWaitInError| e.to_string())
}

fn herd_cmd(a: HerdArgs) -> Result<ExitCode> {
    let cfg = ioscale_herd::Config {
        waiters: a.waiters,
        wait_in: if a.wait_in.is_empty() { ioscale_herd::WaitIn::ALL.to_vec() } else { a.wait_in },
        dups: a.dups,
        connects: a.connects as usize,
        warmup: a.warmup as usize,
    };
    ioscale_herd::install_interrupt_handler().context("installing the Ctrl-C handler")?;
    let status = StatusLine::new(a.json);
    let points = match ioscale_herd::run(&cfg, |msg| status.show(msg)) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
            eprintln!("\nioscale: {e}");
            return Ok(ExitCode::from(130));
        }
        Err(e) => return Err(e).context("thundering-herd measurement failed"),
    };
    status.clear();
    print(
        a.json,
        |w| serde_json::to_writer_pretty(w, &points),
        || {
            let head = points.first().map_or(String::new(), |p| {
                let m = &p.machine;
                format!(
                    "# {} · Linux {} · {} · {} cores · RLIMIT_NOFILE {} · max waiters now {}\n",
                    p.date, m.kernel, m.cpu_model, m.cores, m.rlimit_nofile.0, m.max_waiters
                )
            });
            head + &ioscale_herd::table(&points)
        },
    )
}

/// The exit codes every subcommand shares, for the man page.
const EXIT_CODES: &str = "0 success (serve: stopped by a signal after draining; load: the run kept its plan); \
1 a runtime failure, named in one line; 2 a usage error: a bad flag or value, with one sentence naming it and what is accepted; \
3 serve: cannot listen; load: the run is INVALID (the generator could not keep its schedule or hold its connections); soak: the generator's record INVALID, or interrupted; \
4 serve: the root is missing; load: replies had a status --expect did not ask for; 5 serve: the mechanism does not work here; 130 lab or herd: interrupted (the points measured are kept).";

fn man_page() -> Result<ExitCode> {
    use clap::CommandFactory;
    let cmd = Cli::command().after_long_help(format!("EXIT CODES: {EXIT_CODES}"));
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = std::io::stdout().lock();
    man.render(&mut out)?;
    writeln!(out, ".SH \"EXIT CODES\"\n{EXIT_CODES}")?;
    for sub in cmd.get_subcommands() {
        writeln!(out, ".SH \"IOSCALE {}\"", sub.get_name().to_uppercase())?;
        let mut sub_man = Vec::new();
        clap_mangen::Man::new(sub.clone()).render_options_section(&mut sub_man)?;
        out.write_all(&sub_man)?;
    }
    Ok(ExitCode::SUCCESS)
}
