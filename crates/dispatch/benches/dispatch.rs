//! Criterion: one wait-and-dispatch cycle per mechanism at small idle counts (socketpairs).
#![allow(missing_docs)]
//! Run: `cargo bench -p ioscale-dispatch`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ioscale_dispatch::{Events, Interest, Mechanism, Options, Token, Trigger};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("wait-dispatch-cycle");
    for &idle in &[0usize, 10, 100, 500] {
        let idle_pairs: Vec<(UnixStream, UnixStream)> =
            (0..idle).map(|_| UnixStream::pair().expect("socketpair")).collect();
        for &m in Mechanism::READINESS {
            let Ok(mut d) = m.open(&Options::default()) else { continue };
            let (mut a, mut b) = UnixStream::pair().expect("socketpair");
            a.set_nonblocking(true).expect("nonblocking");
            d.register(a.as_raw_fd(), Token(usize::MAX), Interest::READABLE).expect("register");
            for (i, (x, _)) in idle_pairs.iter().enumerate() {
                d.register(x.as_raw_fd(), Token(i), Interest::READABLE).expect("register");
            }
            let mut events = Events::with_capacity(64);
            let mut buf = [0u8; 16];
            group.bench_with_input(BenchmarkId::new(m.name(), idle), &idle, |bch, _| {
                bch.iter(|| {
                    b.write_all(b"x").expect("write");
                    loop {
                        d.wait(&mut events, Some(Duration::from_secs(1))).expect("wait");
                        if events.iter().any(|e| e.token() == Token(usize::MAX)) {
                            break;
                        }
                    }
                    let _ = a.read(&mut buf);
                    if d.trigger() == Trigger::Oneshot {
                        d.reregister(a.as_raw_fd(), Token(usize::MAX), Interest::READABLE)
                            .expect("rearm");
                    }
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
