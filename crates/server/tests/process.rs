//! The server as a real process (`ioscale-serve`, `src/bin/ioscale-serve.rs`: the same code as
//! `ioscale serve`): exit codes and one-line errors, SIGTERM draining, and shedding at the
//! descriptor limit (EMFILE)
//! without a busy loop.

mod util;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;
use util::{root, serve_exe, Client, ServerProc};

/// Starts the server (through `sh -c`, after `shell_prefix`) or panics with what it printed.
fn spawn(shell_prefix: &str, args: &str) -> ServerProc {
    ServerProc::spawn(shell_prefix, args).unwrap_or_else(|e| panic!("did not start: {e}"))
}

fn cpu_ns(pid: u32) -> u64 {
    // All threads: /proc/PID/schedstat is the main thread only.
    let mut total = 0;
    if let Ok(d) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in d.flatten() {
            let s = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            total += s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    total
}

#[test]
fn start_errors_are_one_line_with_their_exit_code() {
    let exe = serve_exe();
    let root = root("exit");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let r = root.to_str().unwrap();
    for (args, code, words) in [
        (vec!["--port", &port, "--root", r], 3, "already in use"),
        (vec!["--port", "0", "--root", "/nonexistent/dir"], 4, "/nonexistent/dir"),
        (vec!["--port", "0", "--root", r, "--dispatch", "kqueue"], 2, "unknown mechanism 'kqueue'"),
        (vec!["--port", "0", "--root", r, "--idle-timeout", "soon"], 2, "invalid duration 'soon'"),
        (vec!["--port", "0", "--root", r, "--listener", "bus"], 2, "expected shared or reuseport"),
        (
            vec!["--port", "0", "--root", r, "--dispatch", "poll", "--exclusive"],
            5,
            "EPOLLEXCLUSIVE",
        ),
        (vec!["--port", "0", "--root", r, "--dispatch", "kqueue"], 2, "uring-completion"),
        (
            vec![
                "--port",
                "0",
                "--root",
                r,
                "--dispatch",
                "uring-completion",
                "--uring-buffers",
                "3",
            ],
            2,
            "--uring-buffers 3",
        ),
    ] {
        let out = Command::new(&exe).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(words), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let root = root("term");
    for mech in engines(&["epoll", "uring-completion"]) {
        let mut srv = spawn("", &format!("--root '{}' --dispatch {mech}", root.display()));
        let addr = srv.addr();
        let mut idle = Client::connect(addr);
        assert_eq!(idle.get("GET", "/1b.txt").status, 200);
        let mut busy = TcpStream::connect(addr).unwrap();
        busy.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        busy.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        srv.signal(libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(200));
        // The idle keep-alive connection is closed; the half-sent request is still answered.
        assert!(idle.closed(), "{mech}: idle connection closed on SIGTERM");
        busy.write_all(b"\r\n").unwrap();
        let mut all = Vec::new();
        busy.read_to_end(&mut all).unwrap();
        let text = String::from_utf8_lossy(&all[..400]);
        assert!(
            text.starts_with("HTTP/1.1 200 OK") && text.contains("Connection: close"),
            "{text}"
        );
        assert!(all.ends_with(&util::big()), "{mech}");
        assert_eq!(srv.wait_exit(Duration::from_secs(10)), Some(0), "{mech}");
    }
}

/// The named engines this kernel runs (a printed reason for each one skipped).
fn engines<'a>(names: &[&'a str]) -> Vec<&'a str> {
    names
        .iter()
        .copied()
        .filter(|n| match n.parse::<ioscale_server::Engine>().map(|e| e.probe()) {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                eprintln!("SKIPPED: {n}: not supported here: {e}");
                false
            }
            Err(e) => panic!("{e}"),
        })
        .collect()
}

#[test]
fn at_the_descriptor_limit_it_sheds_new_connections_without_spinning() {
    let root = root("emfile");
    for mech in engines(&["epoll", "poll", "uring-completion"]) {
        let mut srv = spawn(
            "ulimit -n 48;",
            &format!("--root '{}' --dispatch {mech} --max-conns 10000", root.display()),
        );
        let addr = srv.addr();
        let mut first = Client::connect(addr);
        assert_eq!(first.get("GET", "/1b.txt").status, 200);
        // A storm: far more connections than descriptors.
        let mut storm = Vec::new();
        for _ in 0..150 {
            if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                storm.push(s);
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        // Existing clients are still served while the storm is held (a cached file: an
        // uncached one needs a descriptor, and gets 503 while there is none).
        assert_eq!(first.get("GET", "/1b.txt").status, 200, "{mech}");
        // No busy loop: the server is nearly idle while the shed connections stay around.
        let c0 = cpu_ns(srv.pid());
        std::thread::sleep(Duration::from_millis(1500));
        let used = cpu_ns(srv.pid()) - c0;
        // Past the cache's revalidation interval: the entry cannot be checked (no descriptor)
        // and is served as it is.
        assert_eq!(first.get("GET", "/1b.txt").status, 200, "{mech}");
        assert!(
            used < 300_000_000,
            "{mech}: {} ms of CPU in 1.5 s while shedding",
            used / 1_000_000
        );
        let stats = first.get("GET", "/.ioscale/stats");
        let v: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
        assert!(v["errors"]["shed_emfile"].as_u64().unwrap() >= 1, "{mech}: {v}");
        drop(storm);
        // After the storm, new connections are served again.
        std::thread::sleep(Duration::from_millis(300));
        let mut late = Client::connect(addr);
        assert_eq!(late.get("GET", "/1b.txt").status, 200, "{mech}");
        drop((first, late));
        srv.signal(libc::SIGTERM);
        assert_eq!(srv.wait_exit(Duration::from_secs(10)), Some(0), "{mech}");
        let mut log = String::new();
        srv.err.read_to_string(&mut log).unwrap();
        let episodes = log.matches("cannot accept").count();
        assert!((1..=3).contains(&episodes), "{mech}: logged once per episode: {log}");
    }
}
