//! The access log (`--access-log PATH|-`): one Combined Log Format line per request, the format
//! goaccess, awstats and fail2ban read.
//!
//! ```text
//! 127.0.0.1 - - [23/Nov/2026:08:10:00 +0000] "GET /a.html HTTP/1.1" 200 1234 "-" "curl/8.5.0"
//! ```
//!
//! Off the per-request path: each worker formats its lines into its own bounded buffer (no lock,
//! no system call per request) and writes the buffer whole when it passes [`FLUSH_SIZE`], at
//! most [`FLUSH_EVERY`] after its oldest line (checked once per loop pass), and when the worker
//! stops — nginx's `access_log ... buffer=32k flush=1s`. The file is opened with `O_APPEND`, and
//! a buffer holds whole lines only, so the workers' writes never interleave inside a line (for
//! `-`, standard output, writes are cut at line ends into pieces of at most `PIPE_BUF` bytes,
//! which a pipe keeps whole). SIGUSR1 and SIGHUP reopen the path (logrotate's convention; a
//! reload may name another): the signal thread opens the new file and bumps an epoch; each
//! worker, at its next loop pass, writes the lines it holds to the old file and takes the new
//! one, so no buffered line is lost or written to a file opened after it.
//!
//! The status is the one sent; the size is the body's (0 for HEAD and 304), as it stood when the
//! response was written (what follows the head in the buffer, plus a cached body or file range
//! still to send): a client that leaves mid-body is logged with the full size. Each field is cut
//! at [`FIELD_MAX`] escaped bytes, so a line is under `PIPE_BUF`. Every request is logged, those
//! refused before they parse too (400, 405, 408, 413, 414, 431, 501, 505): their request field is
//! the first line the client sent, escaped (`"\x16\x03\x01..."` for a TLS hello), or `-`.

use crate::peer::Peer;
use crate::stats::{bump, WorkerStats};
use ioscale_http::{DateCache, Request};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A worker writes its buffer when it holds this many bytes.
pub const FLUSH_SIZE: usize = 32 * 1024;
/// ... or when its oldest line is this old.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Longest piece written to standard output at once (a pipe's atomic write).
const PIPE_BUF: usize = 4096;
/// Most bytes one logged field (request target, Referer, User-Agent) takes once escaped; longer
/// ones are cut and marked with `...`. Three of them and the rest of a line stay under
/// `PIPE_BUF`, so a line is never split between two writes.
const FIELD_MAX: usize = 1024;

/// Where the lines go: a file (reopened on SIGUSR1 and SIGHUP, moved to another path by a
/// reload), or standard output (`-`).
#[derive(Debug)]
pub struct Sink {
    current: Mutex<Arc<Out>>,
    /// Bumped at each reopen: a worker that sees it move writes what it holds to its file,
    /// then takes the new one, so no line is lost and none goes to a file opened after it.
    epoch: AtomicU64,
}

/// An open log file, or standard output.
#[derive(Debug)]
struct Out {
    path: Option<PathBuf>,
    file: File,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).create(true).open(path)
}

fn open_out(path: &Path) -> io::Result<Out> {
    if path == Path::new("-") {
        let fd = io::stdout().as_fd().try_clone_to_owned()?;
        return Ok(Out { path: None, file: File::from(fd) });
    }
    Ok(Out { path: Some(path.to_path_buf()), file: open_append(path)? })
}

impl Sink {
    /// Opens `path` for appending (created if missing), or standard output for `-`.
    pub fn open(path: &Path) -> io::Result<Sink> {
        Ok(Sink { current: Mutex::new(Arc::new(open_out(path)?)), epoch: AtomicU64::new(0) })
    }

    /// Opens the path again (after logrotate renamed it); standard output stays as it is.
    pub fn reopen(&self) -> io::Result<()> {
        let path = self.get().0.path.clone();
        match path {
            Some(p) => self.reopen_at(&p),
            None => Ok(()),
        }
    }

    /// Writes to `path` from now on (`-`: standard output).
    pub fn reopen_at(&self, path: &Path) -> io::Result<()> {
        let out = Arc::new(open_out(path)?);
        let mut g = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *g = out;
        self.epoch.fetch_add(1, Ordering::Release);
        Ok(())
    }

    fn get(&self) -> (Arc<Out>, u64) {
        let g = self.current.lock().unwrap_or_else(|e| e.into_inner());
        (g.clone(), self.epoch.load(Ordering::Acquire))
    }
}

impl Out {
    fn write(&self, buf: &[u8]) -> io::Result<()> {
        let mut f = &self.file;
        if self.path.is_some() {
            return f.write_all(buf);
        }
        let mut rest = buf;
        while !rest.is_empty() {
            let mut cut = rest.len().min(PIPE_BUF);
            if cut < rest.len() {
                // A line is shorter than PIPE_BUF (fields are bounded), so one ends in the window.
                debug_assert!(rest[..cut].contains(&b'\n'));
                cut = rest[..cut].iter().rposition(|&b| b == b'\n').map_or(cut, |p| p + 1);
            }
            f.write_all(&rest[..cut])?;
            rest = &rest[cut..];
        }
        Ok(())
    }
}

/// One worker's buffer of lines.
#[derive(Debug)]
pub(crate) struct AccessLog {
    sink: Arc<Sink>,
    out: Arc<Out>,
    epoch: u64,
    buf: Vec<u8>,
    lines: u64,
    oldest: Option<Instant>,
}

impl AccessLog {
    pub fn new(sink: Arc<Sink>) -> AccessLog {
        let (out, epoch) = sink.get();
        AccessLog {
            sink,
            out,
            epoch,
            buf: Vec::with_capacity(FLUSH_SIZE + 2 * FIELD_MAX + 512),
            lines: 0,
            oldest: None,
        }
    }

    /// Appends the line for `req`, answered by the response just written into the buffer
    /// (`head`: its head and any body copied beside it) and `body_after` body bytes still to
    /// send (a cached body by reference or a file range).
    #[allow(clippy::too_many_arguments)]
    pub fn line(
        &mut self,
        st: &WorkerStats,
        req: &Request<'_>,
        peer: &Peer<'_>,
        head: &[u8],
        body_after: u64,
        date: &DateCache,
        now: Instant,
    ) {
        let b = &mut self.buf;
        host_and_time(b, peer.addr, date);
        b.extend_from_slice(if req.method.is_head() { b"HEAD " } else { b"GET " });
        escape(b, req.target);
        b.extend_from_slice(match req.version {
            ioscale_http::Version::Http10 => b" HTTP/1.0\" ",
            ioscale_http::Version::Http11 => b" HTTP/1.1\" ",
        });
        self.rest(st, head, body_after, peer.head, now);
    }

    /// Appends the line for a request refused before it parsed, or whose head did not arrive
    /// in time (400, 405, 408, 413, 414, 431, 501, 505): `input` is what the client sent (its
    /// first line is logged as the request, escaped, or `-` when there is none), `response`
    /// the error response written for it.
    pub fn refused(
        &mut self,
        st: &WorkerStats,
        addr: Option<IpAddr>,
        input: &[u8],
        response: &[u8],
        date: &DateCache,
        now: Instant,
    ) {
        let b = &mut self.buf;
        host_and_time(b, addr, date);
        let start = input.iter().position(|&c| c != b'\r' && c != b'\n').unwrap_or(input.len());
        let first = input[start..].split(|&c| c == b'\n').next().unwrap_or(&[]);
        let first = first.strip_suffix(b"\r").unwrap_or(first);
        if first.is_empty() {
            b.push(b'-');
        } else {
            escape(b, first);
        }
        b.extend_from_slice(b"\" ");
        self.rest(st, response, 0, input, now);
    }

    /// The status, the size, `Referer` and `User-Agent` (from the raw request `raw`), the line's
    /// end, and the flush if the buffer is full.
    #[inline(always)]
    fn rest(&mut self, st: &WorkerStats, head: &[u8], body_after: u64, raw: &[u8], now: Instant) {
        let b = &mut self.buf;
        let status = head.get(9..12).unwrap_or(b"000");
        b.extend_from_slice(status);
        b.push(b' ');
        let len = (head.len() - head_end(head)) as u64 + body_after;
        b.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
        b.extend_from_slice(b" \"");
        let (referer, agent) = referer_and_agent(raw);
        quoted(b, referer);
        b.extend_from_slice(b"\" \"");
        quoted(b, agent);
        b.extend_from_slice(b"\"\n");
        self.lines += 1;
        self.oldest.get_or_insert(now);
        if self.buf.len() >= FLUSH_SIZE {
            self.flush(st);
        }
    }

    /// Once per loop pass: writes the buffer if its oldest line has waited [`FLUSH_EVERY`];
    /// after a reopen, writes it to the old file and takes the new one.
    #[inline]
    pub fn tick(&mut self, st: &WorkerStats, now: Instant) {
        if self.sink.epoch.load(Ordering::Relaxed) != self.epoch {
            self.flush(st);
            (self.out, self.epoch) = self.sink.get();
        } else if self.oldest.is_some_and(|t| now.saturating_duration_since(t) >= FLUSH_EVERY) {
            self.flush(st);
        }
    }

    /// Writes the buffer now.
    pub fn flush(&mut self, st: &WorkerStats) {
        if self.buf.is_empty() {
            return;
        }
        match self.out.write(&self.buf) {
            Ok(()) => bump(&st.log_lines, self.lines),
            Err(e) => {
                if st.log_dropped.load(Ordering::Relaxed) == 0 {
                    crate::error_log::error!("cannot write the access log: {e}; lines are dropped");
                }
                bump(&st.log_dropped, self.lines);
            }
        }
        self.buf.clear();
        self.lines = 0;
        self.oldest = None;
    }
}

/// The client's address, the two `-`, the time and the opening quote of the request.
#[inline(always)]
fn host_and_time(b: &mut Vec<u8>, addr: Option<IpAddr>, date: &DateCache) {
    match addr {
        Some(IpAddr::V4(a)) => {
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    b.push(b'.');
                }
                b.extend_from_slice(itoa::Buffer::new().format(o).as_bytes());
            }
        }
        Some(a) => {
            let _ = write!(b, "{a}");
        }
        None => b.push(b'-'),
    }
    b.extend_from_slice(b" - - [");
    // IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT" -> "06/Nov/1994:08:49:37 +0000".
    let d = date.text();
    b.extend_from_slice(&d[5..7]);
    b.push(b'/');
    b.extend_from_slice(&d[8..11]);
    b.push(b'/');
    b.extend_from_slice(&d[12..16]);
    b.push(b':');
    b.extend_from_slice(&d[17..25]);
    b.extend_from_slice(b" +0000] \"");
}

/// The lines of a head after its first line, up to the empty line that ends it (without
/// their CR LF).
pub(crate) fn header_lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    // Skip empty lines before a request line (RFC 9112 §2.2), then that line.
    let start = head.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(head.len());
    let mut lines = head[start..].split(|&b| b == b'\n');
    lines.next();
    lines.map(|l| l.strip_suffix(b"\r").unwrap_or(l)).take_while(|l| !l.is_empty())
}

/// Where a response head ends (after its CR LF CR LF), or the length if it does not. Steps
/// over bytes that cannot be part of the terminator four at a time.
fn head_end(h: &[u8]) -> usize {
    let mut i = 3;
    while i < h.len() {
        match h[i] {
            b'\n' if &h[i - 3..=i] == b"\r\n\r\n" => return i + 1,
            b'\n' => i += 2,
            b'\r' => i += 1,
            _ => i += 4,
        }
    }
    h.len()
}

/// The `Referer` and `User-Agent` values in the raw request `head` (one pass over it).
fn referer_and_agent(head: &[u8]) -> (Option<&[u8]>, Option<&[u8]>) {
    const REFERER: &[u8] = b"referer:";
    const AGENT: &[u8] = b"user-agent:";
    let (mut referer, mut agent) = (None, None);
    for line in header_lines(head) {
        let name = match line.first() {
            Some(b'r' | b'R') => REFERER,
            Some(b'u' | b'U') => AGENT,
            _ => continue,
        };
        if line.len() >= name.len() && line[..name.len()].eq_ignore_ascii_case(name) {
            let v = Some(line[name.len()..].trim_ascii());
            if name == REFERER {
                referer = v;
            } else {
                agent = v;
            }
        }
    }
    (referer, agent)
}

/// A quoted field's value, or `-` when absent.
fn quoted(b: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) if !v.is_empty() => escape(b, v),
        _ => b.push(b'-'),
    }
}

/// Copies `v` with `"`, `\`, controls and non-ASCII bytes as `\xHH` (nginx's escaping), cut
/// once it has written [`FIELD_MAX`] bytes.
fn escape(b: &mut Vec<u8>, v: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let limit = b.len() + FIELD_MAX;
    for &c in v {
        // Room for one escaped byte and the `...` after it.
        if b.len() + 4 + 3 > limit {
            b.extend_from_slice(b"...");
            return;
        }
        if (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\' {
            b.push(c);
        } else {
            b.extend_from_slice(&[b'\\', b'x', HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_lengths() {
        let mut b = Vec::new();
        escape(&mut b, b"a\"b\\c\x01\xff");
        assert_eq!(b, b"a\\x22b\\x5Cc\\x01\\xFF");
        let mut b = Vec::new();
        escape(&mut b, &[0xffu8; 5000]);
        assert!(b.len() <= FIELD_MAX && b.ends_with(b"\\xFF..."), "{}", b.len());
        let mut b = Vec::new();
        escape(&mut b, &[b'a'; 1000]);
        assert_eq!(b.len(), 1000);
        let head = b"HTTP/1.1 200 OK\r\nDate: x\r\nContent-Length: 9\r\n\r\n\r\n\r\nabcde";
        assert_eq!(head_end(head), head.len() - 9);
        assert_eq!(head_end(b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n"), 38);
        for n in 0..40 {
            // Every alignment of the terminator after a run of letters.
            let mut h = vec![b'a'; n];
            h.extend_from_slice(b"\r\n\r\nbody");
            assert_eq!(head_end(&h), n + 4, "{n}");
            h.truncate(n + 3);
            assert_eq!(head_end(&h), n + 3, "{n}");
        }
        let req = b"\r\nGET / HTTP/1.1\r\nHost: a\r\nuser-AGENT:  x y \r\n\r\nReferer: no";
        assert_eq!(referer_and_agent(req), (None, Some(&b"x y"[..])));
        let req = b"GET / HTTP/1.1\r\nReferer:http://a/\r\nrefererx: no\r\n\r\n";
        assert_eq!(referer_and_agent(req), (Some(&b"http://a/"[..]), None));
    }
}
