//! # Sluice
//!
//! A stream-processing dataflow engine built around backpressure. When a producer is faster
//! than its consumer, Sluice makes the choice between **control** (slow the producer),
//! **buffer** and **drop** explicit, per edge, and accounts for every record.
//!
//! This facade re-exports the engine, the operators and the connectors; most programs need
//! only the prelude:
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

#![warn(missing_docs)]

pub use sluice_connectors as connectors;
pub use sluice_engine as engine;
pub use sluice_operators as operators;

pub mod workloads;

/// The types and traits most pipelines use.
pub mod prelude {
    pub use sluice_connectors::{GeneratorConfig, PipelineExt};
    pub use sluice_engine::{
        Batch, BuildError, EdgePolicy, InstanceInfo, Job, JobError, JobReport, Operator, Pipeline,
        Sink, SinkError, Source, SourceStatus, Stream,
    };
    pub use sluice_operators::{SinkExt, StreamExt};
}
