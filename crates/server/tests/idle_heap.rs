//! An idle keep-alive connection holds no heap buffer: after 1,000 connections have each made a
//! request and gone idle, the server's live heap is what it was when they had just connected
//! (the connection's record lives in the worker's slab from the accept on; its input and
//! output buffers are the worker's, shared, and nothing stays behind per connection). Live heap
//! bytes are counted by a global allocator; this binary holds only this test, and the client
//! below allocates nothing while it is measured.

mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on as it is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: the caller's contract for `realloc` is passed on as it is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const N: usize = 1000;

#[test]
fn idle_keep_alive_connections_hold_no_heap_buffer() {
    let root = util::root("idleheap");
    util::each_mechanism(|m| {
        // Client and server ends both live in this process (select: below FD_SETSIZE).
        let limit = match m {
            ioscale_server::Engine::Readiness(mech) => {
                mech.open(&Default::default()).ok().and_then(|d| d.max_fds())
            }
            ioscale_server::Engine::UringCompletion => None,
        };
        let n = limit.map_or(N, |max| N.min(max.saturating_sub(200) / 2));
        let server = util::TestServer::start(m, &root, |_| {});
        // Learn the response length (and warm the cache) first.
        let r = server.client().get("GET", "/6k.bin");
        assert_eq!(r.status, 200);
        let head_len = r.headers.iter().map(|(k, v)| k.len() + 2 + v.len() + 2).sum::<usize>()
            + "HTTP/1.1 200 OK\r\n\r\n".len();
        let resp_len = head_len + 6144;
        let mut buf = vec![0u8; resp_len];
        std::thread::sleep(Duration::from_millis(100));
        let empty = LIVE.load(Ordering::Relaxed);
        let mut conns: Vec<TcpStream> = Vec::with_capacity(n);
        for _ in 0..n {
            let s = TcpStream::connect(server.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            conns.push(s);
        }
        let mut open = 0;
        for _ in 0..200 {
            open = server.handle.stats()["connections"]["open"].as_u64().unwrap();
            if open >= n as u64 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(open, n as u64, "{m}");
        std::thread::sleep(Duration::from_millis(200));
        let connected = LIVE.load(Ordering::Relaxed);
        // Every connection makes one request, reads its answer, and goes idle; twice.
        let mut round = || {
            for s in &mut conns {
                s.write_all(b"GET /6k.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
                let mut got = 0;
                while got < resp_len {
                    let r = match s.read(&mut buf[got..]) {
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        r => r.unwrap(),
                    };
                    assert!(r > 0, "{m}: closed");
                    got += r;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
            LIVE.load(Ordering::Relaxed)
        };
        let idle = round();
        let again = round();
        let per_conn = (idle - connected) as f64 / n as f64;
        let second = (again - idle) as f64 / n as f64;
        let record = (connected - empty) as f64 / n as f64;
        eprintln!("{m}: {record:.0} B of heap per connection for its record (slab, registration, timer); live heap {connected} B with {n} fresh connections, {idle} B after each made a request and went idle ({per_conn:+.1} B per connection), {again} B after a second round ({second:+.1} B)");
        // The RT-signal mechanisms keep a table indexed by descriptor number (16 B per number,
        // grown to the highest descriptor that was ever ready): the mechanism's, not a buffer
        // of the connection, and it does not grow again.
        let table = if m.name().starts_with("rtsig") || m.name() == "hybrid" { 96.0 } else { 0.0 };
        assert!(per_conn < 16.0 + table, "{m}: an idle connection keeps {per_conn:.0} B of heap");
        assert!(second < 1.0, "{m}: a second round kept {second:.1} B per connection");
        drop(conns);
        server.stop().unwrap();
    });
}
