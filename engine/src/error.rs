//! Errors of the engine: one enum per phase.

use crate::operator::{SinkError, SourceError};
use crate::report::JobReport;

/// The graph could not be built: a configuration or topology mistake, found before any
/// thread starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// An edge was given capacity 0; it could never accept a record.
    #[error("edge `{edge}` has capacity 0: give it at least 1 record of credit")]
    ZeroCapacity {
        /// The edge, `upstream -> downstream`.
        edge: String,
    },
    /// An edge's policy acts on priority classes but the edge has no classifier.
    #[error("edge `{edge}` uses policy {policy}, which needs record classes: call `.classify(..)` or `.prioritized()` before the edge")]
    PolicyNeedsClassifier {
        /// The edge.
        edge: String,
        /// The policy.
        policy: String,
    },
    /// A `Defer` edge has no defer log.
    #[error("edge `{edge}` uses the defer policy but has no log: call `.defer_to(dir, max_bytes, codec)` before the edge")]
    DeferNeedsLog {
        /// The edge.
        edge: String,
    },
    /// A defer log could not be opened.
    #[error("cannot open the defer log of edge `{edge}`: {message}")]
    DeferLog {
        /// The edge.
        edge: String,
        /// The I/O error.
        message: String,
    },
    /// An operator was given parallelism 0.
    #[error("operator `{operator}` has parallelism 0: use at least 1")]
    ZeroParallelism {
        /// The operator.
        operator: String,
    },
    /// The batch size is 0.
    #[error("batch size is 0: use at least 1 record per batch")]
    ZeroBatchSize,
    /// A stream's output is not consumed by any operator or sink.
    #[error("the output of `{operator}` is not connected: end it with a sink (or `discard()`)")]
    UnconnectedOutput {
        /// The operator whose output dangles.
        operator: String,
    },
    /// The graph has a cycle.
    #[error("the graph has a cycle through {path}")]
    Cycle {
        /// The stages on the cycle.
        path: String,
    },
    /// The graph has no source.
    #[error("the pipeline has no source")]
    NoSource,
    /// An operating system thread could not be started.
    #[error("could not start thread for `{operator}`: {message}")]
    Spawn {
        /// The operator.
        operator: String,
        /// The OS error.
        message: String,
    },
}

/// A job failed while running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// User code panicked in an operator.
    #[error("operator `{operator}` panicked: {message}")]
    Panicked {
        /// The operator whose code panicked.
        operator: String,
        /// The panic message.
        message: String,
        /// What the job had done when it failed.
        report: Box<JobReport>,
    },
    /// A sink returned an error.
    #[error("sink `{operator}` failed ({}): {error}", error.kind())]
    SinkFailed {
        /// The sink.
        operator: String,
        /// The sink's error.
        #[source]
        error: SinkError,
        /// What the job had done when it failed.
        report: Box<JobReport>,
    },
    /// A source returned an error.
    #[error("source `{operator}` failed ({}): {error}", error.kind())]
    SourceFailed {
        /// The source.
        operator: String,
        /// The source's error.
        #[source]
        error: SourceError,
        /// What the job had done when it failed.
        report: Box<JobReport>,
    },
    /// The ledger identity did not hold at the end of the run: a record is unaccounted for.
    /// This is a bug in Sluice.
    #[error("ledger does not balance: {detail}")]
    LedgerMismatch {
        /// The terms of the identity.
        detail: String,
        /// The report.
        report: Box<JobReport>,
    },
}

impl JobError {
    /// The report of the failed run.
    pub fn report(&self) -> &JobReport {
        match self {
            JobError::Panicked { report, .. }
            | JobError::SinkFailed { report, .. }
            | JobError::SourceFailed { report, .. }
            | JobError::LedgerMismatch { report, .. } => report,
        }
    }
}
