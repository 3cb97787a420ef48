//! epoll: the interest set and the ready list live in the kernel; level, edge or one-shot.

use super::{check_fd, Dispatcher, Mechanism, Trigger};
use crate::{sys, Counters, Event, Events, Interest, Token};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// An epoll instance in one trigger mode.
#[derive(Debug)]
pub struct Epoll {
    ep: OwnedFd,
    trigger: Trigger,
    buf: Vec<libc::epoll_event>,
    registered: usize,
    counters: Counters,
    /// `epoll_pwait2` is there (nanosecond timeouts); otherwise millisecond `epoll_wait`.
    precise: bool,
}

/// Translates kernel readiness bits into [`Event`] flags.
pub(crate) fn event_flags(bits: u32) -> u8 {
    let mut f = 0;
    if bits & (libc::EPOLLIN | libc::EPOLLPRI) as u32 != 0 {
        f |= Event::READABLE;
    }
    if bits & libc::EPOLLOUT as u32 != 0 {
        f |= Event::WRITABLE;
    }
    if bits & (libc::EPOLLHUP | libc::EPOLLRDHUP) as u32 != 0 {
        f |= Event::HANGUP;
    }
    if bits & libc::EPOLLERR as u32 != 0 {
        f |= Event::ERROR;
    }
    f
}

/// Translates an [`Interest`] into epoll bits (hangups are always wanted).
pub(crate) fn interest_bits(interest: Interest) -> u32 {
    let mut bits = libc::EPOLLRDHUP as u32;
    if interest.is_readable() {
        bits |= libc::EPOLLIN as u32;
    }
    if interest.is_writable() {
        bits |= libc::EPOLLOUT as u32;
    }
    bits
}

impl Epoll {
    /// Opens an epoll instance that reports with `trigger`.
    pub fn new(trigger: Trigger) -> io::Result<Epoll> {
        Ok(Epoll {
            ep: sys::epoll_create()?,
            trigger,
            buf: Vec::new(),
            registered: 0,
            counters: Counters::default(),
            precise: true,
        })
    }

    fn bits(&self, interest: Interest) -> u32 {
        interest_bits(interest)
            | match self.trigger {
                Trigger::Level => 0,
                Trigger::Edge => libc::EPOLLET as u32,
                Trigger::Oneshot => libc::EPOLLONESHOT as u32,
            }
    }

    fn ctl(&mut self, op: libc::c_int, fd: RawFd, bits: u32, token: Token) -> io::Result<()> {
        self.counters.interest_syscalls += 1;
        sys::epoll_ctl(self.ep.as_raw_fd(), op, fd, bits, token.0 as u64)
    }
}

impl Dispatcher for Epoll {
    fn mechanism(&self) -> Mechanism {
        match self.trigger {
            Trigger::Level => Mechanism::Epoll,
            Trigger::Edge => Mechanism::EpollEt,
            Trigger::Oneshot => Mechanism::EpollOneshot,
        }
    }

    fn register(&mut self, fd: RawFd, token: Token, interest: Interest) -> io::Result<()> {
        check_fd(fd)?;
        let bits = self.bits(interest);
        self.ctl(libc::EPOLL_CTL_ADD, fd, bits, token).map_err(|e| match e.raw_os_error() {
            Some(libc::EEXIST) => super::already_registered(fd),
            _ => e,
        })?;
        self.registered += 1;
        Ok(())
    }

    fn register_exclusive(
        &mut self,
        fd: RawFd,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        check_fd(fd)?;
        if self.trigger == Trigger::Oneshot {
            // The kernel refuses EPOLLEXCLUSIVE with EPOLLONESHOT; say so plainly.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "epoll-oneshot cannot register exclusively: the kernel refuses EPOLLEXCLUSIVE with EPOLLONESHOT",
            ));
        }
        // The kernel accepts only IN, OUT, ERR, HUP, WAKEUP and ET beside EPOLLEXCLUSIVE.
        let bits = (self.bits(interest) & !(libc::EPOLLRDHUP as u32)) | libc::EPOLLEXCLUSIVE as u32;
        self.ctl(libc::EPOLL_CTL_ADD, fd, bits, token)?;
        self.registered += 1;
        Ok(())
    }

    fn reregister(&mut self, fd: RawFd, token: Token, interest: Interest) -> io::Result<()> {
        check_fd(fd)?;
        let bits = self.bits(interest);
        self.ctl(libc::EPOLL_CTL_MOD, fd, bits, token).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => super::not_registered(fd),
            _ => e,
        })
    }

    fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, Token(0)).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::EBADF) => super::not_registered(fd),
            _ => e,
        })?;
        self.registered -= 1;
        Ok(())
    }

    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        events.clear();
        let cap = events.capacity();
        if self.buf.len() < cap {
            self.buf.resize(cap, libc::epoll_event { events: 0, u64: 0 });
        }
        self.counters.wait_calls += 1;
        let ep = self.ep.as_raw_fd();
        let mut r = if self.precise && timeout.is_some() {
            sys::epoll_pwait2(ep, &mut self.buf[..cap], timeout)
        } else {
            sys::epoll_wait(ep, &mut self.buf[..cap], sys::timeout_ms(timeout))
        };
        if matches!(&r, Err(e) if e.raw_os_error() == Some(libc::ENOSYS)) {
            self.precise = false;
            r = sys::epoll_wait(ep, &mut self.buf[..cap], sys::timeout_ms(timeout));
        }
        let n = match r {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.counters.interrupted += 1;
                return Ok(0);
            }
            Err(e) => return Err(e),
        };
        for ev in &self.buf[..n] {
            let (bits, data) = (ev.events, ev.u64);
            events.push(Event::new(Token(data as usize), event_flags(bits)));
        }
        self.counters.events += n as u64;
        Ok(n)
    }

    fn trigger(&self) -> Trigger {
        self.trigger
    }

    fn len(&self) -> usize {
        self.registered
    }

    fn counters(&self) -> Counters {
        self.counters
    }
}
