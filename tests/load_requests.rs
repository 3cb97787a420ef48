//! `ioscale load`'s requests as peers receive them: custom method, headers and body recorded
//! byte for byte by a plain TCP server in the test; `--pipeline` against a recording server
//! that answers only once four requests are in, against `ioscale serve` and against Debian's
//! nginx (started on a free loopback port, ended by PID); an `--hdr-log` file read back by the
//! `hdrh` Python package (HdrHistogram's Python port); `https://` against nginx with a CA and a
//! certificate the test makes with `openssl`.

mod util;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use util::{docroot, free_port, load, nginx, nginx_bin, serve, start_nginx, wait_port};

/// One load run at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn record_one(listener: TcpListener, want: usize) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let t = Instant::now();
        loop {
            assert!(t.elapsed() < Duration::from_secs(20), "no request arrived");
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while got.len() < want {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            if got.is_empty() {
                continue;
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            return got;
        }
    })
}

#[test]
fn custom_method_headers_and_body_arrive_byte_for_byte() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = docroot("record");
    let body_file = dir.join("body.json");
    std::fs::write(&body_file, b"{\"k\": [1, 2, 3]}\n").unwrap();
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec![
                "-m".into(),
                "put".into(),
                "-H".into(),
                "X-Trace:  abc-1 ".into(),
                "-H".into(),
                "Content-Type: application/json".into(),
                "--body-file".into(),
                body_file.display().to_string(),
            ],
            "PUT /api/v1?x=1 HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\nUser-Agent: ioscale-load\r\nX-Trace: abc-1\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"k\": [1, 2, 3]}\n".into(),
        ),
        (
            vec![
                "--method".into(),
                "POST".into(),
                "--header".into(),
                "Host: example.test".into(),
                "--header".into(),
                "User-Agent: my-agent/2".into(),
                "--body".into(),
                "a=1&b=2".into(),
                "--http1.0".into(),
            ],
            "POST /api/v1?x=1 HTTP/1.0\r\nHost: example.test\r\nUser-Agent: my-agent/2\r\nContent-Length: 7\r\n\r\na=1&b=2".into(),
        ),
    ];
    for (args, expected) in cases {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let expected = expected.replace("PORT", &port.to_string());
        let server = record_one(listener, expected.len());
        let url = format!("http://127.0.0.1:{port}/api/v1?x=1");
        let mut all: Vec<&str> = vec![&url, "--rate", "5", "--sessions", "1", "--duration", "5s"];
        all.extend(args.iter().map(String::as_str));
        all.push("--json");
        let (code, r, err) = load(&all);
        let got = server.join().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            expected,
            "the request as the server received it (args {args:?})"
        );
        assert!(code == Some(0) || code == Some(3), "{err}");
        assert_eq!(r["active"]["replies"], 1, "{}", r["active"]);
        assert_eq!(r["active"]["errors"]["total"], 0, "{}", r["active"]["errors"]);
    }
}

#[test]
fn bad_request_arguments_get_one_sentence() {
    for (args, needle) in [
        (vec!["-H", "NoColon"], "invalid header 'NoColon'"),
        (vec!["-H", "Bad Name: v"], "invalid header 'Bad Name: v'"),
        (vec!["-H", "Content-Length: 5"], "Content-Length is set from --body"),
        (vec!["-m", "FETCH"], "unknown method 'FETCH'"),
        (vec!["--body-file", "/nonexistent/ioscale-body"], "cannot read the body file"),
        (vec!["--pipeline", "0"], "--pipeline"),
        (vec!["--pipeline", "2", "--http1.0"], "needs -H 'Connection: keep-alive'"),
        (vec!["--cacert", "/nonexistent/ca.pem"], "cannot use --cacert /nonexistent/ca.pem"),
    ] {
        let mut all = vec!["http://127.0.0.1:9/", "--peak", "--duration", "1s"];
        all.extend(args.iter());
        let (code, _, err) = load(&all);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// A server that answers only when four whole requests are in: without four in flight the
/// generator would wait for ever (and time out).
#[test]
fn pipeline_4_puts_four_requests_in_flight() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let batches = std::thread::spawn(move || {
        let mut batches = 0u64;
        listener.set_nonblocking(true).unwrap();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(15) {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut pending = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                pending.extend_from_slice(&buf[..n]);
                let heads = pending.windows(4).filter(|w| w == b"\r\n\r\n").count();
                if heads >= 4 {
                    assert_eq!(heads, 4, "more than four requests in flight");
                    pending.clear();
                    let one = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
                    if s.write_all(&one.repeat(4)).is_err() {
                        break;
                    }
                    batches += 1;
                }
            }
            if batches > 0 {
                return batches;
            }
        }
        batches
    });
    let url = format!("http://127.0.0.1:{port}/");
    let (code, r, err) = load(&[
        &url,
        "--peak",
        "--connections",
        "1",
        "--pipeline",
        "4",
        "--duration",
        "1s",
        "--timeout",
        "2s",
        "--json",
    ]);
    let batches = batches.join().unwrap();
    assert_eq!(code, Some(0), "{err}");
    let a = &r["active"];
    assert!(batches >= 2, "the server answered {batches} batches of four");
    assert_eq!(a["errors"]["total"], 0, "{a}");
    assert_eq!(a["replies"], a["requests"], "{a}");
    // Replies come in fours, but each refills the pipeline with its own send time, so the
    // window's end may fall inside the last batch: only the requests sent before it count.
    let replies = a["replies"].as_u64().unwrap();
    assert!(
        replies >= 4 && replies <= 4 * batches as u64,
        "{replies} replies, {batches} batches: {a}"
    );
    assert_eq!(a["bytes"].as_u64().unwrap(), a["replies"].as_u64().unwrap() * 43, "{a}");
}

/// Every pipelined response is read, framed in order (a HEAD reply has a Content-Length but
/// no body: misframed, the next reply would be eaten as a body), and counted.
fn pipelined_runs(port: u16) {
    for (method, path) in [("GET", "/six.html"), ("HEAD", "/six.html"), ("GET", "/one.txt")] {
        let url = format!("http://127.0.0.1:{port}{path}");
        for mode in [
            &["--peak", "--connections", "8"][..],
            &["--request-rate", "2000", "--connections", "4"],
        ] {
            let mut args = vec![url.as_str(), "-m", method, "--pipeline", "4", "--duration", "1s"];
            args.extend(mode.iter());
            args.push("--json");
            let (code, r, err) = load(&args);
            assert!(r.is_object(), "{args:?}: {err}");
            if code == Some(3) && mode[0] != "--peak" {
                eprintln!("note: {args:?} INVALID on a loaded machine: {}", r["invalid_reasons"]);
            } else {
                assert_eq!(code, Some(0), "{args:?}: {err}");
            }
            let a = &r["active"];
            let replies = a["replies"].as_u64().unwrap();
            assert!(replies >= 100, "{args:?}: {a}");
            assert_eq!(a["errors"]["total"], 0, "{args:?}: {a}");
            assert_eq!(a["replies"], a["requests"], "{args:?}: every request answered: {a}");
            assert_eq!(a["status"]["2xx"], a["replies"], "{args:?}: {a}");
            let bytes = a["bytes"].as_u64().unwrap();
            if method == "GET" && path == "/six.html" {
                assert!(bytes > replies * 6144, "{args:?}: every body read: {a}");
            } else if method == "HEAD" {
                assert!(bytes < replies * 1024, "{args:?}: no body read after HEAD: {a}");
            }
        }
    }
}

#[test]
fn pipeline_4_against_ioscale_serve() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = docroot("serve");
    let (_s, port) = serve(&root, &[]);
    pipelined_runs(port);
}

#[test]
fn pipeline_4_against_nginx() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = docroot("nginx");
    let Some((_n, port)) = nginx(&root) else { return };
    pipelined_runs(port);
}

/// Reads an `--hdr-log` file with the `hdrh` Python package (HdrHistogram's Python port) and
/// decodes the `--json` record's histograms with it too.
const HDRH_READER: &str = r#"
import json, sys
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader
log, record = sys.argv[1], json.load(open(sys.argv[2]))
reader = HistogramLogReader(log, HdrHistogram(1, 3600000000, 3))
sums, intervals = {}, 0
while True:
    h = reader.get_next_interval_histogram()
    if h is None:
        break
    tag = h.get_tag() or "active"
    intervals += tag == "active"
    sums.setdefault(tag, HdrHistogram(1, 3600000000, 3)).add(h)
from_json = HdrHistogram.decode(record["active"]["histograms"]["latency_us"])
def dist(h):
    return [[i.value_iterated_to, i.count_at_value_iterated_to] for i in h.get_recorded_iterator()]
out = {t: {"count": h.get_total_count(), "p99": h.get_value_at_percentile(99.0), "values": dist(h)}
       for t, h in sums.items()}
out["intervals"] = intervals
out["start_time"] = reader.get_start_time_sec()
out["json_decoded"] = {"count": from_json.get_total_count(), "p99": from_json.get_value_at_percentile(99.0)}
print(json.dumps(out))
"#;

#[test]
fn hdr_log_is_read_back_by_the_python_hdrhistogram_reader() {
    let probe = Command::new("python3").args(["-c", "import hdrh.log"]).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: python3 with the hdrhistogram package (module hdrh) is not installed; .ci/run installs it");
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = docroot("hdrlog");
    let (_s, port) = serve(&root, &[]);
    let log = root.join("run.hlog");
    let url = format!("http://127.0.0.1:{port}/one.txt");
    let (code, r, err) = load(&[
        &url,
        "--request-rate",
        "400",
        "--connections",
        "4",
        "--idle",
        "5",
        "--idle-period",
        "200ms",
        "--duration",
        "2s",
        "--warmup",
        "500ms",
        "--hdr-log",
        log.to_str().unwrap(),
        "--hdr-interval",
        "500ms",
        "--json",
    ]);
    assert!(code == Some(0) || code == Some(3), "{err}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("#[StartTime: ") && text.contains("#[BaseTime: "), "{text}");
    let record = root.join("run.json");
    std::fs::write(&record, r.to_string()).unwrap();
    let script = root.join("read_hlog.py");
    std::fs::write(&script, HDRH_READER).unwrap();
    let out = Command::new("python3").arg(&script).arg(&log).arg(&record).output().unwrap();
    assert!(
        out.status.success(),
        "the Python reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hist = |pop: &str, k: &str| {
        ioscale_load::stats::decode(r[pop]["histograms"][k].as_str().unwrap()).unwrap()
    };
    let active = hist("active", "latency_us");
    assert!(active.len() >= 500, "{}", r["active"]);
    assert!(py["intervals"].as_u64().unwrap() >= 4, "2 s in 500 ms intervals: {py}");
    for (tag, h) in [
        ("active", &active),
        ("actual", &hist("active", "latency_actual_us")),
        ("idle", &hist("idle", "latency_us")),
    ] {
        assert_eq!(py[tag]["count"].as_u64(), Some(h.len()), "{tag}: {py}");
        // The whole distribution, bucket by bucket, is the record's.
        let ours: Vec<Value> = h
            .iter_recorded()
            .map(|v| serde_json::json!([v.value_iterated_to(), v.count_at_value()]))
            .collect();
        assert_eq!(py[tag]["values"].as_array().unwrap(), &ours, "{tag}: distributions differ");
        assert_p99_agrees(h, py[tag]["p99"].as_u64().unwrap(), tag);
    }
    assert_eq!(py["json_decoded"]["count"].as_u64(), Some(active.len()), "{py}");
    let json_p99_ms = r["active"]["latency_ms"]["p99"].as_f64().unwrap();
    let ours = (json_p99_ms * 1000.0).round() as u64;
    assert_eq!(ours, active.value_at_quantile(0.99), "the record's p99 is its histogram's");
    assert_p99_agrees(&active, py["active"]["p99"].as_u64().unwrap(), "active vs latency_ms.p99");
}

/// p99 from another HdrHistogram implementation agrees with ours within the histogram's
/// precision and one sample rank: implementations round the rank 0.99 × count differently
/// (Rust takes the ceiling, Python `hdrh` rounds to nearest), and in a sparse tail the next
/// sample can sit in another bucket.
fn assert_p99_agrees(h: &hdrhistogram::Histogram<u64>, theirs: u64, what: &str) {
    let n = h.len() as f64;
    let lo = h.value_at_quantile(((0.99 * n - 1.0) / n).max(0.0));
    let hi = h.value_at_quantile(((0.99 * n + 1.0) / n).min(1.0));
    assert!(
        h.lowest_equivalent(lo) <= theirs && theirs <= h.highest_equivalent(hi),
        "{what}: p99 {theirs} µs (Python) outside [{lo}, {hi}] µs (record, p99 ± one rank)"
    );
}

fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A CA and a server certificate for 127.0.0.1 / localhost signed by it, made with openssl.
fn make_certificates(dir: &Path) -> bool {
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=ioscale test CA",
        ],
    ) && openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=localhost",
        ],
    ) && openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    )
}

#[test]
fn https_against_nginx_with_a_test_ca() {
    if nginx_bin().is_none() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = docroot("tls");
    let dir = root.join("nginx-tls");
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    if !make_certificates(&dir) {
        eprintln!("SKIPPED: openssl could not make the test certificates (is it installed?)");
        return;
    }
    // Two servers: one closes a connection every 20 requests (reconnects resume the TLS
    // session), one keeps connections for pipelining.
    let (short, long) = (free_port(), free_port());
    let tls = format!(
        "ssl_certificate {d}/srv.pem; ssl_certificate_key {d}/srv.key; root {r};",
        d = dir.display(),
        r = root.display()
    );
    let servers = format!(
        "server {{ listen 127.0.0.1:{short} ssl; keepalive_requests 20; {tls} }}\n\
server {{ listen 127.0.0.1:{long} ssl; keepalive_requests 1000000; {tls} }}"
    );
    let Some(_n) = start_nginx(&dir, &servers) else { return };
    wait_port(short);
    wait_port(long);
    let ca = dir.join("ca.pem");
    let ca = ca.to_str().unwrap();

    // Without the CA: one sentence naming the host and the reason, exit 1, no run.
    let url = format!("https://127.0.0.1:{short}/six.html");
    let (code, _, err) = load(&[&url, "--peak", "--duration", "1s"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("TLS handshake with 127.0.0.1") && err.contains("UnknownIssuer"),
        "a clear certificate error: {err}"
    );
    assert!(err.contains("--cacert"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // With it: every request answered; reconnects resume the session; handshakes timed apart.
    let (code, r, err) =
        load(&[&url, "--peak", "--connections", "4", "--duration", "1s", "--cacert", ca, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let a = &r["active"];
    assert_eq!(a["errors"]["total"], 0, "{a}");
    assert_eq!(a["replies"], a["requests"], "{a}");
    assert!(a["bytes"].as_u64().unwrap() > a["replies"].as_u64().unwrap() * 6144, "{a}");
    let hs = a["tls"]["handshakes"].as_u64().unwrap();
    assert!(hs >= 4, "{a}");
    assert!(a["reconnects"].as_u64().unwrap() >= 1, "nginx closes every 20 requests: {a}");
    assert!(a["tls"]["resumed"].as_u64().unwrap() >= 1, "reconnects resume: {}", a["tls"]);
    let h = ioscale_load::stats::decode(a["histograms"]["handshake_us"].as_str().unwrap()).unwrap();
    assert_eq!(h.len(), hs, "one handshake time per handshake");

    // --insecure accepts the unknown CA; pipelining goes through TLS too.
    let url = format!("https://localhost:{long}/one.txt");
    let (code, r, err) = load(&[
        &url,
        "--request-rate",
        "400",
        "--connections",
        "2",
        "--pipeline",
        "4",
        "--duration",
        "1s",
        "--insecure",
        "--json",
    ]);
    assert!(code == Some(0) || code == Some(3), "{err}");
    let a = &r["active"];
    assert_eq!(a["errors"]["total"], 0, "{a}");
    assert_eq!(a["replies"], a["requests"], "{a}");
    assert!(a["replies"].as_u64().unwrap() >= 300, "{a}");
}
