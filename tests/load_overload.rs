//! `ioscale load` stays a valid witness when the server does not keep up: a server stopped with
//! SIGSTOP for part of the run, and a listener that never accepts. What the server did not
//! answer is counted (timeouts, errors, seconds with no reply); the generator's own schedule is
//! not disturbed, so the run is VALID and the figures are the server's.

mod util;

use serde_json::Value;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;
use util::{docroot, serve};

/// One run at a time: the self-check needs the machine's attention.
static SERIAL: Mutex<()> = Mutex::new(());

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Runs the generator; returns its exit code and record.
fn run(args: &[String], nofile: Option<u32>) -> (Option<i32>, Value) {
    let bin = env!("CARGO_BIN_EXE_ioscale");
    let mut cmd = match nofile {
        // A small descriptor limit, so a leak of descriptors would show within a few seconds.
        Some(n) => {
            let mut c = Command::new("sh");
            c.arg("-c").arg(format!("ulimit -n {n} && exec \"$0\" load \"$@\"")).arg(bin);
            c
        }
        None => {
            let mut c = Command::new(bin);
            c.arg("load");
            c
        }
    };
    let out = cmd.args(args).stderr(Stdio::inherit()).output().unwrap();
    (out.status.code(), serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
}

/// A run the generator marked INVALID is judged against a control run (the same load on a
/// healthy server). On this shared machine the 99th percentile of the schedule lag crosses the
/// 10 ms bound now and then from other processes alone, so the judgement is on the median: the
/// bug this file guards against (an overloaded server making the generator late) showed as a
/// median lag of hundreds of milliseconds, where the noise leaves it at a few microseconds.
/// Returns whether the run was VALID (else the validity claim is skipped, with the reason).
fn judge(record: &Value, control: impl Fn() -> Value) -> bool {
    if record["valid"] == true {
        return true;
    }
    let p50 = |r: &Value| r["self_check"]["schedule_lag_ms"]["p50"].as_f64().unwrap_or(0.0);
    let c = control();
    let (lag, control_lag) = (p50(record), p50(&c));
    assert!(
        lag <= 2.0 || lag <= 10.0 * control_lag,
        "the stalled server made the generator late: median schedule lag {lag} ms, {control_lag} ms against a healthy server ({})",
        record["invalid_reasons"]
    );
    eprintln!(
        "SKIPPED validity check: the run was INVALID ({}) with a median schedule lag of {lag} ms (control: {control_lag} ms, {}): the machine is busy",
        record["invalid_reasons"],
        if c["valid"] == true { "VALID" } else { "INVALID" }
    );
    false
}

fn args(url: &str, extra: &[&str]) -> Vec<String> {
    let mut a = vec![url.to_string()];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[test]
fn a_server_stopped_mid_run_is_counted_and_the_generator_stays_valid() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = docroot("overload-stop");
    let (server, port) = serve(&root, &[]);
    let url = format!("http://127.0.0.1:{port}/one.txt");
    let load_args = args(&url, &["--rate", "300", "--duration", "5s", "--timeout", "1s", "--json"]);
    let pid = server.0.id() as libc::pid_t;
    // Stop the server 1.5 s into the run for 2 s: the connections it holds in its accept queue
    // get no reply (response timeouts), and no reply at all arrives for at least one whole
    // second of the window.
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        // SAFETY: kill(2) on the PID of a child this test started and still holds.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        std::thread::sleep(Duration::from_millis(2000));
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
    });
    let (code, r) = run(&load_args, None);
    stopper.join().unwrap();
    assert!(r.is_object(), "no record (exit {code:?})");
    let a = &r["active"];
    // Every session of the window ended as a reply or an error: nothing vanished.
    assert_eq!(u(&a["connections_asked"]), u(&a["sessions_ok"]) + u(&a["errors"]["total"]), "{a}");
    assert!(u(&a["errors"]["response_timeout"]) + u(&a["errors"]["connect_timeout"]) > 0, "{a}");
    assert!(u(&a["reply_rate"]["zero_seconds"]) >= 1, "{}", a["reply_rate"]);
    assert!(a["errors_per_second"].as_array().unwrap().iter().any(|e| u(e) > 0), "{a}");
    assert_eq!(r["server"]["kept_up"], false, "{}", r["server"]);
    let healthy = || {
        let root = docroot("overload-control");
        let (_s, port) = serve(&root, &[]);
        run(
            &args(
                &format!("http://127.0.0.1:{port}/one.txt"),
                &load_args[1..].iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            ),
            None,
        )
        .1
    };
    if judge(&r, healthy) {
        assert_eq!(code, Some(0), "a VALID run exits 0");
    }
    drop(server);
}

#[test]
fn connections_that_time_out_free_their_descriptors() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // A listener that never accepts: its queue (backlog 128) fills, then the kernel drops SYNs.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/");
    // 300 sessions/s for 4 s with a 1 s timeout: about 1,200 connections, never more than ~400
    // pending at once. With 600 descriptors, connections that held theirs past the timeout would
    // show up as "fd unavailable".
    let (code, r) = run(
        &args(&url, &["--rate", "300", "--duration", "4s", "--timeout", "1s", "--json"]),
        Some(600),
    );
    drop(l);
    assert!(r.is_object(), "no record (exit {code:?})");
    let e = &r["active"]["errors"];
    assert!(u(&e["connect_timeout"]) > 0, "{e}");
    assert!(u(&e["response_timeout"]) > 0, "{e}");
    assert_eq!(u(&e["fd_unavailable"]), 0, "{e}");
    assert_eq!(u(&e["addr_unavailable"]), 0, "{e}");
    assert_eq!(u(&r["active"]["replies"]), 0);
    assert_eq!(u(&r["active"]["connections_asked"]), u(&e["total"]));
    assert_eq!(r["server"]["kept_up"], false);
    let healthy = || {
        let root = docroot("overload-fd-control");
        let (_s, port) = serve(&root, &[]);
        let url = format!("http://127.0.0.1:{port}/one.txt");
        run(
            &args(&url, &["--rate", "300", "--duration", "4s", "--timeout", "1s", "--json"]),
            Some(600),
        )
        .1
    };
    if judge(&r, healthy) {
        assert_eq!(code, Some(0));
    }
}
