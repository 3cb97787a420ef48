//! Helpers shared by ioscale's process tests — the root package's `tests/` and the crates'
//! own suites (`crates/server/tests/`): a child process killed and reaped on drop, loopback
//! ports, a server started on port 0 that prints its address, a raw HTTP/1.x client, Debian's
//! nginx as a peer, and a few `/proc` readings.
//!
//! It is a dev-dependency only and depends on no ioscale crate, so any crate's tests can use it
//! without a cycle. It knows no program's path: `env!("CARGO_BIN_EXE_<name>")` exists only
//! inside a package's own integration tests, so each suite's `tests/util/mod.rs` keeps the thin
//! wrappers that name its binary (`serve`, `load`, …) and calls these with it.

use std::io::{self, BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod http;
pub use http::{fetch, one_shot, Client, Resp};

/// A child process killed (by its PID, via `Child::kill`) and reaped when dropped, panics
/// included.
pub struct Proc(pub Child);

impl Proc {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Sends `sig` to it (by PID).
    pub fn signal(&self, sig: i32) {
        let _ = ioscale_sys::process::kill(self.0.id(), sig);
    }

    /// Its exit code (`None`: ended by a signal) within `limit`; `Err` (after killing it) if it
    /// was still running then.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<Option<i32>, String> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Some(st) = self.0.try_wait().unwrap() {
                return Ok(st.code());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        Err(format!("still running after {limit:?}"))
    }

    /// How many descriptors it has open (0 once it is gone).
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server started by [`spawn_announced`]: the process, the address from its first stderr
/// line, and the rest of its stderr (read it, or hand it to [`drain`] so the child never blocks
/// on a full pipe).
pub struct Announced {
    /// The server process.
    pub proc: Proc,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its stderr after the first line.
    pub stderr: BufReader<ChildStderr>,
}

/// Why [`spawn_announced`] found no address: what the process printed and its exit code.
#[derive(Debug)]
pub struct NotStarted {
    /// What it printed on stderr (empty if nothing).
    pub line: String,
    /// Its exit code (`None` if it was killed or ended by a signal).
    pub code: Option<i32>,
}

impl std::fmt::Display for NotStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {:?}: {}", self.code, self.line.trim_end())
    }
}

/// Spawns `cmd` (stdout to /dev/null, stderr piped) and reads the address a server announces
/// as `http://ADDR/` on stderr — what `ioscale serve` prints once it listens, so `--port 0`
/// needs no guessing of a free port. Lines before the address are skipped; if stderr ends
/// without one, the process is reaped (killed after 10 s) and `Err` holds what it printed.
pub fn spawn_announced(cmd: &mut Command) -> Result<Announced, NotStarted> {
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut proc = Proc(child);
    let mut stderr = BufReader::new(proc.0.stderr.take().unwrap());
    let mut printed = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            let code = proc.wait_exit(Duration::from_secs(10)).ok().flatten();
            return Err(NotStarted { line: printed, code });
        }
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|a| a.parse().ok());
        if let Some(addr) = addr {
            return Ok(Announced { proc, addr, stderr });
        }
        printed.push_str(&line);
    }
}

/// Reads `r` to its end on a thread of its own (so a child writing to the pipe never blocks).
pub fn drain(mut r: impl Read + Send + 'static) {
    std::thread::spawn(move || {
        let _ = io::copy(&mut r, &mut io::sink());
    });
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

/// A port on `ip` nothing listens on right now.
pub fn free_port_on(ip: &str) -> u16 {
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

/// Waits (at most 10 s, then panics) until something accepts connections on loopback `port`.
pub fn wait_port(port: u16) {
    wait_port_on("127.0.0.1", port)
}

/// Waits (at most 10 s, then panics) until something accepts connections on `ip:port`.
pub fn wait_port_on(ip: &str, port: u16) {
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect((ip, port)).is_ok()),
        "nothing listened on {ip}:{port} within 10 s"
    );
}

/// Polls `f` every 20 ms until it holds (`true`) or `limit` has passed (`false`).
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    loop {
        if f() {
            return true;
        }
        if t.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One test of a suite at a time: locks `m`, also after another test panicked holding it.
pub fn serial(m: &'static Mutex<()>) -> MutexGuard<'static, ()> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh, empty directory `ioscale-TAG-PID-N` under the system's temporary directory.
///
/// The first call in a process also removes the directories of this form that earlier test
/// processes left behind (their PID is gone and they are over an hour old), so repeated runs do
/// not fill the disk; a live test's directories are never touched.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(remove_stale_temp_dirs);
    let d = std::env::temp_dir().join(format!(
        "ioscale-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Removes `ioscale-*-PID-N` directories in the temporary directory whose process is gone and
/// that were last changed over an hour ago.
fn remove_stale_temp_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(stale_dir_pid) else { continue };
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > Duration::from_secs(3600)));
        if old && pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The PID in a name of the form `ioscale-TAG-PID-N` (TAG may hold dashes), or `None`.
fn stale_dir_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("ioscale-")?;
    let mut parts = rest.rsplitn(3, '-');
    let n = parts.next()?;
    let pid = parts.next()?;
    let tag = parts.next()?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(n) && !tag.is_empty()).then(|| pid.parse().ok()).flatten()
}

/// Whether a program is on PATH.
pub fn have(prog: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether this process runs as root (real or effective uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| {
                let mut ids = l.split_whitespace().skip(1);
                ids.next() == Some("0") || ids.next() == Some("0")
            })
        })
        .unwrap_or(false)
}

/// Whether `pid` names a live (not zombie) process.
pub fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
        .unwrap_or(false)
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

/// Sets SO_LINGER to 0 on `s`: its next close sends a reset.
pub fn linger_zero(s: &TcpStream) {
    let fd = std::os::fd::AsRawFd::as_raw_fd(s);
    ioscale_sys::net::set_linger_zero(fd).unwrap_or_else(|e| panic!("SO_LINGER: {e}"));
}

/// Debian's nginx binary, or `None` with a printed reason when it is not installed.
pub fn nginx_bin() -> Option<&'static str> {
    let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().find(|p| Path::new(p).exists());
    if bin.is_none() {
        eprintln!("SKIPPED: nginx is not installed");
    }
    bin
}

/// nginx in the foreground with one worker and the access log off, its pid file, error log and
/// temporary files in `dir`, and `http` holding the rest of its `http {}` block (the `server`
/// blocks); `None` (with a printed reason) when nginx is not installed. It is not waited for:
/// call [`wait_port`] on each port it listens on.
pub fn start_nginx(dir: &Path, http: &str) -> Option<Proc> {
    let bin = nginx_bin()?;
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let conf = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
events {{ worker_connections 1024; }}\n\
http {{ access_log off; client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; \
fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n{http}\n}}\n",
        d = dir.display(),
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new(bin)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Some(Proc(child))
}

#[cfg(test)]
mod tests {
    use super::stale_dir_pid;

    #[test]
    fn only_names_of_the_temp_dir_form_are_read() {
        assert_eq!(stale_dir_pid("ioscale-srv-rst-2137-1"), Some(2137));
        assert_eq!(stale_dir_pid("ioscale-test-one-9-0"), Some(9));
        assert_eq!(stale_dir_pid("ioscale-cg.AbC123"), None);
        assert_eq!(stale_dir_pid("ioscale-bench-x"), None);
        assert_eq!(stale_dir_pid("ioscale-12-3"), None);
        assert_eq!(stale_dir_pid("other-srv-12-3"), None);
    }
}
