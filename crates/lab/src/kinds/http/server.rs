//! The server under test of an `http` point: `ioscale serve` with the point's mechanism, or
//! nginx as the reference line, started on CPU 0 with the lab's document root, and its stats.

use crate::error::Error;
use crate::runner::context::Ctx;
use crate::spec::{Plan, Point};
use crate::sys;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// File sizes the lab's document root holds (bytes): the papers' 1 B, 92 B and 6 KB replies.
pub const FILE_SIZES: [u64; 3] = [1, 92, 6144];

/// The document root's name for a file of `size` bytes.
pub(crate) fn file_name(size: u64) -> String {
    format!("f{size}.html")
}

/// Writes the document root (idempotent).
pub fn docroot(out: &Path) -> Result<PathBuf, Error> {
    let root = out.join("docroot");
    std::fs::create_dir_all(&root)?;
    for size in FILE_SIZES {
        let p = root.join(file_name(size));
        let want: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        if std::fs::read(&p).ok().as_deref() != Some(&want[..]) {
            std::fs::write(&p, &want)?;
        }
    }
    Ok(root)
}

fn free_port(ip: Ipv4Addr) -> Result<u16, Error> {
    let l = TcpListener::bind((ip, 0))?;
    Ok(l.local_addr()?.port())
}

fn wait_listening(ip: Ipv4Addr, port: u16, within: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if TcpStream::connect_timeout(&SocketAddr::from((ip, port)), Duration::from_millis(200))
            .is_ok()
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    false
}

/// GET a small JSON document from the server (the stats endpoint).
pub(crate) fn get_json(ip: Ipv4Addr, port: u16, path: &str) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect((ip, port)).ok()?;
    // An overloaded server answers late: it is asked after the load, and given time.
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let body = text.split_once("\r\n\r\n")?.1;
    serde_json::from_str(body).ok()
}

/// A server under test: its PID (whose CPU is charged) and port.
pub(crate) struct Server {
    pub(crate) pid: u32,
    /// Where it listens (`--server-addr`, 127.0.0.1 by default).
    pub(crate) ip: Ipv4Addr,
    pub(crate) port: u16,
    /// Extra PIDs whose CPU counts too (nginx's worker).
    others: Vec<u32>,
    /// Whether it is `ioscale serve` (which takes counter snapshots on SIGUSR2).
    ioscale: bool,
    /// How many snapshots the lab has asked of it: the sequence number of the last one.
    snaps: std::cell::Cell<u64>,
    _dir: Option<PathBuf>,
}

impl Server {
    /// The CPU time (ns) the server's processes have used so far.
    pub(crate) fn cpu_ns(&self) -> u64 {
        let mut t = sys::schedstat_ns(self.pid).unwrap_or(0);
        for p in &self.others {
            t += sys::schedstat_ns(*p).unwrap_or(0);
        }
        t
    }

    /// Every process of the server (nginx's master and worker).
    pub(crate) fn pids(&self) -> Vec<u32> {
        std::iter::once(self.pid).chain(self.others.iter().copied()).collect()
    }

    /// The server's stats document, if it serves one.
    pub(crate) fn stats(&self) -> Option<serde_json::Value> {
        get_json(self.ip, self.port, "/.ioscale/stats")
    }

    /// Whether the server takes counter snapshots (`ioscale serve`).
    pub(crate) fn takes_snapshots(&self) -> bool {
        self.ioscale
    }

    /// Asks the server for a counter snapshot (SIGUSR2, docs/observability.md); its sequence
    /// number, to find it in the stats document afterwards. `None` for nginx, or when the
    /// signal could not be sent.
    pub(crate) fn snapshot(&self) -> Option<u64> {
        if !self.ioscale || sys::kill(self.pid, sys::SIGUSR2).is_err() {
            return None;
        }
        self.snaps.set(self.snaps.get() + 1);
        Some(self.snaps.get())
    }
}

/// Starts the point's server: nginx for the reference line, `ioscale serve` otherwise.
pub(crate) fn start(
    ctx: &mut Ctx<'_>,
    plan: &Plan,
    p: &Point,
    root: &Path,
) -> Result<Server, Error> {
    if p.mechanism == "nginx" {
        start_nginx(ctx, root)
    } else {
        start_ioscale(ctx, plan, p, root)
    }
}

/// `ioscale serve --dispatch MECHANISM` with the experiment's server settings.
pub(crate) fn start_ioscale(
    ctx: &mut Ctx<'_>,
    plan: &Plan,
    p: &Point,
    root: &Path,
) -> Result<Server, Error> {
    let ip = ctx.cfg.server_addr;
    let port = free_port(ip)?;
    let mut cmd = super::priority::launch(&ctx.cfg.exe, super::priority::Role::Server);
    // "select+multi-accept": the mechanism, plus server options after '+'.
    let mut parts = p.mechanism.split('+');
    let base = parts.next().unwrap_or_default().to_string();
    cmd.args([
        "serve",
        "--bind",
        &ip.to_string(),
        "--port",
        &port.to_string(),
        "--dispatch",
        &base,
    ]);
    cmd.arg("--root").arg(root);
    for opt in parts {
        cmd.arg(format!("--{opt}"));
    }
    if let Some(q) = plan.exp.server.sigqueue_max {
        if base == "rtsig-perfd" {
            // Signal-per-fd queues at most one signal per descriptor: its queue is as long as
            // the descriptor table, which is what makes it overflow-free (Chandra & Mosberger §4).
            let q = q.max(ctx.machine.nofile);
            cmd.args(["--sigqueue-max", &q.to_string()]);
        } else if base.starts_with("rtsig") || base == "hybrid" {
            cmd.args(["--sigqueue-max", &q.to_string()]);
        }
    }
    cmd.args(&plan.exp.server.args).stdout(Stdio::null()).stderr(Stdio::null());
    let pid = ctx.children.spawn(cmd)?;
    if !wait_listening(ip, port, Duration::from_secs(10)) {
        let st = ctx.children.stop(pid, Duration::from_millis(500));
        return Err(Error(format!(
            "ioscale serve --dispatch {} did not start listening ({st:?})",
            p.mechanism
        )));
    }
    Ok(Server {
        pid,
        ip,
        port,
        others: Vec::new(),
        ioscale: true,
        snaps: Default::default(),
        _dir: None,
    })
}

/// nginx (Debian's package), one worker, epoll, access log off: the reference line.
fn start_nginx(ctx: &mut Ctx<'_>, root: &Path) -> Result<Server, Error> {
    let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().find(|p| Path::new(p).exists());
    let Some(bin) = bin else { return Err(Error("nginx is not installed".into())) };
    let ip = ctx.cfg.server_addr;
    let port = free_port(ip)?;
    let dir = ctx.cfg.out.join(format!("nginx-{port}"));
    std::fs::create_dir_all(dir.join("logs"))?;
    let conf = format!(
        "worker_processes 1;\ndaemon off;\nmaster_process on;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\n\
events {{ use epoll; worker_connections 19000; multi_accept off; }}\n\
worker_rlimit_nofile 20000;\n\
http {{ access_log off; keepalive_requests 1000000; keepalive_timeout 300s;\n\
client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
server {{ listen {ip}:{port}; root {root}; }} }}\n",
        d = dir.display(),
        root = root.display()
    );
    std::fs::create_dir_all(dir.join("tmp"))?;
    std::fs::write(dir.join("nginx.conf"), conf)?;
    let mut cmd = super::priority::launch(Path::new(bin), super::priority::Role::Server);
    cmd.arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-p")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let pid = ctx.children.spawn(cmd)?;
    if !wait_listening(ip, port, Duration::from_secs(10)) {
        ctx.children.stop(pid, Duration::from_millis(500));
        return Err(Error("nginx did not start listening".into()));
    }
    // The worker is the master's child: its CPU is the server's CPU.
    let kids =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let others = kids.split_whitespace().filter_map(|s| s.parse().ok()).collect();
    Ok(Server { pid, ip, port, others, ioscale: false, snaps: Default::default(), _dir: Some(dir) })
}
