//! Reference workloads shared by the examples, the benchmarks, the CLI and the tests.

pub mod herd;
#[cfg(feature = "kafka")]
pub mod kafka_bench;
#[cfg(feature = "kafka")]
pub(crate) mod kafka_feed;
pub mod overload;
#[cfg(feature = "kafka")]
pub mod passthrough;
pub mod w1;
