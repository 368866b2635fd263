//! Exponential backoff with full jitter, bounded by attempts and elapsed time.
//!
//! Attempt `n` (the first retry is `n = 1`) waits a uniformly random time in
//! `[0, min(max_delay, base * 2^(n-1))]` ("full jitter", which spreads a herd of retrying
//! clients instead of synchronizing them). A server's `Retry-After` replaces the jittered
//! delay. Retrying stops after `max_attempts` attempts in all, or when the next wait would end
//! past `max_elapsed` since the first attempt.

use std::time::Duration;

/// The retry schedule.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// Cap of the first retry's delay.
    pub base: Duration,
    /// Cap of any delay.
    pub max_delay: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Time budget from the first attempt.
    pub max_elapsed: Duration,
    rng: u64,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// The budget is spent: give up (the record goes to the dead-letter path).
    GiveUp,
}

impl Backoff {
    /// A schedule; `seed` makes the jitter reproducible.
    pub fn new(
        base: Duration,
        max_delay: Duration,
        max_attempts: u32,
        max_elapsed: Duration,
        seed: u64,
    ) -> Self {
        Backoff {
            base,
            max_delay,
            max_attempts: max_attempts.max(1),
            max_elapsed,
            rng: seed | 1,
        }
    }

    fn next_u64(&mut self) -> u64 {
        // xorshift64*: fast, good enough for jitter, reproducible.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The upper bound of the jittered delay before retry `attempt` (1-based).
    pub fn cap(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << exp).min(self.max_delay)
    }

    /// Decides after `attempts` failed attempts, `elapsed` since the first began, with the
    /// server's `retry_after` if it sent one.
    pub fn next(
        &mut self,
        attempts: u32,
        elapsed: Duration,
        retry_after: Option<Duration>,
    ) -> RetryDecision {
        if attempts >= self.max_attempts {
            return RetryDecision::GiveUp;
        }
        let delay = match retry_after {
            Some(d) => d,
            None => {
                let cap = self.cap(attempts).as_nanos() as u64;
                let r = if cap == 0 {
                    0
                } else {
                    self.next_u64() % (cap + 1)
                };
                Duration::from_nanos(r)
            }
        };
        if elapsed + delay > self.max_elapsed {
            RetryDecision::GiveUp
        } else {
            RetryDecision::RetryAfter(delay)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_stay_within_jittered_bounds_and_stop_at_attempts() {
        let mut b = Backoff::new(ms(10), ms(500), 8, Duration::from_secs(3600), 7);
        let mut elapsed = Duration::ZERO;
        let mut delays = Vec::new();
        for attempt in 1..8 {
            match b.next(attempt, elapsed, None) {
                RetryDecision::RetryAfter(d) => {
                    assert!(
                        d <= b.cap(attempt),
                        "attempt {attempt}: {d:?} > {:?}",
                        b.cap(attempt)
                    );
                    delays.push(d);
                    elapsed += d;
                }
                RetryDecision::GiveUp => panic!("gave up early at {attempt}"),
            }
        }
        assert_eq!(b.next(8, elapsed, None), RetryDecision::GiveUp);
        assert_eq!(b.cap(1), ms(10));
        assert_eq!(b.cap(4), ms(80));
        assert_eq!(b.cap(7), ms(500), "capped by max_delay");
        // Jitter actually varies.
        delays.dedup();
        assert!(delays.len() > 3);
    }

    #[test]
    fn jitter_spreads_over_the_whole_range() {
        let mut b = Backoff::new(ms(100), ms(100), 1000, Duration::from_secs(3600), 42);
        let ds: Vec<Duration> = (0..1000)
            .map(|_| match b.next(1, Duration::ZERO, None) {
                RetryDecision::RetryAfter(d) => d,
                RetryDecision::GiveUp => Duration::MAX,
            })
            .collect();
        let low = ds.iter().filter(|d| **d < ms(25)).count();
        let high = ds.iter().filter(|d| **d > ms(75)).count();
        assert!(low > 150 && high > 150, "low {low} high {high}");
    }

    #[test]
    fn stops_at_the_elapsed_budget_and_honours_retry_after() {
        let mut b = Backoff::new(ms(10), ms(10), 100, ms(1000), 1);
        assert_eq!(
            b.next(1, ms(0), Some(ms(300))),
            RetryDecision::RetryAfter(ms(300))
        );
        assert_eq!(b.next(2, ms(800), Some(ms(300))), RetryDecision::GiveUp);
        // Never schedules past the budget.
        for _ in 0..100 {
            if let RetryDecision::RetryAfter(d) = b.next(3, ms(995), None) {
                assert!(ms(995) + d <= ms(1000));
            }
        }
    }
}
