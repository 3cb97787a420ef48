//! An echo server on io_uring completions (the proactor): the kernel accepts, receives and
//! sends; the loop only hands it operations and collects their results.
//!
//! ```text
//! cargo run --example proactor_echo -- [PORT]      # default: a free port
//! printf 'hello\n' | nc -q1 127.0.0.1 PORT
//! ```
//!
//! One multishot accept on the listener; one multishot receive per connection into the
//! proactor's provided buffers, each buffer copied into a send and given back at once; a short
//! send is sent again from where it stopped; sends on a connection go one at a time, in order.
//! At end of stream, or on an error, the connection is closed through the ring once nothing is
//! in flight on it.

use ioscale_dispatch::completion::{Completion, OpKind, Proactor, SendBuf, Value};
use ioscale_dispatch::Token;
use std::collections::{HashMap, VecDeque};
use std::io::{self, ErrorKind};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::ExitCode;

mod common;

const ACCEPT: Token = Token(usize::MAX);
const CLOSE: Token = Token(usize::MAX - 1);

/// One client: its socket, the sends waiting behind the one in flight, and what is in flight.
struct Conn {
    fd: OwnedFd,
    queued: VecDeque<SendBuf>,
    sending: bool,
    receiving: bool,
}

/// Runs the echo loop on `listener` until `stop_after` connections have closed (`None`: forever).
fn serve(listener: TcpListener, stop_after: Option<usize>) -> io::Result<()> {
    // Driven from the thread that opens it (SINGLE_ISSUER).
    let mut p = Proactor::new()?;
    listener.set_nonblocking(true)?;
    p.accept_multi(listener.as_raw_fd(), ACCEPT)?;
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut next = 0usize;
    let mut closed = 0usize;
    let mut out: Vec<Completion> = Vec::new();
    while !stop_after.is_some_and(|n| closed >= n) {
        out.clear();
        p.complete(&mut out, None)?;
        for c in out.drain(..) {
            if c.token == CLOSE {
                closed += 1;
                continue;
            }
            if c.token == ACCEPT {
                match c.result {
                    Ok(Value::Accepted(fd)) => {
                        let id = next;
                        next += 1;
                        p.recv_multi(fd.as_raw_fd(), Token(id))?;
                        let conn =
                            Conn { fd, queued: VecDeque::new(), sending: false, receiving: true };
                        conns.insert(id, conn);
                    }
                    Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
                    Err(e) => return Err(e),
                    Ok(v) => unreachable!("an accept produced {v:?}"),
                }
                if !c.more {
                    // The kernel ended the multishot accept: arm it again.
                    p.accept_multi(listener.as_raw_fd(), ACCEPT)?;
                }
                continue;
            }
            let id = c.token.0;
            let Some(conn) = conns.get_mut(&id) else { continue };
            match (c.kind, c.result) {
                (OpKind::RecvMulti, Ok(Value::Received(b))) => {
                    let data = p.buffer(&b).to_vec();
                    p.recycle(b);
                    conn.queued.push_back(SendBuf::from_vec(data));
                    if !c.more {
                        p.recv_multi(conn.fd.as_raw_fd(), c.token)?;
                    }
                }
                // The buffer ring ran dry: receive again (the buffers are back by now).
                (OpKind::RecvMulti, Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    p.recv_multi(conn.fd.as_raw_fd(), c.token)?;
                }
                (OpKind::RecvMulti, _) => conn.receiving = false, // end of stream or an error
                (OpKind::Send, Ok(Value::Sent(n))) => {
                    conn.sending = false;
                    let mut buf = c.buffer.expect("a send's buffer comes back");
                    buf.advance(n);
                    if !buf.is_empty() {
                        conn.queued.push_front(buf); // a short send: the rest first
                    }
                }
                (OpKind::Send, _) => {
                    // The peer is gone: drop what is left to send.
                    conn.sending = false;
                    conn.queued.clear();
                }
                (k, r) => unreachable!("unexpected completion {k:?}: {r:?}"),
            }
            if !conn.sending {
                if let Some(buf) = conn.queued.pop_front() {
                    p.send(conn.fd.as_raw_fd(), buf, c.token)?;
                    conn.sending = true;
                }
            }
            if !conn.receiving && !conn.sending {
                let conn = conns.remove(&id).expect("present above");
                p.close(conn.fd, CLOSE)?;
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let listener =
        match common::listen("proactor_echo", std::env::args().nth(1), "io_uring completions") {
            Ok(l) => l,
            Err(code) => return code,
        };
    match serve(listener, None) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proactor_echo: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three clients at once, the last sending 1 MiB (many receives, short sends likely); each
    /// gets back exactly what it sent, then the loop ends.
    #[test]
    fn echoes_through_the_ring() {
        if let Err(e) = Proactor::new() {
            eprintln!("SKIPPED: completion I/O is not available here: {e}");
            return;
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || serve(listener, Some(3)));
        common::three_clients_echo(addr, "proactor_echo");
        server.join().unwrap().unwrap();
    }
}
