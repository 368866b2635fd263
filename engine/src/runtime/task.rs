//! Tasks: the body of one operator-chain instance (one thread), and the chained operators.
//!
//! A chain is a stack of [`Emit`] implementations built innermost-last: the head (a source or
//! an inbox) pushes each batch into the first operator, which pushes its output into the next,
//! and so on down to the tail (a sink or an exchange that sends on edges). Each link is a
//! boxed trait object called once per batch; inside a link the per-record loop is
//! monomorphized user code.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::batch::Batch;
use crate::edge::{Receiver, RecvError, TryRecvError};
use crate::metrics::{OpStats, TaskState, TaskStats};
use crate::operator::{InstanceInfo, Operator, Sink, SinkError, Source, SourceError, SourceStatus};
use crate::rows::Rows;
use crate::runtime::control::Control;
use crate::runtime::sinkstats::{LatencyRecorder, SinkStats};

/// Why a task stopped early.
#[derive(Debug)]
pub(crate) enum Halt {
    /// The job is aborting; unwind quietly.
    Aborted,
    /// A sink failed; the job fails with this error.
    SinkFailed { op: usize, error: SinkError },
    /// A source failed; the job fails with this error.
    SourceFailed { op: usize, error: SourceError },
}

thread_local! {
    /// The operator whose code this thread is running, for naming it when it panics.
    static CURRENT_OP: Cell<usize> = const { Cell::new(usize::MAX) };
    /// Records the innermost link of this thread's chain holds right now (handed to user
    /// code and not yet passed on, delivered or consumed): what a panic there takes with it,
    /// counted as abandoned so the books still balance. Set once per batch per link.
    static HELD: Cell<usize> = const { Cell::new(0) };
}

/// Records the innermost chain link of this thread held when it panicked (then zero).
pub(crate) fn take_held() -> usize {
    HELD.with(Cell::take)
}

pub(crate) fn set_held(n: usize) {
    HELD.with(|c| c.set(n));
}

pub(crate) fn set_current_op(op: usize) {
    CURRENT_OP.with(|c| c.set(op));
}

pub(crate) fn current_op() -> usize {
    CURRENT_OP.with(|c| c.get())
}

/// One link of a chain: receives batches from the link before it.
pub(crate) trait Emit<T>: Send {
    /// Pushes one batch through this link and everything after it.
    fn emit(&mut self, batch: Batch<T>) -> Result<(), Halt>;
    /// The head has no input right now: push out partial buffers.
    fn flush(&mut self) -> Result<(), Halt>;
    /// End of stream: flush, forward the end, release outputs.
    fn finish(&mut self) -> Result<(), Halt>;
}

/// The body of a task.
pub(crate) trait Runner: Send {
    fn run(self: Box<Self>) -> Result<(), Halt>;
}

/// A user [`Operator`] as a chain link.
pub(crate) struct OpLink<I, O, P> {
    pub op: P,
    pub op_id: usize,
    pub stats: Arc<OpStats>,
    /// How input and output items are counted (records or rows).
    pub rows_in: Rows<I>,
    pub rows_out: Rows<O>,
    pub out: Box<dyn Emit<O>>,
    pub _in: std::marker::PhantomData<fn(I)>,
}

impl<I, O, P> Emit<I> for OpLink<I, O, P>
where
    I: Send,
    O: Send,
    P: Operator<I, O>,
{
    fn emit(&mut self, batch: Batch<I>) -> Result<(), Halt> {
        let n = self.rows_in.all(&batch.records);
        set_current_op(self.op_id);
        set_held(n);
        let Batch {
            records,
            created,
            acks,
        } = batch;
        let out = self.op.process(records);
        let dead = self.op.take_dead_lettered();
        self.stats.add_with_dead(n, self.rows_out.all(&out), dead);
        set_held(0);
        if out.is_empty() {
            // Everything was consumed (filtered): the records ended here.
            return Ok(());
        }
        self.out.emit(Batch {
            records: out,
            created,
            acks,
        })
    }

    fn flush(&mut self) -> Result<(), Halt> {
        self.out.flush()
    }

    fn finish(&mut self) -> Result<(), Halt> {
        set_current_op(self.op_id);
        set_held(0);
        let tail = self.op.finish();
        let dead = self.op.take_dead_lettered();
        self.stats.add_with_dead(0, self.rows_out.all(&tail), dead);
        if !tail.is_empty() {
            self.out.emit(Batch::new(tail))?;
        }
        self.out.finish()
    }
}

/// A user [`Sink`] as the tail of a chain.
pub(crate) struct SinkLink<T, S> {
    pub sink: S,
    pub op_id: usize,
    pub rows: Rows<T>,
    pub stats: Arc<SinkStats>,
    pub task: Arc<TaskStats>,
    pub latency: LatencyRecorder,
    pub _t: std::marker::PhantomData<fn(T)>,
}

impl<T: Send, S: Sink<T>> Emit<T> for SinkLink<T, S> {
    fn emit(&mut self, batch: Batch<T>) -> Result<(), Halt> {
        let n = self.rows.all(&batch.records);
        set_current_op(self.op_id);
        let Batch {
            records,
            created,
            mut acks,
        } = batch;
        let batch_created = created;
        set_held(n);
        let written = self.sink.write_with_acks(records, &mut acks);
        set_held(0);
        match written {
            Ok(()) => {
                // Dead letters reported now may belong to earlier batches (a sink that
                // completes writes later): count them against this batch, and against what
                // was delivered before when they are more than it.
                let dead = self.sink.take_dead_lettered();
                let here = dead.min(n as u64);
                self.latency.record(batch_created, n as u64 - here);
                drop(acks);
                self.stats.add_delivered(n as u64 - here);
                if here > 0 {
                    self.stats.add_dead_lettered(here);
                }
                if dead > here {
                    self.stats.reclassify_dead(dead - here);
                }
                Ok(())
            }
            Err(e) => {
                self.task.add_abandoned(n as u64);
                crate::ack::fail_acks(&acks);
                Err(Halt::SinkFailed {
                    op: self.op_id,
                    error: e,
                })
            }
        }
    }

    fn flush(&mut self) -> Result<(), Halt> {
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Halt> {
        set_current_op(self.op_id);
        self.latency.publish(&self.stats);
        let r = self.sink.finish().map_err(|e| Halt::SinkFailed {
            op: self.op_id,
            error: e,
        });
        // Writes that failed for good while the sink flushed.
        let dead = self.sink.take_dead_lettered();
        if dead > 0 {
            self.stats.reclassify_dead(dead);
        }
        r
    }
}

impl<T, S> Drop for SinkLink<T, S> {
    fn drop(&mut self) {
        // Publish what was measured even when the task aborts.
        self.latency.publish(&self.stats);
    }
}

/// A task whose head is a [`Source`].
pub(crate) struct SourceRunner<T, S> {
    pub source: S,
    pub op_id: usize,
    pub rows: Rows<T>,
    pub stats: Arc<OpStats>,
    pub task: Arc<TaskStats>,
    pub control: Arc<Control>,
    pub info: InstanceInfo,
    pub out: Box<dyn Emit<T>>,
}

/// How long an idle source pauses before it is polled again.
const IDLE_PAUSE: Duration = Duration::from_millis(1);

impl<T: Send, S: Source<T>> Runner for SourceRunner<T, S> {
    fn run(mut self: Box<Self>) -> Result<(), Halt> {
        let max = self.info.batch_size;
        loop {
            if self.control.stop_requested() {
                break;
            }
            let mut buf = Vec::with_capacity(max);
            set_current_op(self.op_id);
            let status = self.source.poll_batch(&mut buf, max);
            let n = self.rows.all(&buf);
            let ack = self.source.take_ack();
            let dead = self.source.take_dead_lettered();
            if dead > 0 {
                self.stats.add_dead_lettered_at_source(dead);
            }
            if !buf.is_empty() {
                self.stats.add(0, n);
                let mut batch = Batch::new(buf);
                batch.acks.extend(ack);
                self.out.emit(batch)?;
            }
            let status = match status {
                Ok(s) => s,
                Err(error) => {
                    // Like a failed sink: the job aborts naming this source; what is still
                    // queued downstream counts as in flight (an acknowledging source replays it).
                    return Err(Halt::SourceFailed {
                        op: self.op_id,
                        error,
                    });
                }
            };
            match status {
                SourceStatus::More => {}
                SourceStatus::Done => break,
                SourceStatus::Idle => {
                    self.out.flush()?;
                    self.task.set_state(TaskState::WaitingInput);
                    let t0 = Instant::now();
                    std::thread::sleep(IDLE_PAUSE);
                    self.task.add_idle_ns(t0.elapsed().as_nanos() as u64);
                    self.task.set_state(TaskState::Running);
                }
            }
        }
        let r = self.out.finish();
        // The source's last words (a Kafka source stores its offsets, and its dead letters
        // made durable while it stopped are counted here, not lost to the books).
        self.source.close();
        let dead = self.source.take_dead_lettered();
        if dead > 0 {
            self.stats.add_dead_lettered_at_source(dead);
        }
        r
    }
}

/// A task whose head is an inbox (the edges from upstream tasks).
pub(crate) struct InboxRunner<T> {
    pub rx: Receiver<T>,
    pub task: Arc<TaskStats>,
    pub out: Box<dyn Emit<T>>,
}

impl<T: Send> Runner for InboxRunner<T> {
    fn run(mut self: Box<Self>) -> Result<(), Halt> {
        loop {
            let batch = match self.rx.try_recv() {
                Ok(b) => b,
                Err(TryRecvError::Closed) => break,
                Err(TryRecvError::Aborted) => return Err(Halt::Aborted),
                Err(TryRecvError::Empty) => {
                    // Nothing queued: push out partial buffers before waiting, so records
                    // never sit in a buffer while the task is idle.
                    self.out.flush()?;
                    self.task.set_state(TaskState::WaitingInput);
                    let t0 = Instant::now();
                    let r = self.rx.recv();
                    self.task.add_idle_ns(t0.elapsed().as_nanos() as u64);
                    self.task.set_state(TaskState::Running);
                    match r {
                        Ok(b) => b,
                        Err(RecvError::Closed) => break,
                        Err(RecvError::Aborted) => return Err(Halt::Aborted),
                    }
                }
            };
            self.out.emit(batch)?;
        }
        self.out.finish()
    }
}

/// A tail with no output edge. Never built for a well-formed graph; if it ever were, it
/// refuses records loudly (abandoned, job aborted) rather than losing them silently.
pub(crate) struct Nowhere<T> {
    pub task: Arc<TaskStats>,
    pub rows: Rows<T>,
}

impl<T: Send> Emit<T> for Nowhere<T> {
    fn emit(&mut self, batch: Batch<T>) -> Result<(), Halt> {
        self.task
            .add_abandoned(self.rows.all(&batch.records) as u64);
        Err(Halt::Aborted)
    }
    fn flush(&mut self) -> Result<(), Halt> {
        Ok(())
    }
    fn finish(&mut self) -> Result<(), Halt> {
        Ok(())
    }
}
