//! The overload scenario harness: a queue without a bound is stopped at the memory cap, and
//! says so.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use sluice_workloads::overload::{self, PolicyChoice, Scenario};

#[test]
fn an_unbounded_queue_is_aborted_at_the_memory_cap_and_the_result_says_so() {
    let now = overload::rss_bytes().unwrap();
    let s = Scenario {
        policy: PolicyChoice::Unbounded,
        duration: Duration::from_secs(20),
        // 10x a sink of 100k/s queues ~900k records a second: 100 MB more is a second or two.
        max_rss_bytes: now + (100 << 20),
        ..Scenario::default()
    };
    let r = overload::run(&s, &mut |_| {}).unwrap();
    assert!(r.memory_capped);
    assert!(r.duration_s < 20.0, "cut short: {}", r.duration_s);
    assert!(r.ledger.balanced);
    assert!(
        r.ledger.in_flight > 0,
        "what was queued counts as in flight"
    );
}

/// The shed scenario at 8x through the row edge and through Arrow batches shed by their
/// class column: every error delivered on both, debug shed on both, the books balanced in
/// rows; and the arrow pipeline deferring rows to disk as Arrow IPC.
#[test]
fn arrow_batches_shed_by_row_like_the_row_form() {
    use sluice_engine::Priority;
    use sluice_workloads::overload::PipelineShape;
    let run = |pipeline| {
        let s = Scenario {
            policy: PolicyChoice::Shed,
            pipeline,
            overload: 8.0,
            sink_capacity: 20_000.0,
            duration: Duration::from_millis(1500),
            ..Scenario::default()
        };
        overload::run(&s, &mut |_| {}).unwrap()
    };
    for r in [run(PipelineShape::Edge), run(PipelineShape::Arrow)] {
        let name = r.pipeline.name();
        assert!(r.ledger.balanced, "{name}: {}", r.ledger.explain());
        let err = &r.classes[&Priority::ERROR];
        assert!(err.offered > 0, "{name}");
        assert_eq!(err.dropped, 0, "{name}");
        assert_eq!(r.ledger.in_flight, 0, "{name}");
        // Every error emitted was delivered: the only ones missing are ones the producer
        // never emitted (due in the last instants of the window when it stopped).
        let offered: u64 = r.classes.values().map(|c| c.offered).sum();
        let unproduced = offered.saturating_sub(r.ledger.emitted);
        assert!(
            err.offered - err.delivered <= unproduced,
            "{name}: {} of {} errors delivered, {unproduced} events never produced",
            err.delivered,
            err.offered
        );
        let debug = &r.classes[&Priority::DEBUG];
        assert!(
            debug.dropped * 2 > debug.offered,
            "{name}: most debug is shed"
        );
        let by_class: u64 = r.classes.values().map(|c| c.dropped).sum();
        assert_eq!(by_class, r.ledger.dropped, "{name}");
    }
    // Deferred as Arrow IPC and replayed: nothing lost, errors first.
    let s = Scenario {
        policy: PolicyChoice::Defer,
        pipeline: PipelineShape::Arrow,
        overload: 4.0,
        sink_capacity: 20_000.0,
        duration: Duration::from_millis(1000),
        ..Scenario::default()
    };
    let r = overload::run(&s, &mut |_| {}).unwrap();
    assert!(r.ledger.balanced, "{}", r.ledger.explain());
    let deferred: u64 = r.classes.values().map(|c| c.deferred).sum();
    assert!(deferred > 0, "low classes went to disk");
    assert_eq!(r.classes[&Priority::ERROR].dropped, 0);
}
