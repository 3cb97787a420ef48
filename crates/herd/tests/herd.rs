//! Small real herds (8 forked waiters on a loopback listener), one test per way to wait: the
//! wakeup counts must say what the kernel is known to do. No timing is asserted.

use ioscale_herd::{check_limits, max_select_dups, Herd, HerdSpec, WaitIn};
use std::sync::Mutex;

/// Herds run one at a time: concurrent herds would share the two cores and each other's
/// wakeups would delay the "everyone asleep" checks.
static SERIAL: Mutex<()> = Mutex::new(());

const WAITERS: usize = 8;
const CONNECTS: usize = 12;

fn run_herd(wait_in: WaitIn, dups: usize) -> ioscale_herd::HerdCounts {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut herd = Herd::spawn(HerdSpec { waiters: WAITERS, wait_in, dups })
        .unwrap_or_else(|e| panic!("spawning {wait_in}: {e}"));
    assert_eq!(herd.pids().len(), WAITERS);
    for _ in 0..CONNECTS {
        herd.connect_once().unwrap_or_else(|e| panic!("connect to {wait_in} herd: {e}"));
    }
    let c = herd.finish().unwrap_or_else(|e| panic!("finishing {wait_in}: {e}"));
    eprintln!("{wait_in} dups={dups}: {c:?}");
    // Every connection was accepted exactly once, whoever took it.
    assert_eq!(c.accepted, CONNECTS as u64, "{wait_in}: accepts");
    assert!(c.returned >= c.accepted, "{wait_in}: every accept follows a return from the wait");
    assert_eq!(
        c.returned,
        c.accepted + c.eagain + c.other_errors,
        "{wait_in}: one accept per return"
    );
    c
}

/// A shared listener without exclusivity wakes the whole herd for each connection.
fn assert_herd(wait_in: WaitIn, dups: usize) {
    let c = run_herd(wait_in, dups);
    let per = c.woken as f64 / CONNECTS as f64;
    assert!(
        per > 1.5,
        "{wait_in}: {per:.2} waiters woken per connection, expected the herd (> 1.5 of {WAITERS})"
    );
}

/// Exclusive wakeups and reuseport wake about one waiter per connection.
fn assert_one(wait_in: WaitIn) -> ioscale_herd::HerdCounts {
    let c = run_herd(wait_in, 0);
    let per = c.woken as f64 / CONNECTS as f64;
    assert!(per <= 2.0, "{wait_in}: {per:.2} waiters woken per connection, expected about one");
    assert!(
        c.woken >= CONNECTS as u64 / 2,
        "{wait_in}: {} wakeups for {CONNECTS} connections",
        c.woken
    );
    c
}

#[test]
fn select_wakes_the_herd() {
    assert_herd(WaitIn::Select, 0);
}

#[test]
fn poll_wakes_the_herd() {
    assert_herd(WaitIn::Poll, 0);
}

#[test]
fn epoll_wakes_the_herd() {
    assert_herd(WaitIn::Epoll, 0);
}

#[test]
fn select_with_dups_wakes_the_herd() {
    assert_herd(WaitIn::Select, 50);
}

#[test]
fn epoll_with_dups_wakes_the_herd() {
    assert_herd(WaitIn::Epoll, 50);
}

#[test]
fn epoll_exclusive_wakes_one() {
    // Its fairness is reported, not asserted: which waiter the kernel picks is its business.
    let c = assert_one(WaitIn::EpollExclusive);
    eprintln!("epoll-exclusive: the busiest waiter took {} of {CONNECTS}", c.busiest_accepted);
}

#[test]
fn epoll_exclusive_rotate_wakes_one_and_shares_the_connections() {
    let c = assert_one(WaitIn::EpollExclusiveRotate);
    // Each waiter goes to the back of the queue after its wakeup, so the connections go round.
    assert!(
        c.busiest_accepted <= (CONNECTS / 2) as u64 && c.waiters_accepting >= 4,
        "rotation should spread {CONNECTS} connections over the {WAITERS} waiters: {c:?}"
    );
}

#[test]
fn reuseport_wakes_one() {
    assert_one(WaitIn::Reuseport);
}

#[test]
fn dropping_a_herd_kills_and_reaps_every_waiter() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let herd = Herd::spawn(HerdSpec { waiters: 4, wait_in: WaitIn::Poll, dups: 0 }).unwrap();
    let pids = herd.pids().to_vec();
    for &p in &pids {
        assert!(std::path::Path::new(&format!("/proc/{p}")).exists(), "waiter {p} should run");
    }
    drop(herd);
    for &p in &pids {
        // Reaped: no zombie left (the pid is not reused this fast on a 32k pid space).
        assert!(!std::path::Path::new(&format!("/proc/{p}")).exists(), "waiter {p} still exists");
    }
}

#[test]
fn limits_refuse_impossible_herds_with_one_sentence() {
    let e = check_limits(0, WaitIn::Epoll, 0).unwrap_err();
    assert!(e.to_string().contains("--waiters 0"), "{e}");
    let e = check_limits(1, WaitIn::Select, max_select_dups() + 1).unwrap_err();
    assert!(e.to_string().contains("FD_SETSIZE"), "{e}");
    let e = check_limits(1, WaitIn::Poll, 10_000_000).unwrap_err();
    assert!(e.to_string().contains("RLIMIT_NOFILE"), "{e}");
    let e = check_limits(10_000_000, WaitIn::Poll, 0).unwrap_err();
    assert!(e.to_string().contains("--waiters 10000000"), "{e}");
    check_limits(8, WaitIn::Select, max_select_dups()).unwrap();
}

#[test]
fn wait_in_names_round_trip_and_bad_names_list_the_choices() {
    for w in WaitIn::ALL {
        assert_eq!(w.name().parse::<WaitIn>().unwrap(), w);
    }
    let e = "kqueue".parse::<WaitIn>().unwrap_err().to_string();
    assert!(e.contains("`kqueue`") && e.contains("epoll-exclusive"), "{e}");
}
