//! The plan: the one description of a job. The graph builder ([`crate::graph`]) fills it;
//! the runtime ([`crate::runtime`]) consumes it and never sees the builder.
//!
//! ```text
//!   Pipeline / Stream (graph)  --fills-->  Plan  --consumed by-->  runtime::spawn -> Job
//!                                           |
//!                                           +--> Topology (plain data, validated, reported)
//! ```
//!
//! A plan holds, per operator, its name, kind and counters; per stage (an operator chain run
//! by `parallelism` threads) its operators, task counters and the runners the threads will
//! execute; per edge its endpoints, exchange, capacity, policy and the probes of its ports.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::edge::EdgeProbe;
use crate::metrics::{OpStats, TaskStats};
use crate::policy::EdgePolicy;
use crate::runtime::control::Control;
use crate::runtime::sinkstats::SinkStats;
use crate::runtime::task::Runner;
use crate::topology::{ExchangeKind, OpKind, Topology, TopologyEdge, TopologyStage};

/// A typed handle to one edge of a pipeline, handed out by the builder
/// ([`Stream::edge_id`](crate::Stream::edge_id)) and used by a
/// [`JobHandle`](crate::JobHandle) to read the edge's fill and switch its policy.
///
/// ```
/// use sluice_engine::{EdgePolicy, Pipeline, Sink, SinkError, Source, SourceError, SourceStatus};
///
/// struct Ten(u64);
/// impl Source<u64> for Ten {
///     fn poll_batch(&mut self, out: &mut Vec<u64>, _max: usize) -> Result<SourceStatus, SourceError> {
///         self.0 += 1;
///         out.push(self.0);
///         Ok(if self.0 == 10 { SourceStatus::Done } else { SourceStatus::More })
///     }
/// }
/// struct Discard;
/// impl Sink<u64> for Discard {
///     fn write(&mut self, _records: Vec<u64>) -> Result<(), SinkError> { Ok(()) }
/// }
///
/// let p = Pipeline::new("edge-id");
/// let s = p.source("numbers", 1, |_| Ten(0));
/// let edge = s.edge_id();
/// s.new_chain().sink("discard", |_| Discard);
/// let job = p.run()?;
/// let handle = job.handle();
/// assert!(handle.edge_fill(edge)? <= 1.0);
/// handle.set_edge_policy(edge, EdgePolicy::DropNewest)?;
/// job.wait()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EdgeId(pub(crate) usize);

impl std::fmt::Display for EdgeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "edge#{}", self.0)
    }
}

pub(crate) struct PlanOp {
    pub name: String,
    pub kind: OpKind,
    pub stats: Arc<OpStats>,
    pub sink: Option<Arc<SinkStats>>,
}

pub(crate) struct PlanStage {
    /// Its operators joined by `+` (set by [`Plan::seal`]).
    pub name: String,
    pub parallelism: usize,
    pub ops: Vec<usize>,
    pub tasks: Vec<Arc<TaskStats>>,
}

pub(crate) struct PlanEdge {
    /// `upstream op -> first downstream op` (set by [`Plan::seal`]).
    pub name: String,
    pub from_stage: usize,
    pub from_op: usize,
    pub to_stage: usize,
    pub exchange: ExchangeKind,
    pub capacity: usize,
    pub policy: EdgePolicy,
    pub service: crate::policy::ServiceOrder,
    pub ports: Vec<(Arc<dyn EdgeProbe>, usize)>,
}

/// A job, as built.
pub(crate) struct Plan {
    pub name: String,
    pub ops: Vec<PlanOp>,
    pub stages: Vec<PlanStage>,
    pub edges: Vec<PlanEdge>,
    /// Per stage, one runner per task; the runtime takes them when it starts the threads.
    pub runners: Vec<Vec<Option<Box<dyn Runner>>>>,
    /// [`EdgeId`] `i` is edge `edge_ids[i]`.
    pub edge_ids: Vec<usize>,
    pub control: Arc<Control>,
}

impl Plan {
    pub(crate) fn new(name: String) -> Self {
        Plan {
            name,
            ops: Vec::new(),
            stages: Vec::new(),
            edges: Vec::new(),
            runners: Vec::new(),
            edge_ids: Vec::new(),
            control: Arc::new(Control::new()),
        }
    }

    /// Names the stages and edges, once the graph is complete.
    pub(crate) fn seal(&mut self) {
        for s in 0..self.stages.len() {
            self.stages[s].name = self.stage_name(s);
        }
        for e in 0..self.edges.len() {
            self.edges[e].name = self.edge_name(e);
        }
    }

    /// A stage's name: its operators joined by `+`.
    pub(crate) fn stage_name(&self, stage: usize) -> String {
        let ops = &self.stages[stage].ops;
        if ops.is_empty() {
            return format!("relay{stage}");
        }
        ops.iter()
            .map(|&o| self.ops[o].name.as_str())
            .collect::<Vec<_>>()
            .join("+")
    }

    /// An edge's name: `upstream op -> first downstream op`.
    pub(crate) fn edge_name(&self, edge: usize) -> String {
        let e = &self.edges[edge];
        let to = match self.stages[e.to_stage].ops.first() {
            Some(&o) => self.ops[o].name.clone(),
            None => self.stage_name(e.to_stage),
        };
        format!("{} -> {to}", self.ops[e.from_op].name)
    }

    pub(crate) fn topology(&self) -> Topology {
        Topology {
            stages: (0..self.stages.len())
                .map(|s| TopologyStage {
                    name: self.stage_name(s),
                    parallelism: self.stages[s].parallelism,
                    operators: self.stages[s]
                        .ops
                        .iter()
                        .map(|&o| self.ops[o].name.clone())
                        .collect(),
                    is_source: self.stages[s]
                        .ops
                        .first()
                        .is_some_and(|&o| self.ops[o].kind == OpKind::Source),
                })
                .collect(),
            edges: self
                .edges
                .iter()
                .map(|e| TopologyEdge {
                    from: e.from_stage,
                    to: e.to_stage,
                    exchange: e.exchange,
                    capacity: e.capacity,
                })
                .collect(),
        }
    }
}
