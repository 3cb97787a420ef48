//! `ioscale serve`: the command-line arguments and the exit codes.
//!
//! | exit code | meaning |
//! | --- | --- |
//! | 0 | stopped by SIGTERM or SIGINT after draining |
//! | 1 | a failure while running |
//! | 2 | a bad argument (clap's usage errors too, e.g. an unknown mechanism), or a bad `--config` file |
//! | 3 | cannot listen (address in use, not an address of this machine, permission) |
//! | 4 | the root is missing, not a directory or not readable |
//! | 5 | the mechanism does not work on this kernel (or cannot do what was asked, e.g. `--exclusive`) |

use crate::{Config, Engine, ListenerMode, Server, StartErrorKind};
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `ioscale serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Directory to serve (nothing outside it is ever served).
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
    /// Event-dispatch mechanism, or `uring-completion` for the io_uring completion engine (see
    /// `ioscale mechanisms`).
    #[arg(long, default_value = "epoll", value_parser = parse_engine)]
    pub dispatch: Engine,
    /// Accept until the listen queue is empty on each notice (Chandra & Mosberger §4).
    #[arg(long)]
    pub multi_accept: bool,
    /// Event loops (threads), each with its own dispatcher.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub workers: u64,
    /// How workers share the port: one shared socket, or one SO_REUSEPORT socket each.
    #[arg(long, default_value = "shared", value_parser = parse_listener)]
    pub listener: ListenerMode,
    /// Register the shared listener with EPOLLEXCLUSIVE (epoll mechanisms only).
    #[arg(long)]
    pub exclusive: bool,
    /// Like --exclusive, and re-register the listener after each wakeup that accepted, so the
    /// next connection wakes another worker (EPOLLEXCLUSIVE alone favours the first registrant).
    #[arg(long)]
    pub exclusive_rotate: bool,
    /// Close persistent connections idle this long between requests, e.g. 60s, 500ms.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Close connections whose request head has not arrived this long after its first byte (408).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Most open connections (default: the descriptor limit less a reserve); more are closed at once.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_conns: Option<u64>,
    /// RT-signal queue length (RLIMIT_SIGPENDING) for the signal mechanisms (others ignore it).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub sigqueue_max: Option<u64>,
    /// Largest request head in bytes (431 beyond).
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u64).range(256..=1_048_576))]
    pub max_head: u64,
    /// Longest request target in bytes (414 beyond).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(16..=1_048_576))]
    pub max_target: u64,
    /// Most header fields (431 beyond).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub max_headers: u64,
    /// Files up to this many bytes are held in memory; larger ones are sent with sendfile.
    #[arg(long, default_value_t = 262_144)]
    pub cache_max_file: u64,
    /// Add `Cache-Control: VALUE` to file responses (200, 206, 304), e.g. 'public, max-age=3600'.
    #[arg(long, value_name = "VALUE", value_parser = parse_cache_control)]
    pub cache_control: Option<String>,
    /// Serve NAME.gz for NAME (when it exists and is not older) to clients that accept gzip,
    /// with Content-Encoding: gzip and Vary: Accept-Encoding (nginx's gzip_static).
    #[arg(long)]
    pub precompressed: bool,
    /// Answer /.ioscale/stats and /.ioscale/metrics to every client, not only loopback ones.
    #[arg(long)]
    pub stats_public: bool,
    /// Longest wait for in-flight requests after SIGTERM or SIGINT.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Provided receive buffers per io_uring ring (uring-completion; a power of two). For tests
    /// that exhaust the buffer ring.
    #[arg(long, hide = true, default_value_t = 512, value_parser = parse_buffers)]
    pub uring_buffers: u16,
    /// Write one Combined Log Format line per request to this file (`-`: standard output);
    /// buffered per worker (32 KiB or 1 s); SIGUSR1 reopens it (for logrotate). Off by default.
    #[arg(long, value_name = "PATH|-")]
    pub access_log: Option<PathBuf>,
    /// Read options from this TOML file: its keys are the long option names without `--`
    /// (`workers = 2`, `idle-timeout = "30s"`, `multi-accept = true`); options on the command
    /// line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

fn parse_buffers(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(n) if n > 0 && n <= 32768 && n.is_power_of_two() => Ok(n),
        _ => Err(format!("--uring-buffers {s}: expected a power of two from 1 to 32768")),
    }
}

fn parse_cache_control(s: &str) -> Result<String, String> {
    crate::check_cache_control(s).map(|()| s.to_string())
}

fn parse_engine(s: &str) -> Result<Engine, String> {
    s.parse::<Engine>()
}

fn parse_listener(s: &str) -> Result<ListenerMode, String> {
    s.parse()
}

/// Parses `250ms`, `10s`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("invalid duration '{s}': expected a number with ms, s or m, e.g. 500ms or 10s");
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    if !v.is_finite() || v <= 0.0 || v * mult > 1e7 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(v * mult))
}

impl ServeArgs {
    /// The server configuration these arguments describe.
    pub fn config(&self) -> Config {
        let mut c = Config::new(&self.root, self.port, self.dispatch);
        c.bind = self.bind;
        c.multi_accept = self.multi_accept;
        c.workers = self.workers as usize;
        c.listener = self.listener;
        c.exclusive = self.exclusive || self.exclusive_rotate;
        c.exclusive_rotate = self.exclusive_rotate;
        c.idle_timeout = self.idle_timeout;
        c.header_timeout = self.header_timeout;
        c.max_conns = self.max_conns.map_or(0, |n| n as usize);
        c.sigqueue_max = self.sigqueue_max;
        c.limits.max_head = self.max_head as usize;
        c.limits.max_target = self.max_target as usize;
        c.limits.max_headers = self.max_headers as usize;
        c.cache.max_file = self.cache_max_file;
        c.stats_public = self.stats_public;
        c.drain_timeout = self.drain_timeout;
        c.uring_buffers = self.uring_buffers;
        c.cache_control = self.cache_control.clone();
        c.precompressed = self.precompressed;
        c.access_log = self.access_log.clone();
        c
    }
}

/// The arguments of `ioscale serve` on this process's command line (after `serve` for the
/// `ioscale` program, after the program name for `ioscale-serve`).
fn command_line_tail() -> Vec<OsString> {
    let all: Vec<OsString> = std::env::args_os().collect();
    let skip = if all.get(1).is_some_and(|a| a == "serve") { 2 } else { 1 };
    all.into_iter().skip(skip).collect()
}

/// `ServeArgs`' own clap command, with repeated options allowed (the last one wins: the
/// command line, placed after the file's options, overrides them).
fn serve_command() -> clap::Command {
    use clap::Args;
    ServeArgs::augment_args(clap::Command::new("ioscale serve").args_override_self(true))
}

/// The first line of a clap error, without its `error: ` prefix.
fn clap_sentence(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let line = text.lines().next().unwrap_or("").trim();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// Reads `--config FILE` and parses its options followed by `user` (the command line's), so
/// the command line wins; every key is checked on its own first, so a bad one is named.
pub fn with_config_file(path: &Path, user: &[OsString]) -> Result<ServeArgs, String> {
    use clap::FromArgMatches;
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--config '{shown}': cannot read it: {e}"))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map_or(0, |s| text[..s.start.min(text.len())].lines().count().max(1));
        let why = e.message().trim().replace('\n', "; ");
        format!("--config '{shown}' is not valid TOML (line {line}): {why}")
    })?;
    let cmd = serve_command();
    let mut file_args: Vec<OsString> = Vec::new();
    for (key, value) in &table {
        if key == "config" {
            return Err(format!(
                "key 'config' in --config '{shown}': a config file cannot name another one"
            ));
        }
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
            .ok_or_else(|| {
                format!(
                    "unknown key '{key}' in --config '{shown}': expected a long option name of ioscale serve without '--', e.g. workers, idle-timeout, multi-accept"
                )
            })?;
        let takes_value = arg.get_action().takes_values();
        let mut args: Vec<OsString> = Vec::new();
        match value {
            toml::Value::Boolean(b) if !takes_value => {
                if *b {
                    args.push(format!("--{key}").into());
                }
            }
            toml::Value::String(_) | toml::Value::Integer(_) | toml::Value::Float(_)
                if takes_value =>
            {
                let v = match value {
                    toml::Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                args.push(format!("--{key}").into());
                args.push(v.into());
            }
            _ => {
                let want = if takes_value {
                    "a string or a number"
                } else {
                    "true or false (it is a switch)"
                };
                return Err(format!(
                    "key '{key}' in --config '{shown}' is {value}: expected {want}"
                ));
            }
        }
        // Each key alone first: clap's own parser and message, named by the key.
        let one = std::iter::once(OsString::from("ioscale serve")).chain(args.iter().cloned());
        if let Err(e) = serve_command().try_get_matches_from(one) {
            return Err(format!(
                "key '{key}' = {value} in --config '{shown}': {}",
                clap_sentence(&e)
            ));
        }
        file_args.extend(args);
    }
    let argv = std::iter::once(OsString::from("ioscale serve"))
        .chain(file_args)
        .chain(user.iter().cloned());
    let m = serve_command().try_get_matches_from(argv).map_err(|e| clap_sentence(&e))?;
    ServeArgs::from_arg_matches(&m).map_err(|e| clap_sentence(&e))
}

/// Runs `ioscale serve`; returns the exit code (see the module docs).
pub fn run(args: &ServeArgs) -> ExitCode {
    let merged;
    let args = match &args.config {
        None => args,
        Some(path) => match with_config_file(path, &command_line_tail()) {
            Ok(a) => {
                merged = a;
                &merged
            }
            Err(e) => {
                eprintln!("ioscale serve: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let server = match Server::bind(args.config()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ioscale serve: {e}");
            return ExitCode::from(match e.kind {
                StartErrorKind::Bind => 3,
                StartErrorKind::Root => 4,
                StartErrorKind::Mechanism => 5,
                StartErrorKind::Config => 2,
                _ => 1,
            });
        }
    };
    let c = server.config();
    eprintln!(
        "ioscale serve: http://{}/ root {} dispatch {} workers {} listener {}{}{}",
        server.local_addr(),
        c.root.display(),
        c.engine,
        c.workers,
        if c.listener == ListenerMode::Shared { "shared" } else { "reuseport" },
        if c.multi_accept { " multi-accept" } else { "" },
        if c.exclusive { " exclusive" } else { "" },
    );
    match server.run_until_signal() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ioscale serve: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0s").unwrap_err().contains("'0s'"));
        assert!(parse_duration("x").is_err());
    }
}
