//! Exchanges: what crosses an edge between chains.

use super::forward_tail;
use super::new_receiver;
use super::Stream;
use crate::edge::Receiver;
use crate::edge::Sender;
use crate::runtime::exchange::partition_of;
use crate::runtime::exchange::Broadcast;
use crate::runtime::exchange::Hash;
use crate::runtime::exchange::RoundRobin;
use crate::runtime::exchange::Split;
use crate::runtime::exchange::Tee;
use crate::topology::ExchangeKind;
use crate::topology::OpKind;
use std::sync::Arc;

impl<T: Send + 'static> Stream<T> {
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
        let route = Arc::new(move |r: &T, n: usize| partition_of(hash(r), n));
        self.exchange_into_new(p, ExchangeKind::Hash, move |ctx, txs, task| {
            Box::new(Hash::new(txs, route.clone(), ctx.batch_size, task))
        })
    }

    /// Crosses a hash edge into `p` instances where each record names its instance:
    /// `target(&record) % p`. For operators that partition themselves (a columnar key_by
    /// splits a batch by the hash of each row's key and tags each part with its
    /// instance); otherwise prefer [`Stream::partition_by`].
    pub fn route_to<F>(self, p: usize, target: F) -> Stream<T>
    where
        F: Fn(&T) -> usize + Send + Sync + 'static,
    {
        self.check_parallelism(p);
        let route = Arc::new(move |r: &T, n: usize| target(r) % n.max(1));
        self.exchange_into_new(p, ExchangeKind::Hash, move |ctx, txs, task| {
            Box::new(Hash::new(txs, route.clone(), ctx.batch_size, task))
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
                rows: crate::rows::rows_of::<T>(),
            })
        });
        let a = Stream::from_receivers(&b, sa, ra);
        let c = Stream::from_receivers(&b, sb, rb);
        (a, c)
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
                rows: crate::rows::rows_of::<T>(),
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
