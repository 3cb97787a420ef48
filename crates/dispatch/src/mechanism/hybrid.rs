//! `hybrid`: RT signals while the load is light, epoll when it is heavy — the server Provos &
//! Lever imagined (§4) and never built.
//!
//! Both interest sets are maintained all along, as their §6 asks: every registration is armed
//! for RT signals (as in [`rtsig`](super::rtsig), dequeued in batches through a signalfd) *and*
//! added to a level-triggered epoll instance (data = the descriptor), so a switch needs no
//! rebuilding of anything.
//!
//! * **Signals → epoll** when the signal queue overflows (the kernel raised `SIGIO`: the
//!   crossover point the papers name, built into the interface), or when the signals dequeued
//!   per wait stay at or above [`HybridConfig::heavy_batch`] for
//!   [`HybridConfig::heavy_waits`] waits in a row (one-at-a-time handling has stopped paying).
//!   The switch disarms every descriptor (`F_SETOWN_EX` to nobody: one `fcntl` each), then
//!   flushes the queue. Nothing is lost: epoll is level-triggered over the full set, so every
//!   descriptor ready now — whatever its dropped or flushed notices said — is reported by the
//!   following epoll waits. An overflow switch counts as the overflow's recovery.
//! * **Epoll → signals** when `epoll_wait` returns at most [`HybridConfig::light_ready`]
//!   descriptors for [`HybridConfig::light_waits`] waits in a row (waits that time out count
//!   as light). The switch re-arms every descriptor (one `fcntl` each), *then* sweeps the epoll
//!   set once with a zero timeout and reports everything ready — an RT signal is only sent on a
//!   change, so a descriptor that was already ready would otherwise wait for its next event.
//!   A notice queued between the re-arm and the sweep is at worst a repeat (notices are hints).
//!
//! Every switch is counted (`mode_switches`) and kept with its time and reason
//! ([`Dispatcher::switches`]). In signal mode `wait_calls` and `dequeue_calls` count signalfd
//! reads and polls; in epoll mode `wait_calls` counts `epoll_wait`. `interest_syscalls` counts
//! the `fcntl` calls, the `epoll_ctl` calls and the readiness checks.
//!
//! The thresholds are per wait, so an event buffer smaller than `heavy_batch` never switches on
//! batch size (only on overflow).

use super::epoll::{event_flags, interest_bits};
use super::rtsig::{Core, Dequeue, OnOverflow};
use super::{Dispatcher, Mechanism, ModeSwitch, Options, Trigger};
use crate::{sys, Counters, Events, Interest, Token};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// When the hybrid switches.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HybridConfig {
    /// Signals dequeued by one wait at or above which that wait counts as heavy.
    pub heavy_batch: usize,
    /// Heavy waits in a row that switch to epoll.
    pub heavy_waits: u32,
    /// Ready descriptors from one `epoll_wait` at or below which that wait counts as light.
    pub light_ready: usize,
    /// Light waits in a row that switch back to signals.
    pub light_waits: u32,
}

impl Default for HybridConfig {
    fn default() -> Self {
        HybridConfig { heavy_batch: 32, heavy_waits: 3, light_ready: 4, light_waits: 32 }
    }
}

impl HybridConfig {
    fn check(&self) -> io::Result<()> {
        let bad = |what: &str, v: String, ok: &str| {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("hybrid {what} {v} is invalid: expected {ok}"),
            ))
        };
        if self.heavy_batch == 0 {
            return bad("heavy_batch", self.heavy_batch.to_string(), "at least 1");
        }
        if self.heavy_waits == 0 {
            return bad("heavy_waits", self.heavy_waits.to_string(), "at least 1");
        }
        if self.light_waits == 0 {
            return bad("light_waits", self.light_waits.to_string(), "at least 1");
        }
        if self.light_ready >= self.heavy_batch {
            return bad(
                "light_ready",
                self.light_ready.to_string(),
                "less than heavy_batch, so that the two thresholds leave a gap (hysteresis)",
            );
        }
        Ok(())
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Mode {
    Signals,
    Epoll,
}

/// The hybrid dispatcher.
#[derive(Debug)]
pub struct Hybrid {
    core: Core,
    ep: OwnedFd,
    mode: Mode,
    cfg: HybridConfig,
    heavy_run: u32,
    light_run: u32,
    opened: Instant,
    switches: Vec<ModeSwitch>,
    ebuf: Vec<libc::epoll_event>,
}

impl Hybrid {
    /// Opens the hybrid on the calling thread (the one that should wait), in signal mode.
    pub fn open(options: &Options) -> io::Result<Hybrid> {
        options.hybrid.check()?;
        let ep = sys::epoll_create()?;
        Ok(Hybrid {
            core: Core::open(options, Dequeue::Batch, false)?,
            ep,
            mode: Mode::Signals,
            cfg: options.hybrid,
            heavy_run: 0,
            light_run: 0,
            opened: Instant::now(),
            switches: Vec::new(),
            ebuf: Vec::new(),
        })
    }

    fn ctl(&mut self, op: libc::c_int, fd: RawFd, interest: Interest) -> io::Result<()> {
        self.core.counters.interest_syscalls += 1;
        sys::epoll_ctl(self.ep.as_raw_fd(), op, fd, interest_bits(interest), fd as u64)
    }

    fn record(&mut self, to: &'static str, reason: &'static str) {
        self.core.counters.mode_switches += 1;
        self.switches.push(ModeSwitch { at: self.opened.elapsed(), to, reason });
        self.heavy_run = 0;
        self.light_run = 0;
    }

    fn switch_to_epoll(&mut self, reason: &'static str) -> io::Result<()> {
        self.core.disarm_all()?;
        self.core.flush()?;
        self.mode = Mode::Epoll;
        self.record("epoll", reason);
        Ok(())
    }

    fn switch_to_signals(&mut self) -> io::Result<()> {
        self.core.arm_all()?;
        self.mode = Mode::Signals;
        self.record("signals", "ready sets small");
        // Report what is ready now: no signal is sent for a standing state.
        let n = self.core.len().max(1);
        self.epoll_into_core(n, Some(Duration::ZERO))?;
        Ok(())
    }

    /// One `epoll_wait` for up to `max` descriptors, results into the core's list (or backlog).
    fn epoll_into_core(&mut self, max: usize, timeout: Option<Duration>) -> io::Result<usize> {
        if self.ebuf.len() < max {
            self.ebuf.resize(max, libc::epoll_event { events: 0, u64: 0 });
        }
        self.core.counters.wait_calls += 1;
        let n = match sys::epoll_wait(
            self.ep.as_raw_fd(),
            &mut self.ebuf[..max],
            sys::timeout_ms(timeout),
        ) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.core.counters.interrupted += 1;
                return Ok(0);
            }
            Err(e) => return Err(e),
        };
        for k in 0..n {
            let (bits, data) = (self.ebuf[k].events, self.ebuf[k].u64);
            self.core.push_ready(data as RawFd, event_flags(bits));
        }
        Ok(n)
    }
}

impl Dispatcher for Hybrid {
    fn mechanism(&self) -> Mechanism {
        Mechanism::Hybrid
    }

    fn register(&mut self, fd: RawFd, token: Token, interest: Interest) -> io::Result<()> {
        self.core.register(fd, token, interest)?;
        if let Err(e) = self.ctl(libc::EPOLL_CTL_ADD, fd, interest) {
            let _ = self.core.deregister(fd);
            return Err(e);
        }
        Ok(())
    }

    fn reregister(&mut self, fd: RawFd, token: Token, interest: Interest) -> io::Result<()> {
        self.core.reregister(fd, token, interest)?;
        self.ctl(libc::EPOLL_CTL_MOD, fd, interest)
    }

    fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        self.core.deregister(fd)?;
        match self.ctl(libc::EPOLL_CTL_DEL, fd, Interest::READABLE) {
            Ok(()) => Ok(()),
            // Closed before it was deregistered: epoll already dropped it.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBADF) | Some(libc::ENOENT)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        events.clear();
        let cap = events.capacity();
        self.core.begin(cap);
        match self.mode {
            Mode::Signals => {
                let got = self.core.collect(timeout, OnOverflow::Report)?;
                if got.overflow {
                    // The epoll set already holds everything: switching is the recovery.
                    self.switch_to_epoll("signal queue overflow")?;
                    self.core.counters.recoveries += 1;
                } else if got.dequeued >= self.cfg.heavy_batch {
                    self.heavy_run += 1;
                    if self.heavy_run >= self.cfg.heavy_waits {
                        self.switch_to_epoll("signal batches above threshold")?;
                    }
                } else {
                    self.heavy_run = 0;
                }
            }
            Mode::Epoll => {
                let room = cap.saturating_sub(self.core_results());
                let t = if self.core_results() > 0 { Some(Duration::ZERO) } else { timeout };
                let n = if room > 0 { self.epoll_into_core(room, t)? } else { 0 };
                if n <= self.cfg.light_ready {
                    self.light_run += 1;
                    if self.light_run >= self.cfg.light_waits {
                        self.switch_to_signals()?;
                    }
                } else {
                    self.light_run = 0;
                }
            }
        }
        Ok(self.core.emit(events))
    }

    fn trigger(&self) -> Trigger {
        Trigger::Edge
    }

    fn len(&self) -> usize {
        self.core.len()
    }

    fn counters(&self) -> Counters {
        self.core.counters
    }

    fn switches(&self) -> Vec<ModeSwitch> {
        self.switches.clone()
    }
}

impl Hybrid {
    fn core_results(&self) -> usize {
        self.core.result_count()
    }
}
