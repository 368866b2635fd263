//! The resilience levers as pipeline operators and sinks.

use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sluice_engine::{
    EdgeId, EdgePolicy, JobHandle, Operator, Sink, SinkError, SinkHandle, Stream, UnknownEdge,
};

use super::aimd::ConcurrencyLimit;
use super::backoff::{Backoff, RetryDecision};
use super::breaker::{BreakerConfig, CallOutcome, CircuitBreaker};
use super::clock::Clock;
use super::levels::OverloadLevels;
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

/// A failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Worth retrying (a timeout, a 503, a 429); `retry_after` if the server said when.
    Retryable {
        /// What happened.
        message: String,
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Retrying will not help (a 400, a record the server rejects).
    Permanent {
        /// What happened.
        message: String,
    },
}

impl CallError {
    fn message(&self) -> &str {
        match self {
            CallError::Retryable { message, .. } | CallError::Permanent { message } => message,
        }
    }
}

/// A record that could not be delivered, with why and after how many attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter<T> {
    /// The record.
    pub record: T,
    /// The last error.
    pub reason: String,
    /// Attempts made.
    pub attempts: u32,
}

/// Retry configuration for [`ResilienceExt::sink_with_retry`].
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// The schedule (attempts, delays, time budget).
    pub backoff: Backoff,
}

/// The outcome of a guarded call.
#[derive(Debug, Clone, PartialEq)]
pub enum Guarded<U> {
    /// The call succeeded.
    Served(U),
    /// The breaker was open: the fallback answered without calling.
    Fallback(U),
    /// The call failed.
    Failed(String),
}

/// Live numbers of a [`ResilienceExt::call_stage`].
#[derive(Debug, Clone, Default)]
pub struct CallStats {
    limit: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    opened: Arc<AtomicUsize>,
}

impl CallStats {
    /// The concurrency limit now.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }
    /// The most calls that were ever in flight at once (over all instances).
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::Relaxed)
    }
    /// Times a breaker opened.
    pub fn breaker_opened(&self) -> usize {
        self.opened.load(Ordering::Relaxed)
    }
}

struct GlobalLimit {
    bucket: Option<TokenBucket>,
    cfg: RateLimit,
    clock: Arc<dyn Clock>,
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
struct Throttle {
    bucket: Option<TokenBucket>,
    rate: f64,
    burst: f64,
    clock: Arc<dyn Clock>,
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

struct KeyedLimit<K, KF> {
    limiter: KeyedLimiter<K>,
    key: Arc<KF>,
    cfg: RateLimit,
    clock: Arc<dyn Clock>,
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

struct RetrySink<T, F, D> {
    write: Arc<F>,
    dead: Arc<D>,
    backoff: Backoff,
    clock: Arc<dyn Clock>,
    dead_count: u64,
    _t: PhantomData<fn(T)>,
}

impl<T, F, D> Sink<T> for RetrySink<T, F, D>
where
    T: Send + 'static,
    F: Fn(&T) -> Result<(), CallError> + Send + Sync + 'static,
    D: Fn(DeadLetter<T>) + Send + Sync + 'static,
{
    fn write(&mut self, records: Vec<T>) -> Result<(), SinkError> {
        for r in records {
            let start = self.clock.now();
            let mut attempts = 0u32;
            loop {
                attempts += 1;
                let err = match (self.write)(&r) {
                    Ok(()) => break,
                    Err(e) => e,
                };
                let decision = match &err {
                    CallError::Permanent { .. } => RetryDecision::GiveUp,
                    CallError::Retryable { retry_after, .. } => {
                        let elapsed = self.clock.now().saturating_sub(start);
                        self.backoff.next(attempts, elapsed, *retry_after)
                    }
                };
                match decision {
                    // Waiting here holds the batch: the edge fills and the source slows.
                    RetryDecision::RetryAfter(d) => self.clock.sleep(d),
                    RetryDecision::GiveUp => {
                        self.dead_count += 1;
                        (self.dead)(DeadLetter {
                            record: r,
                            reason: err.message().to_string(),
                            attempts,
                        });
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    fn take_dead_lettered(&mut self) -> u64 {
        std::mem::take(&mut self.dead_count)
    }
}

/// Concurrency configuration of a call stage.
pub type LimiterFactory = Arc<dyn Fn() -> Box<dyn ConcurrencyLimit> + Send + Sync>;

struct CallStage<F, FB> {
    call: Arc<F>,
    fallback: Arc<FB>,
    breaker: Option<Arc<Mutex<CircuitBreaker>>>,
    limiter: Box<dyn ConcurrencyLimit>,
    max: usize,
    clock: Arc<dyn Clock>,
    stats: CallStats,
    in_flight: Arc<AtomicUsize>,
    opened_seen: u64,
}

impl<T, U, F, FB> Operator<T, Guarded<U>> for CallStage<F, FB>
where
    T: Send + Sync + 'static,
    U: Send + 'static,
    F: Fn(&T) -> Result<U, CallError> + Send + Sync + 'static,
    FB: Fn(&T) -> U + Send + Sync + 'static,
{
    fn process(&mut self, input: Vec<T>) -> Vec<Guarded<U>> {
        let n = input.len();
        let workers = self.limiter.limit().clamp(1, self.max.max(1)).min(n.max(1));
        self.stats.limit.store(workers, Ordering::Relaxed);
        let next = AtomicUsize::new(0);
        let samples: Mutex<Vec<(Duration, bool)>> = Mutex::new(Vec::with_capacity(n));
        let records = &input;
        let (call, fallback, breaker, clock) =
            (&*self.call, &*self.fallback, &self.breaker, &*self.clock);
        let (in_flight, max_in_flight) = (&*self.in_flight, &*self.stats.max_in_flight);
        let work = || {
            let mut out: Vec<(usize, Guarded<U>)> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(r) = records.get(i) else { break };
                let permit = match breaker {
                    Some(b) => match b.lock().acquire(clock.now()) {
                        Ok(p) => Some(p),
                        Err(()) => {
                            out.push((i, Guarded::Fallback(fallback(r))));
                            continue;
                        }
                    },
                    None => None,
                };
                let now_in = in_flight.fetch_add(1, Ordering::Relaxed) + 1;
                max_in_flight.fetch_max(now_in, Ordering::Relaxed);
                let t0 = clock.now();
                let res = call(r);
                let took = clock.now().saturating_sub(t0);
                in_flight.fetch_sub(1, Ordering::Relaxed);
                if let (Some(b), Some(p)) = (breaker, permit) {
                    b.lock().record(
                        p,
                        CallOutcome {
                            ok: res.is_ok(),
                            took,
                        },
                        clock.now(),
                    );
                }
                samples.lock().push((took, res.is_ok()));
                out.push((
                    i,
                    match res {
                        Ok(u) => Guarded::Served(u),
                        Err(e) => Guarded::Failed(e.message().to_string()),
                    },
                ));
            }
            out
        };
        let mut parts: Vec<(usize, Guarded<U>)> = if workers == 1 {
            work()
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..workers).map(|_| s.spawn(work)).collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_default())
                    .collect()
            })
        };
        for (rtt, ok) in samples.into_inner() {
            self.limiter.on_sample(rtt, ok);
        }
        if let Some(b) = &self.breaker {
            let opened = b.lock().opened;
            if opened > self.opened_seen {
                self.stats
                    .opened
                    .fetch_add((opened - self.opened_seen) as usize, Ordering::Relaxed);
                self.opened_seen = opened;
            }
        }
        self.stats
            .limit
            .store(self.limiter.limit(), Ordering::Relaxed);
        parts.sort_unstable_by_key(|(i, _)| *i);
        parts.into_iter().map(|(_, g)| g).collect()
    }
}

/// Resilience operators on a [`Stream`].
pub trait ResilienceExt<T: Send + 'static>: Sized {
    /// A global token bucket (per operator instance) in front of the stream.
    ///
    /// # Backpressure
    /// With [`WhenLimited::Delay`] the operator waits for tokens, slowing everything
    /// upstream; with [`WhenLimited::Reject`] over-limit records pass on as
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

/// Switches edge policies as a job's pressure moves through overload levels.
///
/// Every `interval` it reads the fill of `signal_edge` (0..1), feeds it to the
/// [`OverloadLevels`], and on a level change sets each listed edge to the policy for the new
/// level and records the change as an event in the job's report.
#[derive(Debug)]
pub struct LevelController {
    thread: Option<std::thread::JoinHandle<OverloadLevels>>,
}

impl LevelController {
    /// Starts the controller; it ends by itself when the job finishes.
    ///
    /// # Errors
    /// [`UnknownEdge`] when an edge id is not one of this job's (checked before it starts).
    pub fn spawn(
        job: JobHandle,
        signal_edge: EdgeId,
        mut levels: OverloadLevels,
        policies: Vec<(EdgeId, Vec<EdgePolicy>)>,
        interval: Duration,
    ) -> Result<Self, UnknownEdge> {
        job.edge_fill(signal_edge)?;
        for (edge, _) in &policies {
            job.edge_fill(*edge)?;
        }
        let thread = std::thread::Builder::new()
            .name("sluice-levels".into())
            .spawn(move || {
                while !job.is_finished() {
                    // The ids were checked above; a job's edges never change.
                    let Ok(fill) = job.edge_fill(signal_edge) else {
                        break;
                    };
                    if let Some(c) = levels.update(fill) {
                        job.record_event(
                            "level",
                            format!("{} -> {} (fill {:.2})", c.from, levels.name(), c.signal),
                        );
                        for (edge, per_level) in &policies {
                            if let Some(p) = per_level.get(c.to).or(per_level.last()) {
                                let _ = job.set_edge_policy(*edge, *p);
                            }
                        }
                    }
                    std::thread::sleep(interval);
                }
                levels
            })
            .ok();
        Ok(LevelController { thread })
    }

    /// Waits for the controller to end (after the job) and returns its level history.
    pub fn join(mut self) -> Option<OverloadLevels> {
        self.thread.take().and_then(|t| t.join().ok())
    }
}
