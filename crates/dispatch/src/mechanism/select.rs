//! select(2): the three bitmaps are rebuilt from the interest list on every call.
//!
//! The bitmaps are sized at run time for the highest descriptor, not the C library's
//! `FD_SETSIZE` (1024): the kernel takes any `nfds`, and Chandra & Mosberger's select server ran
//! 6,000 and 15,000 descriptors. Only the open-file limit bounds it.

use super::{
    already_registered, check_fd, not_registered, Dispatcher, FdTable, Mechanism, Trigger,
};
use crate::sys::{self, FdSet};
use crate::{Counters, Event, Events, Interest, Token};
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// The C library's `FD_SETSIZE` (1024 on glibc), the size of its `fd_set`; select here goes past
/// it (see the module docs).
pub const FD_SETSIZE: usize = sys::FD_SETSIZE;

/// The interest list and the bitmaps rebuilt from it.
#[derive(Debug)]
pub struct Select {
    entries: Vec<(RawFd, Token, Interest)>,
    index: FdTable<usize>,
    cursor: usize,
    counters: Counters,
    /// The read, write and exception bitmaps, kept between calls so that their room is
    /// allocated once.
    sets: [FdSet; 3],
}

impl Select {
    /// An empty interest list.
    pub fn new() -> Select {
        Select {
            entries: Vec::new(),
            index: FdTable::new(),
            cursor: 0,
            counters: Counters::default(),
            sets: Default::default(),
        }
    }
}

impl Default for Select {
    fn default() -> Self {
        Self::new()
    }
}

impl Dispatcher for Select {
    fn mechanism(&self) -> Mechanism {
        Mechanism::Select
    }

    fn register(&mut self, fd: RawFd, token: Token, interest: Interest) -> io::Result<()> {
        check_fd(fd)?;
        if self.index.get(fd).is_some() {
            return Err(already_registered(fd));
        }
        self.index.insert(fd, self.entries.len());
        self.entries.push((fd, token, interest));
        Ok(())
    }

    fn reregister(&mut self, fd: RawFd, token: Token, interest: Interest) -> io::Result<()> {
        let i = *self.index.get(fd).ok_or_else(|| not_registered(fd))?;
        self.entries[i] = (fd, token, interest);
        Ok(())
    }

    fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        let i = self.index.remove(fd).ok_or_else(|| not_registered(fd))?;
        self.entries.swap_remove(i);
        if let Some(&(moved, _, _)) = self.entries.get(i) {
            self.index.insert(moved, i);
        }
        Ok(())
    }

    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        events.clear();
        // Rebuilt every call: select overwrites its arguments (one of the costs the blog
        // "select / poll / epoll: practical difference for system architects" lists).
        let [r, w, x] = &mut self.sets;
        for set in [&mut *r, &mut *w, &mut *x] {
            set.clear();
        }
        let mut nfds = 0;
        for &(fd, _, interest) in &self.entries {
            if interest.is_readable() {
                r.insert(fd);
            }
            if interest.is_writable() {
                w.insert(fd);
            }
            x.insert(fd);
            nfds = nfds.max(fd + 1);
        }
        self.counters.wait_calls += 1;
        let ready = match sys::select(nfds, r, w, x, timeout) {
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
        let n = self.entries.len();
        let start = if self.cursor < n { self.cursor } else { 0 };
        self.cursor = start;
        for k in 0..n {
            let i = (start + k) % n;
            let (fd, token, _) = self.entries[i];
            let mut flags = 0;
            if r.contains(fd) {
                flags |= Event::READABLE;
            }
            if w.contains(fd) {
                flags |= Event::WRITABLE;
            }
            if x.contains(fd) {
                // Exceptional condition on a socket: out-of-band data; report it readable.
                flags |= Event::READABLE;
            }
            if flags == 0 {
                continue;
            }
            if !events.push(Event::new(token, flags)) {
                self.cursor = i;
                break;
            }
            self.cursor = i + 1;
        }
        self.counters.events += events.len() as u64;
        Ok(events.len())
    }

    fn trigger(&self) -> Trigger {
        Trigger::Level
    }

    /// No limit but the open-file limit: the bitmaps grow past the C library's `FD_SETSIZE`.
    fn max_fds(&self) -> Option<usize> {
        None
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn counters(&self) -> Counters {
        self.counters
    }
}
