//! Reference workloads shared by the examples, the benchmarks, the CLI and the tests.

pub mod herd;
pub mod overload;
pub mod w1;
