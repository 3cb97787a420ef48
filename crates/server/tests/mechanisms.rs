//! The per-mechanism suite: every test runs once per mechanism in `Mechanism::ALL` that this
//! kernel supports, against an in-process server on 127.0.0.1 with raw `TcpStream` clients.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use util::{each_mechanism, root, six_k, Client, TestServer};

#[test]
fn get_and_head_of_small_files() {
    let root = root("get");
    each_mechanism(|m| {
        let s = TestServer::start(m, &root, |_| {});
        let mut c = s.client();
        let r = c.get("GET", "/1b.txt");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"x"[..]), "{m}");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert!(r.header("etag").is_some() && r.header("last-modified").is_some());
        assert!(r.header("date").is_some());
        let r = c.get("GET", "/6k.bin");
        assert_eq!((r.status, r.body), (200, six_k()), "{m}");
        let h = c.get("HEAD", "/6k.bin");
        assert_eq!((h.status, h.body.len()), (200, 0), "{m}");
        assert_eq!(h.header("content-length"), Some("6144"));
        let r = c.get("GET", "/big.bin");
        assert_eq!(r.body, util::big(), "{m}: sendfile'd body");
        let r = c.get("GET", "/sub/");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"<p>index</p>\n"[..]), "{m}");
        let r = c.get("GET", "/sub?a=1");
        assert_eq!((r.status, r.header("location")), (301, Some("/sub/?a=1")), "{m}");
        // All on one connection: keep-alive held throughout.
        s.stop().unwrap();
    });
}

#[test]
fn keep_alive_rules_and_pipelining() {
    let root = root("ka");
    each_mechanism(|m| {
        let s = TestServer::start(m, &root, |_| {});
        // Ten pipelined requests in one write, answered in order on one connection.
        let mut c = s.client();
        let mut batch = Vec::new();
        for i in 0..10 {
            let p = if i % 2 == 0 { "/1b.txt" } else { "/6k.bin" };
            batch.extend_from_slice(format!("GET {p} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        }
        c.send(&batch);
        for i in 0..10 {
            let r = c.response(false).unwrap();
            assert_eq!((r.status, r.body.len()), (200, if i % 2 == 0 { 1 } else { 6144 }), "{m}");
        }
        // A pipeline split at awkward places.
        c.send(b"GET /1b.txt HTTP/1.1\r\nHo");
        std::thread::sleep(Duration::from_millis(20));
        c.send(b"st: t\r\n\r\nGET /1b.txt HT");
        std::thread::sleep(Duration::from_millis(20));
        c.send(b"TP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.response(false).unwrap().status, 200);
        assert_eq!(c.response(false).unwrap().status, 200);
        // Connection: close is honoured after the response.
        c.send(b"GET /1b.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let r = c.response(false).unwrap();
        assert_eq!((r.status, r.header("connection")), (200, Some("close")), "{m}");
        assert!(c.closed(), "{m}: closed after Connection: close");
        // HTTP/1.0: closes by default, keeps alive when asked.
        let mut c = s.client();
        c.send(b"GET /1b.txt HTTP/1.0\r\n\r\n");
        assert_eq!(c.response(false).unwrap().status, 200);
        assert!(c.closed(), "{m}: 1.0 closes");
        let mut c = s.client();
        c.send(b"GET /1b.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = c.response(false).unwrap();
        assert_eq!(r.header("connection"), Some("keep-alive"));
        c.send(b"HEAD /6k.bin HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(c.response(true).unwrap().status, 200);
        c.send(b"GET /nope HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = c.response(false).unwrap();
        assert_eq!((r.status, r.header("connection")), (404, Some("keep-alive")), "{m}");
        c.send(b"GET /1b.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(c.response(false).unwrap().body, b"x");
        s.stop().unwrap();
    });
}

#[test]
fn conditional_get_and_error_statuses() {
    let root = root("cond");
    each_mechanism(|m| {
        let s = TestServer::start(m, &root, |_| {});
        let mut c = s.client();
        let r = c.get("GET", "/6k.bin");
        let etag = r.header("etag").unwrap().to_string();
        let lm = r.header("last-modified").unwrap().to_string();
        c.send(
            format!("GET /6k.bin HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n").as_bytes(),
        );
        let r = c.response(false).unwrap();
        assert_eq!((r.status, r.body.len()), (304, 0), "{m}");
        c.send(
            format!("GET /6k.bin HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: {lm}\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(c.response(false).unwrap().status, 304, "{m}");
        c.send(b"GET /6k.bin HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"other\"\r\n\r\n");
        assert_eq!(c.response(false).unwrap().status, 200, "{m}");
        // Errors that keep the connection.
        assert_eq!(c.get("GET", "/nope").status, 404);
        assert_eq!(c.get("HEAD", "/nope").body.len(), 0);
        assert_eq!(c.get("GET", "/empty/").status, 404, "{m}: no directory listing");
        assert_eq!(c.get("GET", "/out.txt").status, 403, "{m}: symlink out of the root");
        assert_eq!(c.get("GET", "/out-rel.txt").status, 403, "{m}: relative symlink out");
        assert_eq!(c.get("GET", "/../secret.txt").status, 403, "{m}");
        assert_eq!(c.get("GET", "/%2e%2e/secret.txt").status, 403, "{m}");
        assert_eq!(c.get("GET", "/a%2fb").status, 400, "{m}");
        assert_eq!(c.get("GET", "/1b.txt").status, 200, "{m}: still alive");
        // 405 with Allow, then close.
        c.send(b"POST /1b.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
        let r = c.response(false).unwrap();
        assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")), "{m}");
        assert!(c.closed());
        s.stop().unwrap();
    });
}

#[test]
fn stats_endpoint_counts() {
    let root = root("stats");
    each_mechanism(|m| {
        let s = TestServer::start(m, &root, |_| {});
        let mut c = s.client();
        for _ in 0..5 {
            assert_eq!(c.get("GET", "/1b.txt").status, 200);
        }
        let r = c.get("GET", "/.ioscale/stats");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["mechanism"], m.name());
        assert!(v["requests"].as_u64().unwrap() >= 6, "{v}");
        assert_eq!(v["responses"]["2xx"].as_u64().unwrap(), 5, "{v}");
        assert!(v["connections"]["open"].as_u64().unwrap() >= 1);
        assert!(v["dispatch"]["wait_calls"].as_u64().unwrap() > 0, "{v}");
        assert!(v["cpu"]["process_s"].as_f64().is_some());
        assert!(v["errors"]["not_found"].is_u64());
        s.stop().unwrap();
    });
}

#[test]
fn slow_clients_are_timed_out() {
    let root = root("slow");
    each_mechanism(|m| {
        let s = TestServer::start(m, &root, |c| {
            c.header_timeout = Duration::from_millis(400);
            c.idle_timeout = Duration::from_millis(600);
        });
        // Slowloris: a byte at a time keeps nothing alive past the header timeout.
        let mut slow = TcpStream::connect(s.addr).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = Vec::new();
        for b in b"GET /1b.txt HTTP/1.1\r\nHost: t\r\nX-A: aaaaaaaaaaaaaaaaaaaaaa" {
            if slow.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(40));
        }
        let _ = slow.read_to_end(&mut answer);
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"), "{m}: {answer:?}");
        // Idle keep-alive connections are closed after the idle timeout.
        let mut c = s.client();
        assert_eq!(c.get("GET", "/1b.txt").status, 200);
        assert!(c.closed(), "{m}: idle connection closed");
        let v = s.handle.stats();
        assert!(v["errors"]["timeout_header"].as_u64().unwrap() >= 1, "{v}");
        assert!(v["errors"]["timeout_idle"].as_u64().unwrap() >= 1, "{v}");
        s.stop().unwrap();
    });
}

#[test]
fn resets_and_half_closes_mid_response() {
    let root = root("reset");
    each_mechanism(|m| {
        let s = TestServer::start(m, &root, |_| {});
        // Ask for the large file many times and reset without reading.
        for _ in 0..5 {
            let mut t = TcpStream::connect(s.addr).unwrap();
            let mut reqs = Vec::new();
            for _ in 0..20 {
                reqs.extend_from_slice(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
            }
            t.write_all(&reqs).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            // SO_LINGER 0: close sends a reset.
            util::linger_zero(&t);
            drop(t);
        }
        // Half-close after the request: the whole answer still comes, then the close.
        let mut t = TcpStream::connect(s.addr).unwrap();
        t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        t.write_all(
            b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /1b.txt HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
        t.shutdown(std::net::Shutdown::Write).unwrap();
        let mut all = Vec::new();
        t.read_to_end(&mut all).unwrap();
        assert!(all.len() > 300_000 && all.ends_with(b"\r\n\r\nx"), "{m}: {} bytes", all.len());
        // The server is still fine.
        assert_eq!(s.client().get("GET", "/6k.bin").body, six_k(), "{m}");
        s.stop().unwrap();
    });
}

#[test]
fn workers_and_listener_modes() {
    let root = root("workers");
    each_mechanism(|m| {
        for (mode, multi) in [
            (ioscale_server::ListenerMode::Shared, true),
            (ioscale_server::ListenerMode::Reuseport, false),
        ] {
            let s = TestServer::start(m, &root, |c| {
                c.workers = 3;
                c.listener = mode;
                c.multi_accept = multi;
            });
            let clients: Vec<_> = (0..12)
                .map(|_| {
                    let addr = s.addr;
                    std::thread::spawn(move || {
                        let mut c = Client::connect(addr);
                        (0..20).all(|_| c.get("GET", "/1b.txt").status == 200)
                    })
                })
                .collect();
            for c in clients {
                assert!(c.join().unwrap(), "{m} {mode:?}");
            }
            let v = s.handle.stats();
            assert_eq!(v["responses"]["2xx"].as_u64(), Some(240), "{m} {mode:?}: {v}");
            s.stop().unwrap();
        }
    });
    // EPOLLEXCLUSIVE: accepted where the mechanism has it, a clear start error elsewhere.
    for &m in ioscale_dispatch::Mechanism::ALL {
        if m.probe().is_err() || m.is_completion_based() {
            continue;
        }
        let mut c = ioscale_server::Config::new(&root, 0, m);
        c.workers = 2;
        c.exclusive = true;
        match ioscale_server::Server::bind(c) {
            Ok(server) => {
                let addr = server.local_addr();
                let h = server.handle();
                let t = std::thread::spawn(move || server.run());
                assert_eq!(Client::connect(addr).get("GET", "/1b.txt").status, 200, "{m}");
                h.shutdown();
                t.join().unwrap().unwrap();
            }
            Err(e) => {
                assert_eq!(e.kind, ioscale_server::StartErrorKind::Mechanism, "{m}: {e}");
                assert!(
                    e.message.contains("EPOLLEXCLUSIVE") || e.message.contains("exclusive"),
                    "{e}"
                );
            }
        }
    }
}

#[test]
fn a_client_that_never_reads_is_dropped_after_the_send_timeout() {
    let root = root("noread");
    each_mechanism(|m| {
        let s = TestServer::start(m, &root, |c| c.idle_timeout = Duration::from_millis(500));
        // Forty pipelined requests for the 300 KB file, never read: the socket buffers fill.
        let mut t = TcpStream::connect(s.addr).unwrap();
        let reqs: Vec<u8> = b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n"
            .iter()
            .copied()
            .cycle()
            .take(34 * 40)
            .collect();
        t.write_all(&reqs).unwrap();
        // Meanwhile another client is served.
        let mut c = s.client();
        assert_eq!(c.get("GET", "/6k.bin").body, six_k(), "{m}");
        let mut waited = 0;
        while s.handle.stats()["errors"]["timeout_send"].as_u64().unwrap() == 0 && waited < 100 {
            std::thread::sleep(Duration::from_millis(100));
            waited += 1;
        }
        let v = s.handle.stats();
        assert!(v["errors"]["timeout_send"].as_u64().unwrap() >= 1, "{m}: {v}");
        drop(t);
        s.stop().unwrap();
    });
}

/// Sends `method path` with extra header lines and reads the answer.
fn ask(c: &mut Client, method: &str, path: &str, headers: &str) -> util::Resp {
    c.send(format!("{method} {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
    c.response(method == "HEAD").unwrap()
}

/// The header lines of a response but `Date` (which may tick between two requests).
fn heads(r: &util::Resp) -> Vec<(String, String)> {
    r.headers.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("date")).cloned().collect()
}

#[test]
fn ranges_directories_and_head_parity() {
    let root = root("ranges");
    // Cached and copied beside the head (6k), cached and sent by reference (100k), sendfile'd
    // (big.bin, above the default cache limit).
    let hundred_k: Vec<u8> = (0..100_000u32).map(|i| (i % 239) as u8).collect();
    std::fs::write(root.join("100k.bin"), &hundred_k).unwrap();
    std::fs::create_dir(root.join("evil.com")).unwrap();
    each_mechanism(|m| {
        let s = TestServer::start(m, &root, |_| {});
        let mut c = s.client();
        for (path, data) in
            [("/6k.bin", six_k()), ("/100k.bin", hundred_k.clone()), ("/big.bin", util::big())]
        {
            let len = data.len();
            let r = ask(&mut c, "GET", path, "");
            assert_eq!(r.header("accept-ranges"), Some("bytes"), "{m} {path}");
            let etag = r.header("etag").unwrap().to_string();
            let lm = r.header("last-modified").unwrap().to_string();
            let mid = len / 2;
            for (spec, a, b) in [
                ("0-99".to_string(), 0, 100),
                ("10-".into(), 10, len),
                ("-100".into(), len - 100, len),
                ("1-99999999".into(), 1, len),
                (format!("{mid}-{}", mid + 1), mid, mid + 2),
                ("0-1, 99999999-".into(), 0, 2),
            ] {
                let r = ask(&mut c, "GET", path, &format!("Range: bytes={spec}\r\n"));
                assert_eq!(r.status, 206, "{m} {path} {spec}");
                assert_eq!(
                    r.header("content-range"),
                    Some(format!("bytes {a}-{}/{len}", b - 1).as_str()),
                    "{m} {path} {spec}"
                );
                assert_eq!(r.body, &data[a..b], "{m} {path} {spec}");
            }
            let r = ask(&mut c, "GET", path, "Range: bytes=99999999-\r\n");
            assert_eq!(r.status, 416, "{m} {path}");
            assert_eq!(r.header("content-range"), Some(format!("bytes */{len}").as_str()));
            // Several ranges: the whole body with 200 (documented choice).
            let r = ask(&mut c, "GET", path, "Range: bytes=0-1,5-6\r\n");
            assert_eq!((r.status, r.body.len()), (200, len), "{m} {path}");
            // Malformed or other units: ignored.
            let r = ask(&mut c, "GET", path, "Range: lines=1-2\r\n");
            assert_eq!((r.status, r.body.len()), (200, len), "{m} {path}");
            // If-Range: the current ETag or date lets the range through; anything else, 200.
            for (cond, want) in [
                (etag.clone(), 206),
                (lm.clone(), 206),
                ("\"other\"".into(), 200),
                (format!("W/{etag}"), 200),
                ("Sun, 06 Nov 1994 08:49:37 GMT".into(), 200),
            ] {
                let r =
                    ask(&mut c, "GET", path, &format!("Range: bytes=5-9\r\nIf-Range: {cond}\r\n"));
                assert_eq!(r.status, want, "{m} {path} If-Range {cond}");
                assert_eq!(r.body, if want == 206 { &data[5..10] } else { &data[..] });
            }
            // A validator that matches still wins: 304 before any range.
            let r =
                ask(&mut c, "GET", path, &format!("Range: bytes=0-1\r\nIf-None-Match: {etag}\r\n"));
            assert_eq!(r.status, 304, "{m} {path}");
        }
        // HEAD gets exactly the GET's head, for every status.
        for (path, hdr, want) in [
            ("/6k.bin", "", 200),
            ("/big.bin", "Range: bytes=0-99\r\n", 206),
            ("/100k.bin", "Range: bytes=-7\r\n", 206),
            ("/6k.bin", "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n", 304),
            ("/nope", "", 404),
            ("/big.bin", "Range: bytes=999999-\r\n", 416),
            ("/sub?x=1", "", 301),
            ("/a%2fb", "", 400),
            ("/out.txt", "", 403),
        ] {
            let g = ask(&mut c, "GET", path, hdr);
            let h = ask(&mut c, "HEAD", path, hdr);
            assert_eq!((g.status, h.status), (want, want), "{m} {path} {hdr}");
            assert_eq!(heads(&g), heads(&h), "{m}: HEAD {path} {hdr}");
            assert!(h.body.is_empty());
        }
        // Directories: a redirect to the slash form (query kept, path only), index or 404.
        for (path, loc) in [
            ("/sub", "/sub/"),
            ("/sub?a=1&b", "/sub/?a=1&b"),
            ("//evil.com", "/evil.com/"),
            ("//evil.com?x", "/evil.com/?x"),
            ("http://other.example//evil.com", "/evil.com/"),
            ("/./sub", "/sub/"),
        ] {
            let r = ask(&mut c, "GET", path, "");
            assert_eq!((r.status, r.header("location")), (301, Some(loc)), "{m} {path}");
        }
        assert_eq!(ask(&mut c, "GET", "/sub/", "").body, b"<p>index</p>\n", "{m}");
        assert_eq!(ask(&mut c, "GET", "/evil.com/", "").status, 404, "{m}: no listing");
        assert_eq!(ask(&mut c, "GET", "/empty/", "").status, 404, "{m}");
        assert_eq!(ask(&mut c, "GET", "/1b.txt", "").status, 200, "{m}: still alive");
        s.stop().unwrap();
    });
}
