//! Reference workloads shared by the examples, the benchmarks, the CLI and the tests.

pub mod herd;
#[cfg(feature = "kafka")]
pub mod kafka_bench;
#[cfg(feature = "kafka")]
pub mod kafka_faults;
#[cfg(feature = "kafka")]
pub(crate) mod kafka_feed;
#[cfg(feature = "kafka")]
pub(crate) mod kafka_util;
pub mod overload;
#[cfg(feature = "kafka")]
pub mod passthrough;
pub mod w1;
