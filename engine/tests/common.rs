//! Helpers shared by the engine's integration tests: plain sources, operators and sinks
//! written against the engine's traits, and a gate to stop a sink at an exact point.
#![allow(clippy::unwrap_used, missing_docs, dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use sluice_engine::{Operator, Sink, SinkError, Source, SourceError, SourceStatus};

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
