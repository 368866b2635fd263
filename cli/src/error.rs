//! The CLI's one error type and the exit code each kind maps to.

use std::path::PathBuf;

/// Why a command did not succeed.
///
/// Exit codes: 2 for what the user must fix before anything runs (arguments, configuration,
/// paths), 1 for a job that ran and failed or whose outcome fails a check.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Invalid arguments or configuration, found before the run starts.
    #[error("{0}")]
    Usage(String),
    /// A file given on the command line cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An output file cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A job failed while running.
    #[error("job {job} failed: {source}")]
    Job {
        /// The job's name.
        job: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error>,
    },
    /// A job ran to its end but its outcome fails a check (messages lost, results that
    /// disagree, a ledger that does not balance).
    #[error("{0}")]
    Check(String),
    /// A result could not be serialized.
    #[error("cannot serialize the report: {0}")]
    Json(#[from] serde_json::Error),
    /// A plot could not be drawn.
    #[error("cannot draw the plot: {0}")]
    Plot(String),
}

impl CliError {
    /// A failed job.
    pub fn job(job: impl Into<String>, source: impl Into<Box<dyn std::error::Error>>) -> Self {
        CliError::Job {
            job: job.into(),
            source: source.into(),
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Read { .. } | CliError::Write { .. } => 2,
            CliError::Job { .. } | CliError::Check(_) | CliError::Json(_) | CliError::Plot(_) => 1,
        }
    }
}
