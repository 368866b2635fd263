//! A generator source: record `i` is `f(i)`, optionally paced to a target rate.
//!
//! # Pacing
//! With a rate, record `k` of an instance is due at `start + k / rate_per_instance`. Each poll
//! emits every record already due (at least one, at most a batch), so the generator stays on
//! schedule when it can and batches catch up when it falls behind. When the next record is
//! more than two milliseconds away the poll returns `Idle` (the runtime sleeps briefly); closer
//! than that it spins, since sleeping is too coarse below a millisecond.

use std::sync::Arc;
use std::time::Instant;

use sluice_engine::{Source, SourceError, SourceStatus};

/// How many records a generator produces and how fast.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GeneratorConfig {
    /// Total records over all instances; `None` runs until the job is stopped.
    pub count: Option<u64>,
    /// Target records per second over all instances; `None` is as fast as the graph accepts.
    pub rate: Option<f64>,
}

impl GeneratorConfig {
    /// `count` records as fast as the graph accepts them.
    pub fn count(count: u64) -> Self {
        GeneratorConfig {
            count: Some(count),
            rate: None,
        }
    }

    /// Paces the generator to `rate` records per second (over all instances).
    pub fn with_rate(mut self, rate: f64) -> Self {
        self.rate = Some(rate);
        self
    }
}

/// One instance of a generator; see [`PipelineExt::generator`](crate::PipelineExt::generator).
pub struct Generator<F> {
    f: Arc<F>,
    /// Next index this instance produces.
    next: u64,
    step: u64,
    /// Records this instance produces (`u64::MAX`: unbounded).
    remaining: u64,
    produced: u64,
    rate_per_instance: Option<f64>,
    start: Option<Instant>,
}

impl<F> std::fmt::Debug for Generator<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("next", &self.next)
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl<F> Generator<F> {
    /// Instance `instance` of `parallelism`.
    pub fn new(config: GeneratorConfig, instance: usize, parallelism: usize, f: Arc<F>) -> Self {
        let p = parallelism.max(1) as u64;
        let s = instance as u64;
        let remaining = match config.count {
            Some(n) if n > s => (n - s).div_ceil(p),
            Some(_) => 0,
            None => u64::MAX,
        };
        Generator {
            f,
            next: s,
            step: p,
            remaining,
            produced: 0,
            rate_per_instance: config.rate.filter(|r| *r > 0.0).map(|r| r / p as f64),
            start: None,
        }
    }

    /// Records due now (at least one), or `None` if the next is more than 2 ms away.
    fn due(&mut self) -> Option<u64> {
        let Some(rate) = self.rate_per_instance else {
            return Some(u64::MAX);
        };
        let start = *self.start.get_or_insert_with(Instant::now);
        loop {
            let elapsed = start.elapsed().as_secs_f64();
            let due_total = (elapsed * rate) as u64 + 1;
            if due_total > self.produced {
                return Some(due_total - self.produced);
            }
            let wait = (self.produced as f64 + 1.0) / rate - elapsed;
            if wait > 0.002 {
                return None;
            }
            if wait > 0.0002 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

impl<T, F> Source<T> for Generator<F>
where
    T: Send + 'static,
    F: Fn(u64) -> T + Send + Sync + 'static,
{
    fn poll_batch(&mut self, out: &mut Vec<T>, max: usize) -> Result<SourceStatus, SourceError> {
        if self.remaining == 0 {
            return Ok(SourceStatus::Done);
        }
        let Some(due) = self.due() else {
            return Ok(SourceStatus::Idle);
        };
        let n = (max as u64).min(self.remaining).min(due);
        let f = &*self.f;
        let (start, step) = (self.next, self.step);
        out.extend((0..n).map(|j| f(start + j * step)));
        self.next += n * step;
        self.produced += n;
        if self.remaining != u64::MAX {
            self.remaining -= n;
        }
        if self.remaining == 0 {
            Ok(SourceStatus::Done)
        } else {
            Ok(SourceStatus::More)
        }
    }
}
