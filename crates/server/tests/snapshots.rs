//! Counter snapshots for the lab: SIGUSR2 (or `Handle::snapshot`) makes every worker copy its
//! counters within one loop pass; `/.ioscale/stats` lists the last 16, per worker and summed.
//! The difference of two snapshots is exactly what happened between them, whatever the
//! mechanism (the RT-signal ones wait in `sigtimedwait`/signalfd, the completion engine in
//! `io_uring_enter`), and however late the stats request itself is answered.

mod util;

use ioscale_server::stats::Snapshot;
use ioscale_server::{Engine, Handle};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use util::{each_mechanism, root, Client, ServerProc, TestServer};

/// Waits (bounded) until snapshot `seq` is complete in the handle's list and returns it.
fn taken(h: &Handle, seq: u64) -> Snapshot {
    for _ in 0..1000 {
        if let Some(s) = h.snapshots().into_iter().find(|s| s.seq == seq && s.complete()) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("snapshot {seq} was not taken by every worker within 10 s: {:?}", h.snapshots());
}

/// A request that is answered 206 (a one-byte range): the foreground's requests are told apart
/// from the background's (404) and from the stats requests (200) by their status.
fn ranged(c: &mut Client) -> u16 {
    c.send(b"GET /6k.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-0\r\n\r\n");
    c.response(false).unwrap().status
}

/// A light background load of 404s on its own connection until `stop`; returns the count.
fn background(addr: SocketAddr, stop: Arc<AtomicBool>, n: Arc<AtomicU64>) {
    let mut c = Client::connect(addr);
    while !stop.load(Ordering::Relaxed) {
        assert_eq!(c.get("GET", "/missing").status, 404);
        n.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn two_snapshots_differ_by_the_requests_between_them_on_every_engine() {
    each_mechanism(|engine| {
        let root = root("snap");
        let srv = TestServer::start(engine, &root, |c| c.workers = 2);
        let stop = Arc::new(AtomicBool::new(false));
        let bg_n = Arc::new(AtomicU64::new(0));
        let bg = {
            let (stop, n, addr) = (stop.clone(), bg_n.clone(), srv.addr);
            std::thread::spawn(move || background(addr, stop, n))
        };
        let mut c = srv.client();
        assert_eq!(ranged(&mut c), 206);
        let a = taken(&srv.handle, srv.handle.snapshot());
        let n = 25;
        for _ in 0..n {
            assert_eq!(ranged(&mut c), 206, "{engine}");
        }
        let b = taken(&srv.handle, srv.handle.snapshot());
        stop.store(true, Ordering::Relaxed);
        bg.join().unwrap();
        assert_eq!(b.seq, a.seq + 1, "{engine}");
        let (sa, sb) = (a.sum(), b.sum());
        let code = |c: &ioscale_server::stats::Counts, k: u16| {
            c.status.iter().find(|s| s.0 == k).map_or(0, |s| s.1)
        };
        assert_eq!(code(&sb, 206) - code(&sa, 206), n, "{engine}: 206s between the snapshots");
        let bg_between = code(&sb, 404) - code(&sa, 404);
        assert!(bg_between <= bg_n.load(Ordering::Relaxed), "{engine}");
        assert_eq!(sb.requests - sa.requests, n + bg_between, "{engine}: requests between");
        assert!(sb.dispatch("wait_calls") > sa.dispatch("wait_calls"), "{engine}");
        for s in [&a, &b] {
            for w in s.workers.iter().flatten() {
                assert!(w.taken_ns >= s.requested_ns, "{engine}: taken before it was asked");
            }
        }
        drop(c);
        srv.stop().unwrap();
    });
}

#[test]
fn only_the_last_sixteen_are_kept_and_each_is_numbered() {
    let root = root("snap-keep");
    let srv = TestServer::start(ioscale_dispatch::Mechanism::Epoll, &root, |_| {});
    let mut last = 0;
    for i in 1..=20u64 {
        last = srv.handle.snapshot();
        assert_eq!(last, i);
    }
    taken(&srv.handle, last);
    let seqs: Vec<u64> = srv.handle.snapshots().iter().map(|s| s.seq).collect();
    assert_eq!(seqs, (5..=20).collect::<Vec<_>>());
    // Asked for faster than the worker's loop: all of them are taken (with the same counters).
    assert!(srv.handle.snapshots().iter().all(Snapshot::complete));
    srv.stop().unwrap();
}

fn num(v: &Value, p: &str) -> u64 {
    v.pointer(p).and_then(Value::as_u64).unwrap_or_else(|| panic!("no {p} in {v}"))
}

/// Responses with status `code` (codes never answered are not listed).
fn code(v: &Value, code: u16) -> u64 {
    v["sum"]["status"].get(code.to_string()).and_then(Value::as_u64).unwrap_or(0)
}

/// Waits (bounded) for snapshot `seq` in the stats document, complete.
fn in_stats(srv: &ServerProc, seq: u64) -> Value {
    for _ in 0..500 {
        let doc = srv.stats();
        let found = doc["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["seq"] == seq && s["complete"] == true)
            .cloned();
        if let Some(s) = found {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("snapshot {seq} not complete in /.ioscale/stats within 10 s");
}

#[test]
fn sigusr2_takes_a_snapshot_in_the_real_process() {
    // The signal-driven mechanisms wait in sigtimedwait or a signalfd: SIGUSR2 must reach the
    // signal thread, not them, and still get every worker to take its part.
    let mut engines: Vec<Engine> = ["epoll", "rtsig", "rtsig-batch", "rtsig-perfd", "hybrid"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    engines.push(Engine::UringCompletion);
    engines.push("uring".parse().unwrap());
    for engine in engines {
        if let Err(e) = engine.probe() {
            eprintln!("SKIPPED: {engine}: not supported here: {e}");
            continue;
        }
        let root = root("snap-proc");
        let args = format!("--root '{}' --workers 2 --dispatch {engine}", root.display());
        let mut srv = ServerProc::spawn("", &args).unwrap();
        let mut c = Client::connect(srv.addr());
        assert_eq!(ranged(&mut c), 206);
        srv.signal(libc::SIGUSR2);
        let a = in_stats(&srv, 1);
        for _ in 0..10 {
            assert_eq!(ranged(&mut c), 206);
        }
        srv.signal(libc::SIGUSR2);
        let b = in_stats(&srv, 2);
        assert_eq!(code(&b, 206) - code(&a, 206), 10, "{engine}");
        // Between them: the ten, and the stats requests that waited for the first (200s).
        let stats_between = code(&b, 200) - code(&a, 200);
        assert_eq!(
            num(&b, "/sum/requests") - num(&a, "/sum/requests"),
            10 + stats_between,
            "{engine}"
        );
        // Per worker, summed: the sum.
        let per: u64 =
            b["workers"].as_array().unwrap().iter().map(|w| num(w, "/counters/requests")).sum();
        assert_eq!(per, num(&b, "/sum/requests"), "{engine}");
        assert!(num(&b, "/taken_ns/first") >= num(&b, "/requested_ns"), "{engine}");
        assert!(num(&b, "/sum/cpu_ns") >= num(&a, "/sum/cpu_ns"), "{engine}");
        // Still one process, still serving: SIGUSR2 does not stop it.
        assert_eq!(c.get("GET", "/1b.txt").status, 200);
        drop(c);
        srv.signal(libc::SIGTERM);
        assert_eq!(srv.wait_exit(Duration::from_secs(10)), Some(0), "{engine}");
    }
}
