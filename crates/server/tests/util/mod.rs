//! Helpers for the server suites: a document root, an in-process server per mechanism, and the
//! stand-alone server process; the raw HTTP/1.1 client, `/proc` readings and socket options come
//! from [`ioscale_testutil`], shared with the root package's tests.

// Each test file is its own crate and uses a part of this module.
#![allow(dead_code, unused_imports)]

pub use ioscale_testutil::{have, linger_zero, one_shot, proc_cpu_s, Client, Resp};

use ioscale_server::{Config, Engine, Handle, Server};
use ioscale_testutil::{spawn_announced, NotStarted, Proc};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, Command};
use std::thread::JoinHandle;
use std::time::Duration;

/// The 6 KB file's bytes.
pub fn six_k() -> Vec<u8> {
    (0..6144u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// A fresh document root: `1b.txt` (one byte), `6k.bin`, `big.bin` (300 KB: sent with
/// sendfile), `sub/index.html`, `empty/`, a symlink out of the root, and a secret beside it.
pub fn root(tag: &str) -> PathBuf {
    let base = ioscale_testutil::temp_dir(&format!("srv-{tag}"));
    let root = base.join("www");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("1b.txt"), "x").unwrap();
    std::fs::write(root.join("6k.bin"), six_k()).unwrap();
    std::fs::write(root.join("big.bin"), big()).unwrap();
    std::fs::write(root.join("sub/index.html"), "<p>index</p>\n").unwrap();
    std::fs::write(base.join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(base.join("secret.txt"), root.join("out.txt")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", root.join("out-rel.txt")).unwrap();
    root
}

/// The large file's bytes.
pub fn big() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 253) as u8).collect()
}

/// Runs `f` once per engine this kernel supports — every readiness mechanism, then the io_uring
/// completion engine (`uring-completion`); prints a reason for each one skipped.
/// `IOSCALE_TEST_ENGINES=uring-completion,epoll` narrows the run (for debugging one engine).
pub fn each_mechanism(mut f: impl FnMut(Engine)) {
    let only = std::env::var("IOSCALE_TEST_ENGINES").ok();
    for m in Engine::all() {
        if let Some(only) = &only {
            if !only.split(',').any(|n| n == m.name()) {
                eprintln!("SKIPPED: {m}: not in IOSCALE_TEST_ENGINES");
                continue;
            }
        }
        if let Err(e) = m.probe() {
            eprintln!("SKIPPED: {m}: not supported here: {e}");
            continue;
        }
        eprintln!("-- {m}");
        f(m);
    }
}

/// The completion engine, or `None` (with a printed reason) where this kernel cannot run it.
pub fn completion_engine() -> Option<Engine> {
    match Engine::UringCompletion.probe() {
        Ok(()) => Some(Engine::UringCompletion),
        Err(e) => {
            eprintln!("SKIPPED: uring-completion: not supported here: {e}");
            None
        }
    }
}

/// An in-process server on 127.0.0.1, port 0; stopped (drained) on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: Handle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl TestServer {
    pub fn start(m: impl Into<Engine>, root: &Path, tune: impl FnOnce(&mut Config)) -> TestServer {
        let m = m.into();
        let mut c = Config::new(root, 0, m);
        c.drain_timeout = Duration::from_secs(2);
        tune(&mut c);
        let server = Server::bind(c).unwrap_or_else(|e| panic!("{m}: {e}"));
        let addr = server.local_addr();
        let handle = server.handle();
        let thread = std::thread::spawn(move || server.run());
        TestServer { addr, handle, thread: Some(thread) }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Stops the server and returns what `run` returned.
    pub fn stop(mut self) -> io::Result<()> {
        self.handle.shutdown();
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.handle.shutdown();
            let _ = t.join();
        }
    }
}

/// The stand-alone server program (`src/bin/ioscale-serve.rs`, built by cargo for the tests).
pub fn serve_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ioscale-serve"))
}

/// The stand-alone server as a child process, started through `sh -c` (so a test can prefix
/// `ulimit -n N;`), with its stderr kept; killed and reaped when dropped.
pub struct ServerProc {
    /// The process.
    pub proc: Proc,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its stderr after the line announcing the address.
    pub err: io::BufReader<ChildStderr>,
}

impl ServerProc {
    /// Starts `ioscale-serve --port 0 ARGS` and reads its port from the line it prints once it
    /// listens; `Err` with what it printed if it exited instead.
    pub fn spawn(shell_prefix: &str, args: &str) -> Result<ServerProc, String> {
        let cmd = format!("{shell_prefix} exec '{}' --port 0 {args}", serve_exe().display());
        match spawn_announced(Command::new("sh").args(["-c", &cmd])) {
            Ok(s) => Ok(ServerProc { proc: s.proc, port: s.addr.port(), err: s.stderr }),
            Err(NotStarted { line, .. }) => Err(line),
        }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Sends it `sig`.
    pub fn signal(&self, sig: i32) {
        self.proc.signal(sig)
    }

    /// Waits up to `limit` for the exit code (killed and `None` after that).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        self.proc.wait_exit(limit).ok().flatten()
    }

    /// The stats document over a fresh connection.
    pub fn stats(&self) -> serde_json::Value {
        let r = Client::connect(self.addr()).get("GET", "/.ioscale/stats");
        serde_json::from_slice(&r.body).unwrap()
    }

    /// Open descriptors of the server process.
    pub fn fds(&self) -> usize {
        self.proc.fds()
    }
}
