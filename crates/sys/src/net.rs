//! Sockets: addresses to and from the kernel's structures, TCP sockets and listeners, a
//! non-blocking connect, and the socket options several crates set.
//!
//! Everything here that takes no `String` is async-signal-safe (one or a few system calls, no
//! allocation), so a forked child of a multi-threaded process may use it.

use crate::fd::owned;
use crate::syscall;
use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// `addr` as the kernel's `sockaddr_in` or `sockaddr_in6` inside a `sockaddr_storage`, with the
/// length to pass beside it.
pub fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe {
                std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sockaddr_in(a))
            };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6 and suitably aligned.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// An IPv4 address as the kernel's `sockaddr_in`.
pub fn sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
        sin_zero: [0; 8],
    }
}

/// The address in a `sockaddr_storage` the kernel filled (`None` for a family other than
/// `AF_INET` and `AF_INET6`).
pub fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                port,
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// A non-blocking, close-on-exec TCP socket of `addr`'s family.
pub fn tcp_socket(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    let fd =
        syscall!(socket(family, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0))?;
    // SAFETY: socket succeeded: `fd` is a new descriptor owned by nobody else.
    Ok(unsafe { owned(fd) })
}

/// `bind(fd, addr)`.
pub fn bind(fd: RawFd, addr: SocketAddr) -> io::Result<()> {
    let (ss, len) = sockaddr(addr);
    syscall!(bind(fd, (&ss as *const libc::sockaddr_storage).cast(), len)).map(drop)
}

/// `connect(fd, addr)` on a non-blocking socket: `EINPROGRESS` counts as success (writability
/// will say how it ended; see [`take_socket_error`]).
pub fn connect(fd: RawFd, addr: SocketAddr) -> io::Result<()> {
    let (ss, len) = sockaddr(addr);
    match syscall!(connect(fd, (&ss as *const libc::sockaddr_storage).cast(), len)) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Starts a non-blocking TCP connect to `addr`; returns the socket while the connect may still
/// be in progress.
pub fn connect_nonblocking(addr: SocketAddr) -> io::Result<OwnedFd> {
    let fd = tcp_socket(&addr)?;
    connect(fd.as_raw_fd(), addr)?;
    Ok(fd)
}

/// A non-blocking TCP listener on `addr` with `SO_REUSEADDR` (and `SO_REUSEPORT` when asked, so
/// that several sockets share the port, each with its own accept queue). With `backlog`
/// `None` the socket is only bound (a placeholder that reserves the port).
pub fn listener(addr: SocketAddr, reuseport: bool, backlog: Option<i32>) -> io::Result<OwnedFd> {
    let fd = tcp_socket(&addr)?;
    set_int_opt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if reuseport {
        set_int_opt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    bind(fd.as_raw_fd(), addr)?;
    if let Some(b) = backlog {
        syscall!(listen(fd.as_raw_fd(), b))?;
    }
    Ok(fd)
}

/// The address a socket is bound to (`getsockname`).
pub fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: plain old data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    syscall!(getsockname(fd, (&mut ss as *mut libc::sockaddr_storage).cast(), &mut len))?;
    from_sockaddr(&ss).ok_or_else(|| io::Error::other("getsockname: not an IPv4 or IPv6 socket"))
}

/// The address of a connected socket's peer (`getpeername`).
pub fn peer_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: plain old data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    syscall!(getpeername(fd, (&mut ss as *mut libc::sockaddr_storage).cast(), &mut len))?;
    from_sockaddr(&ss).ok_or_else(|| io::Error::other("getpeername: not an IPv4 or IPv6 socket"))
}

/// `setsockopt(fd, level, name, &v)` for an `int` option.
pub fn set_int_opt(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    syscall!(setsockopt(
        fd,
        level,
        name,
        (&v as *const libc::c_int).cast(),
        size_of::<libc::c_int>() as libc::socklen_t
    ))
    .map(drop)
}

/// Sets `SO_LINGER {on, 0}`, so that closing the socket sends a reset instead of a FIN (and
/// leaves no `TIME_WAIT` behind).
pub fn set_linger_zero(fd: RawFd) -> io::Result<()> {
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    syscall!(setsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_LINGER,
        (&l as *const libc::linger).cast(),
        size_of::<libc::linger>() as libc::socklen_t
    ))
    .map(drop)
}

/// Returns and clears the pending socket error (`SO_ERROR`): how a non-blocking connect ended.
pub fn take_socket_error(fd: RawFd) -> io::Result<Option<io::Error>> {
    let mut err: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    syscall!(getsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_ERROR,
        (&mut err as *mut libc::c_int).cast(),
        &mut len
    ))?;
    Ok((err != 0).then(|| io::Error::from_raw_os_error(err)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_the_kernel_structures() {
        for a in ["127.0.0.1:8080", "[::1]:443", "[fe80::1%2]:1"] {
            let a: SocketAddr = a.parse().unwrap();
            let (ss, len) = sockaddr(a);
            assert!(len as usize <= size_of::<libc::sockaddr_storage>());
            assert_eq!(from_sockaddr(&ss), Some(a));
        }
    }

    #[test]
    fn a_listener_accepts_a_nonblocking_connect_and_reports_no_error() {
        let l = listener("127.0.0.1:0".parse().unwrap(), false, Some(8)).unwrap();
        let addr = local_addr(l.as_raw_fd()).unwrap();
        assert_ne!(addr.port(), 0);
        let c = connect_nonblocking(addr).unwrap();
        let std_l = std::net::TcpListener::from(l);
        std_l.set_nonblocking(false).unwrap();
        let (_s, peer) = std_l.accept().unwrap();
        assert_eq!(local_addr(c.as_raw_fd()).unwrap(), peer);
        assert_eq!(peer_addr(c.as_raw_fd()).unwrap(), addr);
        assert!(take_socket_error(c.as_raw_fd()).unwrap().is_none());
        set_linger_zero(c.as_raw_fd()).unwrap();
    }

    #[test]
    fn a_refused_connect_is_reported_by_so_error_or_at_once() {
        // Bind a port, do not listen: a connect to it is refused.
        let placeholder = listener("127.0.0.1:0".parse().unwrap(), false, None).unwrap();
        let addr = local_addr(placeholder.as_raw_fd()).unwrap();
        match connect_nonblocking(addr) {
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED)),
            Ok(c) => {
                let mut p = libc::pollfd { fd: c.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
                crate::syscall!(poll(&mut p, 1, 5000)).unwrap();
                let e = take_socket_error(c.as_raw_fd()).unwrap().expect("refused");
                assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
            }
        }
    }
}
