//! Edges sized in time: a port whose capacity follows its receiver's measured drain rate.
//!
//! With a budget `b`, the port aims at `capacity = b x rate`, where `rate` is the records per
//! second its receiver takes *while records are waiting* (time the receiver spends idle on an
//! empty port says nothing about how fast it drains). The target is clamped between one
//! record and the configured capacity, and re-estimated from windows of at least
//! [`WINDOW`] of busy time, smoothed. So an edge holds a bounded amount of *work* ("5 ms of
//! the sink"), as Flink's buffer debloating does for throughput, here for latency: when the
//! receiver slows down five times, the edge shrinks five times and what it queues still
//! waits about `b`.
//!
//! The capacity moves only by credit that is free: growing adds credit; shrinking absorbs
//! credit as the receiver returns it, so `available + in_flight == capacity` holds at every
//! step and queued records are never evicted by a resize.

use std::time::{Duration, Instant};

/// Busy time a rate estimate covers before it counts.
pub const WINDOW: Duration = Duration::from_millis(20);

pub(super) struct Sizer {
    budget: Duration,
    max: usize,
    /// The capacity aimed at.
    pub target: usize,
    last: Option<Instant>,
    last_n: usize,
    /// Records were still queued after the last take: the time until the next take was spent
    /// on the last batch, not waiting for input.
    busy: bool,
    win_records: u64,
    win: Duration,
    rate: f64,
}

impl Sizer {
    pub fn new(budget: Duration, max: usize) -> Self {
        Sizer {
            budget,
            max: max.max(1),
            target: max.max(1),
            last: None,
            last_n: 0,
            busy: false,
            win_records: 0,
            win: Duration::ZERO,
            rate: 0.0,
        }
    }

    /// Records that the receiver took `taken` records at `now`, leaving the port non-empty
    /// if `still_queued`. Returns true when the target moved.
    pub fn observe(&mut self, now: Instant, taken: usize, still_queued: bool) -> bool {
        if let (Some(last), true) = (self.last, self.busy) {
            self.win += now.saturating_duration_since(last);
            self.win_records += self.last_n as u64;
        }
        self.last = Some(now);
        self.last_n = taken;
        self.busy = still_queued;
        if self.win < WINDOW {
            return false;
        }
        let r = self.win_records as f64 / self.win.as_secs_f64();
        self.rate = if self.rate == 0.0 {
            r
        } else {
            0.5 * self.rate + 0.5 * r
        };
        self.win = Duration::ZERO;
        self.win_records = 0;
        let target = ((self.budget.as_secs_f64() * self.rate).round() as usize).clamp(1, self.max);
        let moved = target != self.target;
        self.target = target;
        moved
    }

    /// The measured drain rate, records per second (0 before the first estimate).
    pub fn rate(&self) -> f64 {
        self.rate
    }
}
