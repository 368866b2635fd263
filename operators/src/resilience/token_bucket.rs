//! Token buckets: a global one, and one per key with bounded memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

/// A token bucket: `rate` tokens per second, at most `burst` saved up. Over any interval of
/// length `t` starting full it admits at most `rate * t + burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Duration,
}

impl TokenBucket {
    /// A full bucket at time `now`.
    pub fn new(rate: f64, burst: f64, now: Duration) -> Self {
        let burst = burst.max(1.0);
        TokenBucket {
            rate: rate.max(0.0),
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Duration) {
        if now > self.last {
            let dt = (now - self.last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
            self.last = now;
        }
    }

    /// Takes one token if there is one; otherwise says how long until there will be.
    ///
    /// # Errors
    /// The wait until a token is available (`Duration::MAX` for a zero rate).
    pub fn try_acquire(&mut self, now: Duration) -> Result<(), Duration> {
        self.refill(now);
        // Tolerate rounding: a refill of 100 x 0.01 must make a whole token.
        if self.tokens >= 1.0 - 1e-9 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            Ok(())
        } else if self.rate > 0.0 {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        } else {
            Err(Duration::MAX)
        }
    }

    /// Tokens available at `now`.
    pub fn available(&mut self, now: Duration) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// Whether the bucket is full at `now` (a full bucket carries no state worth keeping).
    pub fn is_full(&mut self, now: Duration) -> bool {
        self.available(now) >= self.burst
    }
}

/// One token bucket per key. Memory is bounded: keys idle for `idle_ttl` are forgotten (a
/// forgotten key starts again with a full bucket, which is exactly what idleness would have
/// refilled it to once `idle_ttl >= burst / rate`), and at most `max_keys` are kept; when full,
/// the key idle longest is evicted.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    rate: f64,
    burst: f64,
    idle_ttl: Duration,
    max_keys: usize,
    buckets: HashMap<K, (TokenBucket, Duration)>,
    last_sweep: Duration,
    /// Keys evicted to stay under `max_keys` before they were idle.
    pub evicted_early: u64,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// `rate` and `burst` per key.
    pub fn new(rate: f64, burst: f64, idle_ttl: Duration, max_keys: usize) -> Self {
        KeyedLimiter {
            rate,
            burst,
            idle_ttl,
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
            last_sweep: Duration::ZERO,
            evicted_early: 0,
        }
    }

    /// Takes a token from `key`'s bucket.
    ///
    /// # Errors
    /// The wait until `key` has a token.
    pub fn try_acquire(&mut self, key: &K, now: Duration) -> Result<(), Duration> {
        if now.saturating_sub(self.last_sweep) >= self.idle_ttl {
            let ttl = self.idle_ttl;
            self.buckets
                .retain(|_, (_, seen)| now.saturating_sub(*seen) < ttl);
            self.last_sweep = now;
        }
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max_keys {
            if let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, (_, seen))| *seen)
                .map(|(k, _)| k.clone())
            {
                self.buckets.remove(&oldest);
                self.evicted_early += 1;
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        let entry = self
            .buckets
            .entry(key.clone())
            .or_insert_with(|| (TokenBucket::new(rate, burst, now), now));
        entry.1 = now;
        entry.0.try_acquire(now)
    }

    /// Keys tracked now.
    pub fn keys(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn admits_exactly_rate_times_t_plus_burst() {
        // 100/s, burst 10, hammered every millisecond for 2 s: 10 + 100 * 2 = 210 admitted.
        let mut b = TokenBucket::new(100.0, 10.0, ms(0));
        let mut admitted = 0;
        for t in 0..=2000 {
            for _ in 0..5 {
                if b.try_acquire(ms(t)).is_ok() {
                    admitted += 1;
                }
            }
        }
        assert_eq!(admitted, 210);
    }

    #[test]
    fn says_how_long_to_wait() {
        let mut b = TokenBucket::new(10.0, 1.0, ms(0));
        assert!(b.try_acquire(ms(0)).is_ok());
        let wait = b.try_acquire(ms(0)).unwrap_err();
        assert_eq!(wait, ms(100));
        assert!(b.try_acquire(ms(0) + wait).is_ok());
        let mut zero = TokenBucket::new(0.0, 1.0, ms(0));
        assert!(zero.try_acquire(ms(0)).is_ok());
        assert_eq!(zero.try_acquire(ms(5)).unwrap_err(), Duration::MAX);
    }

    #[test]
    fn keyed_limits_each_key_and_bounds_memory() {
        let mut l: KeyedLimiter<u32> = KeyedLimiter::new(1.0, 2.0, ms(5000), 3);
        // Each key gets its own burst of 2.
        for k in 0..3 {
            assert!(l.try_acquire(&k, ms(0)).is_ok());
            assert!(l.try_acquire(&k, ms(0)).is_ok());
            assert!(l.try_acquire(&k, ms(0)).is_err());
        }
        assert_eq!(l.keys(), 3);
        // A fourth key evicts the one idle longest instead of growing past max_keys.
        assert!(l.try_acquire(&9, ms(10)).is_ok());
        assert_eq!(l.keys(), 3);
        assert_eq!(l.evicted_early, 1);
        // After the idle TTL every key is forgotten.
        assert!(l.try_acquire(&9, ms(6000)).is_ok());
        assert_eq!(l.keys(), 1);
    }
}
