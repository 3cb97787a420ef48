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
