//! The generator's own system calls: non-blocking sockets bound to a chosen source address.
//! What every crate needs (reads and writes, limits, CPU time, the interrupt flag) comes from
//! `ioscale-sys`.

use ioscale_sys::net::{bind, connect as connect_to, set_int_opt, tcp_socket};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};

pub use ioscale_sys::fd::{read, write};
pub use ioscale_sys::net::take_socket_error as socket_error;

/// Opens a non-blocking TCP socket with `TCP_NODELAY`, binds it to `source` (port chosen at
/// connect time, `IP_BIND_ADDRESS_NO_PORT`, so that each source address has its own ephemeral
/// range) and starts connecting to `dest`. Source addresses are IPv4: an IPv6 `dest` connects
/// from the address the system chooses.
pub fn connect(source: Option<Ipv4Addr>, dest: SocketAddr) -> io::Result<OwnedFd> {
    let fd = tcp_socket(&dest)?;
    // Best effort, as before: a socket without it still works, only slower.
    let _ = set_int_opt(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
    if let Some(src) = source.filter(|_| dest.is_ipv4()) {
        let _ = set_int_opt(fd.as_raw_fd(), libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1);
        bind(fd.as_raw_fd(), SocketAddr::V4(SocketAddrV4::new(src, 0)))?;
    }
    connect_to(fd.as_raw_fd(), dest)?;
    Ok(fd)
}

/// CPU time (user + system) of this process so far.
pub fn cpu_time() -> io::Result<std::time::Duration> {
    ioscale_sys::cpu::usage().map(|u| u.total())
}

/// Ignores SIGPIPE (a write to a reset connection is an error, not a death), and makes SIGINT
/// and SIGTERM set the interrupt flag (`ioscale_sys::interrupt`) so a run can end early with its
/// record.
pub fn install_signals() -> io::Result<()> {
    ioscale_sys::process::ignore_sigpipe()?;
    ioscale_sys::interrupt::install()
}

/// Makes the next `close` of `fd` abortive (`SO_LINGER` 0: a reset, no TIME_WAIT and no FIN_WAIT
/// orphan), so a connection given up on frees its port at once. Best effort: without it the
/// connection still closes, only in the ordinary way.
pub fn abort_on_close(fd: std::os::fd::RawFd) {
    let _ = ioscale_sys::net::set_linger_zero(fd);
}

/// The CPUs this process may run on (`sched_getaffinity`), in order; empty if unknown.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain old data; all-zero is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return Vec::new();
    }
    // SAFETY: CPU_ISSET only reads the set, for indices below CPU_SETSIZE.
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
}

/// Pins the calling thread to `cpu` (`sched_setaffinity` on thread id 0 = the caller). Best
/// effort: a thread that cannot be pinned runs where the scheduler puts it.
pub fn pin_thread(cpu: usize) {
    // SAFETY: cpu_set_t is plain old data; all-zero is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit of the set; `cpu` is below CPU_SETSIZE (it came from
    // `allowed_cpus`).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    let _ = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
}
