//! `ioscale serve`: the command-line options, the `--config` file and the exit codes.
//!
//! The command line is parsed once, by clap, into [`ServeArgs`]: the typed [`ServeOptions`]
//! and which of them the command line gave (clap's [`clap::parser::ValueSource`]). A
//! `--config` file fills in the options the command line did not give ([`ServeArgs::resolve`]);
//! every default is a constant of [`crate::defaults`].
//!
//! | exit code | meaning |
//! | --- | --- |
//! | 0 | stopped by SIGTERM or SIGINT after draining |
//! | 1 | a failure while running |
//! | 2 | a bad argument (clap's usage errors too, e.g. an unknown mechanism), or a bad `--config` file |
//! | 3 | cannot listen (address in use, not an address of this machine, permission) |
//! | 4 | the root is missing, not a directory or not readable |
//! | 5 | the mechanism does not work on this kernel (or cannot do what was asked, e.g. `--exclusive`) |

use crate::{defaults, Config, Engine, ListenerMode, Server, StartErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, FromArgMatches};
use ioscale_dispatch::mechanism::rtsig::Recovery;
use ioscale_http::Limits;
use std::ffi::OsString;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The options of `ioscale serve`, typed. Defaults come from [`crate::defaults`] (and from
/// [`Limits::default`] and [`crate::CacheLimits::default`] for the request and cache limits).
#[derive(clap::Args, Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on.
    #[arg(long, default_value_t = defaults::BIND)]
    pub bind: IpAddr,
    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, default_value_t = defaults::PORT)]
    pub port: u16,
    /// Directory to serve (nothing outside it is ever served).
    #[arg(long, default_value = defaults::ROOT)]
    pub root: PathBuf,
    /// Event-dispatch mechanism, or `uring-completion` for the io_uring completion engine (see
    /// `ioscale mechanisms`).
    #[arg(long, default_value_t = defaults::ENGINE, value_parser = parse_engine)]
    pub dispatch: Engine,
    /// Accept until the listen queue is empty on each notice (Chandra & Mosberger §4).
    #[arg(long)]
    pub multi_accept: bool,
    /// Event loops (threads), each with its own dispatcher.
    #[arg(long, default_value_t = defaults::WORKERS, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub workers: u64,
    /// How workers share the port: one shared socket, or one SO_REUSEPORT socket each.
    #[arg(long, default_value_t = defaults::LISTENER, value_parser = parse_listener)]
    pub listener: ListenerMode,
    /// Register the shared listener with EPOLLEXCLUSIVE (epoll mechanisms only).
    #[arg(long)]
    pub exclusive: bool,
    /// Like --exclusive, and re-register the listener after each wakeup that accepted, so the
    /// next connection wakes another worker (EPOLLEXCLUSIVE alone favours the first registrant).
    #[arg(long)]
    pub exclusive_rotate: bool,
    /// Close persistent connections idle this long between requests (a unit is required:
    /// 60s, 500ms, 2m).
    #[arg(long, default_value = defaults::IDLE_TIMEOUT_TEXT, value_parser = ioscale_flags::nonzero_duration)]
    pub idle_timeout: Duration,
    /// Close connections whose request head has not arrived this long after its first byte
    /// (408).
    #[arg(long, default_value = defaults::HEADER_TIMEOUT_TEXT, value_parser = ioscale_flags::nonzero_duration)]
    pub header_timeout: Duration,
    /// Most open connections; more are closed at once. Default: the descriptor limit less a
    /// reserve (64 + 4 per worker) and a sixteenth for the file caches. The file caches keep at
    /// most what connections and the reserve leave of the limit open, split among the workers
    /// (`files.budget` in the stats); a large file beyond that is opened for its response only.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_conns: Option<u64>,
    /// RT-signal queue length (RLIMIT_SIGPENDING) for the signal mechanisms (others ignore it).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub sigqueue_max: Option<u64>,
    /// After an RT-signal queue overflow (rtsig, rtsig-batch, rtsig-perfd; others ignore it):
    /// `repoll` (one poll, back to signals at once) or `fallback` (Chandra & Mosberger: serve
    /// from scans of every connection until one finds nothing ready, then back to signals).
    #[arg(long, value_name = "repoll|fallback", default_value_t = Recovery::default(), value_parser = parse_recovery)]
    pub rtsig_recovery: Recovery,
    /// Largest request head in bytes (431 beyond).
    #[arg(long, default_value_t = Limits::default().max_head as u64, value_parser = clap::value_parser!(u64).range(256..=1_048_576))]
    pub max_head: u64,
    /// Longest request target in bytes (414 beyond).
    #[arg(long, default_value_t = Limits::default().max_target as u64, value_parser = clap::value_parser!(u64).range(16..=1_048_576))]
    pub max_target: u64,
    /// Most header fields (431 beyond).
    #[arg(long, default_value_t = Limits::default().max_headers as u64, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub max_headers: u64,
    /// Files up to this many bytes are held in memory; larger ones are sent with sendfile.
    #[arg(long, default_value_t = crate::CacheLimits::default().max_file)]
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
    /// Longest wait for in-flight requests after SIGTERM or SIGINT (0s: close at once).
    #[arg(long, default_value = defaults::DRAIN_TIMEOUT_TEXT, value_parser = ioscale_flags::duration)]
    pub drain_timeout: Duration,
    /// Provided receive buffers per io_uring ring (uring-completion; a power of two). For tests
    /// that exhaust the buffer ring.
    #[arg(long, hide = true, default_value_t = defaults::URING_BUFFERS, value_parser = parse_buffers)]
    pub uring_buffers: u16,
    /// Write one Combined Log Format line per request to this file (`-`: standard output);
    /// buffered per worker (32 KiB or 1 s); SIGUSR1 reopens it (for logrotate). Off by default.
    #[arg(long, value_name = "PATH|-")]
    pub access_log: Option<PathBuf>,
    /// Write the server's own messages (start, signals, reloads, failures) to this file, one
    /// timestamped line each, instead of standard error; SIGUSR1 and SIGHUP reopen it.
    #[arg(long, value_name = "FILE")]
    pub error_log: Option<PathBuf>,
    /// Write the process id to this file once listening; removed at exit.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Read options from this TOML file: its keys are the long option names without `--`
    /// (`workers = 2`, `idle-timeout = "30s"`, `multi-accept = true`); options on the command
    /// line override it. SIGHUP reads it again.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The arguments of `ioscale serve`: the options as clap parsed them, and the options the
/// command line gave (by clap's value source), so that a `--config` file can fill in the rest
/// without the command line being read again.
#[derive(Debug, Clone)]
pub struct ServeArgs {
    /// The options: the command line's, and defaults for the rest.
    pub options: ServeOptions,
    /// The options the command line gave, as clap kept them: `--name` and its raw values.
    given: Vec<Given>,
}

#[derive(Debug, Clone)]
struct Given {
    id: String,
    long: String,
    values: Option<Vec<OsString>>,
}

impl clap::FromArgMatches for ServeArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let options = ServeOptions::from_arg_matches(m)?;
        let mut given = Vec::new();
        for arg in serve_command().get_arguments() {
            let id = arg.get_id().as_str();
            let Some(long) = arg.get_long() else { continue };
            if m.try_contains_id(id).unwrap_or(false)
                && m.value_source(id) == Some(ValueSource::CommandLine)
            {
                let values = arg
                    .get_action()
                    .takes_values()
                    .then(|| m.get_raw(id).into_iter().flatten().map(OsString::from).collect());
                given.push(Given { id: id.to_string(), long: long.to_string(), values });
            }
        }
        Ok(ServeArgs { options, given })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for ServeArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        ServeOptions::augment_args(cmd)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        ServeOptions::augment_args_for_update(cmd)
    }
}

impl ServeArgs {
    /// Whether the command line gave the option with this clap id (e.g. `"workers"`).
    pub fn given(&self, id: &str) -> bool {
        self.given.iter().any(|g| g.id == id)
    }

    /// The options in force: the command line's, then the `--config` file's (read again at
    /// each call, so a reload sees its changes), then the defaults. `Err` is one sentence.
    pub fn resolve(&self) -> Result<ServeOptions, String> {
        match &self.options.config {
            None => Ok(self.options.clone()),
            Some(path) => self.with_file(path),
        }
    }

    fn with_file(&self, path: &Path) -> Result<ServeOptions, String> {
        let shown = path.display();
        let text = read_bounded(path)?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line =
                e.span().map_or(0, |s| text[..s.start.min(text.len())].lines().count().max(1));
            let why = e.message().trim().replace('\n', "; ");
            format!("--config '{shown}' is not valid TOML (line {line}): {why}")
        })?;
        let cmd = serve_command();
        let mut argv: Vec<OsString> = vec!["ioscale serve".into()];
        for (key, value) in &table {
            if key == "config" {
                return Err(format!(
                    "key 'config' in --config '{shown}': a config file cannot name another one"
                ));
            }
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(key.as_str()) && !a.is_hide_set())
                .or_else(|| cmd.get_arguments().find(|a| a.get_long() == Some(key.as_str())))
                .ok_or_else(|| unknown_key(key, &shown.to_string(), &cmd))?;
            let args = file_args(key, value, arg.get_action().takes_values())
                .map_err(|want| format!("key '{key}' in --config '{shown}' is {value}: {want}"))?;
            // Each key alone first: clap's own parser and message, named by the key.
            let one = std::iter::once(OsString::from("ioscale serve")).chain(args.iter().cloned());
            if let Err(e) = serve_command().try_get_matches_from(one) {
                return Err(format!(
                    "key '{key}' = {value} in --config '{shown}': {}",
                    clap_sentence(&e)
                ));
            }
            // The command line wins: the file's value is checked but not used.
            if !self.given(arg.get_id().as_str()) {
                argv.extend(args);
            }
        }
        for g in &self.given {
            argv.push(format!("--{}", g.long).into());
            argv.extend(g.values.iter().flatten().cloned());
        }
        let m = serve_command().try_get_matches_from(argv).map_err(|e| clap_sentence(&e))?;
        ServeOptions::from_arg_matches(&m).map_err(|e| clap_sentence(&e))
    }
}

/// Largest `--config` file read (a serve configuration is a few hundred bytes).
pub const CONFIG_MAX_BYTES: u64 = 1 << 20;

/// Reads a `--config` file of at most [`CONFIG_MAX_BYTES`]; never reads more than one byte
/// past the limit (so `/dev/zero` or a huge file is refused at once).
fn read_bounded(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| format!("--config '{shown}': cannot read it: {e}"))?;
    let mut bytes = Vec::new();
    file.take(CONFIG_MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("--config '{shown}': cannot read it: {e}"))?;
    if bytes.len() as u64 > CONFIG_MAX_BYTES {
        return Err(format!(
            "--config '{shown}' is larger than {} KiB: expected a short TOML file of options",
            CONFIG_MAX_BYTES / 1024
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        format!("--config '{shown}' is not UTF-8 text (byte {at}): expected a TOML file")
    })
}

/// The command-line arguments a file's `key = value` stands for; `Err` says what was expected.
fn file_args(key: &str, value: &toml::Value, takes_value: bool) -> Result<Vec<OsString>, String> {
    match value {
        toml::Value::Boolean(b) if !takes_value => {
            Ok(if *b { vec![format!("--{key}").into()] } else { Vec::new() })
        }
        toml::Value::String(_) | toml::Value::Integer(_) | toml::Value::Float(_) if takes_value => {
            let v = match value {
                toml::Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            Ok(vec![format!("--{key}").into(), v.into()])
        }
        _ if takes_value => Err("expected a string or a number".into()),
        _ => Err("expected true or false (it is a switch)".into()),
    }
}

/// The sentence for a key that is no option: the key, the accepted ones, and the nearest.
fn unknown_key(key: &str, file: &str, cmd: &clap::Command) -> String {
    let names: Vec<&str> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| a.get_long())
        .filter(|l| *l != "config" && *l != "help")
        .collect();
    let nearest = ioscale_flags::nearest(key, names.iter().copied())
        .map_or(String::new(), |n| format!(" (did you mean '{n}'?)"));
    format!(
        "unknown key '{key}' in --config '{file}'{nearest}: expected a long option name of \
         ioscale serve without '--': {}",
        names.join(", ")
    )
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

fn parse_recovery(s: &str) -> Result<Recovery, String> {
    s.parse()
}

impl ServeOptions {
    /// The server configuration these options describe.
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
        c.rtsig_recovery = self.rtsig_recovery;
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
        c.error_log = self.error_log.clone();
        c.pid_file = self.pid_file.clone();
        c
    }
}

/// The options' own clap command.
fn serve_command() -> clap::Command {
    use clap::Args;
    ServeOptions::augment_args(clap::Command::new("ioscale serve"))
}

/// The first line of a clap error, without its `error: ` prefix.
fn clap_sentence(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let line = text.lines().next().unwrap_or("").trim();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// Runs `ioscale serve`; returns the exit code (see the module docs).
pub fn run(args: &ServeArgs) -> ExitCode {
    let options = match args.resolve() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ioscale serve: {e}");
            return ExitCode::from(2);
        }
    };
    let server = match Server::bind(options.config()) {
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
    if let Err(e) = crate::error_log::open(c.error_log.as_deref()) {
        let p = c.error_log.as_deref().unwrap_or(Path::new("")).display();
        eprintln!("ioscale serve: --error-log '{p}': cannot open it for appending: {e}");
        return ExitCode::from(2);
    }
    let pid_file = c.pid_file.clone();
    if let Some(p) = &pid_file {
        if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
            eprintln!("ioscale serve: --pid-file '{}': cannot write it: {e}", p.display());
            return ExitCode::from(2);
        }
    }
    let announce = format!(
        "http://{}/ root {} dispatch {} workers {} listener {}{}{}",
        server.local_addr(),
        c.root.display(),
        c.engine,
        c.workers,
        c.listener,
        if c.multi_accept { " multi-accept" } else { "" },
        if c.exclusive { " exclusive" } else { "" },
    );
    // On standard error always (scripts and tests read the address there), and in the error
    // log when it is a file.
    eprintln!("ioscale serve: {announce}");
    if c.error_log.is_some() {
        crate::error_log::notice!("started, pid {}: {announce}", std::process::id());
    }
    let again = args.clone();
    let result = server.run_until_signal_with(move || again.resolve().map(|o| o.config()));
    if let Some(p) = &pid_file {
        // Only our own: another server may have taken the file over since.
        let ours =
            std::fs::read_to_string(p).is_ok_and(|t| t.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(p);
        }
    }
    match result {
        Ok(()) => {
            crate::error_log::notice!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            crate::error_log::error!("{e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_help_shows_the_defaults_config_uses() {
        for (text, value) in [
            (defaults::IDLE_TIMEOUT_TEXT, defaults::IDLE_TIMEOUT),
            (defaults::HEADER_TIMEOUT_TEXT, defaults::HEADER_TIMEOUT),
            (defaults::DRAIN_TIMEOUT_TEXT, defaults::DRAIN_TIMEOUT),
        ] {
            assert_eq!(ioscale_flags::duration(text), Ok(value));
        }
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            serve: ServeArgs,
        }
        // No option given: the options' configuration is Config::new's.
        let from_cli = P::parse_from(["p"]).serve.options.config();
        let new = Config::new(defaults::ROOT, defaults::PORT, defaults::ENGINE);
        assert_eq!(format!("{from_cli:?}"), format!("{new:?}"));
    }

    #[test]
    fn the_command_line_is_known_by_its_value_source() {
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let a = P::parse_from(["p", "--workers", "3", "--multi-accept", "--port=9"]).serve;
        assert!(a.given("workers") && a.given("multi_accept") && a.given("port"));
        assert!(!a.given("bind") && !a.given("idle_timeout"));
        assert_eq!(a.resolve().unwrap().workers, 3);
    }

    #[test]
    fn rtsig_recovery_reaches_the_dispatch_options() {
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let default = P::parse_from(["p"]).serve.options.config();
        assert_eq!(default.dispatch_options().rtsig_recovery, Recovery::Repoll);
        let a = P::parse_from(["p", "--dispatch", "rtsig", "--rtsig-recovery", "fallback"]).serve;
        let c = a.resolve().unwrap().config();
        assert_eq!(c.dispatch_options().rtsig_recovery, Recovery::Fallback);
        let e = P::try_parse_from(["p", "--rtsig-recovery", "select"]).err().unwrap();
        let m = clap_sentence(&e);
        assert!(m.contains("'select'") && m.contains("expected repoll or fallback"), "{m}");
        // From a --config file, under the option's own name.
        let dir = std::env::temp_dir().join(format!("ioscale-cli-rtsig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("serve.toml");
        std::fs::write(&file, "dispatch = \"rtsig-batch\"\nrtsig-recovery = \"fallback\"\n")
            .unwrap();
        let a = P::parse_from(["p", "--config", file.to_str().unwrap()]).serve;
        let c = a.resolve().map(|o| o.config());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c.unwrap().dispatch_options().rtsig_recovery, Recovery::Fallback);
    }

    #[test]
    fn unknown_keys_name_the_accepted_ones_and_the_nearest() {
        let m = unknown_key("worker", "f.toml", &serve_command());
        assert!(m.contains("'worker'") && m.contains("did you mean 'workers'?"), "{m}");
        assert!(m.contains("idle-timeout") && m.contains("bind") && !m.contains("uring-buffers"));
        let m = unknown_key("zzzzzzzz", "f.toml", &serve_command());
        assert!(!m.contains("did you mean"), "{m}");
    }
}
