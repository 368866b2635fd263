//! Reference workloads shared by the examples, the benchmarks, the CLI and the tests.

pub mod herd;
pub mod overload;
#[cfg(feature = "kafka")]
pub mod passthrough;
pub mod w1;
