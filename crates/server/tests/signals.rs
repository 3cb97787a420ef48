//! The signals as nginx's operators use them, on the real process: SIGHUP reads `--config`
//! again under load (no connection dropped, the new values in force; a change that needs a
//! restart refused with one sentence in the error log, the old values kept); SIGQUIT, SIGTERM
//! and SIGINT drain (a request in flight answered, exit 0, no access-log line lost, the pid file
//! removed).

mod util;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use util::{root, Client, ServerProc};

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p).unwrap_or_default().lines().map(String::from).collect()
}

/// The error log's line format: `YYYY/MM/DD HH:MM:SS [level] PID: message`.
fn check_error_log(p: &Path, pid: u32) -> Vec<String> {
    let re = regex::Regex::new(
        r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} \[(notice|warn|error)\] (\d+): .+$",
    )
    .unwrap();
    let all = lines(p);
    for l in &all {
        let c = re.captures(l).unwrap_or_else(|| panic!("not an error-log line: {l}"));
        assert_eq!(c[2].parse::<u32>().unwrap(), pid, "{l}");
    }
    all
}

/// What the load threads saw.
#[derive(Default)]
struct Seen {
    ok: AtomicU64,
    failures: Mutex<Vec<String>>,
    /// The Cache-Control value each keep-alive thread saw last.
    last: Mutex<Vec<String>>,
}

/// Keep-alive loops and a connection-per-request loop until `stop`.
fn load(
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut threads = Vec::new();
    seen.last.lock().unwrap().resize(3, String::new());
    for i in 0..3 {
        let (stop, seen) = (stop.clone(), seen.clone());
        threads.push(std::thread::spawn(move || {
            let mut c = Client::connect(addr);
            while !stop.load(Ordering::Relaxed) {
                c.send(b"GET /1b.txt HTTP/1.1\r\nHost: t\r\n\r\n");
                match c.response(false) {
                    Ok(r) if r.status == 200 => {
                        seen.ok.fetch_add(1, Ordering::Relaxed);
                        let cc = r.header("cache-control").unwrap_or("").to_string();
                        seen.last.lock().unwrap()[i] = cc;
                    }
                    other => {
                        seen.failures.lock().unwrap().push(format!("keep-alive {i}: {other:?}"));
                        return;
                    }
                }
            }
        }));
    }
    let (stop, seen) = (stop.clone(), seen.clone());
    threads.push(std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let mut c = Client::connect(addr);
            c.send(b"GET /6k.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            match c.response(false) {
                Ok(r) if r.status == 200 && r.body.len() == 6144 => {
                    seen.ok.fetch_add(1, Ordering::Relaxed);
                }
                other => {
                    let what = other.map(|r| (r.status, r.body.len()));
                    seen.failures.lock().unwrap().push(format!("new connection: {what:?}"));
                    return;
                }
            }
        }
    }));
    threads
}

fn write_config(file: &Path, cache_control: &str, log: &Path, workers: u32) {
    std::fs::write(
        file,
        format!(
            "workers = {workers}\ncache-control = \"{cache_control}\"\naccess-log = '{}'\n",
            log.display()
        ),
    )
    .unwrap();
}

#[test]
fn sighup_under_load_drops_no_connection_and_puts_the_new_config_in_force() {
    // A readiness engine, one whose wait is for signals, and the completion engine.
    for name in ["epoll", "rtsig", "uring-completion"] {
        let engine: ioscale_server::Engine = name.parse().unwrap();
        if let Err(e) = engine.probe() {
            eprintln!("SKIPPED: {name}: not supported here: {e}");
            continue;
        }
        hup_under_load(name);
    }
}

fn hup_under_load(engine: &str) {
    let root = root("hup");
    let dir = root.parent().unwrap().to_path_buf();
    let (file, log1, log2, errlog) =
        (dir.join("serve.toml"), dir.join("a1.log"), dir.join("a2.log"), dir.join("error.log"));
    write_config(&file, "max-age=1", &log1, 2);
    let args = format!(
        "--config '{}' --root '{}' --error-log '{}' --dispatch {engine}",
        file.display(),
        root.display(),
        errlog.display()
    );
    let mut srv = ServerProc::spawn("", &args).unwrap_or_else(|l| panic!("did not start: {l}"));
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let threads = load(srv.addr(), stop.clone(), seen.clone());
    let all_see = |v: &str| {
        let v = v.to_string();
        let seen = seen.clone();
        move || seen.last.lock().unwrap().iter().all(|s| *s == v)
    };
    assert!(wait_for(Duration::from_secs(10), all_see("max-age=1")), "load did not start");
    // A reloadable change, under load.
    write_config(&file, "max-age=2", &log1, 2);
    srv.signal(libc::SIGHUP);
    assert!(wait_for(Duration::from_secs(10), all_see("max-age=2")), "max-age=2 not in force");
    // Another, moving the access log to a new path.
    write_config(&file, "max-age=3", &log2, 2);
    srv.signal(libc::SIGHUP);
    assert!(wait_for(Duration::from_secs(10), all_see("max-age=3")), "max-age=3 not in force");
    let before = seen.ok.load(Ordering::Relaxed);
    assert!(wait_for(Duration::from_secs(10), || seen.ok.load(Ordering::Relaxed) > before + 50));
    // A few more in a row, as an operator's script might send them.
    for _ in 0..5 {
        srv.signal(libc::SIGHUP);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let failures = seen.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{engine}: requests failed across SIGHUP: {failures:?}");
    let ok = seen.ok.load(Ordering::Relaxed);
    assert!(ok > 100, "too little load: {ok}");
    eprintln!("{engine}: {ok} requests answered across 7 SIGHUPs, none failed");
    assert_eq!(srv.stats()["workers"], 2);
    let pid = srv.pid();
    srv.signal(libc::SIGTERM);
    assert_eq!(srv.wait_exit(Duration::from_secs(10)), Some(0));
    // Every request logged once, in one file or the other (plus the stats request).
    let (l1, l2) = (lines(&log1), lines(&log2));
    assert!(!l2.is_empty(), "nothing logged at the new path");
    assert_eq!((l1.len() + l2.len()) as u64, ok + 1, "{engine}: lines lost or doubled");
    let err = check_error_log(&errlog, pid);
    let text = err.join("\n");
    assert!(
        text.contains("configuration reloaded: cache-control \"max-age=1\" -> \"max-age=2\""),
        "{text}"
    );
    assert!(text.contains("access-log"), "{text}");
    assert!(text.contains("SIGTERM: draining"), "{text}");
    assert!(!text.contains("[error]"), "{text}");
}

#[test]
fn sighup_refuses_a_change_that_needs_a_restart_and_keeps_every_old_value() {
    let root = root("hup-refuse");
    let dir = root.parent().unwrap().to_path_buf();
    let (file, log, errlog) = (dir.join("serve.toml"), dir.join("a.log"), dir.join("error.log"));
    write_config(&file, "max-age=1", &log, 2);
    let args = format!(
        "--config '{}' --root '{}' --error-log '{}'",
        file.display(),
        root.display(),
        errlog.display()
    );
    let mut srv = ServerProc::spawn("", &args).unwrap_or_else(|l| panic!("did not start: {l}"));
    let mut c = Client::connect(srv.addr());
    let cc = |c: &mut Client| c.get("GET", "/1b.txt").header("cache-control").map(String::from);
    assert_eq!(cc(&mut c).as_deref(), Some("max-age=1"));
    let errors = |n: usize| {
        let errlog = errlog.clone();
        move || lines(&errlog).iter().filter(|l| l.contains("[error]")).count() >= n
    };
    // workers needs a restart: the whole file is refused, cache-control too.
    write_config(&file, "max-age=2", &log, 3);
    srv.signal(libc::SIGHUP);
    assert!(wait_for(Duration::from_secs(10), errors(1)), "no error logged");
    // Not valid TOML, then an unknown key, then a bad value.
    for (n, text) in [
        (2, "workers = 2\ncache-control = "),
        (3, "workers = 2\nworker = 3\n"),
        (4, "idle-timeout = \"5\"\n"),
    ] {
        std::fs::write(&file, text).unwrap();
        srv.signal(libc::SIGHUP);
        assert!(wait_for(Duration::from_secs(10), errors(n)), "no error logged for {text:?}");
    }
    assert_eq!(cc(&mut c).as_deref(), Some("max-age=1"), "the old value is not in force");
    assert_eq!(srv.stats()["workers"], 2);
    // A good file again: applied.
    write_config(&file, "max-age=9", &log, 2);
    srv.signal(libc::SIGHUP);
    assert!(wait_for(Duration::from_secs(10), || cc(&mut c).as_deref() == Some("max-age=9")));
    let pid = srv.pid();
    drop(c);
    srv.signal(libc::SIGTERM);
    assert_eq!(srv.wait_exit(Duration::from_secs(10)), Some(0));
    let err: Vec<String> =
        check_error_log(&errlog, pid).into_iter().filter(|l| l.contains("[error]")).collect();
    assert_eq!(err.len(), 4, "{err:#?}");
    assert!(
        err[0].contains("SIGHUP: the configuration changes workers (2 -> 3), which needs a restart; the running configuration is kept"),
        "{}",
        err[0]
    );
    assert!(err[1].contains("not valid TOML (line 2)") && err[1].contains("kept"), "{}", err[1]);
    assert!(err[2].contains("unknown key 'worker'") && err[2].contains("did you mean 'workers'"));
    assert!(err[3].contains("a unit is required"), "{}", err[3]);
}

fn pid_of(p: &PathBuf) -> Option<u32> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

#[test]
fn sigquit_sigterm_and_sigint_drain_log_every_line_and_remove_the_pid_file() {
    for sig in [libc::SIGQUIT, libc::SIGTERM, libc::SIGINT] {
        let root = root("drain");
        let dir = root.parent().unwrap().to_path_buf();
        let (log, pidf) = (dir.join("a.log"), dir.join("serve.pid"));
        let args = format!(
            "--root '{}' --access-log '{}' --pid-file '{}' --workers 2",
            root.display(),
            log.display(),
            pidf.display()
        );
        let mut srv = ServerProc::spawn("", &args).unwrap_or_else(|l| panic!("did not start: {l}"));
        assert_eq!(pid_of(&pidf), Some(srv.pid()), "pid file");
        let mut c = Client::connect(srv.addr());
        for _ in 0..20 {
            assert_eq!(c.get("GET", "/1b.txt").status, 200);
        }
        // A request already sent when the signal comes: answered before the close, and logged
        // (the buffered lines were not yet written: flushed at the stop).
        let mut late = Client::connect(srv.addr());
        late.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
        std::thread::sleep(Duration::from_millis(100));
        srv.signal(sig);
        let r = late.response(false).expect("the request in flight was dropped");
        assert_eq!((r.status, r.body.len()), (200, 300_000), "signal {sig}");
        assert_eq!(srv.wait_exit(Duration::from_secs(10)), Some(0), "signal {sig}");
        assert_eq!(lines(&log).len(), 21, "signal {sig}: lines lost");
        assert!(!pidf.exists(), "signal {sig}: the pid file is still there");
    }
}

#[test]
fn a_pid_file_or_error_log_that_cannot_be_written_is_one_sentence() {
    let root = root("pid-bad");
    for (flag, words) in
        [("--pid-file", "cannot write it"), ("--error-log", "cannot open it for appending")]
    {
        let args = format!("--root '{}' {flag} /nonexistent-dir/x", root.display());
        let Err(line) = ServerProc::spawn("", &args) else { panic!("{flag}: started") };
        assert!(line.contains(&format!("{flag} '/nonexistent-dir/x': {words}")), "{line}");
    }
}
