//! Malformed and hostile requests: each gets its status or a clean close, on every mechanism,
//! and the server answers normally afterwards.

mod util;

use util::{each_mechanism, one_shot, root, TestServer};

/// (request bytes, accepted statuses; 0 = a close without a response is also right).
fn cases() -> Vec<(Vec<u8>, &'static [u16])> {
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(5000));
    let huge_header = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "b".repeat(20_000));
    let many_headers: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
    let many_headers = format!("GET /1b.txt HTTP/1.1\r\nHost: t\r\n{many_headers}\r\n");
    let endless_line = format!("GET /{}", "c".repeat(30_000));
    vec![
        (b"GET /1b.txt HTTP/1.1\r\nHost: t\r\n".to_vec(), &[0, 408][..]), // truncated head
        (b"GET /1b.txt HTT".to_vec(), &[0, 408, 400]),                    // truncated line
        (b"GET /1b.txt HTTP/2.0\r\nHost: t\r\n\r\n".to_vec(), &[505]),
        (b"GET /1b.txt HTTP/1.7\r\nHost: t\r\n\r\n".to_vec(), &[505]),
        (b"GET /1b.txt HTTX/1.1\r\nHost: t\r\n\r\n".to_vec(), &[400]),
        (b"GET /1b.txt\r\n\r\n".to_vec(), &[400]), // HTTP/0.9
        (b"GET  /1b.txt  HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), &[400]),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(), &[400]), // a TLS hello
        (b"GET /1b.txt HTTP/1.1\r\n\r\n".to_vec(), &[400]),                 // no Host
        (b"GET /1b.txt HTTP/1.1\r\nHost: t\r\nBad Name: v\r\n\r\n".to_vec(), &[400]),
        (b"GET /1b.txt HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n".to_vec(), &[400]),
        (b"GET /1b.txt HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n".to_vec(), &[400]),
        (
            b"GET /1b.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999\r\n\r\n".to_vec(),
            &[413],
        ),
        (
            b"GET /1b.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_vec(),
            &[501],
        ),
        (b"BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), &[501]),
        (b"DELETE /1b.txt HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), &[405]),
        (long_target.into_bytes(), &[414]),
        (endless_line.into_bytes(), &[414]),
        (huge_header.into_bytes(), &[431]),
        (many_headers.into_bytes(), &[431]),
        (b"GET /%zz HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), &[400]),
        (b"GET /% HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), &[400]),
        (b"GET /a%00b HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), &[400]),
        (b"GET /a\x00b HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), &[400]),
        (b"GET /..%2fsecret.txt HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), &[400]),
        (b"GET /../secret.txt HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), &[403]),
        (b"GET /sub/../../secret.txt HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), &[403]),
        (b"GET /%2e%2e/secret.txt HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), &[403]),
        (b"GET /%2E%2E/%2E%2E/etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), &[403]),
        (b"GET /.%2e/secret.txt HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), &[403]),
        (b"GET /out.txt HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), &[403]),
        (b"GET /out-rel.txt HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), &[403]),
        (b"GET http://evil/../secret.txt HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), &[403]),
        (b"GET secret.txt HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), &[400]),
        (b"GET * HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), &[400]),
        (b"GET //etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), &[404]),
        (b"GET /sub HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), &[301]),
        (b"\r\n\r\n\r\n".to_vec(), &[0]),
        (Vec::new(), &[0]),
        ((0..=255u8).cycle().take(5000).collect(), &[400]),
    ]
}

#[test]
fn malformed_requests_get_their_status_or_a_clean_close() {
    let root = root("hostile");
    each_mechanism(|m| {
        let s = TestServer::start(m, &root, |c| {
            c.header_timeout = std::time::Duration::from_millis(500);
        });
        for (req, want) in cases() {
            let got = one_shot(s.addr, &req);
            let ok = match got {
                Some(code) => want.contains(&code),
                None => want.contains(&0),
            };
            let shown = String::from_utf8_lossy(&req[..req.len().min(60)]).into_owned();
            assert!(ok, "{m}: {shown:?} got {got:?}, want one of {want:?}");
            // Still serving.
            assert_eq!(s.client().get("GET", "/1b.txt").status, 200, "{m} after {shown:?}");
        }
        let v = s.handle.stats();
        assert!(v["errors"]["traversal"].as_u64().unwrap() >= 6, "{v}");
        s.stop().unwrap();
    });
}

#[test]
fn garbage_floods_do_not_hurt_other_clients() {
    let root = root("flood");
    each_mechanism(|m| {
        let s = TestServer::start(m, &root, |_| {});
        let mut good = s.client();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..40 {
            // A deterministic pseudo-random stream, sent as pipelined garbage.
            let bytes: Vec<u8> = (0..(round * 97 + 13))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if x % 5 == 3 {
                        b"GET / HTTP/1.1\r\n"[(x % 16) as usize]
                    } else {
                        x as u8
                    }
                })
                .collect();
            let _ = one_shot(s.addr, &bytes);
            if round % 10 == 0 {
                assert_eq!(good.get("GET", "/6k.bin").status, 200, "{m}");
            }
        }
        assert_eq!(good.get("GET", "/1b.txt").status, 200, "{m}");
        s.stop().unwrap();
    });
}

/// Every status the hostile cases get is in the access log, in order, one line each, in
/// Combined Log Format (the request field of a refused request is the first line the client
/// sent, escaped, or `-`), on both engines: the connection table logs for both.
#[test]
fn every_status_of_the_hostile_cases_is_in_the_access_log() {
    let line = regex::Regex::new(
        r#"^127\.0\.0\.1 - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "((?:[^"\\]|\\.)*)" (\d{3}) (\d+) "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"$"#,
    )
    .unwrap();
    let mut engines = vec![ioscale_dispatch::Mechanism::Epoll.into()];
    engines.extend(util::completion_engine());
    for m in engines {
        let root = root("hostile-log");
        let log = root.parent().unwrap().join("access.log");
        let s = TestServer::start(m, &root, |c| {
            c.header_timeout = std::time::Duration::from_millis(500);
            c.access_log = Some(log.clone());
        });
        let mut got = Vec::new();
        for (req, _) in cases() {
            if let Some(code) = one_shot(s.addr, &req) {
                got.push(code);
            }
        }
        // A head that stops coming: 408 (the client keeps its side open).
        let mut slow = s.client();
        slow.send(b"GET /1b.txt HTTP/1.1\r\nHost: t\r\nUser-Agent: slow/1\r\n");
        assert_eq!(slow.response(false).unwrap().status, 408, "{m}");
        got.push(408);
        s.stop().unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        let logged: Vec<u16> = text
            .lines()
            .map(|l| {
                let c = line.captures(l).unwrap_or_else(|| panic!("{m}: not CLF: {l}"));
                c[2].parse().unwrap()
            })
            .collect();
        assert_eq!(logged, got, "{m}: the log's statuses are not the responses':\n{text}");
        for code in [400, 403, 404, 405, 408, 413, 414, 431, 501, 505] {
            assert!(logged.contains(&code), "{m}: no {code} in the log:\n{text}");
        }
        // What a refused request's line says.
        assert!(text.contains(r#""DELETE /1b.txt HTTP/1.1" 405 "#), "{m}: {text}");
        assert!(text.contains(r#""\x16\x03\x01\x02\x00\x01\x00\x01\xFC\x03\x03" 400 "#), "{m}");
        let last = text.lines().last().unwrap();
        assert!(last.contains(r#""GET /1b.txt HTTP/1.1" 408 "#), "{m}: {last}");
        assert!(last.ends_with(r#" "-" "slow/1""#), "{m}: {last}");
    }
}
