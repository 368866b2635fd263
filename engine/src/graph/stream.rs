//! [`Stream`]: the open end of an operator chain, the settings of its next edge, chained
//! operators and sinks.

use super::forward_tail;
use super::Builder;
use super::ChainFn;
use super::SinkHandle;
use crate::codec::Codec;
use crate::edge::DropTapFn;
use crate::edge::Dropped;
use crate::edge::SpillSpec;
use crate::operator::InstanceInfo;
use crate::operator::Operator;
use crate::operator::Sink;
use crate::plan::EdgeId;
use crate::policy::EdgePolicy;
use crate::policy::ServiceOrder;
use crate::priority::Classifier;
use crate::priority::Prioritized;
use crate::priority::Priority;
use crate::runtime::sinkstats::LatencyRecorder;
use crate::runtime::sinkstats::SinkStats;
use crate::runtime::task::Emit;
use crate::runtime::task::OpLink;
use crate::runtime::task::SinkLink;
use crate::topology::ExchangeKind;
use crate::topology::OpKind;
use crate::BuildError;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

/// A typed stream: the open end of an operator chain.
///
/// Every stream must be consumed (by an operator, an exchange or a sink) before
/// [`Pipeline::run`](crate::Pipeline::run); a dangling stream is a [`BuildError::UnconnectedOutput`](crate::BuildError::UnconnectedOutput).
pub struct Stream<T> {
    pub(super) b: Rc<RefCell<Builder>>,
    pub(super) id: u64,
    pub(super) stage: usize,
    pub(super) last_op: usize,
    pub(super) capacity: Option<usize>,
    pub(super) policy: EdgePolicy,
    pub(super) classifier: Option<Classifier<T>>,
    pub(super) tap: Option<(u64, DropTapFn<T>)>,
    pub(super) spill: Option<SpillSpec<T>>,
    /// `None`: the default for the edge ([`ServiceOrder::for_edge`]).
    pub(super) service: Option<ServiceOrder>,
    /// Size the next edge in time (its capacity is then the upper bound).
    pub(super) budget: Option<std::time::Duration>,
    /// Bound the next edge in bytes too.
    pub(super) max_bytes: Option<usize>,
    pub(super) chain: ChainFn<T>,
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
    /// [`Pipeline::run`](crate::Pipeline::run) fails with [`BuildError::EdgeIdUnused`](crate::BuildError::EdgeIdUnused) when no edge follows (the
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

    /// Sizes the next edge in time: its capacity follows `budget` times the rate at which its
    /// receiver drains it (measured while records wait, re-estimated every 20 ms of busy
    /// time), between 1 record and the edge's capacity ([`Stream::edge_capacity`], or the
    /// pipeline's default), so the edge holds about `budget` of work whatever the receiver's
    /// speed. Combined with a shedding policy, a receiver that slows down five times gets an
    /// edge five times smaller, and the classes still served keep their latency. The report
    /// shows the capacity the edge has now.
    pub fn edge_budget(mut self, budget: std::time::Duration) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Bounds the next edge in bytes as well as in records: its capacity in records follows
    /// `max_bytes` divided by the bytes per record its senders offer (measured with the
    /// type's byte size, [`count_bytes`](crate::count_bytes); Arrow record batches weigh
    /// their rows' buffers), between 1 and the edge's capacity ([`Stream::edge_capacity`],
    /// or the pipeline's default). So an edge of batches with wide rows holds fewer rows
    /// than one with narrow rows, and the memory an edge holds stays about `max_bytes`
    /// whatever the rows' width.
    ///
    /// Policies still act on records (rows): what is shed, evicted and counted is the same
    /// as on an edge of that many records. The bound is exact for rows of one size; for
    /// rows of varying size it follows their average over recent batches (smoothed), so a
    /// burst of unusually wide rows overshoots until the average catches up. The report
    /// shows the bytes per row measured and the capacity in records that follows.
    pub fn edge_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = Some(max_bytes);
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

    /// Sets the order in which the next edge's receiver takes queued records.
    ///
    /// The default is [`ServiceOrder::Priority`] for an edge with a classifier
    /// ([`Stream::classify`], [`Stream::prioritized`]) and [`ServiceOrder::Fifo`] for one
    /// without; a by-class order on an edge without a classifier is FIFO (every record is of
    /// the default class). Under `Priority` the receiver always takes the oldest records of
    /// the highest class queued, so a delivered error never waits behind queued debug
    /// records; records are reordered across classes but never within a class and a sender
    /// (see [`ServiceOrder`] for what that means for keyed state downstream).
    pub fn service_order(mut self, order: ServiceOrder) -> Self {
        self.service = Some(order);
        self
    }

    /// Classifies records for the next edge's policy and service order. Set it after the last
    /// operator before the edge (an operator starts a new stream without one). Called only
    /// when the edge is under pressure: on its policy's slow path, or, on an edge served by
    /// class, when two or more batches are queued.
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
            service,
            budget,
            max_bytes,
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
                rows_in: crate::rows::rows_of::<T>(),
                rows_out: crate::rows::rows_of::<O>(),
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
            service,
            budget,
            max_bytes,
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
        let unused = [
            ("edge_capacity", self.capacity.is_some()),
            ("edge_policy", self.policy != EdgePolicy::Block),
            ("edge_budget", self.budget.is_some()),
            ("edge_bytes", self.max_bytes.is_some()),
            ("defer_to", self.spill.is_some()),
            ("service_order", self.service.is_some()),
        ];
        let (op, stats) = {
            let mut bm = self.b.borrow_mut();
            if let Some((setting, _)) = unused.iter().find(|(_, set)| *set) {
                bm.error(BuildError::EdgeSettingUnused {
                    sink: name.to_string(),
                    setting: setting.to_string(),
                });
            }
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
                rows: crate::rows::rows_of::<T>(),
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
}
