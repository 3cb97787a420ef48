//! The `/dev/poll` programming model (Solaris; Provos & Lever §3), with its interest set in the
//! kernel.
//!
//! A program declares interest by *writing* `pollfd` records: a record for a new descriptor adds
//! it, a record for a known one replaces its events (or, with Solaris's semantics, ORs them in),
//! and a record whose events include `POLLREMOVE` removes it. `DP_POLL` then fills a result area
//! with the ready descriptors only, so the cost of a wait follows the number of *ready*
//! descriptors, not the number watched.
//!
//! Linux never merged `/dev/poll`; the facility that delivered the same idea is epoll: an
//! interest set kept in the kernel across calls, and a ready list that the kernel's wakeup
//! callbacks fill — Provos & Lever's "device driver hints" done completely. So this mechanism
//! keeps the `/dev/poll` API and record semantics exactly and stores the set in an epoll
//! instance: each record costs one `epoll_ctl` (the paper's single `write` of many records is the
//! one thing epoll cannot batch), and `DP_POLL` is one `epoll_wait` into the result area.

use super::{check_fd, not_registered, Dispatcher, FdTable, Mechanism, Trigger};
use crate::mechanism::poll::revents_flags;
use crate::{sys, Counters, Event, Events, Interest, Token};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// `POLLREMOVE`, the Solaris record flag that removes a descriptor from the set.
pub const POLLREMOVE: i16 = 0x1000;

/// One registered descriptor: the events it asked for and the caller's token.
#[derive(Copy, Clone, Debug)]
struct Record {
    events: i16,
    token: Token,
}

/// An open "/dev/poll": the in-kernel interest set plus the caller's tokens.
#[derive(Debug)]
pub struct DevPoll {
    ep: OwnedFd,
    records: FdTable<Record>,
    or_semantics: bool,
    /// The result area used by [`Dispatcher::wait`] (`DP_ALLOC`'d once, reused).
    area: Vec<libc::pollfd>,
    kbuf: Vec<libc::epoll_event>,
    counters: Counters,
}

fn poll_to_epoll(events: i16) -> u32 {
    let mut bits = libc::EPOLLRDHUP as u32;
    if events & libc::POLLIN != 0 {
        bits |= libc::EPOLLIN as u32;
    }
    if events & libc::POLLPRI != 0 {
        bits |= libc::EPOLLPRI as u32;
    }
    if events & libc::POLLOUT != 0 {
        bits |= libc::EPOLLOUT as u32;
    }
    bits
}

fn epoll_to_revents(bits: u32) -> i16 {
    let mut r = 0;
    if bits & libc::EPOLLIN as u32 != 0 {
        r |= libc::POLLIN;
    }
    if bits & libc::EPOLLPRI as u32 != 0 {
        r |= libc::POLLPRI;
    }
    if bits & libc::EPOLLOUT as u32 != 0 {
        r |= libc::POLLOUT;
    }
    if bits & libc::EPOLLHUP as u32 != 0 {
        r |= libc::POLLHUP;
    }
    if bits & libc::EPOLLRDHUP as u32 != 0 {
        r |= libc::POLLRDHUP;
    }
    if bits & libc::EPOLLERR as u32 != 0 {
        r |= libc::POLLERR;
    }
    r
}

impl DevPoll {
    /// Opens the device. `or_semantics`: a record for a known descriptor ORs its events in (as
    /// Solaris does) instead of replacing them.
    pub fn open(or_semantics: bool) -> io::Result<DevPoll> {
        Ok(DevPoll {
            ep: sys::epoll_create()?,
            records: FdTable::new(),
            or_semantics,
            area: Vec::new(),
            kbuf: Vec::new(),
            counters: Counters::default(),
        })
    }

    /// The `write(2)` to the device: applies each record in order. A descriptor seen for the
    /// first time is added with token `Token(fd)`; use [`DevPoll::set_token`] to name it.
    /// Returns the number of bytes "written", as the device does.
    pub fn write(&mut self, records: &[libc::pollfd]) -> io::Result<usize> {
        for rec in records {
            self.apply(rec.fd, rec.events, None)?;
        }
        Ok(std::mem::size_of_val(records))
    }

    /// Sets the token reported for a registered descriptor (user-space bookkeeping only).
    pub fn set_token(&mut self, fd: RawFd, token: Token) -> io::Result<()> {
        self.records.get_mut(fd).map(|r| r.token = token).ok_or_else(|| not_registered(fd))
    }

    fn apply(&mut self, fd: RawFd, events: i16, token: Option<Token>) -> io::Result<()> {
        check_fd(fd)?;
        let ep = self.ep.as_raw_fd();
        if events & POLLREMOVE != 0 {
            if self.records.remove(fd).is_none() {
                return Err(not_registered(fd));
            }
            self.counters.interest_syscalls += 1;
            return sys::epoll_ctl(ep, libc::EPOLL_CTL_DEL, fd, 0, 0).or_else(|e| {
                // A descriptor closed before its POLLREMOVE has already left the kernel set.
                if e.raw_os_error() == Some(libc::EBADF) || e.raw_os_error() == Some(libc::ENOENT) {
                    Ok(())
                } else {
                    Err(e)
                }
            });
        }
        match self.records.get_mut(fd) {
            Some(rec) => {
                let new = if self.or_semantics { rec.events | events } else { events };
                rec.events = new;
                if let Some(t) = token {
                    rec.token = t;
                }
                self.counters.interest_syscalls += 1;
                sys::epoll_ctl(ep, libc::EPOLL_CTL_MOD, fd, poll_to_epoll(new), fd as u64)
            }
            None => {
                self.counters.interest_syscalls += 1;
                sys::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, poll_to_epoll(events), fd as u64)?;
                self.records
                    .insert(fd, Record { events, token: token.unwrap_or(Token(fd as usize)) });
                Ok(())
            }
        }
    }

    /// The `ioctl(DP_POLL)`: waits up to `timeout_ms` (-1 = forever) and fills `result` with the
    /// ready descriptors (`fd`, `revents`); returns how many.
    pub fn dp_poll(&mut self, result: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
        if self.kbuf.len() < result.len() {
            self.kbuf.resize(result.len(), libc::epoll_event { events: 0, u64: 0 });
        }
        self.counters.wait_calls += 1;
        let n = sys::epoll_wait(self.ep.as_raw_fd(), &mut self.kbuf[..result.len()], timeout_ms)?;
        for (slot, ev) in result.iter_mut().zip(&self.kbuf[..n]) {
            let (bits, data) = (ev.events, ev.u64);
            *slot = libc::pollfd { fd: data as RawFd, events: 0, revents: epoll_to_revents(bits) };
        }
        Ok(n)
    }
}

fn interest_events(interest: Interest) -> i16 {
    let mut e = 0;
    if interest.is_readable() {
        e |= libc::POLLIN;
    }
    if interest.is_writable() {
        e |= libc::POLLOUT;
    }
    e
}

impl Dispatcher for DevPoll {
    fn mechanism(&self) -> Mechanism {
        Mechanism::Devpoll
    }

    fn register(&mut self, fd: RawFd, token: Token, interest: Interest) -> io::Result<()> {
        if self.records.get(fd).is_some() {
            return Err(super::already_registered(fd));
        }
        self.apply(fd, interest_events(interest), Some(token))
    }

    fn reregister(&mut self, fd: RawFd, token: Token, interest: Interest) -> io::Result<()> {
        if self.records.get(fd).is_none() {
            return Err(not_registered(fd));
        }
        let events = interest_events(interest);
        if self.or_semantics {
            // Solaris can only add events to a record: narrowing means remove, then add.
            self.apply(fd, POLLREMOVE, None)?;
        }
        self.apply(fd, events, Some(token))
    }

    fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        self.apply(fd, POLLREMOVE, None)
    }

    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        events.clear();
        let cap = events.capacity();
        let mut area = std::mem::take(&mut self.area);
        if area.len() < cap {
            area.resize(cap, libc::pollfd { fd: -1, events: 0, revents: 0 });
        }
        let n = match self.dp_poll(&mut area[..cap], sys::timeout_ms(timeout)) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.area = area;
                self.counters.interrupted += 1;
                return Ok(0);
            }
            Err(e) => {
                self.area = area;
                return Err(e);
            }
        };
        for p in &area[..n] {
            if let Some(rec) = self.records.get(p.fd) {
                events.push(Event::new(rec.token, revents_flags(p.revents)));
            }
        }
        self.area = area;
        self.counters.events += events.len() as u64;
        Ok(events.len())
    }

    fn trigger(&self) -> Trigger {
        Trigger::Level
    }

    fn len(&self) -> usize {
        self.records.len()
    }

    fn counters(&self) -> Counters {
        self.counters
    }
}
