//! W1 on Sluice matches a single-threaded reference at every parallelism, and its report
//! balances.
#![allow(clippy::unwrap_used, missing_docs)]

use sluice_workloads::w1;

fn check(records: u64, parallelism: usize, capacity: usize) {
    let cfg = w1::Config {
        records,
        parallelism,
        capacity,
        ..w1::Config::default()
    };
    let (out, report) = w1::run_sluice(&cfg).expect("w1 runs");
    let (n, x) = w1::reference(records);
    assert_eq!(
        (out.records_out, out.checksum),
        (n, x),
        "p={parallelism} cap={capacity}"
    );
    assert!(report.ledger.balanced, "{}", report.ledger.explain());
    assert_eq!(report.ledger.emitted, records);
    assert_eq!(report.ledger.delivered + report.ledger.filtered, records);
    // Three chains per instance: source+map+filter, keyed sum, sink.
    assert_eq!(report.stages.len(), 3);
    assert!(report.stages.iter().all(|s| s.parallelism == parallelism));
}

#[test]
fn w1_matches_reference() {
    for p in [1, 2, 4] {
        check(300_000, p, 8192);
    }
}

#[test]
fn w1_matches_reference_with_tiny_edges() {
    // Capacity below the batch size: every batch is clamped, nothing deadlocks.
    check(50_000, 2, 100);
    check(50_000, 1, 1);
}

#[test]
fn w1_baseline_matches_reference() {
    let cfg = w1::Config {
        records: 200_000,
        parallelism: 2,
        ..w1::Config::default()
    };
    let out = w1::run_baseline(&cfg);
    assert_eq!((out.records_out, out.checksum), w1::reference(200_000));
}
