//! A circuit breaker: closed, open, half-open, with failure-rate and slow-call thresholds.
//!
//! ```text
//!            failure or slow rate >= threshold            open_for elapsed
//!  CLOSED ─────────────────────────────────────► OPEN ─────────────────────► HALF-OPEN
//!    ▲                                            ▲                              │
//!    │          `probes` trial calls succeed       │   a trial call fails/slow   │
//!    └─────────────────────────────────────────────┴─────────────────────────────┘
//! ```
//!
//! While open, [`CircuitBreaker::acquire`] fails at once: callers take their fallback instead
//! of waiting on a dependency that is down or drowning.

use std::collections::VecDeque;
use std::time::Duration;

/// Thresholds and timings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Calls in the sliding window the rates are computed over.
    pub window: usize,
    /// Calls needed in the window before the breaker may open.
    pub min_calls: usize,
    /// Open when this share of the window's calls failed (0..1).
    pub failure_rate: f64,
    /// A call slower than this counts as slow.
    pub slow_call: Duration,
    /// Open when this share of the window's calls were slow (0..1).
    pub slow_rate: f64,
    /// How long to stay open before probing.
    pub open_for: Duration,
    /// Trial calls in half-open; all must succeed to close.
    pub probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: 20,
            min_calls: 10,
            failure_rate: 0.5,
            slow_call: Duration::from_millis(100),
            slow_rate: 0.5,
            open_for: Duration::from_secs(1),
            probes: 3,
        }
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow; outcomes are recorded.
    Closed,
    /// Calls fail fast until the given time.
    Open {
        /// When probing may start.
        until: Duration,
    },
    /// A few trial calls are let through.
    HalfOpen {
        /// Trial calls started.
        started: u32,
        /// Trial calls that succeeded.
        succeeded: u32,
    },
}

/// How a call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallOutcome {
    /// It succeeded.
    pub ok: bool,
    /// How long it took.
    pub took: Duration,
}

/// Permission for one call, to be returned with its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "record the call's outcome with CircuitBreaker::record"]
pub struct Permit {
    trial: bool,
}

/// A circuit breaker.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    cfg: BreakerConfig,
    state: BreakerState,
    /// Recent outcomes: (failed, slow).
    window: VecDeque<(bool, bool)>,
    /// Times the breaker opened.
    pub opened: u64,
    /// Calls refused while open (or beyond the trial calls while half-open).
    pub rejected: u64,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(cfg: BreakerConfig) -> Self {
        CircuitBreaker {
            cfg,
            state: BreakerState::Closed,
            window: VecDeque::with_capacity(cfg.window),
            opened: 0,
            rejected: 0,
        }
    }

    /// The state at `now` (an open breaker whose time is up reports half-open).
    pub fn state(&mut self, now: Duration) -> BreakerState {
        if let BreakerState::Open { until } = self.state {
            if now >= until {
                self.state = BreakerState::HalfOpen {
                    started: 0,
                    succeeded: 0,
                };
            }
        }
        self.state
    }

    /// Asks to make a call.
    ///
    /// # Errors
    /// `Err(())` when the breaker is open (or half-open with all trial calls taken): fail
    /// fast and take the fallback.
    #[allow(clippy::result_unit_err)]
    pub fn acquire(&mut self, now: Duration) -> Result<Permit, ()> {
        match self.state(now) {
            BreakerState::Closed => Ok(Permit { trial: false }),
            BreakerState::Open { .. } => {
                self.rejected += 1;
                Err(())
            }
            BreakerState::HalfOpen { started, succeeded } => {
                if started < self.cfg.probes {
                    self.state = BreakerState::HalfOpen {
                        started: started + 1,
                        succeeded,
                    };
                    Ok(Permit { trial: true })
                } else {
                    self.rejected += 1;
                    Err(())
                }
            }
        }
    }

    fn open(&mut self, now: Duration) {
        self.state = BreakerState::Open {
            until: now + self.cfg.open_for,
        };
        self.window.clear();
        self.opened += 1;
    }

    /// Records the outcome of a call made with `permit`.
    pub fn record(&mut self, permit: Permit, outcome: CallOutcome, now: Duration) {
        let slow = outcome.took >= self.cfg.slow_call;
        let bad = !outcome.ok || slow;
        match self.state {
            BreakerState::HalfOpen { started, succeeded } if permit.trial => {
                if bad {
                    self.open(now);
                } else if succeeded + 1 >= self.cfg.probes {
                    self.state = BreakerState::Closed;
                    self.window.clear();
                } else {
                    self.state = BreakerState::HalfOpen {
                        started,
                        succeeded: succeeded + 1,
                    };
                }
            }
            BreakerState::Closed => {
                if self.window.len() == self.cfg.window {
                    self.window.pop_front();
                }
                self.window.push_back((!outcome.ok, slow));
                let n = self.window.len();
                if n >= self.cfg.min_calls {
                    let failed = self.window.iter().filter(|(f, _)| *f).count() as f64 / n as f64;
                    let slowed = self.window.iter().filter(|(_, s)| *s).count() as f64 / n as f64;
                    if failed >= self.cfg.failure_rate || slowed >= self.cfg.slow_rate {
                        self.open(now);
                    }
                }
            }
            // A call that started before the breaker opened: its outcome no longer matters.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            window: 10,
            min_calls: 5,
            failure_rate: 0.5,
            slow_call: ms(100),
            slow_rate: 0.6,
            open_for: ms(1000),
            probes: 2,
        }
    }

    fn call(b: &mut CircuitBreaker, now: Duration, ok: bool, took: u64) -> bool {
        match b.acquire(now) {
            Ok(p) => {
                b.record(p, CallOutcome { ok, took: ms(took) }, now);
                true
            }
            Err(()) => false,
        }
    }

    #[test]
    fn opens_after_the_failure_threshold_and_fails_fast() {
        let mut b = CircuitBreaker::new(cfg());
        // 4 failures out of 4: below min_calls, still closed.
        for _ in 0..4 {
            assert!(call(&mut b, ms(0), false, 1));
        }
        assert_eq!(b.state(ms(0)), BreakerState::Closed);
        // The fifth failure reaches min_calls at a 100% failure rate: open.
        assert!(call(&mut b, ms(0), false, 1));
        assert_eq!(b.state(ms(0)), BreakerState::Open { until: ms(1000) });
        // Fails fast while open.
        for t in [1, 500, 999] {
            assert!(b.acquire(ms(t)).is_err());
        }
        assert_eq!((b.opened, b.rejected), (1, 3));
    }

    #[test]
    fn slow_calls_open_it_too() {
        let mut b = CircuitBreaker::new(cfg());
        for i in 0..5 {
            // Successful but slow: 3 of 5 slow = 60%.
            assert!(call(&mut b, ms(0), true, if i < 3 { 150 } else { 10 }));
        }
        assert!(matches!(b.state(ms(0)), BreakerState::Open { .. }));
    }

    #[test]
    fn half_open_probes_then_closes_on_success_or_reopens_on_failure() {
        let mut b = CircuitBreaker::new(cfg());
        for _ in 0..5 {
            call(&mut b, ms(0), false, 1);
        }
        // After open_for: half-open lets exactly `probes` trial calls through.
        let p1 = b.acquire(ms(1000)).expect("probe 1");
        let p2 = b.acquire(ms(1000)).expect("probe 2");
        assert!(b.acquire(ms(1000)).is_err(), "only two probes");
        b.record(
            p1,
            CallOutcome {
                ok: true,
                took: ms(1),
            },
            ms(1001),
        );
        assert!(matches!(b.state(ms(1001)), BreakerState::HalfOpen { .. }));
        b.record(
            p2,
            CallOutcome {
                ok: true,
                took: ms(1),
            },
            ms(1002),
        );
        assert_eq!(b.state(ms(1002)), BreakerState::Closed);

        // Open again; a failed probe reopens for another open_for.
        for _ in 0..5 {
            call(&mut b, ms(2000), false, 1);
        }
        let p = b.acquire(ms(3000)).expect("probe");
        b.record(
            p,
            CallOutcome {
                ok: false,
                took: ms(1),
            },
            ms(3001),
        );
        assert_eq!(b.state(ms(3001)), BreakerState::Open { until: ms(4001) });
        assert_eq!(b.opened, 3);
    }
}
