//! # sluice-testkit
//!
//! What Sluice's fault tests, benchmarks and fault jobs need around a job under test,
//! written without Sluice itself so that a bug in Sluice cannot hide in its own yardstick:
//!
//! - [`oracle`]: the verifying oracle. Test records carry a [`Tag`] (a stream, such as a
//!   source instance or a Kafka partition, and a sequence number); the [`Oracle`] reports
//!   what was lost, duplicated and reordered per stream and reconciles that with the job's
//!   ledger ([`Books`]), so a test proves every record was delivered or accounted for.
//! - Kafka helpers (feature `kafka`, plain rdkafka clients): producing with backpressure,
//!   reading a topic back, the test broker.
//!
//! Not published and not API.

#![warn(missing_docs)]

#[cfg(feature = "kafka")]
mod kafka;
pub mod oracle;

#[cfg(feature = "kafka")]
pub use kafka::*;
pub use oracle::{Books, Mismatch, Oracle, StreamVerdict, Tag, Verdict};
