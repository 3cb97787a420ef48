//! What both echo examples do before their loop: read the optional port argument and listen on
//! loopback, saying where. Kept here once, not copied into each example.

use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;

/// Listens on `127.0.0.1:PORT` (`port` is the argument, default 0: a free port) and prints
/// `echo on ADDR with WITH`. On a bad port or a failed bind it prints one sentence prefixed by
/// `example` and returns the exit code to end with (2 for a bad argument, 1 otherwise).
pub fn listen(example: &str, port: Option<String>, with: &str) -> Result<TcpListener, ExitCode> {
    let port = match port.map(|p| p.parse::<u16>()) {
        None => 0,
        Some(Ok(p)) => p,
        Some(Err(_)) => {
            eprintln!("{example}: the port must be a number from 0 to 65535");
            return Err(ExitCode::from(2));
        }
    };
    let listener = match TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{example}: cannot listen on 127.0.0.1:{port}: {e}");
            return Err(ExitCode::FAILURE);
        }
    };
    match listener.local_addr() {
        Ok(a) => eprintln!("echo on {a} with {with}"),
        Err(e) => eprintln!("{example}: {e}"),
    }
    Ok(listener)
}

/// The echo check both examples' tests make: three clients at once on `addr`, the last sending
/// 1 MiB (more than a socket buffer: the server must wait to write, and sees many receives);
/// each must get back exactly what it sent. `what` names the server in a failure.
#[cfg(test)]
pub fn three_clients_echo(addr: SocketAddr, what: &str) {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let payloads = [b"hello\n".to_vec(), b"second client\n".to_vec(), big];
    let clients: Vec<_> = payloads
        .into_iter()
        .map(|data| {
            let what = what.to_string();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                let mut w = s.try_clone().unwrap();
                let sent = data.clone();
                let writer = std::thread::spawn(move || {
                    w.write_all(&sent).unwrap();
                    w.shutdown(std::net::Shutdown::Write).unwrap();
                });
                let mut back = Vec::new();
                s.read_to_end(&mut back).unwrap();
                writer.join().unwrap();
                assert!(back == data, "{what}: {} bytes back of {}", back.len(), data.len());
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
}
