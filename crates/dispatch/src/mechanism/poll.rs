//! poll(2): the `pollfd` array is kept in user space and passed whole every call, as thttpd does.

use super::{
    already_registered, check_fd, not_registered, Dispatcher, FdTable, Mechanism, Trigger,
};
use crate::{sys, Counters, Event, Events, Interest, Token};
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// Translates poll `revents` into [`Event`] flags.
pub(crate) fn revents_flags(revents: i16) -> u8 {
    let mut f = 0;
    if revents & (libc::POLLIN | libc::POLLPRI) != 0 {
        f |= Event::READABLE;
    }
    if revents & libc::POLLOUT != 0 {
        f |= Event::WRITABLE;
    }
    if revents & (libc::POLLHUP | libc::POLLRDHUP) != 0 {
        f |= Event::HANGUP;
    }
    if revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
        f |= Event::ERROR;
    }
    f
}

/// Translates an [`Interest`] into poll `events` (hangups are always wanted).
pub(crate) fn interest_events(interest: Interest) -> i16 {
    let mut e = libc::POLLRDHUP;
    if interest.is_readable() {
        e |= libc::POLLIN;
    }
    if interest.is_writable() {
        e |= libc::POLLOUT;
    }
    e
}

/// The pollfd array, the tokens beside it, and an fd → index map for O(1) changes.
#[derive(Debug)]
pub struct Poll {
    fds: Vec<libc::pollfd>,
    tokens: Vec<Token>,
    index: FdTable<usize>,
    /// Where the next scan of results starts, so a small event buffer does not starve the tail.
    cursor: usize,
    counters: Counters,
}

impl Poll {
    /// An empty interest set.
    pub fn new() -> Poll {
        Poll {
            fds: Vec::new(),
            tokens: Vec::new(),
            index: FdTable::new(),
            cursor: 0,
            counters: Counters::default(),
        }
    }
}

impl Default for Poll {
    fn default() -> Self {
        Self::new()
    }
}

impl Dispatcher for Poll {
    fn mechanism(&self) -> Mechanism {
        Mechanism::Poll
    }

    fn register(&mut self, fd: RawFd, token: Token, interest: Interest) -> io::Result<()> {
        check_fd(fd)?;
        if self.index.get(fd).is_some() {
            return Err(already_registered(fd));
        }
        self.index.insert(fd, self.fds.len());
        self.fds.push(libc::pollfd { fd, events: interest_events(interest), revents: 0 });
        self.tokens.push(token);
        Ok(())
    }

    fn reregister(&mut self, fd: RawFd, token: Token, interest: Interest) -> io::Result<()> {
        let i = *self.index.get(fd).ok_or_else(|| not_registered(fd))?;
        self.fds[i].events = interest_events(interest);
        self.tokens[i] = token;
        Ok(())
    }

    fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        let i = self.index.remove(fd).ok_or_else(|| not_registered(fd))?;
        self.fds.swap_remove(i);
        self.tokens.swap_remove(i);
        if let Some(moved) = self.fds.get(i) {
            self.index.insert(moved.fd, i);
        }
        Ok(())
    }

    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        events.clear();
        self.counters.wait_calls += 1;
        let ready = match sys::poll(&mut self.fds, sys::timeout_ms(timeout)) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.counters.interrupted += 1;
                return Ok(0);
            }
            Err(e) => return Err(e),
        };
        if ready == 0 {
            return Ok(0);
        }
        // The linear scan of results is part of poll's cost, as it was for thttpd.
        let n = self.fds.len();
        let start = if self.cursor < n { self.cursor } else { 0 };
        let mut found = 0;
        for k in 0..n {
            let i = (start + k) % n;
            let revents = self.fds[i].revents;
            if revents == 0 {
                continue;
            }
            if !events.push(Event::new(self.tokens[i], revents_flags(revents))) {
                self.cursor = i;
                break;
            }
            found += 1;
            if found == ready {
                self.cursor = i + 1;
                break;
            }
        }
        self.counters.events += events.len() as u64;
        Ok(events.len())
    }

    fn trigger(&self) -> Trigger {
        Trigger::Level
    }

    fn len(&self) -> usize {
        self.fds.len()
    }

    fn counters(&self) -> Counters {
        self.counters
    }
}
