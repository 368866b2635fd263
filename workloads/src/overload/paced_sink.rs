//! A sink that processes exactly its capacity per second and measures latency per class.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use sluice_engine::{Sink, SinkError, CLASSES};
use sluice_operators::resilience::{Backoff, RetryDecision};

use super::result::{Sample, StepResult};
use super::scenario::Scenario;
use super::schedule::Event;

/// Counters the sink shares with the sampler: delivered records per class.
pub(super) type ClassCounters = Arc<[AtomicU64; CLASSES]>;

/// A sink that processes exactly `capacity` records per second and records latency per
/// class from each event's intended time. With a failure rate, some batches fail transiently
/// and are retried with backoff (the time counts against the sink's pace).
pub(super) struct PacedSink {
    pub(super) epoch: Instant,
    pub(super) per_record: Duration,
    pub(super) next: Option<Instant>,
    pub(super) hists: Vec<Histogram<u64>>,
    pub(super) out: Arc<Mutex<Vec<Histogram<u64>>>>,
    pub(super) delivered: ClassCounters,
    pub(super) failure_rate: f64,
    pub(super) backoff: Backoff,
    pub(super) retries: Arc<AtomicU64>,
    pub(super) calls: u64,
    pub(super) dead: u64,
    /// A change of pace during the run, and latency on both sides of it.
    pub(super) step: Option<Step>,
}

/// The sink's change of pace.
pub(super) struct Step {
    /// When, in nanoseconds after the epoch.
    pub(super) at_ns: u64,
    /// The time per record from then on.
    pub(super) per_record: Duration,
    /// Latency per class of what was delivered before and after.
    pub(super) hists: [Vec<Histogram<u64>>; 2],
    pub(super) out: StepHistograms,
}

impl Step {
    pub(super) fn new(at: Duration, per_record: Duration, out: &StepHistograms) -> Self {
        Step {
            at_ns: at.as_nanos() as u64,
            per_record,
            hists: [histograms(), histograms()],
            out: out.clone(),
        }
    }
}

/// Latency per class before and after a step, shared by a sink's instances.
pub(super) type StepHistograms = Arc<Mutex<[Vec<Histogram<u64>>; 2]>>;

/// Empty step histograms.
pub(super) fn step_histograms() -> StepHistograms {
    Arc::new(Mutex::new([histograms(), histograms()]))
}

/// Latency percentiles per class of one side of a step (classes that delivered nothing are
/// left out).
pub(super) fn step_side(
    hists: &[Histogram<u64>],
) -> std::collections::BTreeMap<sluice_engine::Priority, super::result::Percentiles> {
    hists
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.is_empty())
        .map(|(c, h)| {
            (
                sluice_engine::Priority::rank(c as u8),
                super::result::Percentiles::of(h),
            )
        })
        .collect()
}

impl PacedSink {
    /// Waits until the sink's clock has done `n` records.
    fn pace(&mut self, n: usize) {
        let now = Instant::now();
        // The sink's own clock: it cannot bank idle time beyond one millisecond.
        let start = match self.next {
            Some(t) if t + Duration::from_millis(1) > now => t,
            _ => now,
        };
        let per_record = match &self.step {
            Some(s) if self.epoch.elapsed().as_nanos() as u64 >= s.at_ns => s.per_record,
            _ => self.per_record,
        };
        let done = start + per_record * n as u32;
        self.next = Some(done);
        loop {
            let now = Instant::now();
            if now >= done {
                break;
            }
            let left = done - now;
            if left > Duration::from_millis(1) {
                std::thread::sleep(left - Duration::from_micros(500));
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Whether call number `call` (from 1) fails: one call in `1 / failure_rate`, the first
    /// call included, so every run fails the same calls.
    fn fails(&self, call: u64) -> bool {
        if self.failure_rate <= 0.0 {
            return false;
        }
        let period = (1.0 / self.failure_rate).round().max(1.0) as u64;
        call % period == 1 % period
    }
}

impl Sink<Event> for PacedSink {
    fn write(&mut self, records: Vec<Event>) -> Result<(), SinkError> {
        // A transiently failing call: retried with backoff until it succeeds or the budget is
        // spent (then the batch goes to the dead-letter count, never silently).
        let first = Instant::now();
        let mut attempts = 0;
        loop {
            self.calls += 1;
            if !self.fails(self.calls) {
                break;
            }
            attempts += 1;
            self.pace(records.len().div_ceil(4));
            match self.backoff.next(attempts, first.elapsed(), None) {
                RetryDecision::RetryAfter(d) => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(d);
                }
                RetryDecision::GiveUp => {
                    self.dead += records.len() as u64;
                    return Ok(());
                }
            }
        }
        self.pace(records.len());
        let now_ns = self.epoch.elapsed().as_nanos() as u64;
        let mut counts = [0u64; CLASSES];
        let mut phase = self
            .step
            .as_mut()
            .map(|s| &mut s.hists[usize::from(now_ns >= s.at_ns)]);
        for r in &records {
            let us = now_ns.saturating_sub(r.intended_ns) / 1000;
            if let Some(h) = self.hists.get_mut(r.class.index()) {
                h.saturating_record(us.max(1));
            }
            if let Some(h) = phase.as_mut().and_then(|p| p.get_mut(r.class.index())) {
                h.saturating_record(us.max(1));
            }
            if let Some(c) = counts.get_mut(r.class.index()) {
                *c += 1;
            }
        }
        for (d, c) in self.delivered.iter().zip(counts) {
            if c > 0 {
                d.fetch_add(c, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn take_dead_lettered(&mut self) -> u64 {
        std::mem::take(&mut self.dead)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.publish();
        Ok(())
    }
}

impl PacedSink {
    fn publish(&mut self) {
        let mut out = self.out.lock();
        for (o, h) in out.iter_mut().zip(&mut self.hists) {
            let _ = o.add(&*h);
            h.reset();
        }
        if let Some(s) = &mut self.step {
            let mut out = s.out.lock();
            for (o, h) in out.iter_mut().flatten().zip(s.hists.iter_mut().flatten()) {
                let _ = o.add(&*h);
                h.reset();
            }
        }
    }
}

impl Drop for PacedSink {
    fn drop(&mut self) {
        // An aborted run never calls `finish`: publish what was measured anyway.
        self.publish();
    }
}

/// One histogram per class, microseconds from 1 us to 1 h. The bounds are constants
/// hdrhistogram accepts; were it ever to refuse them, latency would go unrecorded (empty
/// percentiles) rather than the benchmark panicking.
pub(super) fn histograms() -> Vec<Histogram<u64>> {
    (0..CLASSES)
        .filter_map(|_| Histogram::new_with_bounds(1, 3_600_000_000, 3).ok())
        .collect()
}

/// Latency and edge capacity on both sides of the sink's step, if the scenario has one.
pub(super) fn step_result(
    s: &Scenario,
    series: &[Sample],
    hists: &StepHistograms,
) -> Option<StepResult> {
    let st = s.sink_step?;
    let at = st.at.as_secs_f64();
    let end = s.duration.as_secs_f64();
    let median = |from: f64, to: f64| {
        let mut v: Vec<u64> = series
            .iter()
            .filter(|x| x.t_s >= from && x.t_s < to)
            .map(|x| x.capacity)
            .collect();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    };
    let h = hists.lock();
    Some(StepResult {
        at_s: at,
        sink_capacity: [s.sink_capacity, st.capacity],
        edge_capacity: [median(at / 2.0, at), median(at + (end - at) / 2.0, end)],
        before: step_side(&h[0]),
        after: step_side(&h[1]),
    })
}
