//! Retries as a sink: each record written with backoff and full jitter
//! ([`Backoff`](super::Backoff)); permanent failures and spent budgets dead-lettered.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use sluice_engine::{Sink, SinkError};

use super::backoff::{Backoff, RetryDecision};
use super::clock::Clock;

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
    pub(super) fn message(&self) -> &str {
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

/// Retry configuration for
/// [`ResilienceExt::sink_with_retry`](super::ResilienceExt::sink_with_retry).
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// The schedule (attempts, delays, time budget).
    pub backoff: Backoff,
}

pub(super) struct RetrySink<T, F, D> {
    pub(super) write: Arc<F>,
    pub(super) dead: Arc<D>,
    pub(super) backoff: Backoff,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) dead_count: u64,
    pub(super) _t: PhantomData<fn(T)>,
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
