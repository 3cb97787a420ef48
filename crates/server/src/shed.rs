//! Shedding at the descriptor limit, shared by both engines.
//!
//! Out of descriptors (`EMFILE`/`ENFILE`), a queued connection that cannot be accepted would wake
//! every wait of a level-triggered listener — the busy loop — and leave its client hanging. The
//! worker keeps one reserve descriptor: it frees it, accepts and closes what is queued (the clients
//! see a close, not a hang), and takes it back. When nothing could be shed, the caller pauses its
//! listener for a while.

use crate::stats::{ServerError, WorkerStats};
use crate::sys;
use std::fs::File;
use std::io;
use std::os::fd::RawFd;

/// One worker's reserve descriptor and how many connections it has shed in this episode.
#[derive(Debug)]
pub(crate) struct Shedder {
    reserve: Option<File>,
    shed: u64,
}

impl Shedder {
    /// Takes the reserve descriptor.
    pub fn new() -> Shedder {
        Shedder { reserve: File::open("/dev/null").ok(), shed: 0 }
    }

    /// A connection was accepted: ends a shedding episode (one log line).
    #[inline]
    pub fn accepted(&mut self, worker: usize) {
        if self.shed > 0 {
            crate::error_log::notice!(
                "worker {worker}: descriptors available again after shedding {} connection(s)",
                self.shed
            );
            self.shed = 0;
        }
    }

    /// `accept` failed with `e` for want of descriptors: sheds what `listener` has queued.
    /// Returns whether the listener must pause (nothing shed, or the reserve is gone).
    pub fn shed(
        &mut self,
        worker: usize,
        listener: RawFd,
        st: &WorkerStats,
        e: &io::Error,
    ) -> bool {
        if self.shed == 0 {
            crate::error_log::error!(
                "worker {worker}: cannot accept: {e}; open connections are still served, new ones are closed until descriptors free up"
            );
        }
        self.reserve = None;
        let mut shed = 0u64;
        while shed < 1024 {
            match sys::accept(listener) {
                Ok((fd, _)) => {
                    drop(fd);
                    shed += 1;
                }
                Err(_) => break,
            }
        }
        self.shed += shed.max(1);
        for _ in 0..shed.max(1) {
            st.error(ServerError::ShedEmfile);
        }
        self.reserve = File::open("/dev/null").ok();
        self.reserve.is_none() || shed == 0
    }
}
