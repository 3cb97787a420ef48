//! A raw HTTP/1.x client over `TcpStream`: what a test sends is exactly what goes on the wire.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    /// The status code.
    pub status: u16,
    /// The header fields, in order, as sent.
    pub headers: Vec<(String, String)>,
    /// The body (empty for HEAD and 304).
    pub body: Vec<u8>,
}

impl Resp {
    /// The first header field called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A raw HTTP/1.x client over one connection; keeps bytes read past a response (pipelining).
/// Reads time out after 10 s.
pub struct Client {
    /// The connection.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to `addr` (panics if it cannot).
    pub fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).unwrap())
    }

    /// A client over a connection made elsewhere.
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { stream, buf: Vec::new() }
    }

    /// Writes `raw` as it is.
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

/// Sends `raw` on a fresh connection, half-closes it and reads until the server closes: the
/// status of the first response (or `None` if it closed without one).
/// Panics if it cannot connect.
pub fn one_shot(addr: SocketAddr, raw: &[u8]) -> Option<u16> {
    let (status, _) = exchange(addr, raw).unwrap_or_else(|| panic!("cannot connect to {addr}"));
    status
}

/// `GET PATH` with HTTP/1.0 on a fresh loopback connection to `port` (the server closes after
/// the answer): the status and the body, or `None` if it could not connect or answered nothing.
pub fn fetch(port: u16, path: &str) -> Option<(u16, Vec<u8>)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (status, all) = exchange(addr, format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())?;
    let at = all.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((status?, all[at + 4..].to_vec()))
}

/// Writes `raw` on a fresh connection, half-closes it and reads everything until the server
/// closes; the first response's status, if any, and every byte read. `None` if it could not
/// connect.
fn exchange(addr: SocketAddr, raw: &[u8]) -> Option<(Option<u16>, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
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
    let status = out
        .get(..12)
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(|t| t.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok());
    Some((status, out))
}
