//! Acknowledgements complete once every derived record has ended, exactly once, and fail on
//! abnormal paths so a source never commits what was not processed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use parking_lot::Mutex;
use sluice_engine::{
    Ack, AckOutcome, AckToken, EdgePolicy, InstanceInfo, JobError, Operator, Pipeline, Sink,
    SinkError, Source, SourceError, SourceStatus,
};

type Log = Arc<Mutex<Vec<(u64, AckOutcome)>>>;

/// Emits `0..n` in batches and acks each batch with its first record as id.
struct Acked {
    next: u64,
    end: u64,
    log: Log,
    pending: Option<Ack>,
}

impl Source<u64> for Acked {
    fn poll_batch(&mut self, out: &mut Vec<u64>, max: usize) -> Result<SourceStatus, SourceError> {
        let first = self.next;
        while out.len() < max && self.next < self.end {
            out.push(self.next);
            self.next += 1;
        }
        if !out.is_empty() {
            let log = self.log.clone();
            self.pending = Some(AckToken::new(move |o| log.lock().push((first, o))));
        }
        if self.next >= self.end {
            Ok(SourceStatus::Done)
        } else {
            Ok(SourceStatus::More)
        }
    }
    fn take_ack(&mut self) -> Option<Ack> {
        self.pending.take()
    }
}

fn acked(n: u64, log: &Log) -> impl Fn(&InstanceInfo) -> Acked + 'static {
    let log = log.clone();
    move |_| Acked {
        next: 0,
        end: n,
        log: log.clone(),
        pending: None,
    }
}

struct KeepEven;
impl Operator<u64, u64> for KeepEven {
    fn process(&mut self, mut input: Vec<u64>) -> Vec<u64> {
        input.retain(|x| x % 2 == 0);
        input
    }
}

#[test]
fn every_batch_is_acked_done_exactly_once_across_exchanges() {
    let log: Log = Arc::default();
    let p = Pipeline::new("acks").batch_size(100);
    p.source("src", 1, acked(10_000, &log))
        .operator("even", |_| KeepEven)
        .partition_by(3, |x| *x)
        .operator("id", |_| Identity)
        .new_chain()
        .sink("sink", |_| SlowSink(Duration::ZERO));
    let report = p.run().unwrap().wait().unwrap();
    assert!(report.ledger.balanced);
    let mut log = log.lock().clone();
    log.sort_unstable_by_key(|(id, _)| *id);
    assert_eq!(log.len(), 100, "one callback per source batch");
    assert!(log
        .iter()
        .enumerate()
        .all(|(i, (id, o))| *id == i as u64 * 100 && *o == AckOutcome::Done));
}

#[test]
fn ack_waits_for_the_sink_and_counts_policy_drops_as_ended() {
    let log: Log = Arc::default();
    let gate = Gate::new(0);
    let g = gate.clone();
    let p = Pipeline::new("wait").batch_size(10);
    p.source("src", 1, acked(200, &log))
        .edge_capacity(30)
        .edge_policy(EdgePolicy::DropNewest)
        .new_chain()
        .sink("gated", move |_| GatedSink(g.clone()));
    let job = p.run().unwrap();
    let parked;
    assert!(wait_until(Duration::from_secs(10), || gate.is_waiting()
        && job.task_states().iter().any(
            |(n, s)| n.starts_with("src") && *s == sluice_engine::TaskState::Finished
        )));
    {
        let queued_batches = job.report().edges[0].queued / 10;
        parked = 1 + queued_batches;
        let l = log.lock();
        // One batch is inside the sink and the queued ones wait: not acked. Every batch the
        // edge refused whole has ended (dropped by policy): acked.
        assert_eq!(l.len() as u64, 20 - 1 - queued_batches, "{l:?}");
        assert!(l.iter().all(|(_, o)| *o == AckOutcome::Done));
        assert!(!l.iter().any(|(id, _)| *id == 0), "batch 0 is in the sink");
    }
    gate.open();
    let report = job.wait().unwrap();
    assert_eq!(report.ledger.delivered, parked * 10);
    assert_eq!(report.ledger.dropped, 200 - parked * 10);
    assert_eq!(log.lock().len(), 20);
    assert!(log.lock().iter().all(|(_, o)| *o == AckOutcome::Done));
}

struct FailAt(u64);
impl Sink<u64> for FailAt {
    fn write(&mut self, records: Vec<u64>) -> Result<(), SinkError> {
        if records.contains(&self.0) {
            Err(SinkError::permanent("boom"))
        } else {
            Ok(())
        }
    }
}

#[test]
fn sink_failure_fails_the_acks_of_what_did_not_arrive() {
    let log: Log = Arc::default();
    let p = Pipeline::new("fail").batch_size(10);
    p.source("src", 1, acked(1_000, &log))
        .edge_capacity(50)
        .new_chain()
        .sink("sink", |_| FailAt(500));
    assert!(matches!(
        p.run().unwrap().wait(),
        Err(JobError::SinkFailed { .. })
    ));
    let log = log.lock();
    // Everything before the failing batch was delivered: Done. The failing batch: Failed.
    for (id, o) in log.iter() {
        if *id < 500 {
            assert_eq!(*o, AckOutcome::Done, "batch {id}");
        } else {
            assert_eq!(*o, AckOutcome::Failed, "batch {id} was never delivered");
        }
    }
    assert!(log
        .iter()
        .any(|(id, o)| *id == 500 && *o == AckOutcome::Failed));
}

struct PanicOn(u64);
impl Operator<u64, u64> for PanicOn {
    fn process(&mut self, input: Vec<u64>) -> Vec<u64> {
        assert!(!input.contains(&self.0), "poison record");
        input
    }
}

#[test]
fn panic_and_abort_fail_acks_never_complete_them() {
    let log: Log = Arc::default();
    let p = Pipeline::new("panic").batch_size(10);
    p.source("src", 1, acked(1_000, &log))
        .edge_capacity(40)
        .new_chain()
        .operator("poison", |_| PanicOn(300))
        .new_chain()
        .sink("sink", |_| SlowSink(Duration::ZERO));
    assert!(matches!(
        p.run().unwrap().wait(),
        Err(JobError::Panicked { .. })
    ));
    let log = log.lock();
    assert!(
        log.iter()
            .any(|(id, o)| *id == 300 && *o == AckOutcome::Failed),
        "{log:?}"
    );
    assert!(log
        .iter()
        .filter(|(id, _)| *id >= 300)
        .all(|(_, o)| *o == AckOutcome::Failed));
}

/// Emits `0..n` with an ack per batch, then waits (idle) until every ack has completed, and
/// records whether they did while the job was running.
struct WaitsForAcks {
    inner: Acked,
    total: usize,
    deadline: Option<std::time::Instant>,
    completed_while_running: Arc<Mutex<Option<bool>>>,
}

impl Source<u64> for WaitsForAcks {
    fn poll_batch(&mut self, out: &mut Vec<u64>, max: usize) -> Result<SourceStatus, SourceError> {
        if self.inner.next < self.inner.end {
            self.inner.poll_batch(out, max)?;
            return Ok(SourceStatus::More);
        }
        let deadline = *self
            .deadline
            .get_or_insert_with(|| std::time::Instant::now() + Duration::from_secs(10));
        let done = self.inner.log.lock().len() == self.total;
        if done || std::time::Instant::now() > deadline {
            *self.completed_while_running.lock() = Some(done);
            return Ok(SourceStatus::Done);
        }
        Ok(SourceStatus::Idle)
    }
    fn take_ack(&mut self) -> Option<Ack> {
        self.inner.take_ack()
    }
}

#[test]
fn a_keyed_exchange_passes_acks_on_with_its_batches() {
    // A Kafka source commits what its acks report: acks must complete while the job runs,
    // not when the exchange is torn down at the end (the hash exchange kept every ack of
    // every input batch until then, so nothing behind a `key_by` was ever committed early).
    let log: Log = Arc::default();
    let seen = Arc::new(Mutex::new(None));
    let (l, s) = (log.clone(), seen.clone());
    let p = Pipeline::new("keyed-acks").batch_size(100);
    p.source("src", 1, move |_| WaitsForAcks {
        inner: Acked {
            next: 0,
            end: 5_000,
            log: l.clone(),
            pending: None,
        },
        total: 50,
        deadline: None,
        completed_while_running: s.clone(),
    })
    .partition_by(2, |x: &u64| x.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    .sink("sink", |_| SlowSink(Duration::ZERO));
    let report = p.run().unwrap().wait().unwrap();
    assert!(report.ledger.balanced);
    assert_eq!(
        *seen.lock(),
        Some(true),
        "acks completed only at the end: {} of 50 while running",
        log.lock().len()
    );
    assert!(log.lock().iter().all(|(_, o)| *o == AckOutcome::Done));
}
