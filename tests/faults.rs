//! Faults with the generator in the loop, every party a real process (`ioscale serve`,
//! `ioscale load`, ended by PID): the server stopped with SIGSTOP for 3 s and resumed, killed
//! with SIGKILL, or sent SIGTERM in the middle of a load run; and RT-signal queue storms — 2,000
//! keep-alive connections made ready at once, round after round, against a 64-entry queue,
//! during a load run. The generator must report what happened in a clean record (never hang,
//! never panic), and no request may be lost.
//!
//! One test at a time (a mutex): the storm holds 2,000 descriptors and every test wants the
//! machine's attention. Server-only faults are in `crates/server/tests/faults.rs`.

mod util;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use util::{fetch, serial, serve, start_load, try_serve, NotStarted, Proc};

static SERIAL: Mutex<()> = Mutex::new(());

const HUGE: usize = 8 << 20;

fn docroot(tag: &str) -> PathBuf {
    let d = util::temp_dir(&format!("faults-{tag}"));
    std::fs::write(d.join("1b.txt"), b"x").unwrap();
    std::fs::write(d.join("6k.html"), vec![b'y'; 6144]).unwrap();
    let huge: Vec<u8> = (0..HUGE as u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(d.join("huge.bin"), huge).unwrap();
    d
}

/// Waits for the generator (at most `limit`: a hang fails the test) and parses its record.
fn finish(mut p: Proc, limit: Duration) -> (Option<i32>, Value, String) {
    let mut out = p.0.stdout.take().unwrap();
    let mut err = p.0.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut o, mut e) = (Vec::new(), String::new());
        let _ = out.read_to_end(&mut o);
        let _ = err.read_to_string(&mut e);
        (o, e)
    });
    let code = p.wait_exit(limit).unwrap_or_else(|e| panic!("ioscale load hung: {e}"));
    let (o, e) = reader.join().unwrap();
    let v: Value = serde_json::from_slice(&o).unwrap_or_else(|x| {
        panic!("no clean JSON record ({x}): {}\n{e}", String::from_utf8_lossy(&o))
    });
    assert!(!e.contains("panicked"), "{e}");
    assert_eq!(v["tool"], "ioscale load", "{v}");
    (code, v, e)
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn stats(port: u16) -> Value {
    let (_, body) = fetch(port, "/.ioscale/stats").expect("stats");
    serde_json::from_slice(&body).unwrap()
}

fn errors_line(p: &Value) -> String {
    let e = &p["errors"];
    format!(
        "total {} (connect timeout {}, response timeout {}, refused {}, reset {}, closed early {})",
        e["total"],
        e["connect_timeout"],
        e["response_timeout"],
        e["refused"],
        e["reset"],
        e["closed_early"]
    )
}

/// One test's parties: the lock that runs these tests one at a time, `ioscale serve ARGS` on a
/// fresh document root, its port, and the URL of its 6 KB file.
fn setup(tag: &str, args: &[&str]) -> (MutexGuard<'static, ()>, Proc, u16, String) {
    let g = serial(&SERIAL);
    let (server, port) = serve(&docroot(tag), args);
    (g, server, port, format!("http://127.0.0.1:{port}/6k.html"))
}

/// Every request the generator sent is accounted for: a reply, or a counted timeout, reset or
/// early close (errors before sending — connect timeouts, refusals, no descriptor or address —
/// are not requests).
fn assert_every_request_accounted_for(a: &Value) {
    let e = &a["errors"];
    let after_send = n(&e["total"])
        - n(&e["connect_timeout"])
        - n(&e["refused"])
        - n(&e["fd_unavailable"])
        - n(&e["addr_unavailable"]);
    assert_eq!(n(&a["requests"]), n(&a["replies"]) + after_send, "{a}");
}

#[test]
fn server_stopped_for_3_s_the_generator_reports_lateness_and_timeouts() {
    let (_g, server, port, url) = setup("stop", &[]);
    let gen =
        start_load(&[&url, "--rate", "100", "--calls", "2", "--duration", "8s", "--timeout", "2s"]);
    std::thread::sleep(Duration::from_secs(2));
    server.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(3));
    server.signal(libc::SIGCONT);
    let (code, r, err) = finish(gen, Duration::from_secs(40));
    let a = &r["active"];
    eprintln!(
        "SIGSTOP 3 s: exit {code:?}, valid {}, {} requests, {} replies, latency max {} ms, p99 {} ms; errors {}",
        r["valid"],
        a["requests"],
        a["replies"],
        a["latency_ms"]["max"],
        a["latency_ms"]["p99"],
        errors_line(a)
    );
    // The generator kept its schedule (valid, exit 0) unless the machine itself starved it
    // (exit 3, with its reasons); the server's stall is in the figures, not in the validity.
    assert!(matches!(code, Some(0 | 3)), "{err}");
    if code == Some(3) {
        eprintln!("note: INVALID: {}", r["invalid_reasons"]);
    }
    // Requests waiting longer than the 2 s timeout were counted as timeouts ...
    let timeouts = n(&a["errors"]["response_timeout"]) + n(&a["errors"]["connect_timeout"]);
    assert!(timeouts >= 1, "{}", a["errors"]);
    // ... and those sent in the last 2 s of the stop were answered late, not lost.
    assert!(a["latency_ms"]["max"].as_f64().unwrap() >= 1000.0, "{}", a["latency_ms"]);
    assert_every_request_accounted_for(a);
    // The server itself is fine afterwards.
    assert_eq!(fetch(port, "/1b.txt").map(|r| r.0), Some(200));
    drop(server);
}

/// Requests still unanswered when the run's drain time runs out are counted as timeouts, not
/// dropped from the record (they used to vanish when the loop ended between two timeout sweeps).
#[test]
fn a_server_stalled_at_the_end_of_a_run_leaves_every_request_accounted_for() {
    let (_g, server, _, url) = setup("stall", &[]);
    let gen =
        start_load(&[&url, "--rate", "400", "--calls", "3", "--duration", "2s", "--timeout", "1s"]);
    std::thread::sleep(Duration::from_millis(1500));
    server.signal(libc::SIGSTOP);
    let (code, r, err) = finish(gen, Duration::from_secs(30));
    server.signal(libc::SIGCONT);
    let a = &r["active"];
    let e = &a["errors"];
    eprintln!(
        "stalled at the end: exit {code:?}, {} requests, {} replies, errors {}",
        a["requests"],
        a["replies"],
        errors_line(a)
    );
    assert!(matches!(code, Some(0 | 3)), "{err}");
    assert!(n(&e["response_timeout"]) >= 1, "{e}");
    assert_every_request_accounted_for(a);
    drop(server);
}

#[test]
fn server_killed_mid_run_the_generator_reports_connection_errors_in_a_clean_record() {
    let (_g, mut server, _, url) = setup("kill", &[]);
    let gen =
        start_load(&[&url, "--rate", "100", "--calls", "2", "--duration", "5s", "--timeout", "2s"]);
    std::thread::sleep(Duration::from_secs(2));
    server.signal(libc::SIGKILL);
    let _ = server.wait_exit(Duration::from_secs(5));
    let (code, r, err) = finish(gen, Duration::from_secs(40));
    let a = &r["active"];
    eprintln!(
        "SIGKILL at 2 s of 5 s: exit {code:?}, valid {}, {} requests, {} replies; errors {}",
        r["valid"],
        a["requests"],
        a["replies"],
        errors_line(a)
    );
    assert!(matches!(code, Some(0 | 3)), "{err}");
    assert!(n(&a["replies"]) >= 100, "replies before the kill: {a}");
    assert!(
        n(&a["errors"]["refused"]) >= 50,
        "connections refused after the kill: {}",
        a["errors"]
    );
    let sessions = n(&a["sessions"]);
    assert!(sessions >= 400, "the schedule went on: {sessions} sessions");
}

/// Held connections whose server is gone are re-opened at most once per 100 ms in all while
/// connecting fails: 2,000 idle connections used to retry every 100 ms each (20,000 connect()
/// calls a second, a spin that starves the schedule; with an exhausted port range each one costs
/// a millisecond of kernel time).
#[test]
fn held_connections_of_a_dead_server_are_retried_gently() {
    let (_g, mut server, port, url) = setup("dead", &[]);
    let gen = start_load(&[&url, "--idle", "2000", "--idle-period", "10s", "--duration", "6s"]);
    // Wait until all 2,000 are held, then kill the server.
    let t = Instant::now();
    while n(&stats(port)["connections"]["open"]) < 2000 {
        assert!(t.elapsed() < Duration::from_secs(20), "idle connections not all accepted");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.signal(libc::SIGKILL);
    let _ = server.wait_exit(Duration::from_secs(5));
    let killed_at = t.elapsed();
    let (code, r, err) = finish(gen, Duration::from_secs(40));
    let i = &r["idle"];
    eprintln!(
        "dead server, 2000 idle held: killed {:.1} s in; exit {code:?}; {} connects asked, {} established, errors {}; generator CPU {:.0}%",
        killed_at.as_secs_f64(),
        i["connections_asked"],
        i["connections_established"],
        errors_line(i),
        r["generator_cpu_util"].as_f64().unwrap_or(0.0) * 100.0
    );
    assert!(matches!(code, Some(0 | 3)), "{err}");
    assert!(n(&i["errors"]["refused"]) >= 1, "{}", i["errors"]);
    // 2,000 first connects, one immediate re-open per closed connection (2,000), then one probe
    // per 100 ms (a probe that connects to itself — the dead port is in the ephemeral range, so
    // the kernel may pick it as the source: TCP simultaneous open — lets a burst through). The
    // old code asked for 61,493 in the same run.
    let asked = n(&i["connections_asked"]);
    assert!(asked < 10_000, "{asked} connects asked");
}

#[test]
fn sigterm_under_load_finishes_in_flight_responses_and_exits_zero() {
    // A long drain limit: the server must exit as soon as its in-flight work is done, not
    // when the limit runs out (it used to keep a connection whose response began before the
    // stop open as an idle keep-alive one until then).
    let (_g, mut server, port, url) = setup("term", &["--drain-timeout", "60s"]);
    let gen = start_load(&[&url, "--rate", "100", "--duration", "5s", "--timeout", "2s"]);
    std::thread::sleep(Duration::from_millis(1500));
    // Eight slow readers of 8 MiB each, with 32 KiB receive buffers: at most ~2.4 MiB read and
    // 4 MiB (tcp_wmem's maximum) buffered by the server's socket when SIGTERM comes, so every
    // response is still being sent.
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let mut s = connect_small_rcvbuf(port, 32 * 1024);
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            s.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            std::thread::spawn(move || {
                let mut all = Vec::new();
                let mut b = vec![0u8; 16384];
                loop {
                    match s.read(&mut b) {
                        Ok(0) => break,
                        Ok(k) => all.extend_from_slice(&b[..k]),
                        Err(e) => panic!("in-flight response cut: {e} after {} bytes", all.len()),
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                all
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    server.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(100));
    if let Some(st) = server.0.try_wait().unwrap() {
        panic!("exited ({st}) with responses in flight");
    }
    let want: Vec<u8> = (0..HUGE as u32).map(|i| (i % 251) as u8).collect();
    for h in readers {
        let all = h.join().unwrap();
        let at = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&all[..at]);
        // The head went out before SIGTERM (keep-alive); the whole body follows, then the close.
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(all[at..] == want[..], "body of {} bytes", all.len() - at);
    }
    let code = server.wait_exit(Duration::from_secs(20)).expect("exit well before the drain limit");
    let drained = t.elapsed();
    assert_eq!(code, Some(0), "exit code after SIGTERM");
    let (lcode, r, err) = finish(gen, Duration::from_secs(40));
    let a = &r["active"];
    eprintln!(
        "SIGTERM under load: 8 x 8 MiB in flight completed, server exited 0 after {:.2} s; generator exit {lcode:?}, {} requests, {} replies, errors {}",
        drained.as_secs_f64(),
        a["requests"],
        a["replies"],
        errors_line(a)
    );
    assert!(matches!(lcode, Some(0 | 3)), "{err}");
    // After the stop new connections are refused at once (the listener is shut), never left
    // unanswered in its queue until a timeout.
    assert_eq!(
        n(&a["errors"]["response_timeout"]) + n(&a["errors"]["connect_timeout"]),
        0,
        "{}",
        a["errors"]
    );
    assert!(n(&a["errors"]["refused"]) >= 1, "{}", a["errors"]);
}

/// A loopback connection whose receive buffer is set before connecting (so the window stays
/// small).
fn connect_small_rcvbuf(port: u16, bytes: i32) -> TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor this function owns; every pointer is to a
    // local of the size passed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "SO_RCVBUF");
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be() },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    }
}

/// Reads one response from `s` into `buf` (leftovers kept); its status.
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    let mut b = [0u8; 4096];
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..at]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= at + 4 + len {
                buf.drain(..at + 4 + len);
                return Ok(head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0));
            }
        }
        let k = s.read(&mut b)?;
        if k == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&b[..k]);
    }
}

const STORM_CONNS: usize = 2000;
const ROUNDS: usize = 6;

#[test]
fn rt_signal_queue_storms_lose_no_request() {
    let _g = serial(&SERIAL);
    let root = docroot("sigq");
    for (mech, recovery) in [("rtsig", "repoll"), ("rtsig", "fallback"), ("hybrid", "repoll")] {
        let args = ["--dispatch", mech, "--sigqueue-max", "64", "--rtsig-recovery", recovery];
        let (server, port) = match try_serve(&root, &args) {
            Ok(x) => x,
            Err(NotStarted { line, code }) => {
                eprintln!(
                    "SKIPPED: {mech}: the server did not start here (exit {code:?}): {}",
                    line.trim_end()
                );
                continue;
            }
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        // The load run the storms happen during.
        let url = format!("http://127.0.0.1:{port}/6k.html");
        let gen =
            start_load(&[&url, "--request-rate", "200", "--connections", "10", "--duration", "8s"]);
        let mut conns: Vec<(TcpStream, Vec<u8>)> = (0..STORM_CONNS)
            .map(|_| {
                let s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                (s, Vec::new())
            })
            .collect();
        let t = Instant::now();
        while n(&stats(port)["connections"]["open"]) < STORM_CONNS as u64 {
            assert!(t.elapsed() < Duration::from_secs(20), "{mech}: not all accepted");
            std::thread::sleep(Duration::from_millis(50));
        }
        let before = stats(port);
        // Each round: one request on every connection, as fast as the loop goes (thousands of
        // descriptors ready at once), then every response read.
        let mut answered = 0usize;
        for round in 0..ROUNDS {
            // A light spell between storms: the hybrid goes back to signals, the queue drains.
            std::thread::sleep(Duration::from_millis(500));
            for (s, _) in &mut conns {
                s.write_all(b"GET /1b.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            }
            for (i, (s, buf)) in conns.iter_mut().enumerate() {
                let st = read_response(s, buf)
                    .unwrap_or_else(|e| panic!("{mech}: round {round}, connection {i}: {e}"));
                assert_eq!(st, 200, "{mech}");
                answered += 1;
            }
        }
        let after = stats(port);
        let (code, r, err) = finish(gen, Duration::from_secs(40));
        let a = &r["active"];
        let d = |k: &str| n(&after["dispatch"][k]) - n(&before["dispatch"][k]);
        eprintln!(
            "{mech} --rtsig-recovery {recovery} (queue 64): {answered} of {} storm requests answered; load {} requests, {} replies, errors {}; during the storms: {} signals, {} overflows, {} recoveries, {} fallback scans, {} mode switches (whole run: {} overflows, {} switches)",
            STORM_CONNS * ROUNDS,
            a["requests"],
            a["replies"],
            a["errors"]["total"],
            d("signals"),
            d("overflows"),
            d("recoveries"),
            d("fallback_scans"),
            d("mode_switches"),
            after["dispatch"]["overflows"],
            after["dispatch"]["mode_switches"]
        );
        // Zero lost: every storm request answered, every generator request answered.
        assert_eq!(answered, STORM_CONNS * ROUNDS, "{mech}");
        assert!(matches!(code, Some(0 | 3)), "{mech}: {err}");
        assert_eq!(n(&a["errors"]["total"]), 0, "{mech}: {}", a["errors"]);
        assert_eq!(a["requests"], a["replies"], "{mech}");
        assert_eq!(n(&after["responses"]["4xx"]) + n(&after["responses"]["5xx"]), 0, "{mech}");
        // The queue overflowed and the server recovered (rtsig) or switched (hybrid).
        // With the fallback policy, the server served from scans after the overflows.
        match (mech, recovery) {
            ("rtsig", "repoll") => {
                assert!(d("overflows") >= 1, "{mech}: {}", after["dispatch"]);
                assert!(d("recoveries") >= 1, "{mech}: {}", after["dispatch"]);
                assert_eq!(d("fallback_scans"), 0, "{mech}: {}", after["dispatch"]);
            }
            ("rtsig", _) => {
                assert!(d("overflows") >= 1, "{mech} {recovery}: {}", after["dispatch"]);
                assert!(d("fallback_scans") >= 1, "{mech} {recovery}: {}", after["dispatch"]);
            }
            _ => assert!(d("mode_switches") >= 2, "{mech}: {}", after["dispatch"]),
        }
        drop(conns);
        server.signal(libc::SIGTERM);
        let mut server = server;
        assert_eq!(server.wait_exit(Duration::from_secs(15)).unwrap(), Some(0), "{mech}");
    }
}
