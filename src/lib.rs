//! # Sluice
//!
//! A stream-processing dataflow engine built around backpressure. When a producer is faster
//! than its consumer, Sluice makes the choice between **control** (slow the producer),
//! **buffer** and **drop** explicit, per edge, and accounts for every record.
//!
//! This crate is the facade: it re-exports the three library crates and holds the
//! [`prelude`]. It depends on nothing else, so a program that builds pipelines compiles
//! neither the CLI nor the benchmarks.
//!
//! | module | crate | what |
//! | --- | --- | --- |
//! | [`engine`] | `sluice-engine` | pipelines, edges, policies, the runtime, reports, the ledger |
//! | [`operators`] | `sluice-operators` | map, filter, keyed state, sinks, resilience operators |
//! | [`connectors`] | `sluice-connectors` | generators, iterators, Kafka (feature `kafka`) |
//!
//! Most programs need only the prelude:
//!
//! ```
//! use sluice::prelude::*;
//!
//! let p = Pipeline::new("hello");
//! let out = p
//!     .generator("numbers", 1, GeneratorConfig::count(1000), |i| i)
//!     .filter("odd", |x| x % 2 == 1)
//!     .map("square", |x| x * x)
//!     .count("count");
//! let report = p.run()?.wait()?;
//! assert_eq!(out.get(), 500);
//! assert!(report.ledger.balanced);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The examples (`examples/` in the repository, indexed in its `README.md`) are complete
//! pipelines to copy: `hello`, `telemetry_kafka`, `payments`, `indexing_defer`, `herd` and
//! `custom_io`.

#![warn(missing_docs)]

pub use sluice_connectors as connectors;
pub use sluice_engine as engine;
pub use sluice_operators as operators;

/// The `parquet` crate Sluice writes with (to read its files back).
#[cfg(feature = "arrow")]
pub use sluice_connectors::files::parquet;
/// The `arrow` crate Sluice is built with (its arrays, schemas, kernels and record batches).
#[cfg(feature = "arrow")]
pub use sluice_operators::columnar::arrow;

/// The types and traits a pipeline names: `use sluice::prelude::*;`.
///
/// Extension traits bring the builder methods into scope (`generator`, `map`, `key_by`,
/// `count`, `rate_limit`, `kafka_source`, ...); the types are the ones a pipeline's code
/// writes down (policies, classes, sink handles, reports, errors).
pub mod prelude {
    pub use sluice_connectors::{GeneratorConfig, PipelineExt};
    pub use sluice_engine::{
        Batch, BuildError, Codec, CodecError, DeferConfig, DropReason, EdgeId, EdgePolicy,
        ErrorKind, InstanceInfo, Job, JobError, JobHandle, JobReport, JobStatus, JsonCodec, Ledger,
        Operator, Pipeline, Prioritized, Priority, SampleConfig, Sink, SinkError, SinkHandle,
        Source, SourceError, SourceStatus, Stream, UnknownEdge, Watermarks, WhenLogFull,
    };
    pub use sluice_operators::resilience::{
        Admission, AdmissionExt, Backoff, BreakerConfig, CallError, DeadLetter, RateLimit,
        ResilienceExt, RetryConfig, RetryDecision, WhenLimited,
    };
    pub use sluice_operators::{
        Collected, Counted, Failed, FoldSinkHandle, KeyedStream, SinkExt, StreamExt,
    };

    #[cfg(feature = "arrow")]
    pub use sluice_connectors::files::{
        ArrowFilesExt, ArrowSinkExt, IpcConfig, IpcFormat, ParquetCompression, ParquetConfig,
    };
    #[cfg(feature = "arrow")]
    pub use sluice_operators::columnar::{BatchStreamExt, FailedBatch, FailedRow, RowStreamExt};

    #[cfg(feature = "kafka")]
    pub use sluice_connectors::kafka::{
        codec::Classed, EmbeddedKafka, KafkaConfig, KafkaPipelineExt, KafkaSinkConfig,
        KafkaSinkStats, KafkaSourceConfig, KafkaSourceStats, KafkaStreamExt,
    };
}

/// The README's Rust code, compiled and run as doctests so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
