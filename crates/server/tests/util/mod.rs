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

/// The stand-alone server as a child process, started through `sh -c` (so a test can prefix
/// `ulimit -n N;`), with its stderr kept; killed and reaped when dropped.
pub struct ServerProc {
    pub child: std::process::Child,
    pub port: u16,
    pub err: std::io::BufReader<std::process::ChildStderr>,
}

impl ServerProc {
    /// Starts `ioscale-serve --port 0 ARGS` and reads its port from the first stderr line;
    /// `None` (with the line) if it exited instead.
    pub fn spawn(shell_prefix: &str, args: &str) -> Result<ServerProc, String> {
        use std::io::BufRead;
        let cmd = format!("{shell_prefix} exec '{}' --port 0 {args}", serve_exe().display());
        let mut child = std::process::Command::new("sh")
            .args(["-c", &cmd])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
        let port = line
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|p| p.parse().ok());
        match port {
            Some(port) => Ok(ServerProc { child, port, err }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(line)
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: a signal to our own child by its PID has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits up to `limit` for the exit code (killed and `None` after that).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let t0 = std::time::Instant::now();
        while t0.elapsed() < limit {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// The stats document over a fresh connection.
    pub fn stats(&self) -> serde_json::Value {
        let r = Client::connect(self.addr()).get("GET", "/.ioscale/stats");
        serde_json::from_slice(&r.body).unwrap()
    }

    /// Open descriptors of the server process.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU time of process `pid` from `/proc/PID/stat` (every thread), in seconds.
pub fn proc_cpu_s(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime is field 14, stime 15: indices 11 and 12 counting from field 3.
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) as f64 / hz
}

/// Sets SO_LINGER to 0: the next close sends a reset.
pub fn linger_zero(s: &TcpStream) {
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    let fd = std::os::fd::AsRawFd::as_raw_fd(s);
    // SAFETY: `fd` is open for the call; `l` is a valid linger struct of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER");
}
