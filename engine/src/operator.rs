//! The traits user code implements: sources, operators and sinks.
//!
//! All three work a batch at a time. Per-record work happens inside the implementation, where
//! the compiler can inline and vectorize it; the runtime pays its costs (credit, counters,
//! clocks, dynamic dispatch) once per batch.

/// Where an operator instance sits in its operator's parallel instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    /// The operator's name.
    pub name: String,
    /// This instance, `0..parallelism`.
    pub instance: usize,
    /// Number of parallel instances of the operator.
    pub parallelism: usize,
    /// The pipeline's batch size (records per batch a source should produce).
    pub batch_size: usize,
}

/// What a [`Source`] reports after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    /// More records may follow; poll again now.
    More,
    /// Nothing available right now; the runtime flushes partial batches downstream and polls
    /// again after a short pause.
    Idle,
    /// The source is exhausted; the runtime sends end of stream downstream.
    Done,
}

/// A boxed error from user code or an external system, kept as the source of a
/// [`SourceError`] or [`SinkError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Whether trying the same call again may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Transient: a timeout, a broker that is down, a full queue. A retrying wrapper may try
    /// again; reaching the runtime, it still fails the job.
    Retryable,
    /// Retrying cannot help: bad configuration, a record the far side refuses, corruption.
    Permanent,
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            ErrorKind::Retryable => "retryable",
            ErrorKind::Permanent => "permanent",
        })
    }
}

macro_rules! user_error {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, thiserror::Error)]
        #[error("{source}")]
        pub struct $name {
            kind: ErrorKind,
            #[source]
            source: BoxError,
        }

        impl $name {
            /// An error of `kind` caused by `source` (any error, or a message).
            pub fn new(kind: ErrorKind, source: impl Into<BoxError>) -> Self {
                Self {
                    kind,
                    source: source.into(),
                }
            }

            /// A transient error: trying again may succeed.
            pub fn retryable(source: impl Into<BoxError>) -> Self {
                Self::new(ErrorKind::Retryable, source)
            }

            /// A permanent error: trying again cannot help.
            pub fn permanent(source: impl Into<BoxError>) -> Self {
                Self::new(ErrorKind::Permanent, source)
            }

            /// Whether it is transient or permanent.
            pub fn kind(&self) -> ErrorKind {
                self.kind
            }

            /// Whether trying again may succeed.
            pub fn is_retryable(&self) -> bool {
                self.kind == ErrorKind::Retryable
            }

            /// The underlying error.
            pub fn into_source(self) -> BoxError {
                self.source
            }
        }

        /// Any error as a permanent one.
        impl From<BoxError> for $name {
            fn from(source: BoxError) -> Self {
                Self::permanent(source)
            }
        }
    };
}

user_error! {
    /// A failure reported by a [`Source`]: the job fails naming the source, its records so
    /// far are accounted for as usual, and nothing panics.
    ///
    /// ```
    /// use sluice_engine::SourceError;
    ///
    /// let e = SourceError::permanent(std::io::Error::other("file truncated"));
    /// assert!(!e.is_retryable());
    /// assert_eq!(e.to_string(), "file truncated");
    /// ```
    SourceError
}

user_error! {
    /// A failure reported by a [`Sink`]: it fails the job with the sink named; the batch
    /// being written counts as in flight, not delivered.
    ///
    /// ```
    /// use sluice_engine::{ErrorKind, SinkError};
    ///
    /// let e = SinkError::retryable("gateway timed out");
    /// assert_eq!(e.kind(), ErrorKind::Retryable);
    /// ```
    SinkError
}

/// A source of records: polled for batches on its own thread.
///
/// # Backpressure
/// The runtime polls the source only when its previous batch has been accepted downstream, so
/// a slow consumer slows the source: it is never asked for records the graph cannot hold.
pub trait Source<T>: Send + 'static {
    /// Appends up to `max` records to `out` and says whether more may follow.
    ///
    /// # Errors
    /// A [`SourceError`] fails the job with this source named ([`crate::JobError::SourceFailed`]).
    /// Records appended to `out` before the error are still sent on.
    fn poll_batch(&mut self, out: &mut Vec<T>, max: usize) -> Result<SourceStatus, SourceError>;

    /// The acknowledgement for the records of the last poll, if this source wants to know
    /// when they reached an end (see [`crate::ack`]). Called after every poll.
    fn take_ack(&mut self) -> Option<crate::ack::Ack> {
        None
    }

    /// Records this source took in but sent to a dead-letter path instead of emitting them
    /// (a message that does not decode), since the last call. The runtime calls it after
    /// every poll and counts them as emitted and dead-lettered in the ledger. Count a record
    /// once its dead letter is durable.
    fn take_dead_lettered(&mut self) -> u64 {
        0
    }

    /// Called once, on the source's thread, after its last poll and after end of stream was
    /// sent downstream: release what it holds (commit, close connections). The runtime calls
    /// [`Source::take_dead_lettered`] once more afterwards.
    fn close(&mut self) {}
}

/// A batch operator: turns each input batch into an output batch.
///
/// Implementations reuse the input allocation where they can (`retain` for a filter, an
/// in-place `into_iter().map(..).collect()` for a same-size map).
pub trait Operator<I, O>: Send + 'static {
    /// Processes one batch.
    fn process(&mut self, input: Vec<I>) -> Vec<O>;

    /// Called once at end of stream; returns records still held (windows, buffers).
    fn finish(&mut self) -> Vec<O> {
        Vec::new()
    }

    /// Records of the last batch this operator sent to a dead-letter path instead of
    /// emitting them (a record it could not process), in records (rows, for items counted in
    /// rows). The runtime calls it after every `process` and `finish` and counts them as
    /// dead-lettered in the ledger instead of filtered. Count a record once its dead letter
    /// is handed off (written, sent, logged).
    fn take_dead_lettered(&mut self) -> u64 {
        0
    }
}

/// The end of a stream: consumes batches on its operator's thread.
///
/// A batch counts as delivered when `write` returns `Ok`.
pub trait Sink<T>: Send + 'static {
    /// Consumes one batch.
    ///
    /// # Errors
    /// An error fails the job; the batch counts as in flight, not delivered.
    fn write(&mut self, records: Vec<T>) -> Result<(), SinkError>;

    /// Like [`Sink::write`], for sinks whose writes become durable later (a producer's
    /// delivery reports): the sink may take acknowledgements out of `acks` and drop them when
    /// its records are durable, or [`fail`](crate::AckToken::fail) them first when they are
    /// not (and on any error or early drop: a held ack that is simply dropped counts as done).
    /// What it leaves in `acks` completes when this returns, as after `write`, or fails if it
    /// returns an error. The records count as delivered when it returns; one that fails
    /// later is reported through [`Sink::take_dead_lettered`] or fails the job.
    ///
    /// The default calls `write` and leaves the acks to the runtime.
    ///
    /// # Errors
    /// As [`Sink::write`].
    fn write_with_acks(
        &mut self,
        records: Vec<T>,
        acks: &mut Vec<crate::Ack>,
    ) -> Result<(), SinkError> {
        let _ = acks;
        self.write(records)
    }

    /// Records of the batches written so far that went to a dead-letter path instead of
    /// being delivered (a permanent failure after retries), since the last call. The runtime
    /// calls it after every `write` and counts them as dead-lettered in the ledger.
    fn take_dead_lettered(&mut self) -> u64 {
        0
    }

    /// Called once at end of stream, after the last batch.
    ///
    /// # Errors
    /// An error fails the job.
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
