//! Calls to a dependency as an operator: adaptive concurrency
//! ([`Aimd`](super::Aimd), [`Gradient`](super::Gradient)) and a circuit breaker
//! ([`CircuitBreaker`](super::CircuitBreaker)) whose fallback answers while it is open.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sluice_engine::Operator;

use super::aimd::ConcurrencyLimit;
use super::breaker::{CallOutcome, CircuitBreaker};
use super::clock::Clock;
use super::retry::CallError;

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

/// Live numbers of a [`ResilienceExt::call_stage`](super::ResilienceExt::call_stage).
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

/// Concurrency configuration of a call stage.
pub type LimiterFactory = Arc<dyn Fn() -> Box<dyn ConcurrencyLimit> + Send + Sync>;

pub(super) struct CallStage<F, FB> {
    pub(super) call: Arc<F>,
    pub(super) fallback: Arc<FB>,
    pub(super) breaker: Option<Arc<Mutex<CircuitBreaker>>>,
    pub(super) limiter: Box<dyn ConcurrencyLimit>,
    pub(super) max: usize,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) stats: CallStats,
    pub(super) in_flight: Arc<AtomicUsize>,
    pub(super) opened_seen: u64,
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
