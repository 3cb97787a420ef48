//! What a server engineer's tools read: `/.ioscale/metrics` parsed by the Prometheus project's
//! own Python parser (`prometheus_client`, installed by `.ci/run`) and checked against
//! `/.ioscale/stats`; the access log parsed with a Combined Log Format regex, on every engine,
//! with curl as the client; SIGUSR1 reopening the log after a rename (logrotate's way), on the
//! real process.

mod util;

use ioscale_testutil::wait_until;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use util::{
    completion_engine, each_mechanism, have, proc_cpu_s, root, Client, ServerProc, TestServer,
};

/// Parses metrics text with prometheus_client; `None` (reason printed) if it is not installed.
fn parse_metrics(text: &str) -> Option<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/parse_metrics.py");
    let mut child = match Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("SKIPPED: python3 cannot run: {e}");
            return None;
        }
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.code() == Some(3) {
        eprintln!("SKIPPED: {}", String::from_utf8_lossy(&out.stderr).trim());
        return None;
    }
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition: {}\n---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// Runs `promtool check metrics` (the Prometheus project's linter) on a text-format
/// exposition; `None` (reason printed) where promtool is not installed, else its output.
fn promtool(text: &str) -> Option<(bool, String)> {
    if !have("promtool") {
        eprintln!("SKIPPED: promtool is not installed (Debian package prometheus)");
        return None;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some((out.status.success(), said))
}

/// `GET /.ioscale/metrics` with an `Accept` header.
fn scrape(c: &mut Client, accept: &str) -> util::Resp {
    c.send(
        format!("GET /.ioscale/metrics HTTP/1.1\r\nHost: t\r\nAccept: {accept}\r\n\r\n").as_bytes(),
    );
    c.response(false).unwrap()
}

#[test]
fn metrics_parse_with_prometheus_client_and_agree_with_stats() {
    let mut engines = vec![ioscale_dispatch::Mechanism::Epoll.into()];
    engines.extend(completion_engine());
    for engine in engines {
        let root = root("metrics");
        let srv = TestServer::start(engine, &root, |_| {});
        let mut c = srv.client();
        for _ in 0..5 {
            assert_eq!(c.get("GET", "/1b.txt").status, 200);
        }
        assert_eq!(c.get("HEAD", "/6k.bin").status, 200);
        assert_eq!(c.get("GET", "/missing").status, 404);
        // A head in two parts a second apart: its duration is at least the pause (from the pass
        // that read its first byte to the pass that answered it).
        let mut slow = srv.client();
        slow.send(b"GET /1b.txt HTTP/1.1\r\n");
        std::thread::sleep(Duration::from_secs(1));
        slow.send(b"Host: t\r\n\r\n");
        assert_eq!(slow.response(false).unwrap().status, 200);
        let m = c.get("GET", "/.ioscale/metrics");
        assert_eq!(m.status, 200);
        assert!(m.header("content-type").unwrap().starts_with("application/openmetrics-text"));
        let stats: serde_json::Value =
            serde_json::from_slice(&c.get("GET", "/.ioscale/stats").body).unwrap();
        let text = String::from_utf8(m.body).unwrap();
        let Some(parsed) = parse_metrics(&text) else { return };
        assert!(parsed["classic_samples"].as_u64().unwrap() > 60, "classic parser: {parsed}");
        let fam = &parsed["families"];
        for (name, kind) in [
            ("ioscale_server", "info"),
            ("ioscale_connections_open", "gauge"),
            ("ioscale_connections_accepted", "counter"),
            ("ioscale_connections_closed", "counter"),
            ("ioscale_requests", "counter"),
            ("ioscale_responses", "counter"),
            ("ioscale_received_bytes", "counter"),
            ("ioscale_sent_bytes", "counter"),
            ("ioscale_dispatch_waits", "counter"),
            ("ioscale_dispatch_signals", "counter"),
            ("ioscale_dispatch_overflows", "counter"),
            ("ioscale_dispatch_recoveries", "counter"),
            ("ioscale_http_errors", "counter"),
            ("ioscale_timeouts", "counter"),
            ("ioscale_request_duration_seconds", "histogram"),
            ("process_cpu_seconds", "counter"),
            ("process_resident_memory_bytes", "gauge"),
            ("process_virtual_memory_bytes", "gauge"),
            ("process_open_fds", "gauge"),
            ("process_max_fds", "gauge"),
            ("process_start_time_seconds", "gauge"),
        ] {
            assert_eq!(fam[name], kind, "{engine}: family {name} in {fam}");
        }
        assert!(fam.get("ioscale_dispatch").is_none(), "one family per counter: {fam}");
        let s: HashMap<String, f64> =
            serde_json::from_value::<HashMap<String, f64>>(parsed["samples"].clone()).unwrap();
        let v = |k: &str| *s.get(k).unwrap_or_else(|| panic!("{engine}: no sample {k}: {s:?}"));
        let n = |p: &str| stats.pointer(p).and_then(|v| v.as_u64()).unwrap() as f64;
        // The stats request came after the scrape, on the same connection: one more request
        // and one more 200; everything else is as it was.
        assert_eq!(v("ioscale_requests_total{}"), n("/requests") - 1.0, "{engine}");
        assert_eq!(v("ioscale_requests_total{}"), 9.0, "{engine}");
        assert_eq!(v("ioscale_responses_total{code=200}"), n("/status/200") - 1.0);
        assert_eq!(v("ioscale_responses_total{code=200}"), 7.0, "{engine}");
        assert_eq!(v("ioscale_responses_total{code=404}"), 1.0, "{engine}");
        assert_eq!(v("ioscale_connections_accepted_total{}"), n("/connections/accepted"));
        assert_eq!(v("ioscale_connections_open{}"), n("/connections/open"));
        assert_eq!(v("ioscale_http_errors_total{kind=not_found}"), n("/errors/not_found"));
        assert_eq!(v("ioscale_http_errors_total{kind=not_found}"), 1.0);
        assert!(v("ioscale_received_bytes_total{}") < n("/bytes/in"));
        assert!(v("ioscale_sent_bytes_total{}") > 0.0);
        assert!(v("ioscale_dispatch_waits_total{}") > 0.0);
        assert!(v("process_resident_memory_bytes{}") > 1e6, "{engine}");
        assert!(
            v("process_open_fds{}") >= 4.0 && v("process_max_fds{}") >= v("process_open_fds{}")
        );
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let start = v("process_start_time_seconds{}");
        assert!(start <= now.as_secs_f64() + 1.0 && start > now.as_secs_f64() - 3600.0, "{start}");
        // The histogram holds every request answered, not the scrape's own yet (it is timed
        // once its response is written); from 50 µs; its sum is the real time (the slow head's
        // second at least).
        let b = |le: &str| v(&format!("ioscale_request_duration_seconds_bucket{{le={le}}}"));
        assert_eq!(v("ioscale_request_duration_seconds_count{}"), 8.0, "{engine}");
        assert_eq!(b("+Inf"), 8.0, "{engine}");
        assert!(b("5e-05") <= b("0.0001") && b("0.0001") <= b("0.5"), "{engine}");
        // The slow head took a second at least: it is above 0.5 s whatever the machine's load
        // (the others are below it unless a pass was preempted for that long: not asserted).
        assert!(b("0.5") <= 7.0, "{engine}: the slow head is over 0.5 s");
        let sum = v("ioscale_request_duration_seconds_sum{}");
        assert!((0.9..60.0).contains(&sum), "{engine}: sum {sum}");
        // The Prometheus text format, when asked for: the Prometheus project's own linter
        // accepts it with no warning, and the Python client's parser reads the same values.
        let t = scrape(&mut c, "text/plain;version=0.0.4");
        assert_eq!(t.status, 200);
        assert_eq!(t.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
        let t = String::from_utf8(t.body).unwrap();
        assert!(!t.contains("# EOF") && !t.contains("# UNIT"), "{t}");
        if let Some((ok, said)) = promtool(&t) {
            assert!(ok && said.trim().is_empty(), "{engine}: promtool check metrics: {said}\n{t}");
        }
        let Some(classic) = parse_text(&t) else { return };
        assert_eq!(classic["ioscale_requests_total{}"], 11.0, "{engine}");
        assert_eq!(classic["process_max_fds{}"], v("process_max_fds{}"), "{engine}");
        // What Prometheus itself asks for: OpenMetrics.
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let o = scrape(&mut c, prom);
        assert!(o.header("content-type").unwrap().starts_with("application/openmetrics-text"));
        assert!(String::from_utf8(o.body).unwrap().ends_with("# EOF\n"));
        drop((c, slow));
        srv.stop().unwrap();
    }
}

/// The histogram's buckets, `_count` and `_sum` never go down from one scrape to the next
/// (Prometheus' `rate()` would take a drop for a restart), scraped 40 times while four clients
/// keep two workers busy; `_count` never exceeds the requests counted by the next scrape (a
/// request is counted when parsed and timed when answered, and one page reads the two counters
/// at slightly different moments while the other worker goes on, so the same scrape's
/// `ioscale_requests_total` may be read just before a request it then times).
#[test]
fn duration_histogram_only_grows_between_scrapes_under_load() {
    let root = root("metrics-grow");
    let srv = TestServer::start(ioscale_dispatch::Mechanism::Epoll, &root, |c| c.workers = 2);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (mut c, stop) = (srv.client(), stop.clone());
            std::thread::spawn(move || {
                // Bounded: at most 5,000 requests each, fewer once the scrapes are done.
                for _ in 0..5000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    assert_eq!(c.get("GET", "/1b.txt").status, 200);
                }
            })
        })
        .collect();
    let mut c = srv.client();
    let mut last: Option<Vec<f64>> = None;
    let mut last_count = 0.0;
    for i in 0..40 {
        let t = String::from_utf8(scrape(&mut c, "text/plain;version=0.0.4").body).unwrap();
        let value = |line: &str| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
        let mut now: Vec<f64> = t
            .lines()
            .filter(|l| {
                l.starts_with("ioscale_request_duration_seconds_bucket")
                    || l.starts_with("ioscale_request_duration_seconds_count")
                    || l.starts_with("ioscale_request_duration_seconds_sum")
            })
            .map(value)
            .collect();
        assert_eq!(now.len(), 18 + 2, "17 bounds and +Inf, _sum, _count:\n{t}");
        let requests = t.lines().find(|l| l.starts_with("ioscale_requests_total")).map(value);
        let count = now[now.len() - 1];
        assert!(
            last_count <= requests.unwrap(),
            "scrape {i}: the last scrape's _count {last_count} > requests {requests:?} now"
        );
        last_count = count;
        if let Some(prev) = &last {
            for (k, (a, b)) in prev.iter().zip(&now).enumerate() {
                assert!(b >= a, "scrape {i}: series {k} went from {a} to {b}:\n{t}");
            }
        }
        last = Some(std::mem::take(&mut now));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in load {
        l.join().unwrap();
    }
    let last = last.unwrap();
    assert!(last[last.len() - 1] > 40.0, "the load was counted: {last:?}");
    srv.stop().unwrap();
}

/// The stand-alone server process, scraped as Prometheus and curl scrape it: the text format
/// 0.0.4 when `Accept` asks for it (promtool accepts it with no warning), OpenMetrics for curl's
/// `*/*` (the strict OpenMetrics parser accepts it); responses by code; and the `process_*`
/// families agree with what `/proc/PID` and the shell's `ulimit -n` say about that process.
#[test]
fn the_server_process_metrics_pass_promtool_and_agree_with_proc() {
    let root = root("metrics-proc");
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let args = format!("--root '{}' --dispatch epoll --workers 1", root.display());
    let srv = ServerProc::spawn("ulimit -n 1000;", &args)
        .unwrap_or_else(|l| panic!("the server did not start: {l}"));
    let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let mut c = Client::connect(srv.addr());
    for _ in 0..3 {
        assert_eq!(c.get("GET", "/1b.txt").status, 200);
    }
    assert_eq!(c.get("GET", "/missing").status, 404);
    let cpu_before = proc_cpu_s(srv.pid());
    let fds = srv.fds();
    let t = scrape(&mut c, "text/plain; version=0.0.4; q=0.9, */*; q=0.1");
    let cpu_after = proc_cpu_s(srv.pid());
    assert_eq!(t.status, 200);
    assert_eq!(t.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let t = String::from_utf8(t.body).unwrap();
    if let Some((ok, said)) = promtool(&t) {
        assert!(ok && said.trim().is_empty(), "promtool check metrics: {said}\n{t}");
    }
    let Some(s) = parse_text(&t) else { return };
    let v = |k: &str| *s.get(k).unwrap_or_else(|| panic!("no sample {k} in {s:?}"));
    assert_eq!(v("ioscale_responses_total{code=200}"), 3.0);
    assert_eq!(v("ioscale_responses_total{code=404}"), 1.0);
    assert_eq!(v("ioscale_requests_total{}"), 5.0, "the scrape's own request is counted");
    assert_eq!(v("process_max_fds{}"), 1000.0, "the soft limit the shell set");
    // The scrape reads /proc/self/fd through one more descriptor of its own.
    let open = v("process_open_fds{}");
    assert!(open == fds as f64 || open == fds as f64 + 1.0, "{open} open, /proc says {fds}");
    let cpu = v("process_cpu_seconds_total{}");
    // /proc counts in clock ticks (10 ms), getrusage finer: two ticks of slack each way.
    assert!(cpu >= cpu_before - 0.02 && cpu <= cpu_after + 0.02, "{cpu_before} {cpu} {cpu_after}");
    // The boot time in /proc/stat has whole seconds: a second's slack each way.
    let start = v("process_start_time_seconds{}");
    assert!(
        start >= before.as_secs_f64() - 1.0 && start <= after.as_secs_f64() + 1.0,
        "started at {start}, spawned between {before:?} and {after:?}"
    );
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    let statm = std::fs::read_to_string(format!("/proc/{}/statm", srv.pid())).unwrap();
    let rss = statm.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() * page;
    let got = v("process_resident_memory_bytes{}");
    assert!(got > 0.0 && got >= rss / 2.0 && got <= rss * 2.0, "rss {got}, /proc says {rss}");
    // curl's own Accept (*/*): OpenMetrics, which the strict parser reads.
    if !have("curl") {
        eprintln!("SKIPPED (curl part): curl is not installed");
        return;
    }
    let url = format!("http://{}/.ioscale/metrics", srv.addr());
    let out = Command::new("curl").args(["-sS", "-D", "/dev/stderr", &url]).output().unwrap();
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    let head = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
    assert!(head.contains("content-type: application/openmetrics-text; version=1.0.0"), "{head}");
    let om = String::from_utf8(out.stdout).unwrap();
    assert!(om.ends_with("# EOF\n"));
    if let Some(parsed) = parse_metrics(&om) {
        assert_eq!(parsed["families"]["process_open_fds"], "gauge", "{parsed}");
        assert_eq!(parsed["samples"]["ioscale_responses_total{code=404}"], 1.0, "{parsed}");
    }
}

/// Parses the Prometheus text format with prometheus_client's classic parser only.
fn parse_text(text: &str) -> Option<HashMap<String, f64>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/parse_metrics.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg("--text")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.code() == Some(3) {
        eprintln!("SKIPPED: {}", String::from_utf8_lossy(&out.stderr).trim());
        return None;
    }
    assert!(
        out.status.success(),
        "the classic parser refused it: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Some(serde_json::from_value(v["samples"].clone()).unwrap())
}

/// Combined Log Format: host ident user [time] "request" status bytes "referer" "user-agent".
const CLF: &str = r#"^(\S+) (\S+) (\S+) \[(\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "([A-Z]+) (\S+) (HTTP/1\.[01])" (\d{3}) (\d+|-) "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"$"#;

fn curl(addr: std::net::SocketAddr, args: &[&str], path: &str) {
    let url = format!("http://{addr}{path}");
    let st = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--max-time", "10"])
        .args(args)
        .arg(&url)
        .status()
        .unwrap();
    assert!(st.success(), "curl {args:?} {url}: {st}");
}

#[test]
fn access_log_lines_match_combined_log_format_on_every_engine() {
    if !have("curl") {
        eprintln!("SKIPPED: curl is not installed");
        return;
    }
    let re = regex::Regex::new(CLF).unwrap();
    each_mechanism(|engine| {
        let root = root("alog");
        let log = root.parent().unwrap().join("access.log");
        let srv = TestServer::start(engine, &root, |c| c.access_log = Some(log.clone()));
        let addr = srv.addr;
        curl(addr, &["-A", "curl-test/1.0", "-e", "http://ref.example/p?q=1"], "/1b.txt");
        curl(addr, &["-I", "-A", "with \"quotes\" \\ here"], "/6k.bin");
        curl(addr, &["-A", ""], "/missing?x=%20y");
        curl(addr, &["--http1.0"], "/big.bin");
        let mut c = srv.client();
        assert_eq!(c.get("GET", "/sub").status, 301);
        drop(c);
        srv.stop().unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{engine}: {text}");
        let caps: Vec<regex::Captures> = lines
            .iter()
            .map(|l| re.captures(l).unwrap_or_else(|| panic!("{engine}: not CLF: {l}")))
            .collect();
        for c in &caps {
            assert_eq!(&c[1], "127.0.0.1", "{engine}");
            assert!(c[6].starts_with('/'), "{engine}");
        }
        let f = |i: usize, g: usize| caps[i][g].to_string();
        assert_eq!(
            (f(0, 5), f(0, 6), f(0, 7), f(0, 8), f(0, 9)),
            ("GET".into(), "/1b.txt".into(), "HTTP/1.1".into(), "200".into(), "1".into())
        );
        assert_eq!(
            (f(0, 10), f(0, 11)),
            ("http://ref.example/p?q=1".into(), "curl-test/1.0".into())
        );
        // HEAD: the status and no body bytes; quotes and backslashes escaped.
        assert_eq!((f(1, 5), f(1, 8), f(1, 9)), ("HEAD".into(), "200".into(), "0".into()));
        assert_eq!(f(1, 11), r"with \x22quotes\x22 \x5C here");
        assert_eq!(
            (f(2, 6), f(2, 8), f(2, 10), f(2, 11)),
            ("/missing?x=%20y".into(), "404".into(), "-".into(), "-".into())
        );
        assert_eq!((f(3, 7), f(3, 8), f(3, 9)), ("HTTP/1.0".into(), "200".into(), "300000".into()));
        assert_eq!((f(4, 6), f(4, 8)), ("/sub".into(), "301".into()));
    });
}

fn count_lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |t| t.lines().count())
}

#[test]
fn sigusr1_reopens_the_access_log_after_a_rename() {
    let root = root("rotate");
    let log = root.parent().unwrap().join("access.log");
    let rotated = root.parent().unwrap().join("access.log.1");
    let args = format!("--root '{}' --access-log '{}' --workers 2", root.display(), log.display());
    let srv = ServerProc::spawn("", &args).unwrap();
    let mut c = Client::connect(srv.addr());
    for _ in 0..3 {
        assert_eq!(c.get("GET", "/1b.txt").status, 200);
    }
    // Flushed within about a second without any further request.
    assert!(wait_until(Duration::from_secs(10), || count_lines(&log) == 3), "lines not flushed");
    std::fs::rename(&log, &rotated).unwrap();
    srv.signal(libc::SIGUSR1);
    assert!(wait_until(Duration::from_secs(10), || log.exists()), "the log was not reopened");
    for _ in 0..2 {
        assert_eq!(c.get("GET", "/6k.bin").status, 200);
    }
    assert!(
        wait_until(Duration::from_secs(10), || count_lines(&log) == 2),
        "new lines not flushed"
    );
    let old = std::fs::read_to_string(&rotated).unwrap();
    let new = std::fs::read_to_string(&log).unwrap();
    assert!(old.lines().all(|l| l.contains("/1b.txt")) && old.lines().count() == 3, "{old}");
    assert!(new.lines().all(|l| l.contains("/6k.bin")), "{new}");
    // Still serving and still a single process after the signal.
    assert_eq!(srv.stats()["access_log"]["lines"], 5);
    srv.signal(libc::SIGTERM);
    let mut srv = srv;
    assert_eq!(srv.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn an_access_log_that_cannot_be_opened_is_one_sentence() {
    let root = root("alog-bad");
    let args = format!("--root '{}' --access-log /nonexistent-dir/a.log", root.display());
    let Err(line) = ServerProc::spawn("", &args) else { panic!("started with a bad log path") };
    assert!(line.contains("--access-log '/nonexistent-dir/a.log'"), "{line}");
    assert_eq!(line.trim().lines().count(), 1, "{line}");
}
