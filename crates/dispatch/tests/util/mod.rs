//! Helpers for the conformance suite: real sockets, and waits that collect events.

#![allow(dead_code)]

use ioscale_dispatch::{Dispatcher, Event, Events, Mechanism, Options, Token, Trigger};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Serialises the tests that hold thousands of descriptors (the test binary shares one
/// descriptor limit).
pub static HEAVY: Mutex<()> = Mutex::new(());

/// Opens `m`, or prints why this kernel cannot and returns `None` (never a silent pass).
pub fn open(m: Mechanism) -> Option<Box<dyn Dispatcher>> {
    open_with(m, &Options::default())
}

/// Like [`open`], with options.
pub fn open_with(m: Mechanism, o: &Options) -> Option<Box<dyn Dispatcher>> {
    match m.open(o) {
        Ok(d) => Some(d),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::Unsupported | std::io::ErrorKind::PermissionDenied
            ) =>
        {
            eprintln!("SKIPPED: {m} is not available on this kernel: {e}");
            None
        }
        Err(e) => panic!("{m} failed to open: {e}"),
    }
}

/// A connected, non-blocking Unix stream pair.
pub fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).expect("nonblocking");
    b.set_nonblocking(true).expect("nonblocking");
    (a, b)
}

/// A connected loopback TCP pair (client, server side), both non-blocking.
pub fn tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let c = std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (s, _) = l.accept().expect("accept");
    c.set_nonblocking(true).expect("nonblocking");
    s.set_nonblocking(true).expect("nonblocking");
    (c, s)
}

/// Waits until an event for `token` arrives or `within` passes; other events are ignored.
pub fn wait_for(d: &mut dyn Dispatcher, token: Token, within: Duration) -> Option<Event> {
    let mut events = Events::with_capacity(64);
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        d.wait(&mut events, Some(left)).expect("wait");
        if let Some(e) = events.iter().find(|e| e.token() == token) {
            return Some(*e);
        }
        if Instant::now() >= deadline {
            return None;
        }
    }
}

/// Every event reported during `within` (waiting repeatedly).
pub fn collect(d: &mut dyn Dispatcher, within: Duration) -> Vec<Event> {
    let mut events = Events::with_capacity(256);
    let mut all = Vec::new();
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        d.wait(&mut events, Some(left)).expect("wait");
        all.extend(events.iter().copied());
        if Instant::now() >= deadline {
            return all;
        }
    }
}

/// Whether the mechanism disarms after each notice.
pub fn is_oneshot(d: &dyn Dispatcher) -> bool {
    d.trigger() == Trigger::Oneshot
}
