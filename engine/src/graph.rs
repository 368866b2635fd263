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

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use crate::codec::Codec;
use crate::edge::{DropTapFn, Dropped, PortConfig, Receiver, Sender, SpillLog, SpillSpec};
use crate::error::BuildError;
use crate::metrics::{OpStats, TaskStats};
use crate::operator::{InstanceInfo, Operator, Sink, Source};
use crate::plan::{EdgeId, Plan, PlanEdge, PlanOp, PlanStage};
use crate::policy::EdgePolicy;
use crate::priority::{Classifier, Prioritized, Priority};
use crate::runtime::exchange::{Broadcast, Forward, Hash, RoundRobin, Split, Tee};
use crate::runtime::sinkstats::{LatencyRecorder, SinkStats};
use crate::runtime::task::{Emit, InboxRunner, OpLink, Runner, SinkLink, SourceRunner};
use crate::runtime::Job;
use crate::topology::{ExchangeKind, OpKind, Topology};

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
    fn error(&mut self, e: BuildError) {
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
    b: Rc<RefCell<Builder>>,
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

/// A typed stream: the open end of an operator chain.
///
/// Every stream must be consumed (by an operator, an exchange or a sink) before
/// [`Pipeline::run`]; a dangling stream is a [`BuildError::UnconnectedOutput`].
pub struct Stream<T> {
    b: Rc<RefCell<Builder>>,
    id: u64,
    stage: usize,
    last_op: usize,
    capacity: Option<usize>,
    policy: EdgePolicy,
    classifier: Option<Classifier<T>>,
    tap: Option<(u64, DropTapFn<T>)>,
    spill: Option<SpillSpec<T>>,
    chain: ChainFn<T>,
}

impl<T> std::fmt::Debug for Stream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("stage", &self.stage)
            .field("last_op", &self.last_op)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Stream<T> {
    /// Number of parallel instances of the chain this stream ends.
    pub fn parallelism_of(&self) -> usize {
        self.b.borrow().plan.stages[self.stage].parallelism
    }

    /// The pipeline's batch size.
    pub fn batch_size(&self) -> usize {
        self.b.borrow().batch_size
    }

    /// A typed handle to the next edge out of this stream (the edge that the next
    /// [`Stream::new_chain`], exchange, union or parallelism change creates), for a
    /// [`JobHandle`](crate::JobHandle) to read its fill and switch its policy while the job
    /// runs. Asking twice gives the same id.
    ///
    /// [`Pipeline::run`] fails with [`BuildError::EdgeIdUnused`] when no edge follows (the
    /// next operator was chained into this thread instead).
    pub fn edge_id(&self) -> EdgeId {
        let mut bm = self.b.borrow_mut();
        if let Some(&id) = bm.reserved.get(&self.id) {
            return EdgeId(id);
        }
        let id = bm.bound.len();
        bm.bound.push(None);
        bm.reserved.insert(self.id, id);
        EdgeId(id)
    }

    /// Sets the capacity, in records, of the next edge out of this stream.
    pub fn edge_capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Sets the overload policy of the next edge out of this stream.
    ///
    /// # Backpressure
    /// `Block` (the default) slows the producer; the other policies drop records (counted by
    /// class and reason in the report and the ledger). Policies that act on classes need a
    /// classifier ([`Stream::classify`] or [`Stream::prioritized`]).
    pub fn edge_policy(mut self, policy: EdgePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Classifies records for the next edge's policy. Set it after the last operator before
    /// the edge (an operator starts a new stream without one). Called only when the edge is
    /// under pressure.
    pub fn classify<F>(mut self, f: F) -> Self
    where
        F: Fn(&T) -> Priority + Send + Sync + 'static,
    {
        self.classifier = Some(crate::priority::classifier(f));
        self
    }

    /// Classifies records for the next edge by their [`Prioritized`] implementation.
    pub fn prioritized(self) -> Self
    where
        T: Prioritized,
    {
        self.classify(|r: &T| r.priority())
    }

    /// Gives the next edge a defer log in `dir` (one file per downstream instance, named
    /// after the job and the edge, so a restarted job finds it), capped at `max_bytes` per
    /// file, for [`EdgePolicy::Defer`].
    pub fn defer_to<C>(
        mut self,
        dir: impl Into<std::path::PathBuf>,
        max_bytes: u64,
        codec: C,
    ) -> Self
    where
        C: Codec<T> + 'static,
    {
        self.spill = Some(SpillSpec {
            dir: dir.into(),
            max_bytes,
            codec: Arc::new(codec),
        });
        self
    }

    /// Hands one in `every` record the next edge drops to `tap` (on the thread that dropped
    /// it, outside the edge's lock), so a user can see what was shed.
    pub fn drop_tap<F>(mut self, every: u64, tap: F) -> Self
    where
        F: Fn(Dropped<T>) + Send + Sync + 'static,
    {
        self.tap = Some((every.max(1), Arc::new(tap)));
        self
    }

    /// Appends an operator to this chain: it runs on the same thread as the operators
    /// before it, on each of their instances.
    pub fn operator<O, P, F>(self, name: &str, factory: F) -> Stream<O>
    where
        O: Send + 'static,
        P: Operator<T, O>,
        F: Fn(&InstanceInfo) -> P + 'static,
    {
        let Stream {
            b,
            id,
            stage,
            capacity,
            policy,
            mut chain,
            ..
        } = self;
        let (op, new_id, stats) = {
            let mut bm = b.borrow_mut();
            bm.open.remove(&id);
            let op = bm.new_op(name, OpKind::Operator, stage);
            let new_id = bm.open_stream(op);
            (op, new_id, bm.plan.ops[op].stats.clone())
        };
        let name = name.to_string();
        let next: ChainFn<O> = Box::new(move |ctx, out: Box<dyn Emit<O>>| {
            let info = InstanceInfo {
                name: name.clone(),
                instance: ctx.instance,
                parallelism: ctx.parallelism,
                batch_size: ctx.batch_size,
            };
            let link = OpLink {
                op: factory(&info),
                op_id: op,
                stats: stats.clone(),
                out,
                _in: std::marker::PhantomData,
            };
            chain(ctx, Box::new(link))
        });
        Stream {
            b,
            id: new_id,
            stage,
            last_op: op,
            capacity,
            policy,
            classifier: None,
            tap: None,
            spill: None,
            chain: next,
        }
    }

    /// Ends the stream in a sink with this chain's parallelism; `factory` builds each
    /// instance's sink.
    pub fn sink<S, F>(self, name: &str, factory: F) -> SinkHandle
    where
        S: Sink<T>,
        F: Fn(&InstanceInfo) -> S + 'static,
    {
        let (op, stats) = {
            let mut bm = self.b.borrow_mut();
            let op = bm.new_op(name, OpKind::Sink, self.stage);
            let stats = Arc::new(SinkStats::default());
            bm.plan.ops[op].sink = Some(stats.clone());
            (op, stats)
        };
        let name = name.to_string();
        let handle = SinkHandle {
            stats: stats.clone(),
        };
        self.close(move |ctx| {
            let info = InstanceInfo {
                name: name.clone(),
                instance: ctx.instance,
                parallelism: ctx.parallelism,
                batch_size: ctx.batch_size,
            };
            Box::new(SinkLink {
                sink: factory(&info),
                op_id: op,
                stats: stats.clone(),
                task: ctx.task.clone(),
                latency: LatencyRecorder::new(),
                _t: std::marker::PhantomData,
            })
        });
        handle
    }

    /// Ends the chain here: the operators after this point start a new chain (a new thread
    /// per instance) connected by a forward edge. Use it to put a slow operator on its own
    /// thread.
    pub fn new_chain(self) -> Stream<T> {
        let p = self.parallelism_of();
        self.exchange_into_new(p, ExchangeKind::Forward, |_, txs, task| {
            forward_tail(txs, task)
        })
    }

    /// Runs what follows with `p` instances. Same parallelism keeps the chain; a different
    /// one crosses a round-robin edge (whole batches go to downstream instances in turn).
    pub fn parallelism(self, p: usize) -> Stream<T> {
        if p == self.parallelism_of() {
            return self;
        }
        self.rebalance(p)
    }

    /// Crosses a round-robin edge into `p` instances.
    pub fn rebalance(self, p: usize) -> Stream<T> {
        self.check_parallelism(p);
        self.exchange_into_new(p, ExchangeKind::RoundRobin, |ctx, txs, task| {
            Box::new(RoundRobin {
                next: ctx.instance % txs.len().max(1),
                txs,
                task,
            })
        })
    }

    /// Crosses a hash edge into `p` instances: each record goes to instance
    /// `partition_of(hash(&record), p)`, so equal hashes always meet in one instance, in the
    /// order they were sent by each upstream instance.
    pub fn partition_by<H>(self, p: usize, hash: H) -> Stream<T>
    where
        H: Fn(&T) -> u64 + Send + Sync + 'static,
    {
        self.check_parallelism(p);
        let hash = Arc::new(hash);
        self.exchange_into_new(p, ExchangeKind::Hash, move |ctx, txs, task| {
            Box::new(Hash::new(txs, hash.clone(), ctx.batch_size, task))
        })
    }

    /// Merges another stream of the same type into this one. What follows runs with this
    /// stream's parallelism; `other` crosses a forward edge if its parallelism is equal, a
    /// round-robin edge otherwise.
    pub fn union(self, other: Stream<T>) -> Stream<T> {
        let b = self.b.clone();
        let p = self.parallelism_of();
        let (stage, rxs) = {
            let mut bm = self.b.borrow_mut();
            let stage = bm.new_stage(p);
            (
                stage,
                (0..p)
                    .map(|_| new_receiver(bm.batch_size))
                    .collect::<Vec<_>>(),
            )
        };
        self.connect(stage, &rxs, ExchangeKind::Forward, |_, txs, task| {
            forward_tail(txs, task)
        });
        let q = other.parallelism_of();
        if q == p {
            other.connect(stage, &rxs, ExchangeKind::Forward, |_, txs, task| {
                forward_tail(txs, task)
            });
        } else {
            other.connect(stage, &rxs, ExchangeKind::RoundRobin, |ctx, txs, task| {
                Box::new(RoundRobin {
                    next: ctx.instance % txs.len().max(1),
                    txs,
                    task,
                })
            });
        }
        Self::from_receivers(&b, stage, rxs)
    }

    /// Splits the stream in two by a predicate: records for which it holds go to the first
    /// stream, the others to the second. Each branch starts a new chain.
    pub fn split<P>(self, name: &str, pred: P) -> (Stream<T>, Stream<T>)
    where
        P: Fn(&T) -> bool + Send + Sync + 'static,
    {
        let p = self.parallelism_of();
        let pred = Arc::new(pred);
        let (op, sa, sb, ra, rb, cap_a, cap_b) = {
            let mut bm = self.b.borrow_mut();
            let op = bm.new_op(name, OpKind::Split, self.stage);
            let sa = bm.new_stage(p);
            let sb = bm.new_stage(p);
            let ra: Vec<Receiver<T>> = (0..p).map(|_| new_receiver(bm.batch_size)).collect();
            let rb: Vec<Receiver<T>> = (0..p).map(|_| new_receiver(bm.batch_size)).collect();
            let cap = self.capacity.unwrap_or(bm.default_capacity);
            (op, sa, sb, ra, rb, cap, cap)
        };
        let b = self.b.clone();
        let mut ta = self.ports(sa, op, &ra, ExchangeKind::Forward, cap_a);
        let mut tb = self.ports(sb, op, &rb, ExchangeKind::Forward, cap_b);
        self.close(move |ctx| {
            Box::new(Split {
                yes: forward_tail(std::mem::take(&mut ta[ctx.instance]), ctx.task.clone()),
                no: forward_tail(std::mem::take(&mut tb[ctx.instance]), ctx.task.clone()),
                pred: pred.clone(),
                op_id: op,
            })
        });
        let a = Stream::from_receivers(&b, sa, ra);
        let c = Stream::from_receivers(&b, sb, rb);
        (a, c)
    }

    fn check_parallelism(&self, p: usize) {
        if p == 0 {
            let mut bm = self.b.borrow_mut();
            let name = bm.plan.ops[self.last_op].name.clone();
            bm.error(BuildError::ZeroParallelism { operator: name });
        }
    }

    /// Creates one port per downstream receiver and returns, per upstream instance, the
    /// senders it holds (all ports, or only its own for a forward edge).
    fn ports(
        &self,
        to_stage: usize,
        from_op: usize,
        rxs: &[Receiver<T>],
        exchange: ExchangeKind,
        capacity: usize,
    ) -> Vec<Vec<Sender<T>>> {
        let mut bm = self.b.borrow_mut();
        let p_up = bm.plan.stages[self.stage].parallelism;
        let p_down = rxs.len();
        let mut cap = capacity;
        if cap == 0 {
            let edge = format!("{} -> #{to_stage}", bm.plan.ops[from_op].name);
            bm.error(BuildError::ZeroCapacity { edge });
            cap = 1;
        }
        if self.policy.uses_classes() && self.classifier.is_none() {
            let edge = format!("{} -> #{to_stage}", bm.plan.ops[from_op].name);
            bm.error(BuildError::PolicyNeedsClassifier {
                edge,
                policy: self.policy.to_string(),
            });
        }
        let edge_index = bm.plan.edges.len();
        if let Some(id) = bm.reserved.remove(&self.id) {
            if let Some(slot) = bm.bound.get_mut(id) {
                *slot = Some(edge_index);
            }
        }
        if matches!(self.policy, EdgePolicy::Defer(_)) && self.spill.is_none() {
            let edge = format!("{} -> #{to_stage}", bm.plan.ops[from_op].name);
            bm.error(BuildError::DeferNeedsLog { edge });
        }
        let mut probes = Vec::with_capacity(p_down);
        let mut senders = Vec::with_capacity(p_down);
        for (instance, rx) in rxs.iter().enumerate() {
            let spill = match &self.spill {
                Some(spec) => {
                    let name = format!("{}-edge{edge_index}-{instance}", file_safe(&bm.plan.name));
                    match SpillLog::open(spec, &name) {
                        Ok(log) => Some(log),
                        Err(e) => {
                            let edge = format!("{} -> #{to_stage}", bm.plan.ops[from_op].name);
                            bm.error(BuildError::DeferLog {
                                edge,
                                message: e.to_string(),
                            });
                            None
                        }
                    }
                }
                None => None,
            };
            senders.push(rx.add_port_with(PortConfig {
                capacity: cap,
                policy: self.policy,
                classifier: self.classifier.clone(),
                tap: self.tap.clone(),
                spill,
            }));
            probes.push((rx.probe(), rx.ports() - 1));
        }
        bm.plan.edges.push(PlanEdge {
            name: String::new(),
            from_stage: self.stage,
            from_op,
            to_stage,
            exchange,
            capacity: cap,
            policy: self.policy,
            ports: probes,
        });
        let forward = exchange == ExchangeKind::Forward && p_up == p_down;
        if forward {
            return senders.into_iter().map(|s| vec![s]).collect();
        }
        let mut per_up: Vec<Vec<Sender<T>>> = (1..p_up).map(|_| senders.to_vec()).collect();
        per_up.push(senders);
        per_up
    }

    fn connect<M>(self, to_stage: usize, rxs: &[Receiver<T>], exchange: ExchangeKind, mut make: M)
    where
        M: FnMut(&ChainCtx, Vec<Sender<T>>, Arc<TaskStats>) -> Box<dyn Emit<T>> + 'static,
    {
        let capacity = {
            let bm = self.b.borrow();
            self.capacity.unwrap_or(bm.default_capacity)
        };
        let mut per_up = self.ports(to_stage, self.last_op, rxs, exchange, capacity);
        self.close(move |ctx| {
            let mut txs = std::mem::take(&mut per_up[ctx.instance]);
            for tx in &mut txs {
                tx.attach_task(ctx.task.clone());
            }
            make(ctx, txs, ctx.task.clone())
        });
    }

    fn exchange_into_new<M>(self, p: usize, exchange: ExchangeKind, make: M) -> Stream<T>
    where
        M: FnMut(&ChainCtx, Vec<Sender<T>>, Arc<TaskStats>) -> Box<dyn Emit<T>> + 'static,
    {
        let b = self.b.clone();
        let stage = b.borrow_mut().new_stage(p);
        let batch = b.borrow().batch_size;
        let rxs: Vec<Receiver<T>> = (0..p.max(1)).map(|_| new_receiver(batch)).collect();
        self.connect(stage, &rxs, exchange, make);
        Stream::from_receivers(&b, stage, rxs)
    }

    fn from_receivers(b: &Rc<RefCell<Builder>>, stage: usize, rxs: Vec<Receiver<T>>) -> Stream<T> {
        let mut slots: Vec<Option<Receiver<T>>> = rxs.into_iter().map(Some).collect();
        let (id, last_op) = {
            let mut bm = b.borrow_mut();
            // A stream that starts at an exchange has no operator yet; name it after the
            // operator that fed the edge, so a dangling one is reported usefully.
            let last_op = bm
                .plan
                .edges
                .iter()
                .rev()
                .find(|e| e.to_stage == stage)
                .map(|e| e.from_op)
                .unwrap_or(0);
            (bm.open_stream(last_op), last_op)
        };
        let chain: ChainFn<T> = Box::new(move |ctx, out| {
            let rx = slots
                .get_mut(ctx.instance)
                .and_then(Option::take)
                .unwrap_or_default();
            Box::new(InboxRunner {
                rx,
                task: ctx.task.clone(),
                out,
            })
        });
        Stream {
            b: b.clone(),
            id,
            stage,
            last_op,
            capacity: None,
            policy: EdgePolicy::Block,
            classifier: None,
            tap: None,
            spill: None,
            chain,
        }
    }

    /// Closes the chain: builds one task per instance with the tail `make_tail` returns.
    fn close<M>(self, mut make_tail: M)
    where
        M: FnMut(&ChainCtx) -> Box<dyn Emit<T>>,
    {
        let Stream {
            b,
            id,
            stage,
            mut chain,
            ..
        } = self;
        let (p, batch_size, tasks) = {
            let mut bm = b.borrow_mut();
            bm.open.remove(&id);
            let st = &bm.plan.stages[stage];
            (st.parallelism, bm.batch_size, st.tasks.clone())
        };
        let mut runners = Vec::with_capacity(p);
        for (instance, task) in tasks.into_iter().enumerate() {
            let ctx = ChainCtx {
                instance,
                parallelism: p,
                batch_size,
                task,
            };
            let tail = make_tail(&ctx);
            runners.push(chain(&ctx, tail));
        }
        let mut bm = b.borrow_mut();
        for (slot, r) in bm.plan.runners[stage].iter_mut().zip(runners) {
            *slot = Some(r);
        }
    }
}

impl<T: Clone + Send + 'static> Stream<T> {
    /// Fans the stream out to `n` branches; every branch receives every record (copies are
    /// counted as created records in the ledger). Each branch starts a new chain.
    pub fn fork(self, name: &str, n: usize) -> Vec<Stream<T>> {
        let p = self.parallelism_of();
        let (op, stats, stages, rxs, cap) = {
            let mut bm = self.b.borrow_mut();
            let op = bm.new_op(name, OpKind::Fork, self.stage);
            let stats = bm.plan.ops[op].stats.clone();
            let stages: Vec<usize> = (0..n).map(|_| bm.new_stage(p)).collect();
            let rxs: Vec<Vec<Receiver<T>>> = (0..n)
                .map(|_| (0..p).map(|_| new_receiver(bm.batch_size)).collect())
                .collect();
            let cap = self.capacity.unwrap_or(bm.default_capacity);
            (op, stats, stages, rxs, cap)
        };
        let b = self.b.clone();
        let mut tails: Vec<Vec<Vec<Sender<T>>>> = stages
            .iter()
            .zip(&rxs)
            .map(|(&s, r)| self.ports(s, op, r, ExchangeKind::Forward, cap))
            .collect();
        self.close(move |ctx| {
            let outs = tails
                .iter_mut()
                .map(|t| forward_tail(std::mem::take(&mut t[ctx.instance]), ctx.task.clone()))
                .collect();
            Box::new(Tee {
                outs,
                stats: stats.clone(),
            })
        });
        stages
            .into_iter()
            .zip(rxs)
            .map(|(s, r)| Stream::from_receivers(&b, s, r))
            .collect()
    }

    /// Crosses a broadcast edge into `p` instances: every instance receives every record.
    pub fn broadcast(self, p: usize) -> Stream<T> {
        self.check_parallelism(p);
        let stats = {
            let mut bm = self.b.borrow_mut();
            let op = bm.new_op("broadcast", OpKind::Fork, self.stage);
            bm.plan.ops[op].stats.clone()
        };
        self.exchange_into_new(p, ExchangeKind::Broadcast, move |_, txs, task| {
            Box::new(Broadcast {
                txs,
                stats: stats.clone(),
                task,
            })
        })
    }
}

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
        None => Box::new(crate::runtime::task::Nowhere { task }),
    }
}

/// A handle to a sink's live counters.
#[derive(Debug, Clone)]
pub struct SinkHandle {
    stats: Arc<SinkStats>,
}

impl SinkHandle {
    /// Records delivered to the sink so far.
    pub fn delivered(&self) -> u64 {
        self.stats.delivered()
    }
}
