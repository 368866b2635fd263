//! Per-sink delivery counters and source-to-sink latency histograms.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

/// Highest latency a histogram tracks, in microseconds (one hour); longer ones saturate.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds, 1 us to 1 h, 3 significant digits. The bounds are
/// constants hdrhistogram accepts; should that ever change, latency goes unrecorded rather
/// than the data path panicking.
pub(crate) fn new_histogram() -> Option<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).ok()
}

/// Shared counters of one sink (all its instances).
#[derive(Debug)]
pub struct SinkStats {
    delivered: AtomicU64,
    dead_lettered: AtomicU64,
    latency_us: Mutex<Option<Histogram<u64>>>,
}

impl Default for SinkStats {
    fn default() -> Self {
        Self {
            delivered: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            latency_us: Mutex::new(new_histogram()),
        }
    }
}

impl SinkStats {
    pub(crate) fn add_delivered(&self, n: u64) {
        self.delivered.fetch_add(n, Relaxed);
    }
    pub(crate) fn add_dead_lettered(&self, n: u64) {
        self.dead_lettered.fetch_add(n, Relaxed);
    }
    /// Moves `n` records counted delivered to dead-lettered (a write that failed after it
    /// had returned), as far as there are delivered records to move.
    pub(crate) fn reclassify_dead(&self, n: u64) -> u64 {
        let mut cur = self.delivered.load(Relaxed);
        loop {
            let k = n.min(cur);
            match self
                .delivered
                .compare_exchange_weak(cur, cur - k, Relaxed, Relaxed)
            {
                Ok(_) => {
                    self.dead_lettered.fetch_add(k, Relaxed);
                    return k;
                }
                Err(v) => cur = v,
            }
        }
    }
    /// Records the sink sent to its dead-letter path so far.
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.load(Relaxed)
    }
    /// Records delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Relaxed)
    }
    /// A copy of the latency histogram (microseconds) published so far.
    pub fn latency_us(&self) -> Option<Histogram<u64>> {
        self.latency_us.lock().clone()
    }
}

/// A task-local latency histogram, merged into the sink's shared one at the end.
pub(crate) struct LatencyRecorder {
    local: Option<Histogram<u64>>,
}

impl LatencyRecorder {
    pub(crate) fn new() -> Self {
        Self {
            local: new_histogram(),
        }
    }

    /// Records `count` records whose batch was created at `created`.
    pub(crate) fn record(&mut self, created: Instant, count: u64) {
        let Some(h) = &mut self.local else { return };
        let us = created
            .elapsed()
            .as_micros()
            .clamp(1, MAX_LATENCY_US as u128) as u64;
        // Within the bounds just clamped to, recording cannot fail.
        let _ = h.record_n(us, count);
    }

    /// Merges the local histogram into the shared one and clears it.
    pub(crate) fn publish(&mut self, stats: &SinkStats) {
        let Some(local) = &mut self.local else { return };
        if local.is_empty() {
            return;
        }
        if let Some(shared) = stats.latency_us.lock().as_mut() {
            let _ = shared.add(&*local);
        }
        local.reset();
    }
}
