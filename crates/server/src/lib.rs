//! ioscale-server: the micro web server of the classic studies, `ioscale serve`.
//!
//! One event loop per worker moves bytes between a dispatcher ([`ioscale_dispatch::Dispatcher`],
//! any [`Mechanism`]) and the sans-I/O HTTP state machine ([`ioscale_http`]). The loop knows the
//! mechanism only through the contract and its capability queries — `trigger()` (re-arm after a
//! one-shot notice) and `events_are_hints()` (read, write and accept until `EAGAIN`) — so every
//! mechanism the dispatch crate gains runs here with no change: Chandra & Mosberger's "micro web
//! servers identical but for the dispatch mechanism" (§3.1.1), thttpd's and phhttpd's role.
//!
//! | piece | what | where |
//! | --- | --- | --- |
//! | workers | `--workers N` threads, each with its own dispatcher opened *in* its thread (the RT-signal mechanisms need that); worker 0 is the main thread, so `/proc/PID/schedstat` is the whole server's CPU when `N = 1` | [`Server::run`] |
//! | listener | one shared socket (optionally `EPOLLEXCLUSIVE`) or one `SO_REUSEPORT` socket per worker | [`ListenerMode`] |
//! | accept | one per readiness notice, or until `EAGAIN` with `--multi-accept` (Chandra & Mosberger §4); at `EMFILE` the reserve descriptor sheds new connections, the listener pauses, nothing spins | `worker.rs` |
//! | files | phhttpd's static cache: small files in memory, large ones `sendfile`d, opened with `openat2(RESOLVE_BENEATH)` so nothing outside the root is ever served | [`files`] |
//! | static serving | byte ranges (206/416; several ranges get the whole 200), HEAD with the GET's head, `/dir` → `/dir/`, types, `--cache-control`, `--precompressed` (`NAME.gz`, nginx's `gzip_static`); see docs/static.md | `respond.rs`, [`files`] |
//! | connections | one table for both engines: slots and generations, header (slowloris), idle (keep-alive) and send timeouts on a coarse timer wheel (no per-wait scan of all connections), admission under `--max-conns`, shedding, the drain | `conns.rs` |
//! | stats | `GET /.ioscale/stats`, loopback only by default: connections, requests, bytes, the dispatch counters, errors by kind, CPU, and the counter snapshots taken at SIGUSR2 | [`stats`] |
//!
//! A second engine, `--dispatch uring-completion` ([`Engine::UringCompletion`],
//! `completion_engine.rs`), runs the same HTTP state machine and response logic (`respond.rs`)
//! over io_uring *completions*: the kernel accepts, receives and sends; the worker collects the
//! results, many per `io_uring_enter`.
//!
//! The hot path — a keep-alive GET of a cached file on a level-triggered mechanism — is one
//! wait (shared by every ready connection), one `read` and one `sendmsg`, with no heap
//! allocation: the worker's read and write buffers are reused, the response head is the entity's
//! pre-rendered lines plus the per-second `Date`. A connection holds no heap buffer while idle.

#![deny(missing_docs)]

mod access_log;
pub mod cli;
mod completion_engine;
mod config;
mod conns;
mod error_log;
pub mod files;
pub mod metrics;
mod peer;
mod reload;
mod respond;
mod shed;
pub mod stats;
mod sys;
mod wheel;
mod worker;

use ioscale_dispatch::Mechanism;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub use config::{check_cache_control, defaults, Config, ListenerMode};
pub use files::CacheLimits;

/// Which engine carries the bytes: the readiness event loop over a dispatch [`Mechanism`], or
/// the completion engine over io_uring (the proactor of [`ioscale_dispatch::completion`]). Both
/// run the same HTTP state machine and the same response logic; `--dispatch` names either.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Engine {
    /// The readiness event loop (`worker.rs`) over this mechanism.
    Readiness(Mechanism),
    /// The completion engine (`completion_engine.rs`): multishot accept and receive into a
    /// provided-buffer ring, sends through the ring, one `io_uring_enter` per batch.
    UringCompletion,
}

impl Engine {
    /// Every engine, in the dispatch crate's table order (the readiness mechanisms, then the
    /// completion engine).
    pub fn all() -> Vec<Engine> {
        Mechanism::ALL.iter().map(|&m| Engine::from(m)).collect()
    }

    /// The command-line name (`--dispatch`), from the dispatch crate's table.
    pub const fn name(self) -> &'static str {
        match self {
            Engine::Readiness(m) => m.name(),
            Engine::UringCompletion => Mechanism::UringCompletion.name(),
        }
    }

    /// The readiness mechanism, if this is the readiness engine.
    pub const fn mechanism(self) -> Option<Mechanism> {
        match self {
            Engine::Readiness(m) => Some(m),
            Engine::UringCompletion => None,
        }
    }

    /// Whether the kernel does the I/O (completion model) rather than announcing readiness.
    pub const fn is_completion(self) -> bool {
        matches!(self, Engine::UringCompletion)
    }

    /// Checks that this kernel can run the engine now (opening its dispatcher or ring once).
    pub fn probe(self) -> io::Result<()> {
        match self {
            Engine::Readiness(m) => m.probe(),
            Engine::UringCompletion => completion_engine::probe(),
        }
    }
}

impl From<Mechanism> for Engine {
    /// The completion model's name is the completion engine; every other name a readiness one.
    fn from(m: Mechanism) -> Engine {
        if m.is_completion_based() {
            Engine::UringCompletion
        } else {
            Engine::Readiness(m)
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Engine, String> {
        ioscale_flags::mechanism(s).map(Engine::from).map_err(|e| e.to_string())
    }
}

/// Why the server could not start.
#[derive(Debug)]
pub struct StartError {
    /// What kind of failure.
    pub kind: StartErrorKind,
    /// One sentence.
    pub message: String,
}

/// Kinds of start failures, each with its own exit code in the CLI.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartErrorKind {
    /// The address is in use or cannot be bound.
    Bind,
    /// The root is missing or not a readable directory.
    Root,
    /// The mechanism does not work on this kernel or with these options.
    Mechanism,
    /// A bad option value.
    Config,
    /// Anything else.
    Other,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StartError {}

fn start_err(kind: StartErrorKind, message: String) -> StartError {
    StartError { kind, message }
}

/// State the workers and handles share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) stop: AtomicBool,
    pub(crate) wakers: Mutex<Vec<Arc<ioscale_dispatch::Waker>>>,
    pub(crate) open: AtomicUsize,
    pub(crate) stats: stats::Shared,
    pub(crate) access_log: Option<Arc<access_log::Sink>>,
    /// The settings a reload changes, read by the workers once per loop pass.
    pub(crate) live: reload::Live,
    /// The configuration in force as it was given (before [`Server::bind`] filled in
    /// defaults): what a reload compares the new one with.
    pub(crate) running: Mutex<Config>,
}

/// A bound server, not yet running.
#[derive(Debug)]
pub struct Server {
    config: Config,
    listeners: Vec<OwnedFd>,
    addr: SocketAddr,
    shared: Arc<Shared>,
}

/// Stops a running server from another thread.
#[derive(Clone, Debug)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// Asks every worker to drain (finish in-flight requests, close idle connections) and stop.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    /// Asks every worker for a snapshot of its counters (what SIGUSR2 does); returns the
    /// snapshot's sequence number. Each worker takes its part at the top of its next loop pass
    /// (it is woken for that); [`Handle::snapshots`] and `/.ioscale/stats` list them.
    pub fn snapshot(&self) -> u64 {
        let seq = self.shared.stats.request_snapshot();
        self.wake_all();
        seq
    }

    /// The snapshots kept (the last [`stats::SNAPSHOTS_KEPT`]), oldest first.
    pub fn snapshots(&self) -> Vec<stats::Snapshot> {
        self.shared.stats.snapshot_list()
    }

    /// Applies a configuration read again (what SIGHUP does with `--config`): refused whole,
    /// with one sentence in the error log, if it is `Err` or changes an option that needs a
    /// restart ([`Config::restart_changes`]); otherwise the logs are reopened (or moved to
    /// their new paths) and every worker takes the new settings at its next loop pass, with
    /// no connection dropped. Returns whether it was applied.
    pub fn reload(&self, new: Result<Config, String>) -> bool {
        let applied = {
            let mut running = self.shared.running.lock().unwrap_or_else(|e| e.into_inner());
            reload::apply(&self.shared, &mut running, new)
        };
        self.wake_all();
        applied
    }

    /// Reopens the access log and the error log at their paths (what SIGUSR1 does, for
    /// logrotate). Each worker writes the lines it holds to the old file first.
    pub fn reopen_logs(&self) {
        if let Some(Err(e)) = self.shared.access_log.as_ref().map(|l| l.reopen()) {
            error_log::warning!("SIGUSR1: cannot reopen the access log: {e}");
        }
        if let Err(e) = error_log::reopen() {
            error_log::warning!("SIGUSR1: cannot reopen the error log: {e}");
        }
        self.wake_all();
    }

    fn wake_all(&self) {
        if let Ok(w) = self.shared.wakers.lock() {
            for k in w.iter() {
                let _ = k.wake();
            }
        }
    }

    /// The stats document, as the endpoint returns it.
    pub fn stats(&self) -> serde_json::Value {
        self.shared.stats.json(self.shared.open.load(Ordering::Relaxed) as u64)
    }
}

/// Descriptors kept for what is neither a connection nor a cached file: the listener(s), each
/// worker's dispatcher, waker and shedding reserve, the root, the access log, standard streams.
pub fn descriptor_reserve(workers: usize) -> usize {
    64 + 4 * workers
}

/// Splits the descriptor limit `nofile` among connections and the workers' file caches:
/// returns `--max-conns` (as given, or by default the limit less the reserve and a sixteenth
/// for the caches) and each worker's cache budget (what the connections and the reserve leave,
/// split evenly). The caches never hold more, so clients cannot make them take the descriptors
/// connections need; a large file beyond a worker's budget is opened for its response only.
pub fn descriptor_budget(nofile: usize, workers: usize, max_conns: usize) -> (usize, usize) {
    let reserve = descriptor_reserve(workers);
    let max_conns = if max_conns == 0 {
        nofile.saturating_sub(reserve + nofile / 16).max(16)
    } else {
        max_conns
    };
    let caches = nofile.saturating_sub(reserve + max_conns);
    (max_conns, caches / workers.max(1))
}

/// Runs worker `id` on the configured engine.
fn run_worker(id: usize, config: &Config, shared: &Shared, listener: i32) -> io::Result<()> {
    match config.engine {
        Engine::Readiness(m) => worker::run(id, m, config, shared, listener),
        Engine::UringCompletion => completion_engine::run(id, config, shared, listener),
    }
}

impl Server {
    /// Checks the configuration, opens the root, probes the mechanism and binds the port.
    pub fn bind(mut config: Config) -> Result<Server, StartError> {
        let given = config.clone();
        if config.workers == 0 || config.workers > 1024 {
            return Err(start_err(
                StartErrorKind::Config,
                format!("--workers {} is out of range: expected 1 to 1024", config.workers),
            ));
        }
        if config.idle_timeout.is_zero() || config.header_timeout.is_zero() {
            return Err(start_err(StartErrorKind::Config, "timeouts must be above zero".into()));
        }
        if let Some(cc) = &config.cache_control {
            check_cache_control(cc)
                .map_err(|e| start_err(StartErrorKind::Config, format!("--cache-control: {e}")))?;
        }
        files::Files::open(&config.root, config.cache).map_err(|e| {
            start_err(
                StartErrorKind::Root,
                format!("cannot serve root '{}': {}", config.root.display(), e),
            )
        })?;
        config.root = config.root.canonicalize().unwrap_or(config.root);
        match config.engine {
            Engine::Readiness(m) => {
                m.open(&config.dispatch_options()).map(drop).map_err(|e| {
                    start_err(
                        StartErrorKind::Mechanism,
                        format!("mechanism '{m}' does not work on this kernel: {e}"),
                    )
                })?;
            }
            Engine::UringCompletion => {
                completion_engine::check(&config).map_err(|e| {
                    let kind = if e.kind() == io::ErrorKind::InvalidInput {
                        StartErrorKind::Config
                    } else {
                        StartErrorKind::Mechanism
                    };
                    start_err(kind, format!("mechanism '{}': {e}", config.engine))
                })?;
                if config.exclusive {
                    return Err(start_err(
                        StartErrorKind::Mechanism,
                        format!(
                            "--exclusive (EPOLLEXCLUSIVE) is an epoll flag; '{}' accepts with a multishot accept in each worker's ring",
                            config.engine
                        ),
                    ));
                }
            }
        }
        if config.exclusive && config.listener == ListenerMode::Reuseport {
            return Err(start_err(
                StartErrorKind::Config,
                "--exclusive applies to a shared listener, not --listener reuseport".into(),
            ));
        }
        let nofile = ioscale_sys::limits::raise_nofile().unwrap_or(1024);
        let (max_conns, max_open) =
            descriptor_budget(nofile as usize, config.workers, config.max_conns);
        config.max_conns = max_conns;
        config.cache.max_open = max_open.min(config.cache.max_entries);
        if let Some(q) = config.sigqueue_max {
            ioscale_sys::limits::set_soft(ioscale_sys::limits::SIGPENDING, q).map_err(|e| {
                start_err(StartErrorKind::Config, format!("--sigqueue-max {q}: {e}"))
            })?;
        }
        ioscale_sys::process::ignore_sigpipe()
            .map_err(|e| start_err(StartErrorKind::Other, e.to_string()))?;
        let reuseport = config.listener == ListenerMode::Reuseport;
        let n = if reuseport { config.workers } else { 1 };
        let mut listeners = Vec::with_capacity(n);
        let mut addr = SocketAddr::new(config.bind, config.port);
        for _ in 0..n {
            let fd =
                ioscale_sys::net::listener(addr, reuseport, Some(config.backlog)).map_err(|e| {
                    let why = if e.kind() == io::ErrorKind::AddrInUse {
                        "the address is already in use".to_string()
                    } else {
                        e.to_string()
                    };
                    start_err(StartErrorKind::Bind, format!("cannot listen on {addr}: {why}"))
                })?;
            addr = ioscale_sys::net::local_addr(fd.as_raw_fd())
                .map_err(|e| start_err(StartErrorKind::Bind, e.to_string()))?;
            listeners.push(fd);
        }
        if let (true, Engine::Readiness(m)) = (config.exclusive, config.engine) {
            // Ask the mechanism now, so that a refusal is a start error and not a worker's.
            let mut d = m.open(&config.dispatch_options()).map_err(|e| {
                start_err(StartErrorKind::Mechanism, format!("mechanism '{m}': {e}"))
            })?;
            let fd = listeners[0].as_raw_fd();
            d.register_exclusive(
                fd,
                ioscale_dispatch::Token(0),
                ioscale_dispatch::Interest::READABLE,
            )
            .map_err(|e| start_err(StartErrorKind::Mechanism, format!("--exclusive: {e}")))?;
            let _ = d.deregister(fd);
        }
        let access_log = match &config.access_log {
            None => None,
            Some(p) => Some(Arc::new(access_log::Sink::open(p).map_err(|e| {
                start_err(
                    StartErrorKind::Config,
                    format!("--access-log '{}': cannot open it for appending: {e}", p.display()),
                )
            })?)),
        };
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            wakers: Mutex::new(Vec::new()),
            open: AtomicUsize::new(0),
            stats: stats::Shared::new(config.workers, config.engine),
            access_log,
            live: reload::Live::new(&config),
            running: Mutex::new(given),
        });
        Ok(Server { config, listeners, addr, shared })
    }

    /// The bound address (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configuration in force (with defaults filled in).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A handle to stop the server.
    pub fn handle(&self) -> Handle {
        Handle { shared: self.shared.clone() }
    }

    /// Runs the workers until [`Handle::shutdown`]; worker 0 runs on the calling thread.
    pub fn run(self) -> io::Result<()> {
        let Server { config, listeners, shared, .. } = self;
        let config = Arc::new(config);
        let fds: Vec<i32> = listeners.iter().map(|l| l.as_raw_fd()).collect();
        let mut threads = Vec::new();
        for id in 1..config.workers {
            let (config, shared) = (config.clone(), shared.clone());
            let lfd = fds[id % fds.len()];
            threads.push(
                std::thread::Builder::new()
                    .name(format!("ioscale-worker-{id}"))
                    .spawn(move || run_worker(id, &config, &shared, lfd))?,
            );
        }
        let mut result = run_worker(0, &config, &shared, fds[0]);
        if result.is_err() {
            Handle { shared: shared.clone() }.shutdown();
        }
        for t in threads {
            let r = t.join().unwrap_or_else(|_| Err(io::Error::other("a worker panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        drop(listeners);
        result
    }

    /// Runs until SIGTERM, SIGINT or SIGQUIT, then drains and returns (the CLI exits 0); the
    /// other signals as [`Server::run_until_signal_with`] says, with SIGHUP reopening the logs
    /// and keeping the configuration.
    pub fn run_until_signal(self) -> io::Result<()> {
        let same = self.handle().shared.running.lock().map(|c| c.clone()).ok();
        self.run_until_signal_with(move || same.clone().ok_or_else(|| "poisoned".to_string()))
    }

    /// Runs until a signal stops it, then drains and returns. The signals, taken by one
    /// thread (`sigwait`; they are blocked in every other thread, so the RT-signal mechanisms'
    /// waits never see them):
    ///
    /// | signal | what |
    /// | --- | --- |
    /// | SIGTERM, SIGINT, SIGQUIT | drain: stop accepting, answer what has arrived, close idle connections, wait for responses in flight up to `--drain-timeout`, write every buffered log line, return |
    /// | SIGHUP | `reload()` reads the configuration again; applied without dropping a connection, or refused whole with one sentence in the error log ([`Handle::reload`]); the logs are reopened |
    /// | SIGUSR1 | reopen the logs (logrotate) ([`Handle::reopen_logs`]) |
    /// | SIGUSR2 | take a counter snapshot ([`Handle::snapshot`]) |
    pub fn run_until_signal_with(
        self,
        mut reload: impl FnMut() -> Result<Config, String> + Send + 'static,
    ) -> io::Result<()> {
        sys::block_termination()?;
        let handle = self.handle();
        let drain = self.config.drain_timeout;
        std::thread::Builder::new().name("ioscale-signals".into()).spawn(move || loop {
            match sys::wait_termination() {
                Ok(libc::SIGHUP) => {
                    handle.reload(reload());
                }
                Ok(libc::SIGUSR1) => handle.reopen_logs(),
                Ok(libc::SIGUSR2) => {
                    handle.snapshot();
                }
                Ok(sig) => {
                    let name = match sig {
                        libc::SIGQUIT => "SIGQUIT",
                        libc::SIGINT => "SIGINT",
                        _ => "SIGTERM",
                    };
                    error_log::notice!(
                        "{name}: draining: no new connections; requests in flight get up to {drain:?}"
                    );
                    return handle.shutdown();
                }
                Err(_) => return,
            }
        })?;
        self.run()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_descriptor_limit_is_split_among_connections_and_file_caches() {
        // Default --max-conns: a sixteenth of the limit goes to the caches.
        assert_eq!(descriptor_budget(20_000, 1, 0), (20_000 - 68 - 1250, 1250));
        assert_eq!(descriptor_budget(20_000, 4, 0), (20_000 - 80 - 1250, 312));
        assert_eq!(descriptor_budget(256, 1, 0), (172, 16));
        // A given --max-conns: the caches get what is left, none when nothing is.
        assert_eq!(descriptor_budget(256, 1, 100), (100, 88));
        assert_eq!(descriptor_budget(48, 1, 10_000), (10_000, 0));
    }
}
