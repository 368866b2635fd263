//! Wiring: the ports of an edge and closing a chain into its tasks.

use super::file_safe;
use super::new_receiver;
use super::Builder;
use super::ChainCtx;
use super::ChainFn;
use super::Stream;
use crate::edge::PortConfig;
use crate::edge::Receiver;
use crate::edge::Sender;
use crate::edge::SpillLog;
use crate::error::BuildError;
use crate::metrics::TaskStats;
use crate::plan::PlanEdge;
use crate::policy::EdgePolicy;
use crate::policy::ServiceOrder;
use crate::runtime::task::Emit;
use crate::runtime::task::InboxRunner;
use crate::topology::ExchangeKind;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

impl<T: Send + 'static> Stream<T> {
    pub(super) fn check_parallelism(&self, p: usize) {
        if p == 0 {
            let mut bm = self.b.borrow_mut();
            let name = bm.plan.ops[self.last_op].name.clone();
            bm.error(BuildError::ZeroParallelism { operator: name });
        }
    }

    /// Creates one port per downstream receiver and returns, per upstream instance, the
    /// senders it holds (all ports, or only its own for a forward edge).
    pub(super) fn ports(
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
        if self.budget.is_some_and(|b| b.is_zero()) {
            let edge = format!("{} -> #{to_stage}", bm.plan.ops[from_op].name);
            bm.error(BuildError::ZeroBudget { edge });
        }
        if self.max_bytes == Some(0) {
            let edge = format!("{} -> #{to_stage}", bm.plan.ops[from_op].name);
            bm.error(BuildError::ZeroBytes { edge });
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
        let rows = crate::rows::rows_of::<T>();
        // Without a classifier every record is of one class: a by-class order is FIFO.
        let service = match (self.classifier.is_some(), self.service) {
            (false, _) => ServiceOrder::Fifo,
            (true, Some(s)) => s,
            (true, None) => ServiceOrder::for_edge(true),
        };
        let mut probes = Vec::with_capacity(p_down);
        let mut senders = Vec::with_capacity(p_down);
        for (instance, rx) in rxs.iter().enumerate() {
            let spill = match &self.spill {
                Some(spec) => {
                    let name = format!("{}-edge{edge_index}-{instance}", file_safe(&bm.plan.name));
                    match SpillLog::open_counted(spec, &name, rows) {
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
                service,
                budget: self.budget,
                rows,
                max_bytes: self.max_bytes,
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
            service,
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

    pub(super) fn connect<M>(
        self,
        to_stage: usize,
        rxs: &[Receiver<T>],
        exchange: ExchangeKind,
        mut make: M,
    ) where
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

    pub(super) fn exchange_into_new<M>(self, p: usize, exchange: ExchangeKind, make: M) -> Stream<T>
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

    pub(super) fn from_receivers(
        b: &Rc<RefCell<Builder>>,
        stage: usize,
        rxs: Vec<Receiver<T>>,
    ) -> Stream<T> {
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
            service: None,
            budget: None,
            max_bytes: None,
            chain,
        }
    }

    /// Closes the chain: builds one task per instance with the tail `make_tail` returns.
    pub(super) fn close<M>(self, mut make_tail: M)
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
