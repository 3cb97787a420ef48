//! Static serving to nginx's level, checked with real clients no one here wrote: `curl -r`
//! (one and several ranges), `curl -z` (If-Modified-Since), `curl --compressed` against a
//! precompressed file, `wget -c` resuming a partial download from a cached file and from a
//! sendfile'd one; plus types, `Cache-Control` and the precompressed variant's headers over a raw
//! connection. The per-engine cases (ranges, directories, HEAD parity on every mechanism) are in
//! `mechanisms.rs`. A client that is not installed is skipped with a printed reason.

mod util;

use ioscale_server::{Config, Engine, Server};
use std::path::Path;
use std::process::{Command, Output};
use util::{have, root, Client, TestServer};

fn epoll() -> Engine {
    "epoll".parse().unwrap()
}

/// Runs a command that must succeed: (stdout, stderr).
fn run(cmd: &mut Command) -> (Vec<u8>, String) {
    let Output { status, stdout, stderr } = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&stderr).into_owned();
    assert!(status.success(), "{cmd:?} failed ({status}): {err}");
    (stdout, err)
}

fn ask(c: &mut Client, method: &str, path: &str, headers: &str) -> util::Resp {
    c.send(format!("{method} {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
    c.response(method == "HEAD").unwrap()
}

/// A megabyte no two neighbouring kilobytes of which are alike.
fn mib() -> Vec<u8> {
    (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

#[test]
fn curl_single_and_several_ranges() {
    if !have("curl") {
        eprintln!("SKIPPED: curl is not installed");
        return;
    }
    let root = root("curl-r");
    let data = util::big();
    let s = TestServer::start(epoll(), &root, |_| {});
    let url = format!("http://{}/big.bin", s.addr);
    let (out, _) = run(Command::new("curl").args(["-sS", "-r", "0-99", "-D", "/dev/stderr", &url]));
    assert_eq!(out, &data[..100]);
    let (out, head) = run(Command::new("curl").args(["-sS", "-r", "0-99", "-i", &url]));
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 206 Partial Content\r\n"), "{text:.300}{head}");
    assert!(text.contains("Content-Range: bytes 0-99/300000\r\n"), "{text:.300}");
    let (out, _) = run(Command::new("curl").args(["-sS", "-r", "-1000", &url]));
    assert_eq!(out, &data[data.len() - 1000..]);
    let (out, _) = run(Command::new("curl").args(["-sS", "-r", "299990-", &url]));
    assert_eq!(out, &data[299_990..]);
    // Several ranges: the whole representation with 200 (see docs/static.md).
    let (out, _) =
        run(Command::new("curl").args(["-sS", "-r", "0-1,5-6", "-w", "\n%{http_code}", &url]));
    let (body, code) = out.split_at(out.len() - 4);
    assert_eq!((code, body.len()), (&b"\n200"[..], data.len()));
    assert_eq!(body, data);
    // Unsatisfiable: 416 (curl -f turns it into exit code 22).
    let (out, _) = run(Command::new("curl").args([
        "-sS",
        "-r",
        "400000-",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url,
    ]));
    assert_eq!(out, b"416");
    s.stop().unwrap();
}

#[test]
fn curl_if_modified_since() {
    if !have("curl") {
        eprintln!("SKIPPED: curl is not installed");
        return;
    }
    let root = root("curl-z");
    let s = TestServer::start(epoll(), &root, |_| {});
    let url = format!("http://{}/6k.bin", s.addr);
    let lm =
        Client::connect(s.addr).get("HEAD", "/6k.bin").header("last-modified").unwrap().to_string();
    let code = |since: &str| {
        let (out, _) = run(Command::new("curl").args([
            "-sS",
            "-z",
            since,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ]));
        String::from_utf8(out).unwrap()
    };
    assert_eq!(code(&lm), "304");
    assert_eq!(code("Sun, 06 Nov 1994 08:49:37 GMT"), "200");
    // -z with a file: its modification time (here the served file's own, so not modified).
    assert_eq!(code(root.join("6k.bin").to_str().unwrap()), "304");
    s.stop().unwrap();
}

/// Writes `name` and `name.gz` (by the gzip program) into `root`; false when gzip is missing.
fn gzip_beside(root: &Path, name: &str, data: &[u8]) -> bool {
    std::fs::write(root.join(name), data).unwrap();
    if !have("gzip") {
        eprintln!("SKIPPED: gzip is not installed");
        return false;
    }
    // -k keeps the original, -n leaves the name out; the .gz gets the original's mtime.
    run(Command::new("gzip").args(["-k", "-9", "-f"]).arg(root.join(name)));
    true
}

#[test]
fn curl_compressed_gets_the_precompressed_file() {
    if !have("curl") {
        eprintln!("SKIPPED: curl is not installed");
        return;
    }
    let root = root("gz");
    let text: Vec<u8> =
        (0..4000).flat_map(|i| format!("line {i} of a text\n").into_bytes()).collect();
    if !gzip_beside(&root, "page.html", &text) || !gzip_beside(&root, "stale.css", b"a{}\n") {
        return;
    }
    // A .gz older than its file is not used.
    run(Command::new("touch").args(["-d", "2001-01-01"]).arg(root.join("stale.css.gz")));
    let gz = std::fs::read(root.join("page.html.gz")).unwrap();
    for cached in [true, false] {
        let s = TestServer::start(epoll(), &root, |c| {
            c.precompressed = true;
            if !cached {
                c.cache.max_file = 100; // both the file and its .gz sent with sendfile
            }
        });
        let url = format!("http://{}/page.html", s.addr);
        let (out, _) = run(Command::new("curl").args(["-sS", "--compressed", &url]));
        assert_eq!(out, text, "cached {cached}: curl --compressed decodes to the original");
        let (out, _) = run(Command::new("curl").args(["-sS", "--compressed", "-I", &url]));
        let head = String::from_utf8_lossy(&out).to_lowercase();
        assert!(head.contains("content-encoding: gzip\r\n"), "{head}");
        assert!(head.contains("vary: accept-encoding\r\n"), "{head}");
        assert!(head.contains("content-type: text/html; charset=utf-8\r\n"), "{head}");
        assert!(head.contains(&format!("content-length: {}\r\n", gz.len())), "{head}");
        // Raw: the exact bytes of the .gz, a different ETag, ranges over the gzip bytes.
        let mut c = Client::connect(s.addr);
        let plain = ask(&mut c, "GET", "/page.html", "");
        assert_eq!(plain.body, text);
        assert_eq!(plain.header("vary"), Some("Accept-Encoding"), "Vary on identity too");
        assert_eq!(plain.header("content-encoding"), None);
        let z = ask(&mut c, "GET", "/page.html", "Accept-Encoding: gzip, deflate\r\n");
        assert_eq!(z.body, gz);
        assert_ne!(z.header("etag"), plain.header("etag"));
        assert!(z.header("etag").unwrap().ends_with("-gz\""));
        let etag = z.header("etag").unwrap().to_string();
        let r = ask(
            &mut c,
            "GET",
            "/page.html",
            &format!("Accept-Encoding: gzip\r\nIf-None-Match: {etag}\r\n"),
        );
        assert_eq!(r.status, 304);
        let r = ask(&mut c, "GET", "/page.html", "Accept-Encoding: gzip\r\nRange: bytes=0-9\r\n");
        assert_eq!((r.status, r.body.as_slice()), (206, &gz[..10]));
        for refused in ["gzip;q=0", "gzip;q=0, *", "br", "identity", "gzip;q=0.5, identity"] {
            let r = ask(&mut c, "GET", "/page.html", &format!("Accept-Encoding: {refused}\r\n"));
            assert_eq!(r.body, text, "Accept-Encoding: {refused}");
        }
        let r = ask(&mut c, "GET", "/page.html", "Accept-Encoding: br;q=1, *;q=0.5\r\n");
        assert_eq!(r.body, gz, "* stands for gzip");
        // Stale .gz: identity, no Vary; the .gz itself is an ordinary file.
        let r = ask(&mut c, "GET", "/stale.css", "Accept-Encoding: gzip\r\n");
        assert_eq!((r.body.as_slice(), r.header("vary")), (&b"a{}\n"[..], None));
        let r = ask(&mut c, "GET", "/page.html.gz", "Accept-Encoding: gzip\r\n");
        assert_eq!((&r.body, r.header("content-encoding")), (&gz, None));
        s.stop().unwrap();
    }
    // Without --precompressed nothing changes.
    let s = TestServer::start(epoll(), &root, |_| {});
    let r = ask(&mut Client::connect(s.addr), "GET", "/page.html", "Accept-Encoding: gzip\r\n");
    assert_eq!((&r.body, r.header("vary")), (&text, None));
    s.stop().unwrap();
}

#[test]
fn wget_resumes_a_partial_download() {
    if !have("wget") {
        eprintln!("SKIPPED: wget is not installed");
        return;
    }
    let root = root("wget");
    let data = mib();
    std::fs::write(root.join("f.bin"), &data).unwrap();
    // Cached in memory (limit above 1 MiB), then sent with sendfile (the default 256 KiB limit).
    for max_file in [2u64 << 20, 256 * 1024] {
        let s = TestServer::start(epoll(), &root, |c| c.cache.max_file = max_file);
        let dir = root.parent().unwrap().join(format!("dl-{max_file}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f.bin"), &data[..300_000]).unwrap();
        let url = format!("http://{}/f.bin", s.addr);
        let (_, err) =
            run(Command::new("wget").current_dir(&dir).args(["-c", "-S", "--tries=1", &url]));
        assert!(err.contains("206 Partial Content"), "max_file {max_file}: {err}");
        assert!(err.contains("Content-Range: bytes 300000-1048575/1048576"), "{err}");
        let got = std::fs::read(dir.join("f.bin")).unwrap();
        assert!(got == data, "max_file {max_file}: the resumed copy differs ({} bytes)", got.len());
        s.stop().unwrap();
    }
}

#[test]
fn types_and_cache_control() {
    let root = root("types");
    for (name, _) in TYPES {
        std::fs::write(root.join(name), "x").unwrap();
    }
    let s =
        TestServer::start(epoll(), &root, |c| c.cache_control = Some("public, max-age=60".into()));
    let mut c = Client::connect(s.addr);
    for (name, want) in TYPES {
        let r = ask(&mut c, "GET", &format!("/{name}"), "");
        assert_eq!(r.header("content-type"), Some(*want), "{name}");
        assert_eq!(r.header("cache-control"), Some("public, max-age=60"), "{name}");
    }
    let etag = ask(&mut c, "GET", "/a.css", "").header("etag").unwrap().to_string();
    let r = ask(&mut c, "GET", "/a.css", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!((r.status, r.header("cache-control")), (304, Some("public, max-age=60")));
    let r = ask(&mut c, "GET", "/6k.bin", "Range: bytes=0-0\r\n");
    assert_eq!((r.status, r.header("cache-control")), (206, Some("public, max-age=60")));
    let r = ask(&mut c, "GET", "/nope", "");
    assert_eq!((r.status, r.header("cache-control")), (404, None), "not on errors");
    s.stop().unwrap();
    // A bad value is refused at start with one sentence naming it.
    for bad in ["", "  ", "no-cache\r\nSet-Cookie: x=1", "caf\u{e9}"] {
        let mut cfg = Config::new(&root, 0, epoll());
        cfg.cache_control = Some(bad.into());
        let e = Server::bind(cfg).expect_err("refused");
        assert!(
            e.to_string().contains("--cache-control") && e.to_string().contains("visible ASCII"),
            "{e}"
        );
    }
}

const TYPES: &[(&str, &str)] = &[
    ("a.html", "text/html; charset=utf-8"),
    ("a.css", "text/css; charset=utf-8"),
    ("a.js", "text/javascript; charset=utf-8"),
    ("a.json", "application/json; charset=utf-8"),
    ("a.svg", "image/svg+xml; charset=utf-8"),
    ("a.txt", "text/plain; charset=utf-8"),
    ("a.png", "image/png"),
    ("a.wasm", "application/wasm"),
    ("a.pdf", "application/pdf"),
    ("noext", "application/octet-stream"),
    ("a.unknownext", "application/octet-stream"),
];

#[test]
fn the_binary_takes_the_new_options_and_refuses_bad_values() {
    let root = root("cli");
    std::fs::write(root.join("a.txt"), "hello").unwrap();
    let out = Command::new(util::serve_exe())
        .args(["--port", "0", "--cache-control", "no-cache\u{1}x", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("invalid Cache-Control value") && err.contains("visible ASCII"), "{err}");
    let args =
        format!("--root '{}' --precompressed --cache-control 'public, max-age=5'", root.display());
    let s =
        util::ServerProc::spawn("", &args).unwrap_or_else(|line| panic!("did not start: {line}"));
    let r = Client::connect(s.addr()).get("GET", "/a.txt");
    assert_eq!((r.status, r.header("cache-control")), (200, Some("public, max-age=5")));
}
