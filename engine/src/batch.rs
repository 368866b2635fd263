//! Batches: the unit that moves through edges.

use std::time::Instant;

use crate::ack::Ack;

/// A batch of records moving through an edge, with the metadata that is paid for once per
/// batch rather than once per record.
///
/// `created` is the instant the oldest record in the batch was produced by its source; sinks
/// measure source-to-sink latency from it. Operators that merge batches keep the oldest
/// instant, so latency is never under-reported.
#[derive(Debug, Clone)]
pub struct Batch<T> {
    /// The records, in order.
    pub records: Vec<T>,
    /// When the oldest record of this batch left its source.
    pub created: Instant,
    /// Acknowledgements of the source batches these records came from (empty for sources
    /// that do not acknowledge). See [`crate::ack`].
    pub acks: Vec<Ack>,
}

impl<T> Batch<T> {
    /// A batch created now.
    pub fn new(records: Vec<T>) -> Self {
        Self {
            records,
            created: Instant::now(),
            acks: Vec::new(),
        }
    }

    /// A batch carrying an existing creation instant (for operators that transform a batch).
    pub fn with_created(records: Vec<T>, created: Instant) -> Self {
        Self {
            records,
            created,
            acks: Vec::new(),
        }
    }

    /// A batch of other records carrying this batch's creation instant and acks (for
    /// operators that transform a batch).
    pub fn derive<U>(&self, records: Vec<U>) -> Batch<U> {
        Batch {
            records,
            created: self.created,
            acks: self.acks.clone(),
        }
    }

    /// Marks this batch's acks failed (it is being abandoned).
    pub fn fail_acks(&self) {
        crate::ack::fail_acks(&self.acks);
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}
