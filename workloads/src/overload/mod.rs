//! The overload scenario: an open-loop producer at `overload` times a sink's capacity, one
//! edge with the policy under test, and a sink that can do exactly `sink_capacity` records
//! per second.
//!
//! # Open loop
//! Record `k` is due at `k / rate` seconds after the start and carries that *intended* time.
//! Latency is measured from it, so time a record spent waiting to be produced (the producer
//! blocked by backpressure) counts: there is no coordinated omission. Under `Block` the
//! producer falls behind its schedule and the latency shows it.
//!
//! # Classes
//! Each record's class is drawn from the mix (default Debug 70%, Info 20%, Warn 8%, Error 2%)
//! by a hash of its sequence number, so every run offers the same records.
//!
//! # Layout
//! - [`scenario`]: what a run is asked to do (policy, profile, capacities, the Kafka feed).
//! - [`schedule`]: the offered load over time and the class of each record.
//! - `open_loop`: the producer that emits records when they are due.
//! - `paced_sink`: a sink that processes exactly its capacity and measures latency.
//! - `kafka_feed`: the same schedule fed through a Kafka topic (feature `kafka`).
//! - [`result`]: what a run measured (the JSON report).
//! - `run`: one scenario in this process.
//! - [`oracle`]: the hand-written baseline (per-class queues under one lock).
//! - [`jobs`]: the presets of the example jobs (telemetry, orders, indexing, ingest).

pub mod jobs;
#[cfg(feature = "kafka")]
mod kafka_feed;
#[cfg(not(feature = "kafka"))]
#[path = "kafka_feed_off.rs"]
mod kafka_feed;
mod open_loop;
pub mod oracle;
mod paced_sink;
pub mod result;
mod run;
pub mod scenario;
pub mod schedule;

pub use jobs::ScenarioJob;
pub use result::{
    peak_rss_bytes, recovery, rss_bytes, ClassResult, DropRow, Percentiles, Sample, ScenarioResult,
    StepResult,
};
pub use run::run;
pub use scenario::{KafkaFeed, PipelineShape, PolicyChoice, Scenario, SinkStep};
pub use schedule::{Event, Profile, Schedule};
