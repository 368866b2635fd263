//! Errors of a running job.

use crate::operator::{SinkError, SourceError};
use crate::report::JobReport;

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
