//! Thousands of idle connections held open (Chandra & Mosberger's idle population): the server
//! keeps them and still answers. One test in its own binary, so the descriptors it holds never
//! meet another test's (the machine allows 20,000 per process).

mod util;

use std::net::TcpStream;
use std::time::Duration;
use util::{each_mechanism, root, TestServer};

const IDLE: usize = 3000;

#[test]
fn thousands_of_idle_connections_and_the_server_still_answers() {
    let root = root("idle");
    each_mechanism(|m| {
        let limit =
            m.mechanism().and_then(|x| x.open(&Default::default()).ok()).and_then(|d| d.max_fds());
        // Client and server ends both live in this process.
        let n = match limit {
            Some(max) if max < 2 * IDLE + 200 => {
                eprintln!(
                    "{m}: descriptors must stay below {max}: holding {} instead of {IDLE}",
                    (max - 200) / 2
                );
                (max - 200) / 2
            }
            _ => IDLE,
        };
        let s = TestServer::start(m, &root, |_| {});
        let mut held: Vec<TcpStream> = Vec::with_capacity(n);
        for _ in 0..n {
            held.push(TcpStream::connect(s.addr).unwrap());
        }
        // Every one of them is accepted and open.
        let mut open = 0;
        for _ in 0..200 {
            open = s.handle.stats()["connections"]["open"].as_u64().unwrap();
            if open >= n as u64 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(open, n as u64, "{m}: connections open");
        let mut c = s.client();
        for _ in 0..50 {
            assert_eq!(c.get("GET", "/1b.txt").status, 200, "{m}");
        }
        // Some of the idle ones wake up and are answered too.
        for t in held.iter_mut().step_by(n / 10) {
            let mut cl = util::Client::from_stream(t.try_clone().unwrap());
            assert_eq!(cl.get("GET", "/6k.bin").status, 200, "{m}");
        }
        drop(held);
        s.stop().unwrap();
    });
}
