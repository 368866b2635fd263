//! Failure and shutdown: a panic names its operator and never hangs; a stop drains; a stop
//! that cannot drain in time aborts and reports what was in flight.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use parking_lot::Mutex;
use sluice_engine::{
    JobError, JobStatus, Operator, Pipeline, Sink, SinkError, Source, SourceError, SourceStatus,
};

struct PanicAt(u64);
impl Operator<u64, u64> for PanicAt {
    fn process(&mut self, input: Vec<u64>) -> Vec<u64> {
        if input.contains(&self.0) {
            panic!("bad record {}", self.0);
        }
        input
    }
}

#[test]
fn panic_in_operator_fails_job_naming_it() {
    // The panicking operator sits between a fast source and a sink, with full edges on both
    // sides at the moment it panics: nothing may hang.
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let p = Pipeline::new("panics").batch_size(16);
    p.source("numbers", 1, range(1_000_000))
        .edge_capacity(64)
        .new_chain()
        .operator("explode", |_| PanicAt(5_000))
        .edge_capacity(64)
        .new_chain()
        .sink("slow", move |_| {
            SlowCollect(Duration::from_micros(50), g.clone())
        });
    let t0 = Instant::now();
    let err = p.run().expect("valid").wait().expect_err("must fail");
    assert!(t0.elapsed() < Duration::from_secs(20));
    match &err {
        JobError::Panicked {
            operator,
            message,
            report,
        } => {
            assert_eq!(operator, "explode");
            assert!(message.contains("bad record 5000"), "{message}");
            assert_eq!(report.status, JobStatus::Failed);
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err.to_string().contains("explode"));
    // The oracle: what arrived is 0..k in order (the records before the panicking batch,
    // less what was queued behind it), and every record that did not arrive is in the
    // ledger (in flight when the job failed).
    let l = err.report().ledger;
    let got = got.lock();
    let v = verify(err.report().source_emitted, &got, &l);
    assert_eq!((v.duplicates, v.out_of_order), (0, 0), "{v}");
    assert!(got.iter().enumerate().all(|(i, &r)| r == i as u64));
    assert!(
        !got.contains(&5_000),
        "the panicking batch was not delivered"
    );
}

#[test]
fn panic_in_source_and_sink_are_named() {
    struct Boom;
    impl Source<u64> for Boom {
        fn poll_batch(
            &mut self,
            _out: &mut Vec<u64>,
            _max: usize,
        ) -> Result<SourceStatus, SourceError> {
            panic!("source broke")
        }
    }
    let p = Pipeline::new("s");
    p.source("boom", 2, |_| Boom)
        .sink("c", |_| Collect(Arc::new(Mutex::new(Vec::new()))));
    match p.run().expect("valid").wait() {
        Err(JobError::Panicked { operator, .. }) => assert_eq!(operator, "boom"),
        other => panic!("unexpected {other:?}"),
    }

    struct BadSink;
    impl Sink<u64> for BadSink {
        fn write(&mut self, _r: Vec<u64>) -> Result<(), SinkError> {
            Err(SinkError::retryable("disk full"))
        }
    }
    let p = Pipeline::new("s");
    p.source("n", 1, range(10_000)).sink("writer", |_| BadSink);
    match p.run().expect("valid").wait() {
        Err(e @ JobError::SinkFailed { .. }) => {
            assert_eq!(e.to_string(), "sink `writer` failed (retryable): disk full");
            let JobError::SinkFailed {
                operator, error, ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!(operator, "writer");
            assert!(error.is_retryable());
            assert_eq!(error.to_string(), "disk full");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_failing_source_fails_the_job_naming_it_and_the_books_balance() {
    /// Emits 3 batches of 100, then fails with an I/O error.
    struct Flaky(u64);
    impl Source<u64> for Flaky {
        fn poll_batch(
            &mut self,
            out: &mut Vec<u64>,
            _max: usize,
        ) -> Result<SourceStatus, SourceError> {
            if self.0 == 3 {
                return Err(SourceError::permanent(std::io::Error::other(
                    "input file truncated",
                )));
            }
            self.0 += 1;
            out.extend(0..100);
            Ok(SourceStatus::More)
        }
    }
    let p = Pipeline::new("s");
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    p.source("file", 1, |_| Flaky(0))
        .sink("c", move |_| Collect(g.clone()));
    let err = p
        .run()
        .expect("valid")
        .wait()
        .expect_err("the source failed");
    assert_eq!(
        err.to_string(),
        "source `file` failed (permanent): input file truncated"
    );
    let source = std::error::Error::source(&err).expect("the cause is kept");
    assert_eq!(source.to_string(), "input file truncated");
    let l = &err.report().ledger;
    assert_eq!(
        l.emitted, 300,
        "the batches before the failure were emitted"
    );
    assert!(l.balanced, "{l:?}");
    // Each batch was 0..100 again: stream = batch, so the oracle sees three streams.
    let mut o = Oracle::new();
    for b in 0..3 {
        o.expect(b, 100);
    }
    o.observe_all(
        got.lock()
            .iter()
            .enumerate()
            .map(|(i, &v)| Tag::new(i as u64 / 100, v)),
    );
    let v = o.verdict();
    v.reconcile(books(l)).expect("reconciles");
    assert_eq!(
        v.total.lost, 0,
        "everything emitted before the failure arrived"
    );
}

#[test]
fn stop_drains_and_balances() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let p = Pipeline::new("stop").batch_size(100);
    p.source("forever", 1, |_| Forever(0))
        .edge_capacity(1000)
        .new_chain()
        .operator("relay", |_| Identity)
        .new_chain()
        .sink("collect", move |_| Collect(g.clone()));
    let job = p.run().expect("valid");
    assert!(wait_until(Duration::from_secs(10), || job
        .report()
        .ledger
        .delivered
        > 10_000));
    let report = job.stop(Duration::from_secs(10)).expect("drains");
    assert_eq!(report.status, JobStatus::Stopped);
    assert_eq!(report.ledger.in_flight, 0);
    assert!(report.ledger.balanced);
    // Everything emitted arrived, in order, with nothing missing or twice.
    let v = verify(report.source_emitted, &got.lock(), &report.ledger);
    assert_eq!((v.lost, v.duplicates, v.out_of_order), (0, 0, 0), "{v}");
}

#[test]
fn stop_that_cannot_drain_aborts_and_counts_in_flight() {
    let gate = Gate::new(2);
    let g = gate.clone();
    let got = Arc::new(Mutex::new(Vec::new()));
    let out = got.clone();
    let p = Pipeline::new("stuck").batch_size(10);
    p.source("forever", 1, |_| Forever(0))
        .edge_capacity(50)
        .new_chain()
        .operator("relay", |_| Identity)
        .edge_capacity(30)
        .new_chain()
        .sink("gated", move |_| GatedCollect {
            gate: g.clone(),
            out: out.clone(),
        });
    let job = p.run().expect("valid");
    assert!(wait_until(Duration::from_secs(10), || gate.is_waiting()));
    // The sink never resumes by itself: open the gate only after the stop deadline so the
    // stuck sink task can exit within the abort grace period.
    let opener = {
        let gate = gate.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            gate.open();
        })
    };
    let report = job
        .stop(Duration::from_millis(200))
        .expect("ledger balances after abort");
    opener.join().expect("opener");
    assert_eq!(report.status, JobStatus::Aborted);
    assert!(
        report.ledger.in_flight > 0,
        "records were queued when aborted"
    );
    assert!(report.ledger.balanced, "{}", report.ledger.explain());
    // The oracle: every record that did not arrive is one the ledger holds in flight.
    let v = verify(report.source_emitted, &got.lock(), &report.ledger);
    assert_eq!(v.lost, report.ledger.in_flight);
    assert_eq!((v.duplicates, v.out_of_order), (0, 0), "{v}");
}

#[test]
fn dropping_a_job_aborts_it() {
    let p = Pipeline::new("drop");
    p.source("forever", 1, |_| Forever(0))
        .new_chain()
        .sink("slow", |_| SlowSink(Duration::from_millis(1)));
    let job = p.run().expect("valid");
    std::thread::sleep(Duration::from_millis(20));
    drop(job); // must not hang; threads exit on the abort
}

#[test]
fn another_thread_stops_a_job_that_main_waits_for() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let p = Pipeline::new("handle-stop").batch_size(100);
    p.source("forever", 1, |_| Forever(0))
        .edge_capacity(1000)
        .new_chain()
        .sink("collect", move |_| Collect(g.clone()));
    let job = p.run().expect("valid");
    let handle = job.handle();
    assert!(!handle.wait_timeout(Duration::from_millis(50)), "it runs");
    let stopper = std::thread::spawn(move || {
        // Once something was delivered, stop it from here; the main thread is in wait().
        assert!(wait_until(Duration::from_secs(10), || got.lock().len() > 5_000));
        handle.request_stop();
        assert!(handle.wait_timeout(Duration::from_secs(10)), "it drained");
    });
    let report = job.wait().expect("stopped and balanced");
    stopper.join().expect("stopper");
    assert_eq!(report.status, JobStatus::Stopped);
    assert_eq!(report.ledger.in_flight, 0);
    assert!(report.ledger.balanced);
}

#[test]
fn a_stop_with_a_deadline_from_a_handle_aborts_what_cannot_drain() {
    let gate = Gate::new(2);
    let g = gate.clone();
    let p = Pipeline::new("handle-deadline").batch_size(10);
    p.source("forever", 1, |_| Forever(0))
        .edge_capacity(50)
        .new_chain()
        .sink("gated", move |_| GatedSink(g.clone()));
    let job = p.run().expect("valid");
    assert!(wait_until(Duration::from_secs(10), || gate.is_waiting()));
    let handle = job.handle();
    let opener = {
        let gate = gate.clone();
        std::thread::spawn(move || {
            handle.stop_within(Duration::from_millis(200));
            // Let the stuck sink go only after the deadline, so the abort is what ends it.
            std::thread::sleep(Duration::from_millis(400));
            gate.open();
        })
    };
    let report = job.wait().expect("balances after the abort");
    opener.join().expect("opener");
    assert_eq!(report.status, JobStatus::Aborted);
    assert!(report.ledger.in_flight > 0);
    assert!(report.ledger.balanced);
}

#[test]
fn a_panic_while_flushing_at_end_of_stream_is_named_and_the_books_balance() {
    /// Holds records back and panics when asked for them at end of stream.
    struct PanicOnFinish(u64);
    impl Operator<u64, u64> for PanicOnFinish {
        fn process(&mut self, input: Vec<u64>) -> Vec<u64> {
            self.0 += input.len() as u64;
            input
        }
        fn finish(&mut self) -> Vec<u64> {
            panic!("flush failed after {} records", self.0)
        }
    }
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let p = Pipeline::new("finish-panics").batch_size(100);
    p.source("numbers", 1, range(10_000))
        .new_chain()
        .operator("flusher", |_| PanicOnFinish(0))
        .sink("collect", move |_| Collect(g.clone()));
    let err = p.run().expect("valid").wait().expect_err("must fail");
    match &err {
        JobError::Panicked {
            operator, message, ..
        } => {
            assert_eq!(operator, "flusher");
            assert!(
                message.contains("flush failed after 10000 records"),
                "{message}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let l = &err.report().ledger;
    assert!(l.balanced, "{l:?}");
    assert_eq!(l.emitted, 10_000);
    // Delivered is what arrived; what did not is in the ledger.
    let v = verify(10_000, &got.lock(), l);
    assert_eq!((v.duplicates, v.out_of_order), (0, 0), "{v}");
}

#[test]
fn a_panic_in_a_key_function_or_a_sink_leaves_the_books_balanced() {
    // Each place user code runs on records: an operator (above), the key of a hash exchange,
    // a split's predicate and a sink. The records it held are in flight, not gone.
    type Build = fn(&Pipeline, Arc<Mutex<Vec<u64>>>);
    let cases: [(&str, Build); 3] = [
        ("keyed", |p, g| {
            p.source("numbers", 1, range(100_000))
                .partition_by(2, |r: &u64| {
                    assert!(*r != 50_000, "bad key");
                    *r
                })
                .sink("collect", move |_| Collect(g.clone()));
        }),
        ("split", |p, g| {
            let (a, b) = p
                .source("numbers", 1, range(100_000))
                .split("route", |r: &u64| {
                    assert!(*r != 50_000, "bad route");
                    r.is_multiple_of(2)
                });
            let g2 = g.clone();
            a.sink("even", move |_| Collect(g.clone()));
            b.sink("odd", move |_| Collect(g2.clone()));
        }),
        ("sink", |p, g| {
            struct PanicSink(Arc<Mutex<Vec<u64>>>);
            impl Sink<u64> for PanicSink {
                fn write(&mut self, r: Vec<u64>) -> Result<(), SinkError> {
                    assert!(!r.contains(&50_000), "sink broke");
                    self.0.lock().extend(r);
                    Ok(())
                }
            }
            p.source("numbers", 1, range(100_000))
                .new_chain()
                .sink("broken", move |_| PanicSink(g.clone()));
        }),
    ];
    for (name, build) in cases {
        let got = Arc::new(Mutex::new(Vec::new()));
        let p = Pipeline::new(name).batch_size(64);
        build(&p, got.clone());
        let err = p.run().expect("valid").wait().expect_err("must fail");
        assert!(matches!(err, JobError::Panicked { .. }), "{name}: {err}");
        let r = err.report();
        let v = verify(r.source_emitted, &got.lock(), &r.ledger);
        assert!(v.lost > 0 && v.duplicates == 0, "{name}: {v}");
    }
}
