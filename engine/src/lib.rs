//! # sluice-engine
//!
//! The core of Sluice: typed pipelines of operator chains on a threaded runtime, connected by
//! bounded, credit-based edges, with per-edge overload policies, metrics and a ledger that
//! accounts for every record.
//!
//! - [`Pipeline`] / [`Stream`]: build a graph of sources, operators and sinks
//!   ([`graph`]).
//! - [`edge`]: the bounded credit-based edges that carry [`Batch`]es between tasks.
//! - [`EdgePolicy`]: what an edge does when credit is short.
//! - [`Job`]: the running graph; [`JobReport`]: what it did; [`Ledger`]: where every record
//!   ended.
//!
//! Operators such as `map`, `filter` and `key_by` live in `sluice-operators`, built on the
//! generic [`Stream::operator`] builder; sources and sinks in `sluice-connectors`.

#![warn(missing_docs)]

pub mod ack;
mod batch;
mod codec;
pub mod edge;
mod error;
pub mod graph;
mod ledger;
pub mod metrics;
mod operator;
mod plan;
mod policy;
mod priority;
mod report;
pub mod rows;
pub mod runtime;
pub mod shutdown;
pub(crate) mod sync;
mod topology;

pub use ack::{Ack, AckOutcome, AckToken};
pub use batch::Batch;
pub use codec::{Codec, CodecError, JsonCodec};
pub use error::{BuildError, JobError};
pub use graph::{Pipeline, SinkHandle, Stream, DEFAULT_BATCH_SIZE, DEFAULT_CAPACITY};
pub use ledger::Ledger;
pub use metrics::TaskState;
pub use operator::{
    BoxError, ErrorKind, InstanceInfo, Operator, Sink, SinkError, Source, SourceError, SourceStatus,
};
pub use plan::EdgeId;
pub use policy::{
    DeferConfig, DropReason, EdgePolicy, SampleConfig, ServiceOrder, Shares, Watermarks,
    WhenLogFull, REASONS,
};
pub use priority::{classifier, Classifier, Prioritized, Priority, CLASSES};
pub use report::{
    DropCount, EdgeReport, JobEvent, JobReport, JobStatus, LatencySummary, OperatorReport,
    SinkReport, StageReport,
};
pub use rows::{count_bytes, count_rows, slice_rows, BytesFn, Rows, RowsError, RowsFn, SliceFn};
pub use runtime::{partition_of, Job, JobHandle, UnknownEdge};
pub use topology::{ExchangeKind, OpKind, Topology, TopologyEdge, TopologyStage};
