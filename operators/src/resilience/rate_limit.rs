//! Rate limits as pipeline operators: a token bucket ([`TokenBucket`](super::TokenBucket)),
//! global or per key ([`KeyedLimiter`](super::KeyedLimiter)), that delays (backpressure) or
//! passes over-limit records on as typed 429s.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use sluice_engine::{Operator, Stream};

use super::clock::Clock;
use super::token_bucket::{KeyedLimiter, TokenBucket};
use crate::StreamExt;

/// What a rate limiter does with a record over the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenLimited {
    /// Wait for a token: the operator's thread sleeps, which is backpressure upstream.
    Delay,
    /// Pass the record on as [`Admission::Rejected`] (a typed "429 too many requests").
    Reject,
}

/// Rate limit configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens per second (per key for a keyed limiter).
    pub rate: f64,
    /// Tokens saved up at most.
    pub burst: f64,
    /// Over-limit behaviour.
    pub when_limited: WhenLimited,
    /// Per-key state idle this long is forgotten.
    pub idle_ttl: Duration,
    /// At most this many keys are tracked per operator instance.
    pub max_keys: usize,
}

impl RateLimit {
    /// `rate` per second with `burst`, rejecting over the limit, 60 s idle expiry, 100k keys.
    pub fn reject(rate: f64, burst: f64) -> Self {
        RateLimit {
            rate,
            burst,
            when_limited: WhenLimited::Reject,
            idle_ttl: Duration::from_secs(60),
            max_keys: 100_000,
        }
    }

    /// The same, delaying instead of rejecting.
    pub fn delay(rate: f64, burst: f64) -> Self {
        RateLimit {
            when_limited: WhenLimited::Delay,
            ..Self::reject(rate, burst)
        }
    }
}

/// A record refused by a rate limiter: HTTP's 429.
#[derive(Debug, Clone, PartialEq)]
pub struct TooManyRequests<T> {
    /// The record.
    pub record: T,
    /// When its key will have a token again.
    pub retry_after: Duration,
}

/// The outcome of a rate limiter for one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission<T> {
    /// Within the limit.
    Admitted(T),
    /// Over the limit.
    Rejected(TooManyRequests<T>),
}

pub(super) struct GlobalLimit {
    pub(super) bucket: Option<TokenBucket>,
    pub(super) cfg: RateLimit,
    pub(super) clock: Arc<dyn Clock>,
}

impl<T: Send + 'static> Operator<T, Admission<T>> for GlobalLimit {
    fn process(&mut self, input: Vec<T>) -> Vec<Admission<T>> {
        let (cfg, clock) = (self.cfg, self.clock.clone());
        let bucket = self
            .bucket
            .get_or_insert_with(|| TokenBucket::new(cfg.rate, cfg.burst, clock.now()));
        input
            .into_iter()
            .map(|r| admit(r, cfg.when_limited, &*clock, |now| bucket.try_acquire(now)))
            .collect()
    }
}

fn admit<T>(
    r: T,
    when: WhenLimited,
    clock: &dyn Clock,
    mut acquire: impl FnMut(Duration) -> Result<(), Duration>,
) -> Admission<T> {
    loop {
        match acquire(clock.now()) {
            Ok(()) => return Admission::Admitted(r),
            Err(wait) if when == WhenLimited::Reject => {
                return Admission::Rejected(TooManyRequests {
                    record: r,
                    retry_after: wait,
                })
            }
            // A zero rate never refills: waiting forever would hang the job.
            Err(wait) if wait == Duration::MAX => {
                return Admission::Rejected(TooManyRequests {
                    record: r,
                    retry_after: wait,
                })
            }
            Err(wait) => clock.sleep(wait),
        }
    }
}

/// A token bucket that only delays: the records pass through unchanged, in place.
pub(super) struct Throttle {
    pub(super) bucket: Option<TokenBucket>,
    pub(super) rate: f64,
    pub(super) burst: f64,
    pub(super) clock: Arc<dyn Clock>,
}

impl<T: Send + 'static> Operator<T, T> for Throttle {
    fn process(&mut self, input: Vec<T>) -> Vec<T> {
        let (rate, burst, clock) = (self.rate, self.burst, &*self.clock);
        let bucket = self
            .bucket
            .get_or_insert_with(|| TokenBucket::new(rate, burst, clock.now()));
        for _ in 0..input.len() {
            while let Err(wait) = bucket.try_acquire(clock.now()) {
                clock.sleep(wait);
            }
        }
        input
    }
}

pub(super) struct KeyedLimit<K, KF> {
    pub(super) limiter: KeyedLimiter<K>,
    pub(super) key: Arc<KF>,
    pub(super) cfg: RateLimit,
    pub(super) clock: Arc<dyn Clock>,
}

impl<T, K, KF> Operator<T, Admission<T>> for KeyedLimit<K, KF>
where
    T: Send + 'static,
    K: Hash + Eq + Clone + Send + 'static,
    KF: Fn(&T) -> K + Send + Sync + 'static,
{
    fn process(&mut self, input: Vec<T>) -> Vec<Admission<T>> {
        let (when, clock) = (self.cfg.when_limited, self.clock.clone());
        let (limiter, key) = (&mut self.limiter, &*self.key);
        input
            .into_iter()
            .map(|r| {
                let k = key(&r);
                admit(r, when, &*clock, |now| limiter.try_acquire(&k, now))
            })
            .collect()
    }
}

/// Splitting a rate limiter's output.
pub trait AdmissionExt<T> {
    /// Splits into admitted records and 429s; each starts a new chain.
    fn split_admission(self, name: &str) -> (Stream<T>, Stream<TooManyRequests<T>>);
}

impl<T: Send + 'static> AdmissionExt<T> for Stream<Admission<T>> {
    fn split_admission(self, name: &str) -> (Stream<T>, Stream<TooManyRequests<T>>) {
        let (ok, rejected) = self.split(name, |a| matches!(a, Admission::Admitted(_)));
        (
            ok.flat_map("admitted", |a| match a {
                Admission::Admitted(r) => Some(r),
                Admission::Rejected(_) => None,
            }),
            rejected.flat_map("rejected", |a| match a {
                Admission::Rejected(t) => Some(t),
                Admission::Admitted(_) => None,
            }),
        )
    }
}
