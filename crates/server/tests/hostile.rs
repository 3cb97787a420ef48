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
