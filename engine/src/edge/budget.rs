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

/// An edge bounded in bytes: its capacity in rows follows `max_bytes / bytes per row`, the
/// bytes per row measured over what senders offer it (smoothed over batches).
///
/// Policies, credit and the ledger stay in rows (a policy sheds, evicts and serves rows,
/// whatever their size); the bound converts bytes to rows at the measured size, as a time
/// budget converts time at the measured drain rate. It is exact for rows of one size, and
/// for rows of varying size holds about `max_bytes` (a burst of rows heavier than the
/// average overshoots until the average catches up, within a few batches).
pub(super) struct ByteBound {
    max_bytes: usize,
    max: usize,
    /// Bytes per row, smoothed; 0 before the first batch.
    per_row: f64,
    /// The capacity aimed at.
    pub target: usize,
}

/// Weight of a new batch in the smoothed bytes per row.
const BYTES_ALPHA: f64 = 0.25;

impl ByteBound {
    pub fn new(max_bytes: usize, max: usize) -> Self {
        ByteBound {
            max_bytes: max_bytes.max(1),
            max: max.max(1),
            per_row: 0.0,
            target: max.max(1),
        }
    }

    /// Records that a sender offered `rows` rows holding `bytes` bytes.
    pub fn observe(&mut self, rows: usize, bytes: usize) {
        if rows == 0 {
            return;
        }
        let b = bytes as f64 / rows as f64;
        self.per_row = if self.per_row == 0.0 {
            b
        } else {
            (1.0 - BYTES_ALPHA) * self.per_row + BYTES_ALPHA * b
        };
        self.target = if self.per_row <= 0.0 {
            self.max
        } else {
            ((self.max_bytes as f64 / self.per_row) as usize).clamp(1, self.max)
        };
    }

    /// The smoothed bytes per row (0 before the first batch).
    pub fn per_row(&self) -> f64 {
        self.per_row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_bound_converts_at_the_measured_row_size() {
        let mut b = ByteBound::new(1 << 20, 100_000);
        assert_eq!(b.target, 100_000, "no estimate yet: the row capacity");
        b.observe(1000, 100_000);
        assert_eq!(b.target, (1 << 20) / 100);
        b.observe(0, 5);
        assert_eq!(b.target, (1 << 20) / 100, "empty batches say nothing");
        for _ in 0..40 {
            b.observe(1000, 1_000_000);
        }
        assert!((b.per_row() - 1000.0).abs() < 1.0);
        assert_eq!(b.target, 1048);
        let mut tiny = ByteBound::new(10, 100);
        tiny.observe(1, 1 << 30);
        assert_eq!(tiny.target, 1, "at least one row");
        let mut cheap = ByteBound::new(1 << 30, 100);
        cheap.observe(10, 0);
        assert_eq!(cheap.target, 100, "capped by the row capacity");
    }
}
