//! Helpers shared by the engine's integration tests: plain sources, operators and sinks
//! written against the engine's traits, and a gate to stop a sink at an exact point.
#![allow(clippy::unwrap_used, missing_docs, dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use sluice_engine::{Ledger, Operator, Sink, SinkError, Source, SourceError, SourceStatus};
pub use sluice_testkit::{Books, Oracle, StreamVerdict, Tag};

/// Record `i` has class debug for i%10 in 0..7, info for 7, warn for 8, error for 9.
pub fn level(r: &u64) -> sluice_engine::Priority {
    use sluice_engine::Priority;
    match r % 10 {
        7 => Priority::INFO,
        8 => Priority::WARN,
        9 => Priority::ERROR,
        _ => Priority::DEBUG,
    }
}

/// Emits `0..n` (instance `s` of `p`: the values `i % p == s`).
pub struct Range {
    pub next: u64,
    pub step: u64,
    pub end: u64,
}

impl Source<u64> for Range {
    fn poll_batch(&mut self, out: &mut Vec<u64>, max: usize) -> Result<SourceStatus, SourceError> {
        while out.len() < max && self.next < self.end {
            out.push(self.next);
            self.next += self.step;
        }
        if self.next >= self.end {
            Ok(SourceStatus::Done)
        } else {
            Ok(SourceStatus::More)
        }
    }
}

pub fn range(n: u64) -> impl Fn(&sluice_engine::InstanceInfo) -> Range {
    move |i| Range {
        next: i.instance as u64,
        step: i.parallelism as u64,
        end: n,
    }
}

/// Passes batches through unchanged.
pub struct Identity;
impl<T: Send + 'static> Operator<T, T> for Identity {
    fn process(&mut self, input: Vec<T>) -> Vec<T> {
        input
    }
}

/// Collects into a shared vector.
pub struct Collect(pub Arc<Mutex<Vec<u64>>>);
impl Sink<u64> for Collect {
    fn write(&mut self, records: Vec<u64>) -> Result<(), SinkError> {
        self.0.lock().extend(records);
        Ok(())
    }
}

/// Lets `allowed` batches through, then blocks every further `write` until opened.
#[derive(Default)]
pub struct Gate {
    state: Mutex<GateState>,
    cv: Condvar,
}

#[derive(Default)]
struct GateState {
    allowed: u64,
    open: bool,
    waiting: bool,
}

impl Gate {
    pub fn new(allowed: u64) -> Arc<Self> {
        let g = Gate::default();
        g.state.lock().allowed = allowed;
        Arc::new(g)
    }
    pub fn pass(&self) {
        let mut st = self.state.lock();
        if st.allowed > 0 {
            st.allowed -= 1;
            return;
        }
        st.waiting = true;
        self.cv.notify_all();
        while !st.open {
            self.cv.wait(&mut st);
        }
        st.waiting = false;
    }
    pub fn open(&self) {
        self.state.lock().open = true;
        self.cv.notify_all();
    }
    pub fn is_waiting(&self) -> bool {
        self.state.lock().waiting
    }
}

/// A sink that passes every batch through a gate first.
pub struct GatedSink(pub Arc<Gate>);
impl<T: Send + 'static> Sink<T> for GatedSink {
    fn write(&mut self, _records: Vec<T>) -> Result<(), SinkError> {
        self.0.pass();
        Ok(())
    }
}

/// Passes every batch through a gate, then collects it.
pub struct GatedCollect<T> {
    pub gate: Arc<Gate>,
    pub out: Arc<Mutex<Vec<T>>>,
}

impl<T: Send + 'static> Sink<T> for GatedCollect<T> {
    fn write(&mut self, records: Vec<T>) -> Result<(), SinkError> {
        self.gate.pass();
        self.out.lock().extend(records);
        Ok(())
    }
}

/// Sleeps per batch, then collects it (any record type).
pub struct SlowCollectAny<T>(pub Duration, pub Arc<Mutex<Vec<T>>>);
impl<T: Send + 'static> Sink<T> for SlowCollectAny<T> {
    fn write(&mut self, records: Vec<T>) -> Result<(), SinkError> {
        std::thread::sleep(self.0);
        self.1.lock().extend(records);
        Ok(())
    }
}

/// Sleeps per batch, then collects it.
pub struct SlowCollect(pub Duration, pub Arc<Mutex<Vec<u64>>>);
impl Sink<u64> for SlowCollect {
    fn write(&mut self, records: Vec<u64>) -> Result<(), SinkError> {
        std::thread::sleep(self.0);
        self.1.lock().extend(records);
        Ok(())
    }
}

/// The ledger's side of an oracle reconciliation: delivered, and everything else it
/// accounts for.
pub fn books(l: &Ledger) -> Books {
    Books {
        delivered: l.delivered,
        not_delivered: l.accounted() - l.delivered,
    }
}

/// The verifying oracle over one run: the source offered the values `0..offered` (one
/// stream), a sink received `got` in that order, and the ledger says `ledger`. Panics with
/// both sides' numbers unless they reconcile; returns the totals (lost, duplicates, out of
/// order) for the test's own expectations.
pub fn verify(offered: u64, got: &[u64], ledger: &Ledger) -> StreamVerdict {
    let mut o = Oracle::new();
    o.expect(0, offered);
    o.observe_all(got.iter().map(|&v| Tag::new(0, v)));
    let v = o.verdict();
    if let Err(e) = v.reconcile(books(ledger)) {
        panic!("{e}; ledger: {}", ledger.explain());
    }
    v.total
}

/// Sleeps per batch.
pub struct SlowSink(pub Duration);
impl<T: Send + 'static> Sink<T> for SlowSink {
    fn write(&mut self, _records: Vec<T>) -> Result<(), SinkError> {
        std::thread::sleep(self.0);
        Ok(())
    }
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    cond()
}

/// A source that never ends.
pub struct Forever(pub u64);
impl Source<u64> for Forever {
    fn poll_batch(&mut self, out: &mut Vec<u64>, max: usize) -> Result<SourceStatus, SourceError> {
        for _ in 0..max {
            out.push(self.0);
            self.0 += 1;
        }
        Ok(SourceStatus::More)
    }
}
