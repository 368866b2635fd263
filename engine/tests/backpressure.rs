//! Backpressure with exact counts: a sink that stops consuming stops the source after the
//! edges are full, and a slow sink bounds what the source can emit at every instant.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use sluice_engine::{JobStatus, Pipeline, TaskState};

#[test]
fn stopped_sink_stops_source_after_edges_fill() {
    const B: u64 = 100; // records per batch
    const C1: usize = 500; // source -> relay
    const C2: usize = 300; // relay -> sink
    const ALLOWED: u64 = 3; // batches the sink accepts before it stops
    let gate = Gate::new(ALLOWED);
    let p = Pipeline::new("stall").batch_size(B as usize);
    let g = gate.clone();
    p.source("source", 1, range(100_000))
        .edge_capacity(C1)
        .new_chain()
        .operator("relay", |_| Identity)
        .edge_capacity(C2)
        .new_chain()
        .sink("sink", move |_| GatedSink(g.clone()));
    let job = p.run().expect("valid graph");

    // Wait until every task is parked (the sink in its gate, the others on credit) and both
    // edges are full. A task marks itself waiting before it backs off, so the states alone
    // can run ahead of the queues by a moment.
    let parked = wait_until(Duration::from_secs(10), || {
        let waiting = job
            .task_states()
            .iter()
            .filter(|(_, s)| *s == TaskState::WaitingCredit)
            .count();
        let r = job.report();
        gate.is_waiting()
            && waiting == 2
            && r.edges[0].queued == C1 as u64
            && r.edges[1].queued == C2 as u64
    });
    assert!(parked, "tasks did not park: {:?}", job.task_states());

    let r = job.report();
    // Delivered: the batches the gate let through. In hand: one batch each in the sink (inside
    // write), the relay and the source (both blocked on send). Queued: both edges full.
    let delivered = ALLOWED * B;
    let in_hand = 3 * B;
    assert_eq!(r.ledger.delivered, delivered);
    assert_eq!(r.edges[0].queued, C1 as u64);
    assert_eq!(r.edges[1].queued, C2 as u64);
    assert_eq!(
        r.source_emitted,
        delivered + C1 as u64 + C2 as u64 + in_hand
    );
    // Still parked: the source emits nothing more while the sink is stopped.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(job.report().source_emitted, r.source_emitted);
    assert!(r
        .edges
        .iter()
        .all(|e| e.credit_wait_s > 0.0 || e.blocked_sends > 0));

    gate.open();
    let report = job.wait().expect("job completes once the sink resumes");
    assert_eq!(report.status, JobStatus::Completed);
    assert_eq!(report.ledger.delivered, 100_000);
    assert!(report.ledger.balanced);
    assert!(report.stages[0].backpressured_s > 0.0);
}

#[test]
fn slow_sink_bounds_emitted_at_every_sample() {
    const B: usize = 64;
    const C: usize = 256;
    let p = Pipeline::new("slow").batch_size(B);
    p.source("source", 1, range(20_000))
        .edge_capacity(C)
        .new_chain()
        .operator("relay", |_| Identity)
        .edge_capacity(C)
        .new_chain()
        .sink("sink", |_| SlowSink(Duration::from_micros(300)));
    let job = p.run().expect("valid graph");
    let tasks = 3u64;
    let mut samples = 0;
    while !job.is_finished() {
        let r = job.report();
        let bound = r.ledger.delivered + 2 * C as u64 + tasks * B as u64;
        assert!(
            r.source_emitted <= bound,
            "emitted {} > delivered {} + capacities {} + in hand {}",
            r.source_emitted,
            r.ledger.delivered,
            2 * C,
            tasks * B as u64
        );
        for e in &r.edges {
            assert!(
                e.queued <= e.capacity as u64,
                "{} queued {} > {}",
                e.name,
                e.queued,
                e.capacity
            );
            assert!(e.max_queued <= e.capacity as u64);
        }
        samples += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(samples > 10, "too few samples ({samples}) to mean anything");
    let report = job.wait().expect("completes");
    assert_eq!(report.ledger.delivered, 20_000);
    assert!(report.ledger.balanced);
    // The source spent most of its time waiting for credit, not working.
    assert!(report.stages[0].backpressured_s > report.stages[0].busy_s);
}
