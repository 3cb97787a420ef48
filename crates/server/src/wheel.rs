//! A coarse timer wheel: each connection sits in at most one slot; a slot is looked at once per
//! tick, so waiting costs nothing per idle connection (no scan of all of them per wait, which
//! would undo what epoll buys with 15,000 idle connections).
//!
//! Entries are hints: the owner keeps the real deadline, and an entry found early is put back.

use std::time::{Duration, Instant};

/// Tick length.
pub const TICK: Duration = Duration::from_millis(100);
const SLOTS: usize = 512;

#[derive(Debug)]
pub struct Wheel {
    start: Instant,
    slots: Vec<Vec<u64>>,
    next_tick: u64,
    len: usize,
}

impl Wheel {
    pub fn new(now: Instant) -> Wheel {
        Wheel { start: now, slots: (0..SLOTS).map(|_| Vec::new()).collect(), next_tick: 0, len: 0 }
    }

    fn tick_of(&self, t: Instant) -> u64 {
        (t.saturating_duration_since(self.start).as_millis() / TICK.as_millis()) as u64
    }

    /// Files `key` under `deadline` (rounded up to a tick).
    pub fn insert(&mut self, key: u64, deadline: Instant) {
        let t = (self.tick_of(deadline) + 1).max(self.next_tick);
        self.slots[(t % SLOTS as u64) as usize].push(key);
        self.len += 1;
    }

    /// Moves every key of the ticks up to `now` into `out` (the caller checks each real
    /// deadline and re-inserts the ones not due).
    pub fn expire(&mut self, now: Instant, out: &mut Vec<u64>) {
        let now_tick = self.tick_of(now);
        let mut n = 0;
        while self.next_tick <= now_tick && n < SLOTS {
            let slot = &mut self.slots[(self.next_tick % SLOTS as u64) as usize];
            self.len -= slot.len();
            out.append(slot);
            self.next_tick += 1;
            n += 1;
        }
        if self.next_tick <= now_tick {
            self.next_tick = now_tick + 1;
        }
    }

    /// How long until the next tick, when anything is filed.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        if self.len == 0 {
            return None;
        }
        let at = self.start + TICK * u32::try_from(self.next_tick).unwrap_or(u32::MAX);
        Some(at.saturating_duration_since(now) + Duration::from_millis(1))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_out_after_their_deadline_not_before() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        w.insert(1, t0 + Duration::from_millis(250));
        w.insert(2, t0 + Duration::from_secs(100)); // beyond one turn of the wheel
        let mut out = Vec::new();
        w.expire(t0 + Duration::from_millis(200), &mut out);
        assert!(out.is_empty());
        w.expire(t0 + Duration::from_millis(400), &mut out);
        assert_eq!(out, [1]);
        assert_eq!(w.len(), 1);
        assert!(
            w.timeout(t0 + Duration::from_millis(400)).unwrap() <= TICK + Duration::from_millis(1)
        );
        out.clear();
        // A long jump visits every slot once; key 2 surfaces (early) for re-insertion.
        w.expire(t0 + Duration::from_secs(60), &mut out);
        assert_eq!(out, [2]);
        assert_eq!(w.timeout(t0), None);
    }
}
