//! Helpers for the server suites: a document root, an in-process server per mechanism, a raw
//! HTTP/1.1 client over `TcpStream`, and the stand-alone server process.

#![allow(dead_code)]

use ioscale_server::{Config, Engine, Handle, Server};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The 6 KB file's bytes.
pub fn six_k() -> Vec<u8> {
    (0..6144u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// A fresh document root: `1b.txt` (one byte), `6k.bin`, `big.bin` (300 KB: sent with
/// sendfile), `sub/index.html`, `empty/`, a symlink out of the root, and a secret beside it.
pub fn root(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let base = std::env::temp_dir().join(format!(
        "ioscale-srv-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&base);
    let root = base.join("www");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("1b.txt"), "x").unwrap();
    std::fs::write(root.join("6k.bin"), six_k()).unwrap();
    std::fs::write(root.join("big.bin"), big()).unwrap();
    std::fs::write(root.join("sub/index.html"), "<p>index</p>\n").unwrap();
    std::fs::write(base.join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(base.join("secret.txt"), root.join("out.txt")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", root.join("out-rel.txt")).unwrap();
    root
}

/// The large file's bytes.
pub fn big() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 253) as u8).collect()
}

/// Runs `f` once per engine this kernel supports — every readiness mechanism, then the io_uring
/// completion engine (`uring-completion`); prints a reason for each one skipped.
/// `IOSCALE_TEST_ENGINES=uring-completion,epoll` narrows the run (for debugging one engine).
pub fn each_mechanism(mut f: impl FnMut(Engine)) {
    let only = std::env::var("IOSCALE_TEST_ENGINES").ok();
    for m in Engine::all() {
        if let Some(only) = &only {
            if !only.split(',').any(|n| n == m.name()) {
                eprintln!("SKIPPED: {m}: not in IOSCALE_TEST_ENGINES");
                continue;
            }
        }
        if let Err(e) = m.probe() {
            eprintln!("SKIPPED: {m}: not supported here: {e}");
            continue;
        }
        eprintln!("-- {m}");
        f(m);
    }
}

/// The completion engine, or `None` (with a printed reason) where this kernel cannot run it.
pub fn completion_engine() -> Option<Engine> {
    match Engine::UringCompletion.probe() {
        Ok(()) => Some(Engine::UringCompletion),
        Err(e) => {
            eprintln!("SKIPPED: uring-completion: not supported here: {e}");
            None
        }
    }
}

/// An in-process server on 127.0.0.1, port 0; stopped (drained) on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: Handle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl TestServer {
    pub fn start(m: impl Into<Engine>, root: &Path, tune: impl FnOnce(&mut Config)) -> TestServer {
        let m = m.into();
        let mut c = Config::new(root, 0, m);
        c.drain_timeout = Duration::from_secs(2);
        tune(&mut c);
        let server = Server::bind(c).unwrap_or_else(|e| panic!("{m}: {e}"));
        let addr = server.local_addr();
        let handle = server.handle();
        let thread = std::thread::spawn(move || server.run());
        TestServer { addr, handle, thread: Some(thread) }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Stops the server and returns what `run` returned.
    pub fn stop(mut self) -> io::Result<()> {
        self.handle.shutdown();
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.handle.shutdown();
            let _ = t.join();
        }
    }
}

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A raw HTTP/1.x client over one connection; keeps bytes read past a response (pipelining).
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { stream, buf: Vec::new() }
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { stream, buf: Vec::new() }
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).unwrap();
    }

    /// `GET`/`HEAD` a path with HTTP/1.1 and read the answer.
    pub fn get(&mut self, method: &str, path: &str) -> Resp {
        self.send(format!("{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        self.response(method == "HEAD").unwrap()
    }

    /// Reads one response; `head` means no body whatever Content-Length says. `Err` on a close
    /// before a complete response.
    pub fn response(&mut self, head: bool) -> io::Result<Resp> {
        loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut hs);
            if let httparse::Status::Complete(n) =
                r.parse(&self.buf).map_err(|e| io::Error::other(e.to_string()))?
            {
                let status = r.code.unwrap_or(0);
                let headers: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().unwrap());
                let len = if head || status == 304 { 0 } else { len };
                while self.buf.len() < n + len {
                    self.fill()?;
                }
                let body = self.buf[n..n + len].to_vec();
                self.buf.drain(..n + len);
                return Ok(Resp { status, headers, body });
            }
            self.fill()?;
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut b = [0u8; 65536];
        let n = loop {
            // Signal mechanisms in this process may interrupt a read: retry.
            match self.stream.read(&mut b) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        self.buf.extend_from_slice(&b[..n]);
        Ok(())
    }

    /// Whether the server closes the connection (EOF or reset) within the read timeout, with
    /// no more response bytes.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1024];
        loop {
            match self.stream.read(&mut b) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }
}

/// Sends `raw` on a fresh connection and reads everything until the server closes: the status
/// of the first response (or None if it closed without one).
pub fn one_shot(addr: SocketAddr, raw: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(raw);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&b[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// The stand-alone server program (`src/bin/ioscale-serve.rs`, built by cargo for the tests).
pub fn serve_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ioscale-serve"))
}

/// Whether a program is on PATH.
pub fn have(prog: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
