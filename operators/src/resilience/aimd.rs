//! Adaptive concurrency: find how many requests in flight a dependency sustains.
//!
//! - [`Aimd`]: additive increase (about +1 per window of successful calls), multiplicative
//!   decrease on an error, a timeout or a call slower than a threshold, like TCP and Vector's
//!   adaptive request concurrency.
//! - [`Gradient`]: compares the recent round-trip time with the long-run minimum and scales the
//!   limit by their ratio, plus a small queue allowance, like Netflix's gradient limiter: it
//!   backs off as soon as latency rises, before errors appear.

use std::time::Duration;

/// A concurrency limiter.
pub trait ConcurrencyLimit: Send {
    /// Requests allowed in flight now.
    fn limit(&self) -> usize;
    /// Feeds the outcome of one call: its round-trip time and whether it succeeded.
    fn on_sample(&mut self, rtt: Duration, ok: bool);
}

/// Additive-increase, multiplicative-decrease.
#[derive(Debug, Clone)]
pub struct Aimd {
    limit: f64,
    min: f64,
    max: f64,
    /// Multiplier applied on a bad sample (e.g. 0.9).
    pub backoff: f64,
    /// A successful call slower than this counts as bad (none: only errors count).
    pub slow: Option<Duration>,
    /// Samples since the last decrease: the limit decreases at most once per window of
    /// `limit` samples, so one overloaded window (whose calls all fail together) costs one
    /// backoff, not one per failed call.
    since_decrease: f64,
}

impl Aimd {
    /// Starts at `initial`, bounded by `min..=max`.
    pub fn new(initial: usize, min: usize, max: usize) -> Self {
        Aimd {
            limit: initial.clamp(min.max(1), max.max(1)) as f64,
            min: min.max(1) as f64,
            max: max.max(1) as f64,
            backoff: 0.9,
            slow: None,
            since_decrease: f64::INFINITY,
        }
    }
}

impl ConcurrencyLimit for Aimd {
    fn limit(&self) -> usize {
        self.limit as usize
    }

    fn on_sample(&mut self, rtt: Duration, ok: bool) {
        let bad = !ok || self.slow.is_some_and(|s| rtt > s);
        self.since_decrease += 1.0;
        if bad {
            if self.since_decrease >= self.limit {
                self.limit = (self.limit * self.backoff).max(self.min);
                self.since_decrease = 0.0;
            }
        } else {
            self.limit = (self.limit + 1.0 / self.limit).min(self.max);
        }
    }
}

/// A latency-gradient limiter. Once per window (as many samples as the limit) it compares
/// the window's average round-trip time with the long-run minimum and sets
/// `limit = limit * clamp(long / short, 0.5, 1) + sqrt(limit)`, smoothed: latency rising above
/// its floor shrinks the limit before any error appears.
#[derive(Debug, Clone)]
pub struct Gradient {
    limit: f64,
    min: f64,
    max: f64,
    /// Long-run (minimum-tracking) round-trip estimate, seconds.
    long_rtt: Option<f64>,
    /// Current window: sum of round-trip times and count.
    window_sum: f64,
    window_n: f64,
    /// Weight of a window's target in the new limit.
    pub smoothing: f64,
    failed_in_window: bool,
}

impl Gradient {
    /// Starts at `initial`, bounded by `min..=max`.
    pub fn new(initial: usize, min: usize, max: usize) -> Self {
        Gradient {
            limit: initial.clamp(min.max(1), max.max(1)) as f64,
            min: min.max(1) as f64,
            max: max.max(1) as f64,
            long_rtt: None,
            window_sum: 0.0,
            window_n: 0.0,
            smoothing: 0.2,
            failed_in_window: false,
        }
    }
}

impl ConcurrencyLimit for Gradient {
    fn limit(&self) -> usize {
        self.limit as usize
    }

    fn on_sample(&mut self, rtt: Duration, ok: bool) {
        self.window_sum += rtt.as_secs_f64().max(1e-9);
        self.window_n += 1.0;
        self.failed_in_window |= !ok;
        if self.window_n < self.limit.floor() {
            return;
        }
        let short = self.window_sum / self.window_n;
        self.window_sum = 0.0;
        self.window_n = 0.0;
        if std::mem::take(&mut self.failed_in_window) {
            self.limit = (self.limit * 0.9).max(self.min);
            return;
        }
        // The long estimate follows the minimum at once and drifts up slowly, so a lasting
        // change in the dependency is eventually accepted as its new normal.
        let long = match self.long_rtt {
            Some(l) if short < l => short,
            Some(l) => l + 0.001 * (short - l),
            None => short,
        };
        self.long_rtt = Some(long);
        let gradient = (long / short).clamp(0.5, 1.0);
        let target = self.limit * gradient + self.limit.sqrt();
        self.limit = (self.limit * (1.0 - self.smoothing) + target * self.smoothing)
            .clamp(self.min, self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dependency that serves `capacity` requests at once in `base` each; beyond that,
    /// requests queue (latency grows) and, past twice the capacity, fail.
    fn simulate(
        limiter: &mut dyn ConcurrencyLimit,
        capacity: usize,
        fail_above: usize,
        steps: usize,
    ) -> Vec<usize> {
        let base = Duration::from_millis(10);
        let mut limits = Vec::with_capacity(steps);
        for _ in 0..steps {
            let in_flight = limiter.limit();
            let queueing = (in_flight as f64 / capacity as f64).max(1.0);
            let rtt = base.mul_f64(queueing);
            for _ in 0..in_flight {
                limiter.on_sample(rtt, in_flight <= fail_above);
            }
            limits.push(limiter.limit());
        }
        limits
    }

    #[test]
    fn aimd_converges_to_capacity_and_backs_off_on_errors() {
        // Calls fail once more than 55 are in flight.
        let mut a = Aimd::new(1, 1, 1000);
        let limits = simulate(&mut a, 50, 55, 200);
        // Additive increase reaches the capacity within 60 steps (about +1 per step)...
        let reached = limits
            .iter()
            .position(|l| *l >= 50)
            .expect("reaches capacity");
        assert!(reached <= 60, "reached at step {reached}");
        // ...and afterwards it stays within [0.8, 1.15] x capacity: errors push it back down.
        for (i, l) in limits.iter().enumerate().skip(reached) {
            assert!((40..=57).contains(l), "step {i}: limit {l}");
        }
        // Errors back off multiplicatively, once per window of samples.
        let mut b = Aimd::new(100, 1, 1000);
        b.on_sample(Duration::from_millis(10), false);
        assert_eq!(b.limit(), 90);
        for _ in 0..50 {
            b.on_sample(Duration::from_millis(10), false);
        }
        assert_eq!(b.limit(), 90, "same window: no second backoff");
        for _ in 0..50 {
            b.on_sample(Duration::from_millis(10), false);
        }
        assert_eq!(b.limit(), 81, "next window: 0.9 again");
    }

    #[test]
    fn gradient_settles_near_capacity_on_latency_alone() {
        // No errors below 4x capacity: only latency tells the limiter to stop.
        let mut g = Gradient::new(1, 1, 1000);
        let limits = simulate(&mut g, 50, 200, 300);
        let tail = &limits[200..];
        let lo = *tail.iter().min().unwrap_or(&0);
        let hi = *tail.iter().max().unwrap_or(&0);
        // Capacity plus the queue allowance (sqrt(limit) ~ 7).
        assert!(lo >= 40 && hi <= 65, "settled between {lo} and {hi}");
    }
}
