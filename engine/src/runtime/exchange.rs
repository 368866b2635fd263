//! Chain tails that send on edges: forward, round robin, hash, broadcast, split.
//!
//! Every send blocks for credit (the edge's policy decides what happens when it is short).
//! A send that fails because the job is aborting counts the batch as abandoned in the task's
//! stats, so the ledger can still account for it as in flight.

use std::sync::Arc;
use std::time::Instant;

use crate::ack::{fail_acks, merge_acks, Ack};
use crate::batch::Batch;
use crate::edge::{SendError, Sender};
use crate::metrics::{OpStats, TaskStats};
use crate::rows::Rows;
use crate::runtime::scatter::scatter;
use crate::runtime::task::{set_held, Emit, Halt};

fn send<T>(tx: &Sender<T>, batch: Batch<T>, task: &TaskStats) -> Result<(), Halt> {
    match tx.send(batch) {
        Ok(()) => Ok(()),
        Err(SendError::Aborted(b)) | Err(SendError::Disconnected(b)) => {
            task.add_abandoned(tx.rows().all(&b.records) as u64);
            b.fail_acks();
            Err(Halt::Aborted)
        }
    }
}

fn close_all<T>(txs: &mut [Sender<T>]) {
    for tx in txs {
        tx.close();
    }
}

/// Instance `i` upstream sends to instance `i` downstream.
pub(crate) struct Forward<T> {
    pub tx: Sender<T>,
    pub task: Arc<TaskStats>,
}

impl<T: Send> Emit<T> for Forward<T> {
    fn emit(&mut self, batch: Batch<T>) -> Result<(), Halt> {
        send(&self.tx, batch, &self.task)
    }
    fn flush(&mut self) -> Result<(), Halt> {
        Ok(())
    }
    fn finish(&mut self) -> Result<(), Halt> {
        self.tx.close();
        Ok(())
    }
}

/// Whole batches go to downstream instances in turn.
pub(crate) struct RoundRobin<T> {
    pub txs: Vec<Sender<T>>,
    pub next: usize,
    pub task: Arc<TaskStats>,
}

impl<T: Send> Emit<T> for RoundRobin<T> {
    fn emit(&mut self, batch: Batch<T>) -> Result<(), Halt> {
        let i = self.next;
        self.next = (self.next + 1) % self.txs.len();
        send(&self.txs[i], batch, &self.task)
    }
    fn flush(&mut self) -> Result<(), Halt> {
        Ok(())
    }
    fn finish(&mut self) -> Result<(), Halt> {
        close_all(&mut self.txs);
        Ok(())
    }
}

/// Maps a 64-bit hash onto `0..n` using its high bits (Lemire's multiply-shift), so the low
/// bits stay independent for hash tables downstream.
#[inline]
pub fn partition_of(hash: u64, n: usize) -> usize {
    ((u128::from(hash) * n as u128) >> 64) as usize
}

/// Records go to the instance `route(record, n)` names (their key's hash, for a hash edge),
/// buffered per target into full batches.
pub(crate) struct Hash<T, H> {
    pub txs: Vec<Sender<T>>,
    pub route: Arc<H>,
    pub bufs: Vec<Vec<T>>,
    pub oldest: Vec<Option<Instant>>,
    /// Acks of the input batches whose records are in each buffer.
    pub acks: Vec<Vec<Ack>>,
    /// The target of each record of the batch being split (reused between batches).
    pub targets: Vec<u32>,
    /// Records of the batch being split per target (reused between batches).
    pub counts: Vec<usize>,
    pub batch_size: usize,
    pub task: Arc<TaskStats>,
    /// How the edge counts items.
    pub rows: Rows<T>,
}

impl<T, H> Hash<T, H> {
    /// Records (or rows) buffered for every target.
    fn held(&self) -> usize {
        self.bufs.iter().map(|b| self.rows.all(b)).sum()
    }
}

impl<T, H> Drop for Hash<T, H> {
    /// Records still buffered when the chain is torn down (a source or operator failed, a
    /// panic unwound it) are in flight, not gone: counted as abandoned, their acks failed.
    fn drop(&mut self) {
        let held = self.held();
        if held > 0 {
            self.task.add_abandoned(held as u64);
            for (b, a) in self.bufs.iter().zip(&self.acks) {
                if !b.is_empty() {
                    fail_acks(a);
                }
            }
        }
    }
}

impl<T, H> Hash<T, H> {
    pub(crate) fn new(
        txs: Vec<Sender<T>>,
        route: Arc<H>,
        batch_size: usize,
        task: Arc<TaskStats>,
    ) -> Self {
        let n = txs.len();
        let rows = txs.first().map_or(Rows::ONE, Sender::rows);
        Self {
            rows,
            txs,
            route,
            bufs: (0..n).map(|_| Vec::new()).collect(),
            oldest: vec![None; n],
            acks: (0..n).map(|_| Vec::new()).collect(),
            targets: Vec::new(),
            counts: Vec::new(),
            batch_size,
            task,
        }
    }

    fn send_buf(&mut self, i: usize) -> Result<(), Halt>
    where
        T: Send,
    {
        let records = std::mem::take(&mut self.bufs[i]);
        if records.is_empty() {
            return Ok(());
        }
        let created = self.oldest[i].take().unwrap_or_else(Instant::now);
        let mut batch = Batch::with_created(records, created);
        // The batch carries the acks of the input batches its records came from; the rest
        // of the current input batch, if any, goes to a new buffer that needs them again.
        batch.acks = std::mem::take(&mut self.acks[i]);
        let r = send(&self.txs[i], batch, &self.task);
        if r.is_err() {
            let held = self.held();
            self.task.add_abandoned(held as u64);
            for (b, a) in self.bufs.iter_mut().zip(&mut self.acks) {
                if !b.is_empty() {
                    fail_acks(a);
                }
                b.clear();
                a.clear();
            }
        }
        r
    }
}

impl<T: Send, H: Fn(&T, usize) -> usize + Send + Sync> Emit<T> for Hash<T, H> {
    fn emit(&mut self, batch: Batch<T>) -> Result<(), Halt> {
        let n = self.txs.len();
        if n == 1 {
            // One target: no hashing, the batch moves as is.
            return send(&self.txs[0], batch, &self.task);
        }
        let Batch {
            records,
            created,
            acks,
        } = batch;
        // The key function is user code: run it over the whole batch before any record
        // moves, so a panic in it leaves the batch whole (counted as held by the runtime).
        set_held(self.rows.all(&records));
        self.targets.clear();
        self.targets
            .extend(records.iter().map(|r| (self.route)(r, n) as u32));
        set_held(0);
        // Scatter in one tight loop (a copy per record, nothing else), then do the per-target
        // bookkeeping once per batch: a buffer may pass the batch size by less than one input
        // batch before it is sent. (Checking capacity, creation time, acks and fullness per
        // record cost about a third of W1's source thread; see `scatter` for the loop.)
        scatter(
            records,
            &self.targets,
            &mut self.bufs,
            &mut self.counts,
            self.batch_size,
        );
        for i in 0..n {
            if self.counts[i] == 0 {
                continue;
            }
            if self.oldest[i].is_none() {
                self.oldest[i] = Some(created);
            }
            merge_acks(&mut self.acks[i], &acks);
        }
        for i in 0..n {
            if self.rows.all(&self.bufs[i]) >= self.batch_size {
                // On failure, `send_buf` counts every buffered record as abandoned and fails
                // their acks.
                self.send_buf(i)?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Halt> {
        for i in 0..self.txs.len() {
            self.send_buf(i)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Halt> {
        self.flush()?;
        close_all(&mut self.txs);
        Ok(())
    }
}

/// Every downstream instance (or every branch) receives every record.
pub(crate) struct Broadcast<T> {
    pub txs: Vec<Sender<T>>,
    /// Accounts the copies as records created (for the ledger).
    pub stats: Arc<OpStats>,
    pub task: Arc<TaskStats>,
}

impl<T: Clone + Send> Emit<T> for Broadcast<T> {
    fn emit(&mut self, batch: Batch<T>) -> Result<(), Halt> {
        let n = self
            .txs
            .first()
            .map_or(batch.len(), |tx| tx.rows().all(&batch.records));
        let k = self.txs.len();
        self.stats.add(n, n * k);
        let (last, rest) = match self.txs.split_last() {
            Some(x) => x,
            None => return Ok(()),
        };
        for (j, tx) in rest.iter().enumerate() {
            if let Err(h) = send(tx, batch.clone(), &self.task) {
                // The copies for the remaining targets were never sent either.
                self.task.add_abandoned((n * (k - 1 - j)) as u64);
                batch.fail_acks();
                return Err(h);
            }
        }
        send(last, batch, &self.task)
    }
    fn flush(&mut self) -> Result<(), Halt> {
        Ok(())
    }
    fn finish(&mut self) -> Result<(), Halt> {
        close_all(&mut self.txs);
        Ok(())
    }
}

/// Each record goes to the first branch if the predicate holds, else to the second.
pub(crate) struct Split<T, P> {
    pub yes: Box<dyn Emit<T>>,
    pub no: Box<dyn Emit<T>>,
    pub pred: Arc<P>,
    pub op_id: usize,
    pub rows: Rows<T>,
}

impl<T: Send, P: Fn(&T) -> bool + Send + Sync> Emit<T> for Split<T, P> {
    fn emit(&mut self, batch: Batch<T>) -> Result<(), Halt> {
        crate::runtime::task::set_current_op(self.op_id);
        let Batch {
            records,
            created,
            acks,
        } = batch;
        // The predicate is user code: while it runs the batch is held (a panic counts it).
        set_held(self.rows.all(&records));
        let (yes, no): (Vec<T>, Vec<T>) = records.into_iter().partition(|r| (self.pred)(r));
        set_held(0);
        if !yes.is_empty() {
            self.yes.emit(Batch {
                records: yes,
                created,
                acks: acks.clone(),
            })?;
        }
        if !no.is_empty() {
            self.no.emit(Batch {
                records: no,
                created,
                acks,
            })?;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), Halt> {
        self.yes.flush()?;
        self.no.flush()
    }
    fn finish(&mut self) -> Result<(), Halt> {
        let a = self.yes.finish();
        let b = self.no.finish();
        a.and(b)
    }
}

/// Sends each batch to several chain tails (fan-out of one stream to several consumers).
pub(crate) struct Tee<T> {
    pub outs: Vec<Box<dyn Emit<T>>>,
    pub stats: Arc<OpStats>,
    pub rows: Rows<T>,
}

impl<T: Clone + Send> Emit<T> for Tee<T> {
    fn emit(&mut self, batch: Batch<T>) -> Result<(), Halt> {
        let n = self.rows.all(&batch.records);
        let k = self.outs.len();
        self.stats.add(n, n * k);
        let Some((last, rest)) = self.outs.split_last_mut() else {
            return Ok(());
        };
        for o in rest {
            o.emit(batch.clone())?;
        }
        last.emit(batch)
    }
    fn flush(&mut self) -> Result<(), Halt> {
        for o in &mut self.outs {
            o.flush()?;
        }
        Ok(())
    }
    fn finish(&mut self) -> Result<(), Halt> {
        let mut r = Ok(());
        for o in &mut self.outs {
            let x = o.finish();
            if r.is_ok() {
                r = x;
            }
        }
        r
    }
}
