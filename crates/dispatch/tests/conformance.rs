//! The conformance suite: every test runs once per mechanism, on real sockets.

mod util;

use ioscale_dispatch::{Events, Interest, Mechanism, Token, Waker};
use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use util::*;

/// Runs a test function once per mechanism: `for_each_mechanism!(name)` makes a module `name`
/// with one `#[test]` per mechanism, each calling `name(Mechanism::X)`.
macro_rules! for_each_mechanism {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            use super::*;
            #[test] fn select() { super::$test(Mechanism::Select) }
            #[test] fn poll() { super::$test(Mechanism::Poll) }
            #[test] fn devpoll() { super::$test(Mechanism::Devpoll) }
            #[test] fn epoll() { super::$test(Mechanism::Epoll) }
            #[test] fn epoll_et() { super::$test(Mechanism::EpollEt) }
            #[test] fn epoll_oneshot() { super::$test(Mechanism::EpollOneshot) }
            #[test] fn uring() { super::$test(Mechanism::Uring) }
            #[test] fn rtsig() { super::$test(Mechanism::RtSig) }
            #[test] fn rtsig_batch() { super::$test(Mechanism::RtSigBatch) }
            #[test] fn rtsig_perfd() { super::$test(Mechanism::RtSigPerFd) }
            #[test] fn hybrid() { super::$test(Mechanism::Hybrid) }
        }
    )*};
}

for_each_mechanism!(
    readable_on_data,
    writable_on_connect,
    hangup_on_peer_close,
    error_on_reset,
    reregister_changes_interest,
    no_event_after_deregister,
    no_stale_event_under_reused_fd,
    timeout_zero_returns_at_once,
    timeout_finite_is_honoured,
    no_timeout_woken_from_another_thread,
    many_descriptors,
    high_descriptor_numbers,
    tcp_past_fd_setsize,
    events_are_hints_and_quiet_after_drain,
    double_register_and_unknown_deregister,
    counters_count,
    exclusive_registration,
    small_event_buffer_reports_everyone,
);

const SEC: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(100);

fn readable_on_data(m: Mechanism) {
    let Some(mut d) = open(m) else { return };
    let (a, mut b) = pair();
    d.register(a.as_raw_fd(), Token(1), Interest::READABLE).unwrap();
    let early = collect(&mut *d, Duration::ZERO);
    assert!(early.is_empty(), "{m}: event before any data: {early:?}");
    b.write_all(b"hello").unwrap();
    let ev = wait_for(&mut *d, Token(1), SEC).unwrap_or_else(|| panic!("{m}: no readable event"));
    assert!(ev.is_readable(), "{m}: {ev:?}");
    assert!(!ev.is_error(), "{m}: {ev:?}");
}

fn writable_on_connect(m: Mechanism) {
    let Some(mut d) = open(m) else { return };
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let std::net::SocketAddr::V4(addr) = l.local_addr().unwrap() else { unreachable!() };
    let s = ioscale_sys::net::connect_nonblocking(addr.into()).unwrap();
    d.register(s.as_raw_fd(), Token(9), Interest::WRITABLE).unwrap();
    let ev = wait_for(&mut *d, Token(9), SEC).unwrap_or_else(|| panic!("{m}: no writable event"));
    assert!(ev.is_writable(), "{m}: {ev:?}");
    assert!(
        ioscale_sys::net::take_socket_error(s.as_raw_fd()).unwrap().is_none(),
        "{m}: connect failed"
    );
    let _accepted = l.accept().unwrap();
}

fn hangup_on_peer_close(m: Mechanism) {
    let Some(mut d) = open(m) else { return };
    let (mut a, b) = pair();
    d.register(a.as_raw_fd(), Token(2), Interest::READABLE).unwrap();
    drop(b);
    let ev = wait_for(&mut *d, Token(2), SEC).unwrap_or_else(|| panic!("{m}: nothing on hangup"));
    assert!(ev.is_readable(), "{m}: {ev:?}");
    // select cannot say "hangup"; the read's end of file does.
    let mut buf = [0u8; 8];
    assert!(ev.is_hangup() || a.read(&mut buf).unwrap() == 0, "{m}: {ev:?} and no EOF");
    if m != Mechanism::Select {
        assert!(ev.is_hangup(), "{m} should report the hangup itself: {ev:?}");
    }
}

fn error_on_reset(m: Mechanism) {
    let Some(mut d) = open(m) else { return };
    let (client, server) = tcp_pair();
    d.register(server.as_raw_fd(), Token(3), Interest::READABLE).unwrap();
    ioscale_sys::net::set_linger_zero(client.as_raw_fd()).unwrap();
    drop(client); // sends RST
    let ev = wait_for(&mut *d, Token(3), SEC).unwrap_or_else(|| panic!("{m}: nothing on reset"));
    assert!(ev.is_readable(), "{m}: {ev:?}");
    let mut buf = [0u8; 8];
    let read = (&server).read(&mut buf);
    let reset = matches!(&read, Err(e) if e.kind() == ErrorKind::ConnectionReset);
    assert!(ev.is_error() || reset, "{m}: {ev:?}, read {read:?}");
    if m != Mechanism::Select {
        assert!(ev.is_error() || ev.is_hangup(), "{m} should flag the reset: {ev:?}");
    }
}

fn reregister_changes_interest(m: Mechanism) {
    let Some(mut d) = open(m) else { return };
    let (a, _b) = pair();
    d.register(a.as_raw_fd(), Token(4), Interest::READABLE).unwrap();
    let quiet = collect(&mut *d, Duration::ZERO);
    assert!(quiet.is_empty(), "{m}: readable interest on an empty socket reported {quiet:?}");
    d.reregister(a.as_raw_fd(), Token(5), Interest::WRITABLE).unwrap();
    let ev = wait_for(&mut *d, Token(5), SEC)
        .unwrap_or_else(|| panic!("{m}: no writable after reregister"));
    assert!(ev.is_writable(), "{m}: {ev:?}");
    // And back to readable only: writability is no longer reported.
    d.reregister(a.as_raw_fd(), Token(6), Interest::READABLE).unwrap();
    let after = collect(&mut *d, QUIET);
    assert!(
        after.iter().all(|e| e.token() != Token(5)),
        "{m}: old token after reregister: {after:?}"
    );
    assert!(after.iter().all(|e| !e.is_writable()), "{m}: writable after narrowing: {after:?}");
}

fn no_event_after_deregister(m: Mechanism) {
    let Some(mut d) = open(m) else { return };
    let (a, mut b) = pair();
    d.register(a.as_raw_fd(), Token(7), Interest::READABLE).unwrap();
    b.write_all(b"x").unwrap();
    d.deregister(a.as_raw_fd()).unwrap();
    let evs = collect(&mut *d, QUIET);
    assert!(evs.is_empty(), "{m}: events after deregister: {evs:?}");
    assert_eq!(d.len(), 0, "{m}");
}

fn no_stale_event_under_reused_fd(m: Mechanism) {
    let Some(mut d) = open(m) else { return };
    let (old, mut old_peer) = pair();
    let number = old.as_raw_fd();
    d.register(number, Token(10), Interest::READABLE).unwrap();
    old_peer.write_all(b"stale").unwrap(); // a notice is now pending for `number`
                                           // The caller deregisters, and the number is then reused by a different socket (dup3 keeps
                                           // the number ours throughout, so no other thread can take it in between).
    d.deregister(number).unwrap();
    let (fresh, _fresh_peer) = pair();
    let old_owned: std::os::fd::OwnedFd = old.into();
    ioscale_sys::fd::dup_onto(fresh.as_raw_fd(), &old_owned).unwrap();
    drop(fresh);
    d.register(number, Token(11), Interest::READABLE).unwrap();
    let evs = collect(&mut *d, QUIET);
    assert!(evs.iter().all(|e| e.token() != Token(10)), "{m}: event under the old token: {evs:?}");
    assert!(
        evs.iter().all(|e| e.token() != Token(11)),
        "{m}: the old socket's notice reached the new registration: {evs:?}"
    );
    // The new registration works.
    _fresh_peer_write(&_fresh_peer);
    let ev = wait_for(&mut *d, Token(11), SEC)
        .unwrap_or_else(|| panic!("{m}: reused fd never reported"));
    assert!(ev.is_readable());
}

fn _fresh_peer_write(s: &std::os::unix::net::UnixStream) {
    (&*s).write_all(b"new").unwrap();
}

fn timeout_zero_returns_at_once(m: Mechanism) {
    let Some(mut d) = open(m) else { return };
    let (a, _b) = pair();
    d.register(a.as_raw_fd(), Token(1), Interest::READABLE).unwrap();
    let mut events = Events::with_capacity(8);
    let t = Instant::now();
    let n = d.wait(&mut events, Some(Duration::ZERO)).unwrap();
    assert_eq!(n, 0, "{m}");
    // Not a timing assertion of speed: a zero timeout must not block for a second.
    assert!(t.elapsed() < Duration::from_secs(1), "{m}: zero timeout blocked");
}

fn timeout_finite_is_honoured(m: Mechanism) {
    let Some(mut d) = open(m) else { return };
    let (a, _b) = pair();
    d.register(a.as_raw_fd(), Token(1), Interest::READABLE).unwrap();
    let mut events = Events::with_capacity(8);
    let want = Duration::from_millis(60);
    let t = Instant::now();
    // Early returns (EINTR) are allowed; loop until the time is up, counting waits.
    let mut waits = 0;
    while t.elapsed() < want {
        d.wait(&mut events, Some(want - t.elapsed())).unwrap();
        assert!(events.is_empty(), "{m}: {events:?}");
        waits += 1;
        assert!(waits < 100, "{m}: wait keeps returning early");
    }
    assert!(waits <= 3, "{m}: a finite timeout returned early {waits} times");
}

fn no_timeout_woken_from_another_thread(m: Mechanism) {
    let Some(mut d) = open(m) else { return };
    let waker = std::sync::Arc::new(Waker::new(&mut *d, Token(99)).unwrap());
    let w = waker.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        w.wake().unwrap();
    });
    let mut events = Events::with_capacity(8);
    let mut woken = false;
    for _ in 0..10 {
        d.wait(&mut events, None).unwrap();
        if events.iter().any(|e| e.token() == Token(99)) {
            woken = true;
            break;
        }
    }
    t.join().unwrap();
    assert!(woken, "{m}: wait(None) not woken");
    waker.reset(&mut *d).unwrap();
    // A second wake works too (re-armed where needed).
    waker.wake().unwrap();
    assert!(wait_for(&mut *d, Token(99), SEC).is_some(), "{m}: second wake lost");
}

fn many_descriptors(m: Mechanism) {
    let _g = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut d) = open(m) else { return };
    // 5,000 pairs: 10,000 descriptors, most of them far above FD_SETSIZE (select included).
    let count = 5000;
    let pairs: Vec<_> = (0..count).map(|_| pair()).collect();
    for (i, (a, _)) in pairs.iter().enumerate() {
        d.register(a.as_raw_fd(), Token(i), Interest::READABLE).unwrap();
    }
    assert_eq!(d.len(), count, "{m}");
    let ready: BTreeSet<usize> = (0..count).filter(|i| i % 7 == 3).collect();
    for &i in &ready {
        (&pairs[i].1).write_all(b"r").unwrap();
    }
    let mut seen = BTreeSet::new();
    let mut events = Events::with_capacity(128);
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < ready.len() && Instant::now() < deadline {
        d.wait(&mut events, Some(Duration::from_millis(200))).unwrap();
        for e in &events {
            assert!(ready.contains(&e.token().0), "{m}: event for idle descriptor {:?}", e.token());
            seen.insert(e.token().0);
        }
    }
    assert_eq!(seen, ready, "{m}: not every ready descriptor was reported");
}

fn high_descriptor_numbers(m: Mechanism) {
    let Some(mut d) = open(m) else { return };
    let (a, mut b) = pair();
    let high = ioscale_sys::fd::dup_at_least(a.as_raw_fd(), 1500).unwrap();
    // Above the C library's FD_SETSIZE (1024): select's bitmaps grow to it.
    d.register(high.as_raw_fd(), Token(1), Interest::READABLE).unwrap();
    assert_eq!(d.max_fds(), None, "{m}");
    b.write_all(b"x").unwrap();
    assert!(wait_for(&mut *d, Token(1), SEC).is_some(), "{m}: high fd not reported");
}

/// TCP connections numbered past FD_SETSIZE, on one dispatcher: accepted (the listener is
/// readable), written to (writable), and data from some of them reported readable, the rest
/// quiet. Serialised with the other tests that hold thousands of descriptors.
fn tcp_past_fd_setsize(m: Mechanism) {
    let _g = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut d) = open(m) else { return };
    // A backlog that holds every connection before the first accept.
    let any = "127.0.0.1:0".parse().unwrap();
    let l =
        std::net::TcpListener::from(ioscale_sys::net::listener(any, false, Some(1024)).unwrap());
    let addr = l.local_addr().unwrap();
    d.register(l.as_raw_fd(), Token(usize::MAX), Interest::READABLE).unwrap();
    // Enough connections (two descriptors each) that the last ones are numbered above 1,024.
    let n = 700;
    let clients: Vec<std::net::TcpStream> =
        (0..n).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
    let mut servers = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while servers.len() < n && Instant::now() < deadline {
        let ev = wait_for(&mut *d, Token(usize::MAX), SEC);
        assert!(ev.is_some(), "{m}: the listener was not reported readable");
        while let Ok((s, _)) = l.accept() {
            s.set_nonblocking(true).unwrap();
            servers.push(s);
        }
        if is_oneshot(&*d) {
            d.reregister(l.as_raw_fd(), Token(usize::MAX), Interest::READABLE).unwrap();
        }
    }
    assert_eq!(servers.len(), n, "{m}: connections accepted");
    let top = servers.iter().map(|s| s.as_raw_fd()).max().unwrap();
    assert!(top > 1024, "{m}: the highest descriptor is {top}, not past FD_SETSIZE");
    d.deregister(l.as_raw_fd()).unwrap();
    for (i, s) in servers.iter().enumerate() {
        d.register(s.as_raw_fd(), Token(i), Interest::READABLE).unwrap();
    }
    // Data from every 50th client, the last (highest-numbered) one included.
    let ready: BTreeSet<usize> = (0..n).filter(|i| i % 50 == 0 || *i == n - 1).collect();
    for &i in &ready {
        (&clients[i]).write_all(b"q").unwrap();
    }
    let mut seen = BTreeSet::new();
    let mut events = Events::with_capacity(64);
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < ready.len() && Instant::now() < deadline {
        d.wait(&mut events, Some(Duration::from_millis(200))).unwrap();
        for e in &events {
            let i = e.token().0;
            assert!(ready.contains(&i), "{m}: event for a quiet connection {i}");
            seen.insert(i);
            // Drained, so that a level mechanism does not report it again.
            let _ = (&servers[i]).read(&mut [0u8; 8]);
        }
    }
    assert_eq!(seen, ready, "{m}: not every ready connection past FD_SETSIZE was reported");
    // The highest-numbered connection can be written to through the dispatcher too.
    let last = servers.iter().max_by_key(|s| s.as_raw_fd()).unwrap();
    d.reregister(last.as_raw_fd(), Token(7777), Interest::WRITABLE).unwrap();
    let ev = wait_for(&mut *d, Token(7777), SEC).unwrap_or_else(|| panic!("{m}: not writable"));
    assert!(ev.is_writable(), "{m}: {ev:?}");
}

fn events_are_hints_and_quiet_after_drain(m: Mechanism) {
    let Some(mut d) = open(m) else { return };
    let (mut a, mut b) = pair();
    d.register(a.as_raw_fd(), Token(1), Interest::READABLE).unwrap();
    b.write_all(b"abc").unwrap();
    assert!(wait_for(&mut *d, Token(1), SEC).is_some(), "{m}");
    // Another reader (here: us, early) drains the data before the handler runs: the handler's
    // read must see EAGAIN, which is a normal outcome of a hint.
    let mut buf = [0u8; 16];
    assert_eq!(a.read(&mut buf).unwrap(), 3);
    assert_eq!(a.read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
    if is_oneshot(&*d) {
        d.reregister(a.as_raw_fd(), Token(1), Interest::READABLE).unwrap();
    }
    // Once drained, a level mechanism is quiet; a hint mechanism may repeat a notice at most once.
    let evs = collect(&mut *d, QUIET);
    let repeats = evs.iter().filter(|e| e.token() == Token(1)).count();
    if d.events_are_hints() {
        assert!(repeats <= 1, "{m}: {repeats} notices for a drained descriptor");
        if repeats == 1 {
            assert_eq!(a.read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
        }
    } else {
        assert_eq!(repeats, 0, "{m}: level mechanism reported a drained descriptor: {evs:?}");
    }
}

fn double_register_and_unknown_deregister(m: Mechanism) {
    let Some(mut d) = open(m) else { return };
    let (a, _b) = pair();
    d.register(a.as_raw_fd(), Token(1), Interest::READABLE).unwrap();
    let e = d.register(a.as_raw_fd(), Token(2), Interest::READABLE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{m}: {e}");
    let (c, _d2) = pair();
    let e = d.deregister(c.as_raw_fd()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{m}: {e}");
    let e = d.reregister(c.as_raw_fd(), Token(3), Interest::READABLE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{m}: {e}");
    let e = d.register(-1, Token(4), Interest::READABLE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{m}: {e}");
}

fn counters_count(m: Mechanism) {
    let Some(mut d) = open(m) else { return };
    let (a, mut b) = pair();
    d.register(a.as_raw_fd(), Token(1), Interest::READABLE).unwrap();
    b.write_all(b"x").unwrap();
    assert!(wait_for(&mut *d, Token(1), SEC).is_some());
    let c = d.counters();
    assert!(c.wait_calls >= 1, "{m}: {c:?}");
    assert!(c.events >= 1, "{m}: {c:?}");
    assert!(c.events <= c.wait_calls * 64, "{m}: {c:?}");
    match m {
        Mechanism::Select | Mechanism::Poll => assert_eq!(c.interest_syscalls, 0, "{m}: {c:?}"),
        // Registrations ride in the wait's io_uring_enter: no enter was made only to submit them.
        Mechanism::Uring => assert_eq!(c.interest_syscalls, 0, "{m} batches changes: {c:?}"),
        _ => assert!(c.interest_syscalls >= 1, "{m} keeps its set in the kernel: {c:?}"),
    }
}

fn exclusive_registration(m: Mechanism) {
    let Some(mut d) = open(m) else { return };
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let r = d.register_exclusive(l.as_raw_fd(), Token(1), Interest::READABLE);
    if m == Mechanism::Epoll || m == Mechanism::EpollEt {
        r.unwrap();
        let _c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert!(wait_for(&mut *d, Token(1), SEC).is_some(), "{m}: exclusive listener not reported");
    } else {
        let e = r.expect_err("only epoll registers exclusively");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("EPOLLEXCLUSIVE"), "{e}");
    }
}

fn small_event_buffer_reports_everyone(m: Mechanism) {
    let Some(mut d) = open(m) else { return };
    let pairs: Vec<_> = (0..10).map(|_| pair()).collect();
    for (i, (a, b)) in pairs.iter().enumerate() {
        d.register(a.as_raw_fd(), Token(i), Interest::READABLE).unwrap();
        (&*b).write_all(b"z").unwrap();
    }
    // Two events per wait: every descriptor must still be reported (no starvation of the tail).
    let mut events = Events::with_capacity(2);
    let mut seen = BTreeSet::new();
    for _ in 0..50 {
        d.wait(&mut events, Some(SEC)).unwrap();
        assert!(events.len() <= 2, "{m}: buffer overrun");
        for e in &events {
            seen.insert(e.token().0);
            let mut buf = [0u8; 4];
            let _ = (&pairs[e.token().0].0).read(&mut buf);
        }
        if seen.len() == 10 {
            break;
        }
    }
    assert_eq!(seen.len(), 10, "{m}: only {seen:?} reported");
}
