//! The completion interface on real loopback sockets: multishot accept and receive, provided
//! buffer exhaustion, timeouts and cancellation, closing with operations in flight, short sends
//! and a peer reset mid-send. Skipped with a printed reason where the kernel lacks a feature.

use ioscale_dispatch::completion::{
    probe_features, Completion, CompletionConfig, OpKind, Proactor, SendBuf, Value,
};
use ioscale_dispatch::Token;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

fn open(config: CompletionConfig) -> Option<Proactor> {
    match Proactor::open(config) {
        Ok(p) => Some(p),
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            eprintln!("SKIPPED: completion I/O is not available on this kernel: {e}");
            None
        }
        Err(e) => panic!("the proactor failed to open: {e}"),
    }
}

fn listener() -> TcpListener {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    l
}

/// Collects completions until `done` says so or `within` passes.
fn run(
    p: &mut Proactor,
    within: Duration,
    mut handle: impl FnMut(&mut Proactor, Completion) -> bool,
) -> bool {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while Instant::now() < deadline {
        out.clear();
        p.complete(&mut out, Some(Duration::from_millis(100))).unwrap();
        for c in out.drain(..) {
            if handle(p, c) {
                return true;
            }
        }
    }
    false
}

#[test]
fn probe_reports_every_check() {
    let checks = probe_features();
    assert!(!checks.is_empty());
    for c in &checks {
        if !c.supported {
            assert!(c.note.is_some() || !c.required, "{c:?}");
            eprintln!("NOTE: {} not supported here: {:?}", c.name, c.note);
        }
    }
    if checks[0].supported {
        for name in ["IORING_OP_ACCEPT", "multishot accept (Linux 5.19)"] {
            assert!(checks.iter().any(|c| c.name == name), "{name} not checked: {checks:?}");
        }
    }
}

#[test]
fn bad_configs_are_refused_with_the_value() {
    let d = CompletionConfig::default();
    for (c, v) in [
        (CompletionConfig { sq_entries: 0, ..d }, "0"),
        (CompletionConfig { cq_entries: 8, ..d }, "8"),
        (CompletionConfig { buffers: 3, ..d }, "3"),
        (CompletionConfig { buffer_size: 0, ..d }, "0 bytes"),
    ] {
        let e = Proactor::open(c).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains(v), "{e}");
    }
}

#[test]
fn echo_with_multishot_accept_and_receive() {
    let Some(mut p) = open(CompletionConfig::default()) else { return };
    eprintln!("setup flags: {:?}", p.setup_flags());
    let l = listener();
    const ACCEPT: Token = Token(0);
    p.accept_multi(l.as_raw_fd(), ACCEPT).unwrap();
    let clients: Vec<TcpStream> = (0..8)
        .map(|i| {
            let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            c.write_all(format!("hello {i}\n").as_bytes()).unwrap();
            c
        })
        .collect();
    let mut conns: HashMap<usize, OwnedFd> = HashMap::new();
    let mut echoed = 0;
    let mut seen = 0u64;
    let ok = run(&mut p, Duration::from_secs(10), |p, c| {
        seen += 1;
        match (c.kind, c.result) {
            (OpKind::AcceptMulti, Ok(Value::Accepted(fd))) => {
                assert!(c.more, "multishot accept ended early");
                let id = conns.len() + 1;
                p.recv_multi(fd.as_raw_fd(), Token(id)).unwrap();
                conns.insert(id, fd);
            }
            (OpKind::RecvMulti, Ok(Value::Received(b))) => {
                let data = p.buffer(&b).to_vec();
                p.recycle(b);
                let fd = conns[&c.token.0].as_raw_fd();
                p.send(fd, SendBuf::from_vec(data), c.token).unwrap();
            }
            (OpKind::Send, Ok(Value::Sent(n))) => {
                let buf = c.buffer.expect("the send buffer comes back");
                assert_eq!(n, buf.remaining().len(), "a short send of a few bytes");
                echoed += 1;
            }
            (k, r) => panic!("unexpected completion {k:?}: {r:?}"),
        }
        echoed == clients.len()
    });
    assert!(ok, "only {echoed} of {} echoed", clients.len());
    for (i, mut c) in clients.into_iter().enumerate() {
        let mut line = vec![0u8; format!("hello {i}\n").len()];
        c.read_exact(&mut line).unwrap();
        assert_eq!(line, format!("hello {i}\n").as_bytes());
    }
    let k = p.counters();
    assert_eq!(k.completions, seen, "{k:?}");
    assert!(k.submitted >= 1 + 8 + 8, "{k:?}");
    assert!(k.enter_calls >= 1, "{k:?}");
    eprintln!("echo: {k:?}, {:.2} enters per completion", k.enter_calls as f64 / seen as f64);
}

#[test]
fn buffer_ring_exhaustion_loses_no_data() {
    // Four 64-byte buffers for sixteen senders of 2,000 bytes each: the ring runs dry, receives
    // end with ENOBUFS, and every byte must still arrive once buffers are recycled and the
    // receives re-armed.
    let Some(mut p) = open(CompletionConfig { buffers: 4, buffer_size: 64, ..Default::default() })
    else {
        return;
    };
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let senders = 16;
    let per = 2000usize;
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    for i in 0..senders {
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        clients.push(c);
        servers.push(s);
        let _ = i;
    }
    for (i, s) in servers.iter().enumerate() {
        p.recv_multi(s.as_raw_fd(), Token(i)).unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let data: Vec<u8> = (0..per).map(|k| (i * 7 + k) as u8).collect();
        c.write_all(&data).unwrap();
    }
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); senders];
    let mut held = Vec::new();
    let mut ended = Vec::new();
    let ok = run(&mut p, Duration::from_secs(20), |p, c| {
        let i = c.token.0;
        match c.result {
            Ok(Value::Received(b)) => {
                got[i].extend_from_slice(p.buffer(&b));
                held.push(b); // hold buffers back so that the ring really runs dry
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                // ENOBUFS: the receive has ended; it is re-armed once buffers are back.
                assert!(!c.more);
                ended.push(i);
            }
            other => panic!("unexpected completion for {i}: {other:?}"),
        }
        if held.len() >= 4 || !ended.is_empty() {
            for b in held.drain(..) {
                p.recycle(b);
            }
            for i in ended.drain(..) {
                p.recv_multi(servers[i].as_raw_fd(), Token(i)).unwrap();
            }
        }
        got.iter().all(|g| g.len() >= per)
    });
    assert!(ok, "bytes received: {:?}", got.iter().map(Vec::len).collect::<Vec<_>>());
    for (i, g) in got.iter().enumerate() {
        let want: Vec<u8> = (0..per).map(|k| (i * 7 + k) as u8).collect();
        assert_eq!(g, &want, "sender {i}'s bytes differ");
    }
    let k = p.counters();
    assert!(k.enobufs >= 1, "four buffers never ran out: {k:?}");
    eprintln!("exhaustion: {k:?}");
}

#[test]
fn timeouts_expire_and_cancel() {
    let Some(mut p) = open(CompletionConfig::default()) else { return };
    p.timeout(Duration::from_millis(20), Token(1)).unwrap();
    let long = p.timeout(Duration::from_secs(30), Token(2)).unwrap();
    let mut expired = false;
    assert!(run(&mut p, Duration::from_secs(5), |_, c| {
        assert_eq!(c.token, Token(1), "{c:?}");
        expired = matches!(c.result, Ok(Value::Expired));
        true
    }));
    assert!(expired);
    p.cancel(long, Token(3)).unwrap();
    let (mut cancelled, mut found) = (false, false);
    assert!(run(&mut p, Duration::from_secs(5), |_, c| {
        match c.token {
            Token(2) => {
                let e = c.result.expect_err("the long timeout expired instead");
                cancelled = e.raw_os_error() == Some(libc::ECANCELED);
            }
            Token(3) => found = matches!(c.result, Ok(Value::Cancelled(_))),
            t => panic!("{t:?}"),
        }
        cancelled && found
    }));
    assert_eq!(p.in_flight(), 0);
}

#[test]
fn close_with_operations_in_flight_and_descriptor_reuse() {
    // A receive is in flight when the connection is closed; its number is then reused at once.
    // The receive must end under its own token, the socket must really close, and nothing of
    // the old connection may arrive under the new one's token.
    let Some(mut p) = open(CompletionConfig::default()) else { return };
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    for round in 0..20 {
        let mut old_peer = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (old, _) = l.accept().unwrap();
        old.set_nonblocking(true).unwrap();
        let number = old.as_raw_fd();
        let old_token = Token(1000 + round * 2);
        let new_token = Token(1001 + round * 2);
        p.recv_multi(number, old_token).unwrap();
        let mut out = Vec::new();
        p.complete(&mut out, Some(Duration::ZERO)).unwrap(); // armed
        assert!(out.is_empty(), "{out:?}");
        p.cancel_and_close(OwnedFd::from(old), old_token).unwrap();
        let (mut recv_ended, mut closed) = (false, false);
        assert!(run(&mut p, Duration::from_secs(5), |_, c| {
            assert_eq!(c.token, old_token, "{c:?}");
            match c.kind {
                OpKind::RecvMulti => {
                    let e = c.result.expect_err("data on a silent connection");
                    assert_eq!(e.raw_os_error(), Some(libc::ECANCELED));
                    assert!(!c.more);
                    recv_ended = true;
                }
                OpKind::Cancel => assert!(matches!(c.result, Ok(Value::Cancelled(1))), "{c:?}"),
                OpKind::Close => {
                    assert!(matches!(c.result, Ok(Value::Done)), "{c:?}");
                    closed = true;
                }
                k => panic!("{k:?}"),
            }
            recv_ended && closed
        }));
        // Really closed: the peer sees end of file.
        old_peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 4];
        assert_eq!(old_peer.read(&mut b).unwrap(), 0, "round {round}: the old socket stayed open");
        // Reuse: a new connection, most likely under the same number.
        let mut new_peer = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (fresh, _) = l.accept().unwrap();
        fresh.set_nonblocking(true).unwrap();
        p.recv_multi(fresh.as_raw_fd(), new_token).unwrap();
        let _ = old_peer.write_all(b"stale"); // to a closed socket: must never surface
        new_peer.write_all(b"new").unwrap();
        let mut data = Vec::new();
        assert!(run(&mut p, Duration::from_secs(5), |p, c| {
            assert_eq!(c.token, new_token, "round {round}: {c:?}");
            if let Ok(Value::Received(b)) = c.result {
                data.extend_from_slice(p.buffer(&b));
                p.recycle(b);
            }
            data.len() >= 3
        }));
        assert_eq!(data, b"new");
        p.cancel_and_close(OwnedFd::from(fresh), new_token).unwrap();
        assert!(run(&mut p, Duration::from_secs(5), |p, _| p.in_flight() == 0));
    }
    assert_eq!(p.buffers_lent(), 0);
}

#[test]
fn short_sends_are_reported_and_finished() {
    let Some(mut p) = open(CompletionConfig::default()) else { return };
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    s.set_nonblocking(true).unwrap();
    let total = 16 << 20; // far above any socket buffer
    let data: std::sync::Arc<[u8]> = (0..total).map(|i| (i % 251) as u8).collect();
    let reader = std::thread::spawn(move || {
        let mut peer = peer;
        peer.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = Vec::with_capacity(total);
        let mut buf = vec![0u8; 65536];
        while got.len() < total {
            match peer.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => panic!("peer read: {e}"),
            }
        }
        got
    });
    p.send(s.as_raw_fd(), SendBuf::shared(data.clone(), 0..total), Token(1)).unwrap();
    let (mut sent, mut short) = (0usize, 0u32);
    assert!(run(&mut p, Duration::from_secs(30), |p, c| {
        let n = match c.result {
            Ok(Value::Sent(n)) => n,
            other => panic!("send: {other:?}"),
        };
        let mut buf = c.buffer.expect("buffer back");
        sent += n;
        buf.advance(n);
        if !buf.is_empty() {
            short += 1;
            p.send(s.as_raw_fd(), buf, Token(1)).unwrap();
        }
        sent >= total
    }));
    let got = reader.join().unwrap();
    assert_eq!(got.len(), total);
    assert!(got[..] == data[..], "the bytes arrived out of order or changed");
    assert!(short >= 1, "16 MiB went out in one send: no short send exercised");
    eprintln!("16 MiB in {} sends ({short} short)", short + 1);
}

#[test]
fn peer_reset_mid_send_is_an_error_not_a_hang() {
    let Some(mut p) = open(CompletionConfig::default()) else { return };
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut peer = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    s.set_nonblocking(true).unwrap();
    let chunk: std::sync::Arc<[u8]> = vec![7u8; 1 << 20].into();
    p.send(s.as_raw_fd(), SendBuf::shared(chunk.clone(), 0..chunk.len()), Token(1)).unwrap();
    p.submit().unwrap(); // queued sends reach the kernel only with an enter
                         // The peer reads a little, then resets the connection.
    peer.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 1024];
    peer.read_exact(&mut b).unwrap();
    ioscale_sys::net::set_linger_zero(peer.as_raw_fd()).unwrap();
    drop(peer);
    let mut failed = None;
    let ok = run(&mut p, Duration::from_secs(20), |p, c| {
        match c.result {
            Ok(Value::Sent(_)) => {
                // Keep sending until the reset surfaces.
                p.send(s.as_raw_fd(), SendBuf::shared(chunk.clone(), 0..chunk.len()), Token(1))
                    .unwrap();
                false
            }
            Err(e) => {
                failed = Some(e);
                true
            }
            other => panic!("{other:?}"),
        }
    });
    assert!(ok, "the reset never surfaced");
    let e = failed.unwrap();
    assert!(
        matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
        "expected a reset or broken pipe, got {e}"
    );
}

#[test]
fn dropped_with_operations_in_flight() {
    // Receives armed and a large send pending when the proactor is dropped: the drop cancels
    // and drains them (or, off the owning thread, leaks the buffers) so that data arriving
    // afterwards cannot be written into freed memory.
    for other_thread in [false, true] {
        let Some(mut p) = open(CompletionConfig::default()) else { return };
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        p.recv_multi(s.as_raw_fd(), Token(1)).unwrap();
        let big: std::sync::Arc<[u8]> = vec![1u8; 8 << 20].into();
        p.send(s.as_raw_fd(), SendBuf::shared(big, 0..8 << 20), Token(2)).unwrap();
        p.submit().unwrap();
        assert_eq!(p.in_flight(), 2);
        if other_thread {
            std::thread::spawn(move || drop(p)).join().unwrap();
        } else {
            drop(p);
        }
        // Data arrives after the drop; this process must carry on unharmed.
        peer.write_all(&[9u8; 4096]).unwrap();
        let churn: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 4096]).collect();
        assert!(churn.iter().enumerate().all(|(i, v)| v.iter().all(|&b| b == i as u8)));
    }
}

#[test]
fn file_read_then_send_in_chunks() {
    // A file larger than one buffer goes out by read-at-offset then send of the very buffer
    // that came back, chunk after chunk, through the ring.
    let Some(mut p) = open(CompletionConfig::default()) else { return };
    let path = std::env::temp_dir().join(format!("ioscale-completion-{}.bin", std::process::id()));
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&path, &content).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    s.set_nonblocking(true).unwrap();
    let total = content.len();
    let reader = std::thread::spawn(move || {
        let mut peer = peer;
        peer.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        while got.len() < total {
            match peer.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => panic!("{e}"),
            }
        }
        got
    });
    const CHUNK: usize = 64 * 1024;
    let mut offset = 0u64;
    p.read_at(file.as_raw_fd(), vec![0u8; CHUNK], offset, Token(1)).unwrap();
    let mut eof = false;
    assert!(run(&mut p, Duration::from_secs(20), |p, c| {
        match (c.kind, c.result) {
            (OpKind::Read, Ok(Value::Read(0))) => eof = true,
            (OpKind::Read, Ok(Value::Read(n))) => {
                let buf = c.buffer.expect("read buffer back");
                assert_eq!(buf.remaining().len(), n);
                offset += n as u64;
                p.send(s.as_raw_fd(), buf, Token(2)).unwrap();
            }
            (OpKind::Send, Ok(Value::Sent(n))) => {
                let mut buf = c.buffer.expect("send buffer back");
                buf.advance(n);
                if !buf.is_empty() {
                    p.send(s.as_raw_fd(), buf, Token(2)).unwrap();
                } else {
                    let v = buf.into_vec().expect("an owned vector");
                    let mut v = v;
                    v.resize(CHUNK, 0);
                    p.read_at(file.as_raw_fd(), v, offset, Token(1)).unwrap();
                }
            }
            (k, r) => panic!("{k:?}: {r:?}"),
        }
        eof
    }));
    let got = reader.join().unwrap();
    assert_eq!(got.len(), total);
    assert!(got == content, "the file arrived changed");
}

#[test]
fn overhead_measures_the_completion_cycle() {
    if Proactor::new().is_err() {
        eprintln!("SKIPPED: completion I/O is not available on this kernel");
        return;
    }
    let points =
        ioscale_dispatch::overhead::run_completion(&[0, 20], 1, Duration::from_millis(20), |_| {})
            .unwrap();
    assert_eq!(points.len(), 2, "{points:?}");
    for p in &points {
        assert_eq!(p.mechanism, "uring-completion");
        assert!(p.error.is_none(), "{p:?}");
        assert!(p.ns_per_cycle.unwrap() > 0.0 && p.cycles >= 64, "{p:?}");
        // Every cycle's byte arrives as one completion; enters per completion is a ratio.
        let w = p.waits_per_event.unwrap();
        assert!((0.0..=2.0).contains(&w), "{p:?}");
    }
}

#[test]
fn a_poll_for_writable_completes_only_once_a_full_socket_drains() {
    let Some(mut p) = open(CompletionConfig::default()) else { return };
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut peer = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (mut s, _) = l.accept().unwrap();
    s.set_nonblocking(true).unwrap();
    // Fill the socket until it takes no more.
    let chunk = vec![7u8; 65536];
    let mut queued = 0usize;
    loop {
        match s.write(&chunk) {
            Ok(n) => queued += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    p.poll_writable(s.as_raw_fd(), Token(9)).unwrap();
    // Nobody reads: the socket stays full, so the poll must not complete.
    assert!(!run(&mut p, Duration::from_millis(300), |_, c| panic!("early completion: {c:?}")));
    // The peer reads everything: now it completes, with POLLOUT among its events.
    peer.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = vec![0u8; 65536];
    let mut got = 0;
    while got < queued {
        got += peer.read(&mut buf).unwrap();
    }
    let mut events = None;
    assert!(run(&mut p, Duration::from_secs(20), |_, c| {
        assert_eq!(c.token, Token(9));
        events = Some(c.result.unwrap());
        true
    }));
    match events {
        Some(Value::Ready(ev)) => assert!(ev & libc::POLLOUT as u32 != 0, "events {ev:#x}"),
        other => panic!("poll: {other:?}"),
    }
}
