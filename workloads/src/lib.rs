//! # sluice-workloads
//!
//! The jobs the `sluice` CLI, the benchmarks and the tests run: W1 and its hand-written
//! baseline, the thundering herd, the open-loop overload scenario and the Kafka benchmark,
//! fault and copy jobs. This crate is not published and is not API: programs that build
//! pipelines depend on the `sluice` facade, and the examples never import this crate.

#![warn(missing_docs)]

pub mod herd;
#[cfg(feature = "kafka")]
pub mod kafka_bench;
#[cfg(feature = "kafka")]
pub mod kafka_copy;
#[cfg(feature = "kafka")]
pub mod kafka_faults;
pub mod overload;
#[cfg(feature = "kafka")]
pub mod passthrough;
pub mod stats;
pub mod w1;
pub mod w1_columnar;
