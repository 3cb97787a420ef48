//! What `ioscale serve` is told: the [`Config`] and its [`defaults`].
//!
//! Every default is written once, in [`defaults`]: the command line's clap attributes
//! ([`crate::cli::ServeOptions`]) and [`Config::new`] both read it.

use crate::Engine;
use ioscale_http::Limits;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::files::CacheLimits;

/// The defaults of `ioscale serve`, read by the clap attributes and by [`Config::new`]. The
/// request limits' and the cache's defaults are [`Limits::default`]'s and
/// [`CacheLimits::default`]'s. A duration's `_TEXT` is how `--help` shows it (a test checks
/// that it parses to the value).
pub mod defaults {
    use super::ListenerMode;
    use crate::Engine;
    use ioscale_dispatch::Mechanism;
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    /// `--bind`: loopback only, until told otherwise.
    pub const BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    /// `--port`.
    pub const PORT: u16 = 8080;
    /// `--root`.
    pub const ROOT: &str = ".";
    /// `--dispatch`.
    pub const ENGINE: Engine = Engine::Readiness(Mechanism::Epoll);
    /// `--workers`.
    pub const WORKERS: u64 = 1;
    /// `--listener`.
    pub const LISTENER: ListenerMode = ListenerMode::Shared;
    /// `--idle-timeout`.
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// `--idle-timeout` as `--help` shows it.
    pub const IDLE_TIMEOUT_TEXT: &str = "60s";
    /// `--header-timeout`.
    pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    /// `--header-timeout` as `--help` shows it.
    pub const HEADER_TIMEOUT_TEXT: &str = "10s";
    /// `--drain-timeout`.
    pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
    /// `--drain-timeout` as `--help` shows it.
    pub const DRAIN_TIMEOUT_TEXT: &str = "10s";
    /// The listen backlog.
    pub const BACKLOG: i32 = 4096;
    /// `--uring-buffers` (hidden).
    pub const URING_BUFFERS: u16 = 512;
}

/// How workers share the listening port.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ListenerMode {
    /// One socket registered in every worker's dispatcher (the thundering-herd setting;
    /// `--exclusive` adds `EPOLLEXCLUSIVE`).
    Shared,
    /// One `SO_REUSEPORT` socket per worker: the kernel spreads connections.
    Reuseport,
}

impl ListenerMode {
    /// The command-line name (`--listener`).
    pub const fn name(self) -> &'static str {
        match self {
            ListenerMode::Shared => "shared",
            ListenerMode::Reuseport => "reuseport",
        }
    }
}

impl fmt::Display for ListenerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ListenerMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "shared" => Ok(ListenerMode::Shared),
            "reuseport" => Ok(ListenerMode::Reuseport),
            _ => Err(format!("unknown listener mode '{s}': expected shared or reuseport")),
        }
    }
}

/// Everything `ioscale serve` is told.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to bind (default 127.0.0.1).
    pub bind: IpAddr,
    /// Port (0: any free port).
    pub port: u16,
    /// Document root.
    pub root: PathBuf,
    /// The engine: a readiness dispatch mechanism, or the io_uring completion engine.
    pub engine: Engine,
    /// Accept until `EAGAIN` on each listener notice.
    pub multi_accept: bool,
    /// Event loops (threads).
    pub workers: usize,
    /// How workers share the port.
    pub listener: ListenerMode,
    /// Register a shared listener with `EPOLLEXCLUSIVE` (epoll mechanisms only).
    pub exclusive: bool,
    /// With `exclusive`: re-register the listener after each wakeup that accepted (the wait
    /// queue then rotates among workers; see docs/herd.md on EPOLLEXCLUSIVE's fairness).
    pub exclusive_rotate: bool,
    /// Close a persistent connection idle this long between requests (also the send timeout).
    pub idle_timeout: Duration,
    /// Close a connection whose request head has not fully arrived this long after its first
    /// byte (408).
    pub header_timeout: Duration,
    /// Most open connections (all workers); more are accepted and closed at once. 0: derived
    /// from the descriptor limit at bind ([`crate::descriptor_budget`]).
    pub max_conns: usize,
    /// `RLIMIT_SIGPENDING` for the RT-signal mechanisms' queue.
    pub sigqueue_max: Option<u64>,
    /// What the RT-signal mechanisms do after their queue overflowed (`--rtsig-recovery`).
    pub rtsig_recovery: ioscale_dispatch::mechanism::rtsig::Recovery,
    /// Request limits.
    pub limits: Limits,
    /// Cache limits.
    pub cache: CacheLimits,
    /// Answer `/.ioscale/stats` to any client, not only loopback ones.
    pub stats_public: bool,
    /// Longest wait for in-flight requests after SIGTERM/SIGINT.
    pub drain_timeout: Duration,
    /// Listen backlog.
    pub backlog: i32,
    /// Provided receive buffers per completion-engine ring (a power of two; a tiny ring is how
    /// the tests exhaust it). Ignored by the readiness engine.
    pub uring_buffers: u16,
    /// Write a Combined Log Format line per request here (`-`: standard output); reopened on
    /// SIGUSR1.
    pub access_log: Option<PathBuf>,
    /// A `Cache-Control` value added to every file response (200, 206, 304); checked by
    /// [`check_cache_control`].
    pub cache_control: Option<String>,
    /// Serve `NAME.gz` for `NAME` to clients that accept gzip, when it exists and is not older
    /// (nginx's `gzip_static`).
    pub precompressed: bool,
    /// Write the server's own messages here instead of standard error ([`crate::error_log`]);
    /// installed by the command line for the whole process.
    pub error_log: Option<PathBuf>,
    /// Write the process id here at start and remove it at exit (the command line does).
    pub pid_file: Option<PathBuf>,
}

/// Checks a `Cache-Control` value: non-empty, visible ASCII and spaces only (no control
/// character, so no header injection), at most 1024 bytes; `Err` is one sentence.
pub fn check_cache_control(v: &str) -> Result<(), String> {
    let ok = !v.trim().is_empty()
        && v.len() <= 1024
        && v.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid Cache-Control value {v:?}: expected 1 to 1024 visible ASCII characters or \
             spaces, e.g. 'public, max-age=3600'"
        ))
    }
}

impl Config {
    /// Defaults for serving `root` on `port` with `engine` (a [`ioscale_dispatch::Mechanism`]
    /// or an [`Engine`]); every other field is its [`defaults`] value.
    pub fn new(root: impl Into<PathBuf>, port: u16, engine: impl Into<Engine>) -> Config {
        Config {
            bind: defaults::BIND,
            port,
            root: root.into(),
            engine: engine.into(),
            multi_accept: false,
            workers: defaults::WORKERS as usize,
            listener: defaults::LISTENER,
            exclusive: false,
            exclusive_rotate: false,
            idle_timeout: defaults::IDLE_TIMEOUT,
            header_timeout: defaults::HEADER_TIMEOUT,
            max_conns: 0,
            sigqueue_max: None,
            rtsig_recovery: Default::default(),
            limits: Limits::default(),
            cache: CacheLimits::default(),
            stats_public: false,
            drain_timeout: defaults::DRAIN_TIMEOUT,
            backlog: defaults::BACKLOG,
            uring_buffers: defaults::URING_BUFFERS,
            access_log: None,
            cache_control: None,
            precompressed: false,
            error_log: None,
            pid_file: None,
        }
    }

    /// The options the dispatcher is opened with (the signal-queue length for the mechanisms
    /// that use signals; the rest ignore it).
    pub fn dispatch_options(&self) -> ioscale_dispatch::Options {
        let mut o = ioscale_dispatch::Options::default();
        o.sigqueue_max = self.sigqueue_max;
        o.rtsig_recovery = self.rtsig_recovery;
        o
    }
}

/// One option's value as the messages show it.
fn shown<T: fmt::Debug>(v: &T) -> String {
    let s = format!("{v:?}");
    match s.strip_prefix("Some(").and_then(|x| x.strip_suffix(')')) {
        Some(inner) => inner.to_string(),
        None if s == "None" => "none".to_string(),
        None => s,
    }
}

impl Config {
    /// The options that differ between `self` (in force) and `new` and that only a restart can
    /// change, each as `name (old -> new)`: everything but the [`Config::reload_changes`] ones.
    /// Turning the access log on or off is one of them (the workers' buffers are made at
    /// start); moving it to another path is not.
    pub fn restart_changes(&self, new: &Config) -> Vec<String> {
        let mut v = Vec::new();
        macro_rules! each {
            ($($name:literal: $($f:ident).+),* $(,)?) => {$(
                if self.$($f).+ != new.$($f).+ {
                    v.push(format!("{} ({} -> {})", $name, shown(&self.$($f).+), shown(&new.$($f).+)));
                }
            )*};
        }
        each!(
            "bind": bind,
            "port": port,
            "root": root,
            "dispatch": engine,
            "multi-accept": multi_accept,
            "workers": workers,
            "listener": listener,
            "exclusive": exclusive,
            "exclusive-rotate": exclusive_rotate,
            "idle-timeout": idle_timeout,
            "header-timeout": header_timeout,
            "max-conns": max_conns,
            "sigqueue-max": sigqueue_max,
            "rtsig-recovery": rtsig_recovery,
            "max-head": limits.max_head,
            "max-target": limits.max_target,
            "max-headers": limits.max_headers,
            "cache-max-file": cache.max_file,
            "drain-timeout": drain_timeout,
            "uring-buffers": uring_buffers,
            "pid-file": pid_file,
        );
        if self.access_log.is_some() != new.access_log.is_some() {
            let on = |c: &Config| if c.access_log.is_some() { "on" } else { "off" };
            v.push(format!("access-log ({} -> {})", on(self), on(new)));
        }
        v
    }

    /// The options that differ between `self` (in force) and `new` and that a reload applies
    /// (SIGHUP), each as `name old -> new`.
    pub fn reload_changes(&self, new: &Config) -> Vec<String> {
        let mut v = Vec::new();
        macro_rules! each {
            ($($name:literal: $f:ident),* $(,)?) => {$(
                if self.$f != new.$f {
                    v.push(format!("{} {} -> {}", $name, shown(&self.$f), shown(&new.$f)));
                }
            )*};
        }
        each!(
            "cache-control": cache_control,
            "precompressed": precompressed,
            "stats-public": stats_public,
            "access-log": access_log,
            "error-log": error_log,
        );
        v
    }
}
