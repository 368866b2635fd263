//! Errors of the engine: one enum per phase. [`BuildError`]: the graph is invalid, found
//! before anything runs; [`JobError`]: the job failed while running, with its report.
//!
//! The build errors live in a file of their own, which imports nothing, so the topology can
//! return them while the job errors carry a report that names the topology.

pub(crate) mod build;
mod job;

pub use build::BuildError;
pub use job::JobError;
