//! Helpers shared by the root package's process tests: [`ioscale_testutil`] (children killed on
//! drop, ports, a raw HTTP client, nginx, `/proc` readings) and what names the `ioscale`
//! binary — `ioscale serve` and `ioscale load` as processes, and a small document root.

// Each test file is its own crate and uses a part of this module.
#![allow(dead_code, unused_imports)]

pub use ioscale_testutil::*;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `ioscale` binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_ioscale");

/// The counts of each population of a load record (active, idle, inactive) that merging
/// records — of several hosts, or of several threads — must add up exactly.
pub const POPULATION_COUNTS: [&str; 8] = [
    "sessions",
    "sessions_ok",
    "requests",
    "replies",
    "bytes",
    "connections_asked",
    "connections_established",
    "reconnects",
];

/// Runs `ioscale ARGS...` to its end.
pub fn ioscale(args: &[&str]) -> Output {
    Command::new(BIN).args(args).stdin(Stdio::null()).output().expect("run ioscale")
}

/// A fresh document root: `one.txt` (1 byte), `six.html` and `big.html` (6 KB each).
pub fn docroot(name: &str) -> PathBuf {
    let d = temp_dir(&format!("test-{name}"));
    std::fs::write(d.join("one.txt"), b"x").unwrap();
    std::fs::write(d.join("six.html"), vec![b'y'; 6144]).unwrap();
    std::fs::write(d.join("big.html"), vec![b'y'; 6144]).unwrap();
    d
}

/// `ioscale serve --port 0 --root ROOT ARGS...` once it listens: the process and its port, or
/// what it printed and its exit code if it did not start. Its stderr is drained.
pub fn try_serve(root: &Path, args: &[&str]) -> Result<(Proc, u16), NotStarted> {
    let s = spawn_announced(
        Command::new(BIN).args(["serve", "--port", "0", "--root"]).arg(root).args(args),
    )?;
    drain(s.stderr);
    Ok((s.proc, s.addr.port()))
}

/// `ioscale serve --port 0 --root ROOT ARGS...` once it listens (panics if it does not start).
pub fn serve(root: &Path, args: &[&str]) -> (Proc, u16) {
    try_serve(root, args).unwrap_or_else(|e| panic!("ioscale serve did not start: {e}"))
}

/// Debian's nginx serving `root` on a free loopback port (one worker, access log off,
/// keep-alive without a request limit), or `None` with a printed reason when it is not
/// installed.
pub fn nginx(root: &Path) -> Option<(Proc, u16)> {
    let port = free_port();
    let servers = format!(
        "keepalive_requests 1000000; server {{ listen 127.0.0.1:{port}; root {}; }}",
        root.display()
    );
    let p = start_nginx(&root.join("nginx"), &servers)?;
    wait_port(port);
    Some((p, port))
}

/// Runs `ioscale load ARGS...` (stdin from /dev/null): its exit code, its JSON record (`Null`
/// when none) and its stderr.
pub fn load(args: &[&str]) -> (Option<i32>, Value, String) {
    let mut a = vec!["load"];
    a.extend_from_slice(args);
    let out = ioscale(&a);
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), v, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Starts `ioscale load ARGS... --json` with its stdout and stderr piped (read them, e.g. with
/// [`Proc::wait_exit`] on one thread and the pipes on another).
pub fn start_load(args: &[&str]) -> Proc {
    Proc(
        Command::new(BIN)
            .arg("load")
            .args(args)
            .arg("--json")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}
