//! Real clients no one here wrote — curl, httperf, wrk, h2load `--h1` — against every
//! mechanism, with the 1-byte and 6 KB files. Each run is short (about a second) and must end
//! without a client-side error. A client that is not installed is skipped with a reason
//! (`.ci/run` installs them from Debian's packages).

mod util;

use ioscale_server::Engine;
use std::process::{Command, Output};
use util::{each_mechanism, have, root, six_k, TestServer};

/// Runs `f` against an in-process server on each engine, if the client program `tool` is
/// installed (a printed reason otherwise); the server is stopped after each.
fn with_each_engine(tool: &str, mut f: impl FnMut(Engine, &TestServer)) {
    if !have(tool) {
        eprintln!("SKIPPED: {tool} is not installed");
        return;
    }
    let root = root(tool);
    each_mechanism(|m| {
        let s = TestServer::start(m, &root, |_| {});
        f(m, &s);
        s.stop().unwrap();
    });
}

/// [`with_each_engine`] once for the 1-byte and once for the 6 KB file: `f(engine, server, path)`.
fn with_each_engine_and_file(tool: &str, mut f: impl FnMut(Engine, &TestServer, &str)) {
    with_each_engine(tool, |m, s| {
        for uri in ["/1b.txt", "/6k.bin"] {
            f(m, s, uri);
        }
    });
}

fn run(cmd: &mut Command) -> (String, String) {
    let Output { status, stdout, stderr } = cmd.output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    );
    assert!(status.success(), "{cmd:?} failed ({status}): {out}\n{err}");
    (out, err)
}

#[test]
fn curl_head_conditional_and_reuse() {
    with_each_engine("curl", |m, s| {
        let base = format!("http://{}", s.addr);
        // Three URLs on one connection: keep-alive reuse shows as 0 new connects after the first.
        let (out, _) = run(Command::new("curl").args([
            "-sS",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{num_connects} %{size_download}\n",
            &format!("{base}/1b.txt"),
            &format!("{base}/6k.bin"),
            &format!("{base}/1b.txt"),
        ]));
        assert_eq!(out, "200 1 1\n200 0 6144\n200 0 1\n", "{m}");
        let (body, _) = run(Command::new("curl").args(["-sS", &format!("{base}/6k.bin")]));
        assert_eq!(body.as_bytes(), String::from_utf8_lossy(&six_k()).as_bytes(), "{m}");
        let (head, _) = run(Command::new("curl").args(["-sS", "-I", &format!("{base}/6k.bin")]));
        assert!(
            head.starts_with("HTTP/1.1 200 OK") && head.contains("Content-Length: 6144"),
            "{m}: {head}"
        );
        let etag = head.lines().find_map(|l| l.strip_prefix("ETag: ")).unwrap().trim().to_string();
        let (code, _) = run(Command::new("curl").args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &format!("If-None-Match: {etag}"),
            &format!("{base}/6k.bin"),
        ]));
        assert_eq!(code, "304", "{m}");
        // -z: If-Modified-Since with a date in the future.
        let (code, _) = run(Command::new("curl").args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-z",
            "Fri, 01 Jan 2100 00:00:00 GMT",
            &format!("{base}/1b.txt"),
        ]));
        assert_eq!(code, "304", "{m}");
    });
}

#[test]
fn httperf_persistent_connections() {
    with_each_engine_and_file("httperf", |m, s, uri| {
        let (out, _) = run(Command::new("httperf").args([
            "--server",
            "127.0.0.1",
            "--port",
            &s.addr.port().to_string(),
            "--uri",
            uri,
            "--num-conns",
            "50",
            "--num-calls",
            "20",
            "--rate",
            "200",
            "--timeout",
            "5",
        ]));
        assert!(out.contains("Reply status: 1xx=0 2xx=1000 3xx=0 4xx=0 5xx=0"), "{m} {uri}: {out}");
        assert!(out.contains("Errors: total 0 "), "{m} {uri}: {out}");
    });
}

#[test]
fn wrk_short_runs() {
    with_each_engine_and_file("wrk", |m, s, uri| {
        let (out, _) = run(Command::new("wrk").args([
            "-t1",
            "-c20",
            "-d1s",
            &format!("http://{}{uri}", s.addr),
        ]));
        assert!(!out.contains("Non-2xx") && !out.contains("Socket errors"), "{m} {uri}: {out}");
        let reqs: u64 = out
            .lines()
            .find_map(|l| l.trim().split_once(" requests in"))
            .map(|(n, _)| n.trim().parse().unwrap())
            .unwrap_or(0);
        assert!(reqs > 100, "{m} {uri}: {out}");
    });
}

#[test]
fn h2load_http1() {
    with_each_engine_and_file("h2load", |m, s, uri| {
        let (out, _) = run(Command::new("h2load").args([
            "--h1",
            "-n",
            "4000",
            "-c",
            "10",
            "-m",
            "4",
            &format!("http://{}{uri}", s.addr),
        ]));
        assert!(
            out.contains("requests: 4000 total, 4000 started, 4000 done, 4000 succeeded, 0 failed, 0 errored"),
            "{m} {uri}: {out}"
        );
        assert!(out.contains("status codes: 4000 2xx"), "{m} {uri}: {out}");
    });
}
