//! A minimal event loop on a mechanism chosen at run time: an echo server on 127.0.0.1.
//!
//! ```text
//! cargo run --example event_loop -- [MECHANISM] [PORT]     # default: epoll, a free port
//! printf 'hello\n' | nc -q1 127.0.0.1 PORT
//! ```
//!
//! Written once for every readiness mechanism (`ioscale mechanisms` lists them): it treats every
//! notice as a hint (reads and accepts until `WouldBlock`, which edge-triggered and signal
//! mechanisms need and level-triggered ones tolerate) and re-arms after each notice where the
//! mechanism disarms (`Trigger::Oneshot`).

use ioscale_dispatch::{Dispatcher, Events, Interest, Mechanism, Options, Token, Trigger};
use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::ExitCode;

mod common;

const LISTENER: Token = Token(usize::MAX);

/// One client: its socket and the bytes read but not yet echoed.
struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
}

/// Runs the echo loop on `listener` until `stop_after` connections have closed (`None`: forever).
fn serve(mechanism: Mechanism, listener: TcpListener, stop_after: Option<usize>) -> io::Result<()> {
    // Opened on the thread that waits (the RT-signal mechanisms need that).
    let mut d = mechanism.open(&Options::default())?;
    listener.set_nonblocking(true)?;
    d.register_fd(listener.as_fd(), LISTENER, Interest::READABLE)?;
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut next = 0usize;
    let mut closed = 0usize;
    let mut events = Events::with_capacity(256);
    while !stop_after.is_some_and(|n| closed >= n) {
        d.wait(&mut events, None)?;
        for ev in events.iter() {
            if ev.token() == LISTENER {
                accept_all(&mut *d, &listener, &mut conns, &mut next)?;
                if d.trigger() == Trigger::Oneshot {
                    d.reregister_fd(listener.as_fd(), LISTENER, Interest::READABLE)?;
                }
                continue;
            }
            let id = ev.token().0;
            let Some(conn) = conns.get_mut(&id) else { continue }; // closed earlier in this batch
            match echo(conn) {
                Ok(true) => {
                    // Wait for writability only while output is pending.
                    let want = if conn.out.is_empty() {
                        Interest::READABLE
                    } else {
                        Interest::READABLE | Interest::WRITABLE
                    };
                    d.reregister_fd(conn.stream.as_fd(), ev.token(), want)?;
                }
                Ok(false) | Err(_) => {
                    let conn = conns.remove(&id).expect("present above");
                    d.deregister_fd(conn.stream.as_fd())?;
                    closed += 1;
                }
            }
        }
    }
    Ok(())
}

/// Accepts until the listen queue is empty, registering each connection.
fn accept_all(
    d: &mut dyn Dispatcher,
    listener: &TcpListener,
    conns: &mut HashMap<usize, Conn>,
    next: &mut usize,
) -> io::Result<()> {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(true)?;
                let id = *next;
                *next += 1;
                d.register_fd(stream.as_fd(), Token(id), Interest::READABLE)?;
                conns.insert(id, Conn { stream, out: Vec::new() });
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A connection reset before it was accepted: skip it.
            Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads what is there and writes it back; `Ok(false)` once the peer has closed and everything
/// read was sent.
fn echo(conn: &mut Conn) -> io::Result<bool> {
    let mut buf = [0u8; 4096];
    let mut open = true;
    loop {
        match conn.stream.read(&mut buf) {
            Ok(0) => {
                open = false;
                break;
            }
            Ok(n) => conn.out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    while !conn.out.is_empty() {
        match conn.stream.write(&conn.out) {
            Ok(n) => {
                conn.out.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(open || !conn.out.is_empty())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "epoll".to_string());
    let mechanism: Mechanism = match name.parse() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("event_loop: {e}");
            return ExitCode::from(2);
        }
    };
    if mechanism.is_completion_based() {
        eprintln!("event_loop: {mechanism} is the completion model: see the proactor_echo example");
        return ExitCode::from(2);
    }
    let listener = match common::listen("event_loop", args.next(), &mechanism.to_string()) {
        Ok(l) => l,
        Err(code) => return code,
    };
    match serve(mechanism, listener, None) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("event_loop: {mechanism}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Echoes on `mechanism` for three clients at once, the last sending 1 MiB (more than a
    /// socket buffer, so the server waits for writability), then the loop ends.
    fn echoes_on(mechanism: Mechanism) {
        if let Err(e) = mechanism.probe() {
            eprintln!("SKIPPED: {mechanism} is not available here: {e}");
            return;
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || serve(mechanism, listener, Some(3)));
        common::three_clients_echo(addr, &mechanism.to_string());
        server.join().unwrap().unwrap();
    }

    #[test]
    fn echoes_on_every_readiness_mechanism() {
        for &m in Mechanism::READINESS {
            echoes_on(m);
        }
    }
}
