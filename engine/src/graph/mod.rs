//! The pipeline builder: typed streams, operator chaining, exchanges, validation.
//!
//! A [`Stream<T>`] is the open end of an *operator chain*: a sequence of operators that will
//! run on one thread per instance, each passing its output batch straight to the next. Adding
//! an operator with [`Stream::operator`] extends the chain; nothing runs yet. A chain is
//! *closed* when its stream ends in a sink, or crosses an exchange (a change of parallelism, a
//! hash partitioning, a union, a fan-out, or an explicit [`Stream::new_chain`]); closing it
//! creates one task per instance and the edges to the next chain.
//!
//! ```text
//!  source ─ map ─ filter ═══(hash edge)═══► fold ─ sink        two chains, two tasks per
//!  └──────── chain 0 ──────┘               └─ chain 1 ─┘        instance at parallelism 2
//! ```
//!
//! [`Pipeline::run`] validates the graph (capacities, parallelism, dangling outputs, cycles)
//! and starts the threads.

//!
//! # Files
//! - `pipeline`: [`Pipeline`], sources, validation and `run`.
//! - `stream`: [`Stream`]: the next edge's settings, chaining operators, sinks.
//! - `exchange`: what crosses an edge: parallelism changes, hash partitioning, union, split,
//!   fork, broadcast.
//! - `wiring`: creating the ports of an edge and closing a chain into its tasks.
//!
//! The builder fills one plan (`plan.rs`) that the runtime consumes.

mod exchange;
mod pipeline;
mod stream;
mod wiring;

pub use pipeline::Pipeline;
pub use stream::Stream;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::edge::{Receiver, Sender};
use crate::error::BuildError;
use crate::metrics::{OpStats, TaskStats};
use crate::plan::{Plan, PlanOp, PlanStage};
use crate::runtime::exchange::Forward;
use crate::runtime::sinkstats::SinkStats;
use crate::runtime::task::{Emit, Runner};
use crate::topology::OpKind;

/// Records per batch when a pipeline does not say otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 1024;
/// Edge capacity in records when neither the pipeline nor the stream says otherwise.
pub const DEFAULT_CAPACITY: usize = 8192;

pub(crate) struct Builder {
    pub plan: Plan,
    pub batch_size: usize,
    pub default_capacity: usize,
    open: BTreeMap<u64, usize>,
    errors: Vec<BuildError>,
    next_stream: u64,
    /// Streams whose next edge has an [`EdgeId`]: stream id -> id.
    reserved: BTreeMap<u64, usize>,
    /// Per [`EdgeId`], the edge it became, once it exists.
    bound: Vec<Option<usize>>,
}

impl Builder {
    pub(super) fn error(&mut self, e: BuildError) {
        self.errors.push(e);
    }

    fn new_stage(&mut self, parallelism: usize) -> usize {
        let p = parallelism.max(1);
        self.plan.runners.push((0..p).map(|_| None).collect());
        self.plan.stages.push(PlanStage {
            name: String::new(),
            parallelism: p,
            ops: Vec::new(),
            tasks: (0..p).map(|_| Arc::new(TaskStats::default())).collect(),
        });
        self.plan.stages.len() - 1
    }

    fn new_op(&mut self, name: &str, kind: OpKind, stage: usize) -> usize {
        let id = self.plan.ops.len();
        self.plan.ops.push(PlanOp {
            name: name.to_string(),
            kind,
            stats: Arc::new(OpStats::default()),
            sink: None,
        });
        self.plan.stages[stage].ops.push(id);
        id
    }

    fn open_stream(&mut self, last_op: usize) -> u64 {
        let id = self.next_stream;
        self.next_stream += 1;
        self.open.insert(id, last_op);
        id
    }
}

/// Per-instance context handed to a chain when it is closed.
pub(crate) struct ChainCtx {
    pub instance: usize,
    pub parallelism: usize,
    pub batch_size: usize,
    pub task: Arc<TaskStats>,
}

type ChainFn<T> = Box<dyn FnMut(&ChainCtx, Box<dyn Emit<T>>) -> Box<dyn Runner>>;

/// An inbox that merges small queued batches up to the pipeline's batch size.
fn new_receiver<T>(batch_size: usize) -> Receiver<T> {
    let rx = Receiver::new();
    rx.coalesce_to(batch_size);
    rx
}

fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn forward_tail<T: Send + 'static>(
    mut txs: Vec<Sender<T>>,
    task: Arc<TaskStats>,
) -> Box<dyn Emit<T>> {
    match txs.pop() {
        Some(tx) => Box::new(Forward { tx, task }),
        None => Box::new(crate::runtime::task::Nowhere {
            task,
            rows: crate::rows::rows_of::<T>(),
        }),
    }
}

/// A handle to a sink's live counters.
#[derive(Debug, Clone)]
pub struct SinkHandle {
    pub(super) stats: Arc<SinkStats>,
}

impl SinkHandle {
    /// Records delivered to the sink so far.
    pub fn delivered(&self) -> u64 {
        self.stats.delivered()
    }
}
