//! [`ResilienceExt`]: the resilience operators as methods on a [`Stream`].

use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use parking_lot::Mutex;
use sluice_engine::{SinkHandle, Stream};

use super::backoff::Backoff;
use super::breaker::{BreakerConfig, CircuitBreaker};
use super::call::{CallStage, CallStats, Guarded, LimiterFactory};
use super::clock::Clock;
use super::rate_limit::{Admission, GlobalLimit, KeyedLimit, RateLimit, Throttle};
use super::retry::{CallError, DeadLetter, RetryConfig, RetrySink};
use super::token_bucket::KeyedLimiter;

/// Resilience operators on a [`Stream`].
pub trait ResilienceExt<T: Send + 'static>: Sized {
    /// A global token bucket (per operator instance) in front of the stream.
    ///
    /// # Backpressure
    /// With [`WhenLimited::Delay`](super::WhenLimited::Delay) the operator waits for
    /// tokens, slowing everything upstream; with
    /// [`WhenLimited::Reject`](super::WhenLimited::Reject) over-limit records pass on as
    /// [`Admission::Rejected`] at once.
    fn rate_limit(self, name: &str, cfg: RateLimit, clock: Arc<dyn Clock>) -> Stream<Admission<T>>;

    /// A global token bucket (per operator instance) that only delays: over the limit the
    /// operator waits for a token, and the records pass on unchanged as a `Stream<T>`.
    ///
    /// # Backpressure
    /// Waiting for tokens slows everything upstream, down to the source.
    ///
    /// `rate` must be positive and finite; one that is not is raised to 1 record per second
    /// (a zero rate would never admit a record and hang the job), and `burst` to at least 1.
    fn throttle(self, name: &str, rate: f64, burst: f64, clock: Arc<dyn Clock>) -> Stream<T>;

    /// A token bucket per key (per client, per IP), with bounded memory (idle keys expire).
    /// Put it after a `key_by` on the same key when it runs with several instances, so each
    /// key is limited in one place.
    fn rate_limit_by<K, KF>(
        self,
        name: &str,
        key: KF,
        cfg: RateLimit,
        clock: Arc<dyn Clock>,
    ) -> Stream<Admission<T>>
    where
        K: Hash + Eq + Clone + Send + 'static,
        KF: Fn(&T) -> K + Send + Sync + 'static;

    /// Writes each record with `write`, retrying retryable errors with backoff (honouring
    /// `Retry-After`); permanent failures and exhausted budgets go to `dead_letter` and are
    /// counted as dead-lettered in the ledger.
    ///
    /// # Backpressure
    /// While a record waits to be retried the sink holds its batch: the edge fills and the
    /// source slows down.
    fn sink_with_retry<F, D>(
        self,
        name: &str,
        cfg: RetryConfig,
        clock: Arc<dyn Clock>,
        write: F,
        dead_letter: D,
    ) -> SinkHandle
    where
        F: Fn(&T) -> Result<(), CallError> + Send + Sync + 'static,
        D: Fn(DeadLetter<T>) + Send + Sync + 'static;

    /// Calls a dependency for each record, with up to `max_concurrency` calls in flight
    /// (adapted by the limiter `limiter()` builds per instance) and an optional circuit
    /// breaker; while the breaker is open, `fallback` answers without calling.
    #[allow(clippy::too_many_arguments)]
    fn call_stage<U, F, FB>(
        self,
        name: &str,
        breaker: Option<BreakerConfig>,
        limiter: LimiterFactory,
        max_concurrency: usize,
        clock: Arc<dyn Clock>,
        call: F,
        fallback: FB,
    ) -> (Stream<Guarded<U>>, CallStats)
    where
        T: Sync,
        U: Send + 'static,
        F: Fn(&T) -> Result<U, CallError> + Send + Sync + 'static,
        FB: Fn(&T) -> U + Send + Sync + 'static;
}

impl<T: Send + 'static> ResilienceExt<T> for Stream<T> {
    fn throttle(self, name: &str, rate: f64, burst: f64, clock: Arc<dyn Clock>) -> Stream<T> {
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            1.0
        };
        let burst = if burst.is_finite() && burst >= 1.0 {
            burst
        } else {
            1.0
        };
        self.operator(name, move |_| Throttle {
            bucket: None,
            rate,
            burst,
            clock: clock.clone(),
        })
    }

    fn rate_limit(self, name: &str, cfg: RateLimit, clock: Arc<dyn Clock>) -> Stream<Admission<T>> {
        self.operator(name, move |_| GlobalLimit {
            bucket: None,
            cfg,
            clock: clock.clone(),
        })
    }

    fn rate_limit_by<K, KF>(
        self,
        name: &str,
        key: KF,
        cfg: RateLimit,
        clock: Arc<dyn Clock>,
    ) -> Stream<Admission<T>>
    where
        K: Hash + Eq + Clone + Send + 'static,
        KF: Fn(&T) -> K + Send + Sync + 'static,
    {
        let key = Arc::new(key);
        self.operator(name, move |_| KeyedLimit {
            limiter: KeyedLimiter::new(cfg.rate, cfg.burst, cfg.idle_ttl, cfg.max_keys),
            key: key.clone(),
            cfg,
            clock: clock.clone(),
        })
    }

    fn sink_with_retry<F, D>(
        self,
        name: &str,
        cfg: RetryConfig,
        clock: Arc<dyn Clock>,
        write: F,
        dead_letter: D,
    ) -> SinkHandle
    where
        F: Fn(&T) -> Result<(), CallError> + Send + Sync + 'static,
        D: Fn(DeadLetter<T>) + Send + Sync + 'static,
    {
        let (write, dead) = (Arc::new(write), Arc::new(dead_letter));
        self.sink(name, move |info| {
            let mut backoff = cfg.backoff.clone();
            // Different jitter per instance, reproducible per run.
            backoff = Backoff::new(
                backoff.base,
                backoff.max_delay,
                backoff.max_attempts,
                backoff.max_elapsed,
                0x5EED ^ (info.instance as u64 + 1).wrapping_mul(0x9E37_79B9),
            );
            RetrySink {
                write: write.clone(),
                dead: dead.clone(),
                backoff,
                clock: clock.clone(),
                dead_count: 0,
                _t: PhantomData,
            }
        })
    }

    fn call_stage<U, F, FB>(
        self,
        name: &str,
        breaker: Option<BreakerConfig>,
        limiter: LimiterFactory,
        max_concurrency: usize,
        clock: Arc<dyn Clock>,
        call: F,
        fallback: FB,
    ) -> (Stream<Guarded<U>>, CallStats)
    where
        T: Sync,
        U: Send + 'static,
        F: Fn(&T) -> Result<U, CallError> + Send + Sync + 'static,
        FB: Fn(&T) -> U + Send + Sync + 'static,
    {
        let stats = CallStats::default();
        let s2 = stats.clone();
        let (call, fallback) = (Arc::new(call), Arc::new(fallback));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let stream = self.operator(name, move |_| CallStage {
            call: call.clone(),
            fallback: fallback.clone(),
            breaker: breaker.map(|c| Arc::new(Mutex::new(CircuitBreaker::new(c)))),
            limiter: limiter(),
            max: max_concurrency,
            clock: clock.clone(),
            stats: s2.clone(),
            in_flight: in_flight.clone(),
            opened_seen: 0,
        });
        (stream, stats)
    }
}
