//! io_uring-specific traps, beyond the conformance suite: the kernel ending a multishot poll,
//! completion-ring overflow with many ready descriptors, and cancellations in flight while a
//! descriptor number is reused. Real sockets, a real ring; skipped with a reason where the kernel
//! refuses io_uring.

use ioscale_dispatch::mechanism::uring::{Uring, UringConfig};
use ioscale_dispatch::sys::uring::setup_refusal;
use ioscale_dispatch::{Dispatcher, Event, Events, Interest, Token};
use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

fn open(sq: u32, cq: u32) -> Option<Uring> {
    match Uring::open(UringConfig { sq_entries: sq, cq_entries: cq }) {
        Ok(u) => Some(u),
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            eprintln!("SKIPPED: io_uring is not available on this kernel: {e}");
            None
        }
        Err(e) => panic!("uring failed to open: {e}"),
    }
}

fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

fn drain(mut s: &UnixStream) -> usize {
    let mut buf = [0u8; 256];
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return total,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Every event during `within`.
fn collect(d: &mut Uring, within: Duration) -> Vec<Event> {
    let mut events = Events::with_capacity(64);
    let mut all = Vec::new();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        d.wait(&mut events, Some(deadline.saturating_duration_since(Instant::now()))).unwrap();
        all.extend(events.iter().copied());
    }
    all
}

fn wait_for(d: &mut Uring, token: Token, within: Duration) -> Option<Event> {
    let mut events = Events::with_capacity(64);
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        d.wait(&mut events, Some(deadline.saturating_duration_since(Instant::now()))).unwrap();
        if let Some(e) = events.iter().find(|e| e.token() == token) {
            return Some(*e);
        }
    }
    None
}

const SEC: Duration = Duration::from_secs(5);

#[test]
fn multishot_rearmed_after_the_kernel_ends_it() {
    // A two-entry completion ring: the third notice for one descriptor cannot be posted, so
    // the kernel ends the multishot poll (a final completion without IORING_CQE_F_MORE).
    let Some(mut d) = open(2, 2) else { return };
    let (a, mut b) = pair();
    d.register(a.as_raw_fd(), Token(1), Interest::READABLE).unwrap();
    let mut events = Events::with_capacity(8);
    d.wait(&mut events, Some(Duration::ZERO)).unwrap(); // submits the arm
    assert!(events.is_empty(), "{events:?}");
    for _ in 0..10 {
        b.write_all(b"x").unwrap(); // one wake-up, one notice, per write
    }
    let ev = wait_for(&mut d, Token(1), SEC).expect("no readable event");
    assert!(ev.is_readable(), "{ev:?}");
    assert!(d.rearms() >= 1, "the kernel never ended the multishot: {:?}", d.counters());
    assert!(d.counters().recoveries >= 1, "{:?}", d.counters());
    assert_eq!(drain(&a), 10);
    // Once drained and quiet, the re-armed poll reports the next write.
    let _ = collect(&mut d, Duration::from_millis(50));
    b.write_all(b"y").unwrap();
    let ev = wait_for(&mut d, Token(1), SEC).expect("the re-armed poll reported nothing");
    assert!(ev.is_readable(), "{ev:?}");
    assert_eq!(drain(&a), 1);
}

#[test]
fn cq_overflow_with_many_ready_descriptors_loses_no_readiness() {
    // 200 ready descriptors into a 4-entry completion ring: completions overflow to the
    // kernel's list and multishots end; every descriptor must still be reported, twice over.
    let Some(mut d) = open(2, 4) else { return };
    let count = 200;
    let pairs: Vec<_> = (0..count).map(|_| pair()).collect();
    for (_, b) in &pairs {
        (&*b).write_all(b"r").unwrap();
    }
    for (i, (a, _)) in pairs.iter().enumerate() {
        d.register(a.as_raw_fd(), Token(i), Interest::READABLE).unwrap();
    }
    for round in 0..2 {
        let mut seen = BTreeSet::new();
        let mut events = Events::with_capacity(16);
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen.len() < count && Instant::now() < deadline {
            d.wait(&mut events, Some(Duration::from_millis(200))).unwrap();
            for e in &events {
                assert!(e.token().0 < count, "unknown token {:?}", e.token());
                assert!(e.is_readable(), "{e:?}");
                drain(&pairs[e.token().0].0);
                seen.insert(e.token().0);
            }
        }
        assert_eq!(seen.len(), count, "round {round}: only {} of {count} reported", seen.len());
        // Everyone ready again: the re-armed polls must all fire.
        for (_, b) in &pairs {
            (&*b).write_all(b"s").unwrap();
        }
    }
    let c = d.counters();
    assert!(c.overflows >= 1, "a 4-entry ring never overflowed: {c:?}");
    assert!(d.rearms() >= 1, "no multishot was ended and re-armed: {c:?}");
    assert!(c.interest_syscalls >= 1, "a 2-entry submission ring needs submit-only enters: {c:?}");
}

#[test]
fn cancel_in_flight_with_descriptor_reuse() {
    // The old socket keeps producing notices while its removal is still queued, and its number
    // is reused at once: none of those notices may reach the caller, under either token.
    let Some(mut d) = open(8, 16) else { return };
    for round in 0..50 {
        let (old, mut old_peer) = pair();
        let number = old.as_raw_fd();
        d.register(number, Token(10), Interest::READABLE).unwrap();
        let mut events = Events::with_capacity(8);
        d.wait(&mut events, Some(Duration::ZERO)).unwrap(); // armed in the kernel
        old_peer.write_all(b"stale").unwrap(); // a completion now sits in the ring
        d.deregister(number).unwrap(); // removal queued, not yet submitted
        let (fresh, fresh_peer) = pair();
        let old_owned: OwnedFd = old.into();
        ioscale_sys::fd::dup_onto(fresh.as_raw_fd(), &old_owned).unwrap();
        drop(fresh);
        d.register(number, Token(11), Interest::READABLE).unwrap();
        // The old poll still holds the old file until the removal is submitted: more notices.
        old_peer.write_all(b"more").unwrap();
        let evs = collect(&mut d, Duration::from_millis(20));
        assert!(evs.iter().all(|e| e.token() != Token(10)), "round {round}: old token: {evs:?}");
        assert!(
            evs.iter().all(|e| e.token() != Token(11)),
            "round {round}: the old socket's notice reached the new registration: {evs:?}"
        );
        // The removal went in with that wait: the old socket is really closed now.
        let mut buf = [0u8; 8];
        let deadline = Instant::now() + SEC;
        loop {
            match old_peer.read(&mut buf) {
                // Closed with unread data: a reset, or end of file.
                Ok(0) => break,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Ok(n) => panic!("round {round}: {n} unexpected bytes"),
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("round {round}: the old socket was never released: {e}"),
            }
        }
        (&fresh_peer).write_all(b"new").unwrap();
        let ev = wait_for(&mut d, Token(11), SEC).expect("the reused number was never reported");
        assert!(ev.is_readable());
        d.deregister(number).unwrap();
        drop(old_owned);
    }
    assert_eq!(d.len(), 0);
}

#[test]
fn reregister_while_notices_are_queued_drops_the_old_token() {
    // Notices gathered for a registration but not yet handed out (small buffer) must not come
    // back under the token it had before a reregister.
    let Some(mut d) = open(8, 64) else { return };
    let pairs: Vec<_> = (0..4).map(|_| pair()).collect();
    for (i, (a, b)) in pairs.iter().enumerate() {
        d.register(a.as_raw_fd(), Token(i), Interest::READABLE).unwrap();
        (&*b).write_all(b"z").unwrap();
    }
    let mut events = Events::with_capacity(1);
    d.wait(&mut events, Some(SEC)).unwrap();
    assert_eq!(events.len(), 1);
    let first = events.iter().next().unwrap().token().0;
    // Rename every other registration while their notices wait in the dispatcher's queue.
    for (i, (a, _)) in pairs.iter().enumerate() {
        if i != first {
            d.reregister(a.as_raw_fd(), Token(100 + i), Interest::READABLE).unwrap();
        }
    }
    let evs = collect(&mut d, Duration::from_millis(100));
    for e in &evs {
        assert!(e.token().0 >= 100 || e.token().0 == first, "old token after reregister: {e:?}");
    }
    // The re-arms re-report the still-unread data under the new tokens.
    let renamed: BTreeSet<usize> = evs.iter().map(|e| e.token().0).filter(|&t| t >= 100).collect();
    assert_eq!(renamed.len(), 3, "{evs:?}");
}

#[test]
fn failed_arm_is_reported_as_an_error_event() {
    // Registration changes are batched; an arm the kernel refuses (the descriptor was closed
    // before the batch went in, breaking the contract) comes back as an error under its token.
    let Some(mut d) = open(8, 16) else { return };
    let (a, _b) = pair();
    let fd = ioscale_sys::fd::dup_at_least(a.as_raw_fd(), 900).unwrap();
    let number = fd.as_raw_fd();
    d.register(number, Token(5), Interest::READABLE).unwrap();
    drop(fd);
    let ev = wait_for(&mut d, Token(5), SEC).expect("the failed arm was not reported");
    assert!(ev.is_error(), "{ev:?}");
    d.deregister(number).unwrap();
}

#[test]
fn bad_ring_sizes_are_refused_with_the_value() {
    for (sq, cq) in [(0, 8), (8, 4), (65536, 65536), (8, 1 << 20)] {
        let e = Uring::open(UringConfig { sq_entries: sq, cq_entries: cq }).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{sq}/{cq}: {e}");
        let v = if sq == 0 || sq > 32768 { sq } else { cq };
        assert!(e.to_string().contains(&v.to_string()), "{e}");
    }
}

#[test]
fn setup_refusals_name_the_cause() {
    let e = setup_refusal(std::io::Error::from_raw_os_error(libc::ENOSYS));
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.to_string().contains("seccomp") && e.to_string().contains("ENOSYS"), "{e}");
    let e = setup_refusal(std::io::Error::from_raw_os_error(libc::EPERM));
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.to_string().contains("EPERM"), "{e}");
    // Anything else passes through unchanged.
    let e = setup_refusal(std::io::Error::from_raw_os_error(libc::EIO));
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
}

#[test]
fn survives_the_registering_thread_exiting() {
    // io_uring cancels a task's requests when the task exits. A dispatcher is Send: registered
    // on one thread, then driven from another after the first has exited, its polls come back
    // cancelled by the kernel and must be re-armed, not lost.
    let Some(d) = open(8, 64) else { return };
    let (a, mut b) = pair();
    let fd = a.as_raw_fd();
    let mut d = std::thread::spawn(move || {
        let mut d = d;
        d.register(fd, Token(3), Interest::READABLE).unwrap();
        let mut events = Events::with_capacity(8);
        d.wait(&mut events, Some(Duration::ZERO)).unwrap(); // armed by this thread
        d
    })
    .join()
    .unwrap();
    b.write_all(b"after").unwrap();
    let ev = wait_for(&mut d, Token(3), SEC).expect("the poll died with its thread");
    assert!(ev.is_readable(), "{ev:?}");
    assert_eq!(drain(&a), 5);
    eprintln!("after the thread exited: {} re-arms", d.rearms());
}
