//! Resilience operators: the levers besides edge policies.
//!
//! Each is a small deterministic state machine driven by a [`Clock`], unit-tested with a
//! [`ManualClock`], and wrapped as a pipeline operator or sink in a file beside it
//! (`rate_limit.rs` by `token_bucket.rs`, `retry.rs` by `backoff.rs`, `call.rs` by `breaker.rs`
//! and `aimd.rs`, the controller in `levels.rs`); [`ResilienceExt`] (`ext.rs`) puts them on
//! streams:
//!
//! | lever | state machine | in a pipeline |
//! | --- | --- | --- |
//! | rate limit (global, per key, with burst) | [`TokenBucket`], [`KeyedLimiter`] | [`ResilienceExt::rate_limit`] (delay = backpressure, or reject with a typed 429) |
//! | retry with backoff and full jitter | [`Backoff`] | [`ResilienceExt::sink_with_retry`] (permanent failures dead-lettered) |
//! | circuit breaker with fallback | [`CircuitBreaker`] | [`ResilienceExt::call_stage`] |
//! | adaptive concurrency (AIMD, gradient) | [`Aimd`], [`Gradient`] | [`ResilienceExt::call_stage`] |
//! | overload levels with hysteresis | [`OverloadLevels`] | a controller that switches edge policies ([`LevelController`]) |

mod aimd;
mod backoff;
mod breaker;
mod call;
mod clock;
mod ext;
mod levels;
mod rate_limit;
mod retry;
mod token_bucket;

pub use aimd::{Aimd, ConcurrencyLimit, Gradient};
pub use backoff::{Backoff, RetryDecision};
pub use breaker::{BreakerConfig, BreakerState, CallOutcome, CircuitBreaker, Permit};
pub use call::{CallStats, Guarded, LimiterFactory};
pub use clock::{Clock, ManualClock, SystemClock};
pub use ext::ResilienceExt;
pub use levels::{LevelChange, LevelController, OverloadLevels};
pub use rate_limit::{Admission, AdmissionExt, RateLimit, TooManyRequests, WhenLimited};
pub use retry::{CallError, DeadLetter, RetryConfig};
pub use token_bucket::{KeyedLimiter, TokenBucket};
