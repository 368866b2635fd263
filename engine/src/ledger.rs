//! The ledger: where every record ended.
//!
//! Every record a source emits (or an operator creates: a flat_map's extra outputs, a fork's
//! copies) ends in exactly one place:
//!
//! ```text
//! emitted == delivered + filtered + dropped + deferred_pending + dead_lettered + in_flight
//! ```
//!
//! `filtered` counts records an operator consumed by design (a filter's rejects, the inputs a
//! flat_map turned into nothing): not a loss, but not a delivery either. `in_flight` is
//! measured independently of the other terms: records queued in edges plus records tasks held
//! when they were aborted. It is zero after a job that completed, so the identity checks that
//! nothing vanished.

use serde::{Deserialize, Serialize};

/// Totals of where records ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Records produced by sources plus records created by operators.
    pub emitted: u64,
    /// Records accepted by sinks.
    pub delivered: u64,
    /// Records consumed by operators by design (filters, flat_map to nothing).
    pub filtered: u64,
    /// Records dropped by an edge policy.
    pub dropped: u64,
    /// Records deferred and not yet replayed.
    pub deferred_pending: u64,
    /// Records sent to a dead-letter path.
    pub dead_lettered: u64,
    /// Records queued in edges or held by tasks (non-zero only for a running or aborted job).
    pub in_flight: u64,
    /// True when the identity holds.
    pub balanced: bool,
}

impl Ledger {
    /// Builds a ledger and checks the identity.
    pub fn new(
        emitted: u64,
        delivered: u64,
        filtered: u64,
        dropped: u64,
        deferred_pending: u64,
        dead_lettered: u64,
        in_flight: u64,
    ) -> Self {
        let mut l = Ledger {
            emitted,
            delivered,
            filtered,
            dropped,
            deferred_pending,
            dead_lettered,
            in_flight,
            balanced: false,
        };
        l.balanced = l.accounted() == emitted;
        l
    }

    /// The right-hand side of the identity.
    pub fn accounted(&self) -> u64 {
        self.delivered
            + self.filtered
            + self.dropped
            + self.deferred_pending
            + self.dead_lettered
            + self.in_flight
    }

    /// The identity written out with numbers, for error messages.
    pub fn explain(&self) -> String {
        format!(
            "emitted {} != delivered {} + filtered {} + dropped {} + deferred {} + dead-lettered {} + in flight {} (= {})",
            self.emitted,
            self.delivered,
            self.filtered,
            self.dropped,
            self.deferred_pending,
            self.dead_lettered,
            self.in_flight,
            self.accounted()
        )
    }
}
