//! Live counters shared between running tasks and observers (the job handle, the report).
//!
//! Counters are plain atomics updated once per batch (never per record) with `Relaxed`
//! ordering: they are statistics, not synchronization. Time spent idle (waiting for input) and
//! backpressured (waiting for credit) is measured only on the slow path, when a task actually
//! waits, so a task that never waits never reads the clock for these.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

/// What a task (one instance of an operator chain, one thread) is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Created, thread not started yet.
    Starting,
    /// Processing (or in user code).
    Running,
    /// Waiting for input: idle.
    WaitingInput,
    /// Waiting for credit on an output edge: backpressured.
    WaitingCredit,
    /// Finished (end of stream forwarded, or aborted).
    Finished,
}

impl TaskState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => TaskState::Starting,
            1 => TaskState::Running,
            2 => TaskState::WaitingInput,
            3 => TaskState::WaitingCredit,
            _ => TaskState::Finished,
        }
    }
}

/// Counters of one task.
#[derive(Debug)]
pub struct TaskStats {
    state: AtomicU8,
    idle_ns: AtomicU64,
    backpressure_ns: AtomicU64,
    /// Records the task held in hand when it was aborted (part of `in_flight`).
    abandoned: AtomicU64,
}

impl Default for TaskStats {
    fn default() -> Self {
        Self {
            state: AtomicU8::new(0),
            idle_ns: AtomicU64::new(0),
            backpressure_ns: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
        }
    }
}

impl TaskStats {
    /// Current state.
    pub fn state(&self) -> TaskState {
        TaskState::from_u8(self.state.load(Relaxed))
    }
    pub(crate) fn set_state(&self, s: TaskState) {
        self.state.store(s as u8, Relaxed);
    }
    pub(crate) fn add_idle_ns(&self, ns: u64) {
        self.idle_ns.fetch_add(ns, Relaxed);
    }
    pub(crate) fn add_backpressure_ns(&self, ns: u64) {
        self.backpressure_ns.fetch_add(ns, Relaxed);
    }
    pub(crate) fn add_abandoned(&self, n: u64) {
        self.abandoned.fetch_add(n, Relaxed);
    }
    /// Nanoseconds spent waiting for input.
    pub fn idle_ns(&self) -> u64 {
        self.idle_ns.load(Relaxed)
    }
    /// Nanoseconds spent waiting for credit.
    pub fn backpressure_ns(&self) -> u64 {
        self.backpressure_ns.load(Relaxed)
    }
    /// Records held in hand when the task was aborted.
    pub fn abandoned(&self) -> u64 {
        self.abandoned.load(Relaxed)
    }
}

/// Record counters of one operator (summed over its instances).
#[derive(Debug, Default)]
pub struct OpStats {
    records_in: AtomicU64,
    records_out: AtomicU64,
    /// Records an operator consumed without forwarding (a filter's rejects, ...).
    absorbed: AtomicU64,
    /// Records an operator produced beyond its input (flat_map expansion, broadcast copies).
    created: AtomicU64,
    /// Records a source took in and sent to a dead-letter path itself (a message that does
    /// not decode: created and dead-lettered at once), or an operator dead-lettered instead
    /// of emitting (consumed, like a filter's rejects, but counted as dead-lettered).
    dead_lettered: AtomicU64,
}

impl OpStats {
    /// Accounts one batch: `n_in` records in, `n_out` out.
    pub(crate) fn add(&self, n_in: usize, n_out: usize) {
        self.records_in.fetch_add(n_in as u64, Relaxed);
        self.records_out.fetch_add(n_out as u64, Relaxed);
        if n_out < n_in {
            self.absorbed.fetch_add((n_in - n_out) as u64, Relaxed);
        } else if n_out > n_in {
            self.created.fetch_add((n_out - n_in) as u64, Relaxed);
        }
    }
    /// Accounts one batch of an operator that also dead-lettered `dead` of its input
    /// records: `n_in + created == n_out + absorbed + dead`.
    pub(crate) fn add_with_dead(&self, n_in: usize, n_out: usize, dead: u64) {
        if dead == 0 {
            return self.add(n_in, n_out);
        }
        self.records_in.fetch_add(n_in as u64, Relaxed);
        self.records_out.fetch_add(n_out as u64, Relaxed);
        self.dead_lettered.fetch_add(dead, Relaxed);
        let consumed = n_out as u64 + dead;
        let n_in = n_in as u64;
        if consumed < n_in {
            self.absorbed.fetch_add(n_in - consumed, Relaxed);
        } else if consumed > n_in {
            self.created.fetch_add(consumed - n_in, Relaxed);
        }
    }
    /// Accounts records a source dead-lettered before they entered the graph.
    pub(crate) fn add_dead_lettered_at_source(&self, n: u64) {
        self.created.fetch_add(n, Relaxed);
        self.dead_lettered.fetch_add(n, Relaxed);
    }
    /// Records this operator dead-lettered itself.
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.load(Relaxed)
    }
    /// Records into this operator.
    pub fn records_in(&self) -> u64 {
        self.records_in.load(Relaxed)
    }
    /// Records out of this operator.
    pub fn records_out(&self) -> u64 {
        self.records_out.load(Relaxed)
    }
    /// Records consumed without an output.
    pub fn absorbed(&self) -> u64 {
        self.absorbed.load(Relaxed)
    }
    /// Records produced beyond the input.
    pub fn created(&self) -> u64 {
        self.created.load(Relaxed)
    }
}
