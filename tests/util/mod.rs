//! Helpers shared by the root package's process tests: a child killed and reaped on drop, free
//! loopback ports, a small document root, `ioscale serve` and Debian's nginx as processes, and one
//! `ioscale load` run with its JSON record.

#![allow(dead_code)]

use serde_json::Value;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (by its PID, via `Child::kill`) and reaped when dropped, panics included.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits (at most 10 s) until something accepts connections on `port`.
pub fn wait_port(port: u16) {
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(10), "server on {port} never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A fresh document root: `one.txt` (1 byte), `six.html` and `big.html` (6 KB each).
pub fn docroot(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ioscale-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("one.txt"), b"x").unwrap();
    std::fs::write(d.join("six.html"), vec![b'y'; 6144]).unwrap();
    std::fs::write(d.join("big.html"), vec![b'y'; 6144]).unwrap();
    d
}

/// `ioscale serve --root ROOT EXTRA...` on a free port, once it listens.
pub fn serve(root: &Path, extra: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_ioscale"))
        .args(["serve", "--port", &port.to_string(), "--root"])
        .arg(root)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = Proc(child);
    wait_port(port);
    (p, port)
}

/// Debian's nginx serving `root` on a free port (one worker, access log off), or `None` with a
/// printed reason when it is not installed.
pub fn nginx(root: &Path) -> Option<(Proc, u16)> {
    let Some(bin) =
        ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().find(|p| Path::new(p).exists())
    else {
        eprintln!("SKIPPED: nginx is not installed");
        return None;
    };
    let dir = root.join("nginx");
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let port = free_port();
    let conf = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 1024; }}\n\
http {{ access_log off; keepalive_requests 1000000; client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
server {{ listen 127.0.0.1:{port}; root {r}; }} }}\n",
        d = dir.display(),
        r = root.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new(bin)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-p")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = Proc(child);
    wait_port(port);
    Some((p, port))
}

/// Runs `ioscale load ARGS...`: its exit code, its JSON record (`Null` when none) and its stderr.
pub fn load(args: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ioscale")).arg("load").args(args).output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), v, String::from_utf8_lossy(&out.stderr).into_owned())
}
