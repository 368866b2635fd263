//! [`Pipeline`]: a job under construction, its sources, and `run`.

use super::Builder;
use super::ChainFn;
use super::Stream;
use super::DEFAULT_BATCH_SIZE;
use super::DEFAULT_CAPACITY;
use crate::error::BuildError;
use crate::operator::InstanceInfo;
use crate::operator::Source;
use crate::plan::EdgeId;
use crate::plan::Plan;
use crate::policy::EdgePolicy;
use crate::runtime::task::SourceRunner;
use crate::runtime::Job;
use crate::topology::OpKind;
use crate::topology::Topology;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// A dataflow job under construction.
///
/// # Examples
/// ```
/// use sluice_engine::{Operator, Pipeline, Sink, SinkError, Source, SourceError, SourceStatus};
///
/// struct Count(u64);
/// impl Source<u64> for Count {
///     fn poll_batch(&mut self, out: &mut Vec<u64>, max: usize) -> Result<SourceStatus, SourceError> {
///         while out.len() < max && self.0 < 10 { out.push(self.0); self.0 += 1; }
///         Ok(if self.0 == 10 { SourceStatus::Done } else { SourceStatus::More })
///     }
/// }
/// struct Double;
/// impl Operator<u64, u64> for Double {
///     fn process(&mut self, input: Vec<u64>) -> Vec<u64> { input.into_iter().map(|x| x * 2).collect() }
/// }
/// struct Discard;
/// impl Sink<u64> for Discard {
///     fn write(&mut self, _records: Vec<u64>) -> Result<(), SinkError> { Ok(()) }
/// }
///
/// let p = Pipeline::new("doc");
/// p.source("count", 1, |_| Count(0))
///     .operator("double", |_| Double)
///     .sink("discard", |_| Discard);
/// let report = p.run().unwrap().wait().unwrap();
/// assert_eq!(report.ledger.delivered, 10);
/// assert!(report.ledger.balanced);
/// ```
pub struct Pipeline {
    pub(super) b: Rc<RefCell<Builder>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.b.borrow().plan.name)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new(name: impl Into<String>) -> Self {
        Pipeline {
            b: Rc::new(RefCell::new(Builder {
                plan: Plan::new(name.into()),
                batch_size: DEFAULT_BATCH_SIZE,
                default_capacity: DEFAULT_CAPACITY,
                open: BTreeMap::new(),
                errors: Vec::new(),
                next_stream: 0,
                reserved: BTreeMap::new(),
                bound: Vec::new(),
            })),
        }
    }

    /// Sets the number of records per batch that sources produce (default 1024). Set it
    /// before adding sources.
    pub fn batch_size(self, n: usize) -> Self {
        {
            let mut b = self.b.borrow_mut();
            if n == 0 {
                b.error(BuildError::ZeroBatchSize);
            }
            b.batch_size = n.max(1);
        }
        self
    }

    /// Sets the capacity, in records, of edges that do not set their own (default 8192).
    pub fn default_capacity(self, n: usize) -> Self {
        self.b.borrow_mut().default_capacity = n;
        self
    }

    /// Adds a source with `parallelism` instances; `factory` builds each instance's source.
    ///
    /// # Backpressure
    /// A source is polled only when its previous batch has been accepted downstream.
    pub fn source<T, S, F>(&self, name: &str, parallelism: usize, factory: F) -> Stream<T>
    where
        T: Send + 'static,
        S: Source<T>,
        F: Fn(&InstanceInfo) -> S + 'static,
    {
        let mut b = self.b.borrow_mut();
        if parallelism == 0 {
            b.error(BuildError::ZeroParallelism {
                operator: name.to_string(),
            });
        }
        let stage = b.new_stage(parallelism);
        let op = b.new_op(name, OpKind::Source, stage);
        let id = b.open_stream(op);
        let stats = b.plan.ops[op].stats.clone();
        let control = b.plan.control.clone();
        let name = name.to_string();
        let chain: ChainFn<T> = Box::new(move |ctx, out| {
            let info = InstanceInfo {
                name: name.clone(),
                instance: ctx.instance,
                parallelism: ctx.parallelism,
                batch_size: ctx.batch_size,
            };
            Box::new(SourceRunner {
                source: factory(&info),
                op_id: op,
                rows: crate::rows::rows_of::<T>(),
                stats: stats.clone(),
                task: ctx.task.clone(),
                control: control.clone(),
                info,
                out,
            })
        });
        Stream {
            b: self.b.clone(),
            id,
            stage,
            last_op: op,
            capacity: None,
            policy: EdgePolicy::Block,
            classifier: None,
            tap: None,
            spill: None,
            service: None,
            budget: None,
            max_bytes: None,
            chain,
        }
    }

    /// The graph as built so far.
    pub fn topology(&self) -> Topology {
        self.b.borrow().plan.topology()
    }

    /// Validates the graph and starts one thread per operator-chain instance.
    ///
    /// # Errors
    /// A [`BuildError`] for a zero capacity, parallelism or batch size, an output that no
    /// operator consumes, a cycle, a pipeline without a source, or a thread that could not
    /// be spawned. Nothing runs when an error is returned.
    pub fn run(self) -> Result<Job, BuildError> {
        let b = Rc::try_unwrap(self.b)
            .map_err(|rc| BuildError::UnconnectedOutput {
                operator: {
                    let b = rc.borrow();
                    b.open
                        .values()
                        .next()
                        .map(|&o| b.plan.ops[o].name.clone())
                        .unwrap_or_else(|| "a stream".to_string())
                },
            })?
            .into_inner();
        if let Some(e) = b.errors.first() {
            return Err(e.clone());
        }
        if let Some(&op) = b.open.values().next() {
            return Err(BuildError::UnconnectedOutput {
                operator: b.plan.ops[op].name.clone(),
            });
        }
        let mut plan = b.plan;
        for (id, edge) in b.bound.iter().enumerate() {
            match edge {
                Some(e) => plan.edge_ids.push(*e),
                None => {
                    return Err(BuildError::EdgeIdUnused {
                        edge: EdgeId(id).to_string(),
                    })
                }
            }
        }
        plan.seal();
        let topo = plan.topology();
        topo.validate()?;
        crate::runtime::spawn(plan, topo)
    }
}
