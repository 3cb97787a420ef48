//! The thundering herd inside the server (issue 8, part 2): `--workers N` event loops sharing one
//! listening socket, plainly, with `EPOLLEXCLUSIVE`, with the rotating exclusive registration, or
//! with one `SO_REUSEPORT` socket each — measured the way `ioscale herd` measures its waiters:
//! every worker's voluntary context switches (one per sleep in its wait, read from
//! `/proc/self/task/TID/status`), its listener notices and the notices whose `accept` found
//! nothing (`EAGAIN`). Connections arrive one at a time with the workers asleep in between, so
//! the kernel's wakeups are counted, not timed.

mod util;

use ioscale_dispatch::Mechanism;
use ioscale_server::ListenerMode;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use util::{root, TestServer};

const WORKERS: usize = 6;
const CONNECTS: u64 = 30;

#[derive(Debug)]
struct Herd {
    accepted: u64,
    /// Workers' voluntary switches per accepted connection.
    woken_per_conn: f64,
    eagain: u64,
    busiest_share: f64,
}

fn col(v: &Value, key: &str) -> Vec<u64> {
    v["per_worker"].as_array().unwrap().iter().map(|w| w[key].as_u64().unwrap()).collect()
}

fn run(setup: &str, tune: impl FnOnce(&mut ioscale_server::Config)) -> Herd {
    let root = root("herd");
    let s = TestServer::start(Mechanism::Epoll, &root, |c| {
        c.workers = WORKERS;
        tune(c);
    });
    std::thread::sleep(Duration::from_millis(200));
    let a = s.handle.stats();
    for _ in 0..CONNECTS {
        let mut t = TcpStream::connect(s.addr).unwrap();
        t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        t.write_all(b"GET /1b.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = Vec::new();
        t.read_to_end(&mut out).unwrap();
        assert!(out.starts_with(b"HTTP/1.1 200"), "{setup}: {:?}", String::from_utf8_lossy(&out));
        // Let every woken worker go back to sleep before the next connection.
        std::thread::sleep(Duration::from_millis(40));
    }
    let b = s.handle.stats();
    let d =
        |k: &str| -> Vec<u64> { col(&b, k).iter().zip(col(&a, k)).map(|(x, y)| x - y).collect() };
    let acc = d("accepted");
    let accepted: u64 = acc.iter().sum();
    let switches: u64 = d("voluntary_switches").iter().sum();
    let eagain: u64 = d("accept_eagain").iter().sum();
    let busiest = *acc.iter().max().unwrap();
    let h = Herd {
        accepted,
        woken_per_conn: switches as f64 / accepted.max(1) as f64,
        eagain,
        busiest_share: busiest as f64 / accepted.max(1) as f64,
    };
    eprintln!("{setup}: {h:?} accepted per worker {acc:?}");
    h
}

#[test]
fn shared_exclusive_rotating_and_reuseport_listeners() {
    let plain = run("shared", |_| {});
    let excl = run("shared+exclusive", |c| c.exclusive = true);
    let rot = run("shared+exclusive-rotate", |c| {
        c.exclusive = true;
        c.exclusive_rotate = true;
    });
    let reuse = run("reuseport", |c| c.listener = ListenerMode::Reuseport);
    for h in [&plain, &excl, &rot, &reuse] {
        assert_eq!(h.accepted, CONNECTS, "every connection accepted exactly once: {h:?}");
    }
    // A plain shared listener wakes every sleeping worker for each connection; the accepting
    // worker's own sleeps (accept, request, close) are a handful at most.
    assert!(
        plain.woken_per_conn >= WORKERS as f64 / 2.0,
        "plain shared listener should wake most of the {WORKERS} workers: {plain:?}"
    );
    // Exclusive wakeups: one worker per connection plus that worker's own sleeps.
    for h in [&excl, &rot, &reuse] {
        assert!(
            h.woken_per_conn + 2.0 < plain.woken_per_conn,
            "exclusive/reuseport should wake far fewer workers than plain ({plain:?}): {h:?}"
        );
    }
    assert_eq!(reuse.eagain, 0, "reuseport: each listener is one worker's own: {reuse:?}");
    // The rotation spreads connections that EPOLLEXCLUSIVE alone gives to one worker.
    assert!(rot.busiest_share <= 0.5, "rotating exclusive listener should spread: {rot:?}");
}
