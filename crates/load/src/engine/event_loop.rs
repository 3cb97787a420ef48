//! One thread's event loop: the window and its phases, open-loop arrivals, timers (idle
//! sends, deadlines, re-opening held connections), the live outputs, and waiting for events.
//!
//! Each turn of the loop: [`Engine::phase`] (interrupt, held populations, window start and end,
//! drain), due arrivals, due timers, the live outputs, then one wait for events — never longer
//! than until the next thing due — whose events are handled with due arrivals issued between
//! every 32 of them.

use super::conn::{Pop, St};
use super::output::{self, Sink};
use super::{ns, Engine, Part, Prepared, Rng, Shared};
use crate::http::encode_incomplete;
use crate::plan::{Mode, Plan, WarmupFrom};
use crate::stats::{record_us, ErrorKind, PopStats};
use crate::sys;
use hdrhistogram::Histogram;
use ioscale_dispatch::{Events, Trigger};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime};

/// The open-loop arrivals still to come: this thread's share of the global schedule.
pub(super) struct Arrivals {
    sched: crate::plan::Schedule,
    /// When the next one is due, ns after t0.
    next: f64,
    /// This thread's rate (0: no open-loop arrivals).
    pub(super) rate: f64,
    /// Requests per session.
    calls: u32,
}

/// The loop's own state between turns.
pub(super) struct LoopState {
    /// `--warmup-from held`: until when to wait for the held connections (ns after t0).
    held_bound: u64,
    /// When every held connection of this thread was first up at once.
    held_at: Option<u64>,
    window_started: bool,
    interrupted: bool,
    /// When the arrival clock started (wall clock), and whether the populations were up then.
    seg_start: Option<(SystemTime, bool)>,
    /// After the window: when to stop waiting for replies, and when to count what is in flight
    /// next.
    drain_deadline: u64,
    next_drain_check: u64,
    /// The next whole second (progress, series), and the window seconds already sent.
    next_tick: u64,
    last_series_second: usize,
    /// `--hdr-log`: the interval length and the current interval's start and number.
    hdr_interval: Option<u64>,
    hdr_from: u64,
    hdr_index: u64,
    /// Whether a series file is written (only then are the per-second figures handed over).
    series: bool,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

impl<'p> Engine<'p> {
    /// Thread `index`'s engine for `plan`, its dispatcher open and its requests encoded (each
    /// distinct request once; sends only copy these bytes). `hdr_interval`: `--hdr-log`'s;
    /// `series`: whether a series file is written.
    pub(super) fn new(
        plan: &'p Plan,
        shared: &'p Shared,
        prep: &Prepared,
        index: usize,
        hdr_interval: Option<u64>,
        series: bool,
    ) -> io::Result<Engine<'p>> {
        let d = plan.dispatch.open(&ioscale_dispatch::Options::default())?;
        let trigger = d.trigger();
        let mut wheel = Vec::new();
        for (i, t) in plan.targets.iter().enumerate() {
            wheel.extend(std::iter::repeat_n(i, t.weight as usize));
        }
        let batches: Vec<(Vec<u8>, usize)> =
            plan.targets.iter().map(|t| plan.request.encode_batch(&t.host, &t.path)).collect();
        let start = shared.start;
        // With --warmup-from held the window is placed once the held connections are up.
        let (warm_end, end) = if plan.warmup_from == WarmupFrom::Held {
            (u64::MAX, u64::MAX)
        } else {
            let warm = start + ns(plan.warmup);
            (warm, plan.duration.map_or(u64::MAX, |d| warm + ns(d)))
        };
        // This thread's share of the rate; its arrivals are its slice of the global schedule.
        let rate = plan.segment_rate();
        let held_total = plan.held() as u64;
        let seed = plan.seed
            ^ plan.segment.index.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (index as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let mut arr = Arrivals {
            sched: crate::plan::Schedule::new(plan, rate * plan.segment.count as f64),
            next: 0.0,
            rate,
            calls: if let Mode::Sessions { calls, .. } = plan.mode { calls } else { 0 },
        };
        arr.next = start as f64 + arr.sched.at();
        Ok(Engine {
            plan,
            shared,
            d,
            slab: Vec::new(),
            free: Vec::new(),
            gens: Vec::new(),
            requests: batches.iter().map(|b| b.0.clone()).collect(),
            req_len: batches.iter().map(|b| b.1).collect(),
            pipeline: plan.request.pipeline.max(1),
            head: plan.request.is_head(),
            tls: prep.tls.clone(),
            names: prep.names.clone(),
            incomplete: plan.targets.iter().map(|t| encode_incomplete(&t.host, &t.path)).collect(),
            wheel,
            wheel_pos: 0,
            warm_end,
            end,
            timeout: ns(plan.timeout),
            rng: Rng(seed | 1),
            source_i: 0,
            sources: plan.source_addrs(),
            active: PopStats::default(),
            idle: PopStats::default(),
            inactive: PopStats::default(),
            lag: hist(),
            tick_latency: hist(),
            hdr: hdr_interval.map(|_| Box::default()),
            timers: BinaryHeap::new(),
            deadlines: VecDeque::new(),
            retry: VecDeque::new(),
            retry_gate: 0,
            queue: VecDeque::new(),
            pool_free: Vec::new(),
            start,
            started_in_window: 0,
            scheduling: true,
            // The thread's plan holds its share of the budget.
            budget: match plan.mode {
                Mode::Peak { .. } => plan.requests.unwrap_or(u64::MAX),
                _ => u64::MAX,
            },
            open: 0,
            open_active: 0,
            active_budget: (prep.nofile.saturating_sub(64 + held_total) / shared.threads as u64)
                as usize,
            arr,
            lp: LoopState {
                held_bound: start + ns(plan.held_bound()),
                held_at: None,
                window_started: false,
                interrupted: false,
                seg_start: None,
                drain_deadline: u64::MAX,
                next_drain_check: 0,
                next_tick: 1_000_000_000,
                last_series_second: 0,
                hdr_interval,
                hdr_from: warm_end,
                hdr_index: 0,
                series,
            },
            level: trigger == Trigger::Level,
            oneshot: trigger == Trigger::Oneshot,
        })
    }

    /// Runs this thread's share of the plan to its end and returns what it measured.
    pub(super) fn run(&mut self, sink: &Sink) -> io::Result<Part> {
        let cpu0 = ioscale_sys::cpu::thread_time()?;
        self.open_populations();
        let mut events = Events::with_capacity(1024);
        let mut scratch = vec![0u8; 64 * 1024];
        loop {
            let now = self.now();
            if !self.phase(now) {
                break;
            }
            self.issue_arrivals();
            self.idle_sends(now);
            self.retry_held(now);
            self.hdr_intervals(now, sink);
            self.expire();
            self.tick(now, sink);
            self.wait_and_dispatch(&mut events, &mut scratch)?;
        }
        let cpu = ioscale_sys::cpu::thread_time()? - cpu0;
        Ok(self.finish_part(cpu, sink))
    }

    /// Opens the held populations (inactive, idle) and the active pool.
    fn open_populations(&mut self) {
        for _ in 0..self.plan.inactive {
            self.open(Pop::Inactive, 0, 0);
        }
        for _ in 0..self.plan.idle {
            self.open(Pop::Idle, 0, 0);
        }
        if let Mode::Peak { connections } | Mode::RequestRate { connections, .. } = self.plan.mode {
            for _ in 0..connections {
                self.open(Pop::Active, 0, 0);
            }
        }
    }

    /// The run's phases at `now`: an interrupt ends the window; the held populations all up
    /// (the `held` event, and with `--warmup-from held` the window placed); the arrival clock's
    /// start; the window's start and end (their events); the drain. False when the thread is
    /// done.
    fn phase(&mut self, now: u64) -> bool {
        if ioscale_sys::interrupt::requested() && self.scheduling {
            self.lp.interrupted = true;
            self.warm_end = self.warm_end.min(now);
            self.end = self.end.min(now);
        }
        self.note_held(now);
        self.place_window(now);
        if self.lp.seg_start.is_none() && now >= self.start {
            self.start_clock(now);
        }
        if !self.lp.window_started && now >= self.warm_end {
            self.lp.window_started = true;
            output::event(self.plan, self.shared, output::EVENT_WINDOW_START, self.warm_end);
        }
        let bound_met = self.plan.arrival_bound().is_some_and(|s| self.arr.sched.index() >= s)
            || self.budget == 0;
        if self.scheduling && (now >= self.end || bound_met) {
            self.scheduling = false;
            if self.end == u64::MAX {
                self.end = now;
            }
            if !self.lp.window_started {
                // Interrupted, or a --sessions bound met, before the window began.
                self.lp.window_started = true;
                self.warm_end = self.warm_end.min(now);
                output::event(self.plan, self.shared, output::EVENT_WINDOW_START, self.warm_end);
            }
            output::event(self.plan, self.shared, output::EVENT_WINDOW_END, self.end.min(now));
            self.lp.drain_deadline = now + self.timeout;
        }
        // Draining: done when nothing is in flight (counted at most every 10 ms: the count
        // walks every connection) or when the drain time is up.
        if !self.scheduling {
            if now > self.lp.drain_deadline
                || now >= self.lp.next_drain_check && self.in_flight() == 0
            {
                return false;
            }
            if now >= self.lp.next_drain_check {
                self.lp.next_drain_check = now + 10_000_000;
            }
        }
        true
    }

    /// Notes when every held (idle, inactive) connection of this thread is first up at once;
    /// the thread that completes the run's count writes the `held` event (and, for a segment
    /// of a multi-host run, its READY line).
    fn note_held(&mut self, now: u64) {
        let plan = self.plan;
        if self.lp.held_at.is_none()
            && self.idle.established >= plan.idle as u64
            && self.inactive.established >= plan.inactive as u64
            && (plan.segment.start_at.is_none() || now >= self.start || self.pool_connecting() == 0)
        {
            self.lp.held_at = Some(now);
            if self.shared.held_up() {
                output::event(plan, self.shared, output::EVENT_HELD, now);
                if plan.segment.start_at.is_some() && now < self.start {
                    crate::segment::ready(&self.shared.segment);
                }
            }
        }
    }

    /// `--warmup-from held`: places the window once every thread's held connections are up, or
    /// at the bound; the first thread to see it places it for all.
    fn place_window(&mut self, now: u64) {
        if self.warm_end != u64::MAX || !self.scheduling {
            return;
        }
        let warm = match self.shared.placed_window() {
            Some(w) => w,
            None if self.shared.all_held() || now >= self.lp.held_bound => {
                self.shared.place_window(now.max(self.start) + ns(self.plan.warmup))
            }
            None => return,
        };
        self.warm_end = warm;
        self.end = self.plan.duration.map_or(u64::MAX, |d| warm + ns(d));
        self.lp.hdr_from = warm;
    }

    /// The arrival clock starts: note how far from the shared instant, and start the closed
    /// loop's parked connections.
    fn start_clock(&mut self, now: u64) {
        self.lp.seg_start = Some((SystemTime::now(), self.lp.held_at.is_some()));
        if let Mode::Peak { .. } = self.plan.mode {
            for slot in std::mem::take(&mut self.pool_free) {
                if let Some(c) = self.slab[slot].as_mut() {
                    c.pooled = false;
                }
                self.send_batch(slot, now, false);
            }
        }
    }

    /// Idle connections due to send.
    fn idle_sends(&mut self, now: u64) {
        while let Some(Reverse((at, slot, gen))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.gens.get(slot) != Some(&gen) || !self.scheduling {
                continue;
            }
            if self.slab[slot].as_ref().is_some_and(|c| c.st == St::Waiting && c.pop == Pop::Idle) {
                self.send(slot, at);
            }
        }
    }

    /// Held connections whose re-opening failed are retried, but while connecting fails (no
    /// port, no descriptor, nothing listening) one attempt per 100 ms for all of them: each
    /// retrying on its own would spin on connect() and starve the schedule.
    fn retry_held(&mut self, now: u64) {
        while self.scheduling
            && now >= self.retry_gate
            && self.retry.front().is_some_and(|r| r.0 <= now)
        {
            let (_, pop) = self.retry.pop_front().expect("checked");
            let failing = self.retry_gate != 0;
            if self.open(pop, 0, now).is_none() || failing {
                // Failing: this was the one probe of the period; a connection that comes up
                // clears the gate (`connected`) and the rest follow at once.
                self.retry_gate = now + 100_000_000;
                break;
            }
        }
    }

    /// `--hdr-log`: hands over every interval that ended by `now`.
    fn hdr_intervals(&mut self, now: u64, sink: &Sink) {
        let (Some(len), Some(h)) = (self.lp.hdr_interval, self.hdr.as_deref_mut()) else {
            return;
        };
        while now >= self.lp.hdr_from.saturating_add(len) {
            sink.interval(self.lp.hdr_index, self.lp.hdr_from, len, h);
            self.lp.hdr_from += len;
            self.lp.hdr_index += 1;
        }
    }

    /// Once a second: the progress figures, and a series line for each whole second of the
    /// window that ended since the last one.
    fn tick(&mut self, now: u64, sink: &Sink) {
        if now < self.lp.next_tick {
            return;
        }
        self.lp.next_tick += 1_000_000_000;
        let errors =
            self.active.error_total() + self.idle.error_total() + self.inactive.error_total();
        let mut seconds = Vec::new();
        if self.lp.series && self.warm_end != u64::MAX {
            let sec = (now.saturating_sub(self.warm_end) / 1_000_000_000) as usize;
            while now > self.warm_end && self.lp.last_series_second < sec {
                let i = self.lp.last_series_second;
                let at = |v: &Vec<u64>| v.get(i).copied().unwrap_or(0);
                let status = std::array::from_fn(|c| {
                    at(&self.active.status_per_second[c]) + at(&self.idle.status_per_second[c])
                });
                seconds.push(output::Second {
                    status,
                    unexpected: at(&self.active.unexpected_per_second)
                        + at(&self.idle.unexpected_per_second),
                    index: i,
                    active_replies: self.active.per_second.get(i).copied().unwrap_or(0),
                    idle_replies: self.idle.per_second.get(i).copied().unwrap_or(0),
                    errors_total: errors,
                    open: self.open,
                    reconnects: self.inactive.reconnects + self.idle.reconnects,
                    latency: self.tick_latency.clone(),
                });
                self.tick_latency.reset();
                self.lp.last_series_second += 1;
            }
        }
        sink.tick(output::Progress {
            t: now,
            replies: self.active.replies + self.idle.replies,
            open: self.open,
            errors,
            seconds,
        });
    }

    /// Waits for events until the next thing due (at most 250 ms) and handles them, issuing due
    /// arrivals between every 32: a long batch of events must not hold up the schedule.
    fn wait_and_dispatch(&mut self, events: &mut Events, scratch: &mut [u8]) -> io::Result<()> {
        let due = self.next_due();
        let wait =
            Duration::from_nanos(due.saturating_sub(self.now())).min(Duration::from_millis(250));
        let n = match self.d.wait(events, Some(wait)) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => 0,
            Err(err) => return Err(err),
        };
        if n > 0 {
            for (i, ev) in events.iter().enumerate() {
                self.event(ev.token().0, ev, scratch);
                if i % 32 == 31 {
                    self.issue_arrivals();
                }
            }
        }
        Ok(())
    }

    /// When the next thing is due (ns after t0): a tick, a deadline, an arrival, an idle send,
    /// an interval, a retry, the window's start or end, the arrival clock's start.
    fn next_due(&self) -> u64 {
        let mut due = self.lp.next_tick;
        if let Some(d) = self.deadlines.front() {
            due = due.min(d.0 + 1);
        }
        if let Some(&t) = self.queue.front() {
            due = due.min(t + self.timeout + 1);
        }
        if self.scheduling && self.arr.rate > 0.0 {
            due = due.min(self.arr.next as u64);
        }
        if let Some(Reverse((at, _, _))) = self.timers.peek() {
            due = due.min(*at);
        }
        if let Some(len) = self.lp.hdr_interval {
            due = due.min(self.lp.hdr_from.saturating_add(len));
        }
        if let Some(r) = self.retry.front() {
            due = due.min(r.0.max(self.retry_gate));
        }
        if self.scheduling {
            due = due.min(self.end);
            if self.warm_end == u64::MAX {
                // Another thread may place the window: look again soon.
                due = due.min(self.lp.held_bound).min(self.now() + 1_000_000);
            } else if !self.lp.window_started {
                due = due.min(self.warm_end);
            }
        }
        if self.lp.seg_start.is_none() {
            due = due.min(self.start);
        }
        due
    }

    /// The thread is done: the last (partial) interval, requests still unanswered counted as
    /// timeouts (every request counted ends as a reply or an error), every connection closed,
    /// and what it measured.
    fn finish_part(&mut self, cpu: Duration, sink: &Sink) -> Part {
        let wall = self.shared.t0.elapsed();
        if let (Some(_), Some(h)) = (self.lp.hdr_interval, self.hdr.as_deref_mut()) {
            let end = ns(wall).max(self.lp.hdr_from);
            sink.interval(self.lp.hdr_index, self.lp.hdr_from, end - self.lp.hdr_from, h);
        }
        let window_end = self.end.min(ns(wall));
        let window_s = window_end.saturating_sub(self.warm_end) as f64 / 1e9;
        for slot in 0..self.slab.len() {
            let Some(c) = self.slab[slot].as_ref() else { continue };
            let kind = match (c.pop, c.st) {
                (Pop::Active | Pop::Idle, St::Writing | St::Reading) => ErrorKind::ResponseTimeout,
                (Pop::Active, St::Connecting | St::Handshaking) => ErrorKind::ConnectTimeout,
                _ => continue,
            };
            if self.in_window(c.intended) {
                let (pop, n) = (c.pop, c.inflight.max(1));
                for _ in 0..n {
                    self.stats(pop).error(kind);
                }
            }
        }
        for slot in 0..self.slab.len() {
            self.close(slot);
        }
        Part {
            active: std::mem::take(&mut self.active),
            idle: std::mem::take(&mut self.idle),
            inactive: std::mem::take(&mut self.inactive),
            lag: std::mem::replace(&mut self.lag, hist()),
            started_in_window: self.started_in_window,
            rate: self.arr.rate,
            cpu,
            warm_end: self.warm_end,
            window_s,
            held_at: self.lp.held_at,
            idle_asked: self.plan.idle,
            inactive_asked: self.plan.inactive,
            interrupted: self.lp.interrupted,
            seg_start: self.lp.seg_start,
        }
    }

    /// Puts the connection's current deadline in the timeout queue. Every deadline is "now +
    /// the timeout", so the queue is in deadline order; an entry whose connection has since
    /// moved on (answered, closed, a later deadline of its own queued) is skipped when it
    /// comes up.
    pub(super) fn arm(&mut self, slot: usize) {
        if let Some(c) = self.slab[slot].as_ref().filter(|c| c.deadline != 0) {
            self.deadlines.push_back((c.deadline, slot as u32, self.gens[slot]));
        }
    }

    /// Ends the connections past their deadline, each with a reset (so its descriptor, its port
    /// and the kernel's socket are free at once, and the server learns the client gave up), and
    /// counts as timeouts the request-rate arrivals that waited longer than the timeout for a
    /// free connection of the pool. The cost is per expired connection, never per open one, and
    /// due arrivals go out between expiries: a burst of thousands of timeouts (an overloaded
    /// server) must not hold up the schedule.
    fn expire(&mut self) {
        let mut done = 0u32;
        while let Some(&(at, slot, gen)) = self.deadlines.front() {
            let now = self.now();
            if at >= now {
                break;
            }
            self.deadlines.pop_front();
            let slot = slot as usize;
            let Some(c) = self.slab[slot].as_ref() else { continue };
            if self.gens[slot] != gen || c.deadline == 0 || c.deadline >= now {
                continue;
            }
            let kind = if matches!(c.st, St::Connecting | St::Handshaking) {
                ErrorKind::ConnectTimeout
            } else {
                ErrorKind::ResponseTimeout
            };
            sys::abort_on_close(c.fd.as_raw_fd());
            self.fail(slot, kind);
            done += 1;
            if done.is_multiple_of(32) {
                self.issue_arrivals();
            }
        }
        let now = self.now();
        while self.queue.front().is_some_and(|&t| now.saturating_sub(t) > self.timeout) {
            let t = self.queue.pop_front().expect("checked");
            let counted = self.in_window(t);
            if counted {
                self.active.requests += 1;
            }
            self.count_error(Pop::Active, ErrorKind::ResponseTimeout, 1, counted);
        }
    }

    /// Issues the open-loop arrivals that are due. How late each one is issued is the schedule
    /// lag: the generator's own lateness, whatever the server does (an arrival the server does
    /// not accept or answer in time is the server's result, counted as a timeout or error).
    fn issue_arrivals(&mut self) {
        if !self.scheduling || self.arr.rate <= 0.0 {
            return;
        }
        loop {
            let now = self.now();
            let t = self.arr.next as u64;
            if t > now
                || t >= self.end
                || self.plan.arrival_bound().is_some_and(|s| self.arr.sched.index() >= s)
            {
                return;
            }
            if self.in_window(t) {
                record_us(&mut self.lag, (now - t) / 1000 + 1);
                if self.in_window(now) {
                    self.started_in_window += 1;
                }
            }
            match self.plan.mode {
                Mode::Sessions { .. } => {
                    self.open(Pop::Active, self.arr.calls, t);
                }
                Mode::RequestRate { .. } => {
                    if let Some(slot) = self.pool_free.pop() {
                        if let Some(c) = self.slab[slot].as_mut() {
                            c.pooled = false;
                        }
                        self.send(slot, t);
                        // Pipelining: the slot takes more arrivals while it has room.
                        if let Some(c) = self.slab[slot].as_mut() {
                            if c.inflight < self.pipeline && c.st != St::Waiting {
                                c.pooled = true;
                                self.pool_free.push(slot);
                            }
                        }
                    } else {
                        self.queue.push_back(t);
                    }
                }
                _ => {}
            }
            self.arr.sched.advance();
            self.arr.next = self.start as f64 + self.arr.sched.at();
        }
    }

    /// Pool connections (request-rate, peak) still connecting.
    fn pool_connecting(&self) -> usize {
        self.slab
            .iter()
            .flatten()
            .filter(|c| c.pop == Pop::Active && c.st == St::Connecting)
            .count()
    }

    fn in_flight(&self) -> usize {
        self.slab
            .iter()
            .flatten()
            .filter(|c| match c.pop {
                Pop::Active => {
                    matches!(c.st, St::Connecting | St::Handshaking | St::Writing | St::Reading)
                }
                // An idle connection's request sent before the end is waited for too: it was
                // counted, so its reply (or its timeout) must be.
                Pop::Idle => matches!(c.st, St::Writing | St::Reading),
                Pop::Inactive => false,
            })
            .count()
    }
}
