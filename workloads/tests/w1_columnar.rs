//! W1 in columnar form matches the single-threaded reference at every parallelism, batch
//! size and with rayon, and its books balance in rows.
#![allow(clippy::unwrap_used, missing_docs)]

use sluice_workloads::{w1, w1_columnar};

fn check(records: u64, parallelism: usize, batch_size: usize, rayon: bool) {
    check_form(records, parallelism, batch_size, rayon, false);
}

fn check_form(records: u64, parallelism: usize, batch_size: usize, rayon: bool, fused: bool) {
    let cfg = w1_columnar::ColumnarConfig {
        base: w1::Config {
            records,
            parallelism,
            batch_size,
            ..w1::Config::default()
        },
        rayon,
        fused,
    };
    let (out, report) = w1_columnar::run(&cfg).expect("columnar w1 runs");
    assert_eq!(
        (out.records_out, out.checksum),
        w1::reference(records),
        "p={parallelism} batch={batch_size} rayon={rayon} fused={fused}"
    );
    let l = &report.ledger;
    assert!(l.balanced, "{}", l.explain());
    assert_eq!(l.emitted, records, "counted in rows");
    assert_eq!(l.delivered + l.filtered, records);
    assert_eq!(l.dead_lettered, 0);
}

#[test]
fn columnar_w1_matches_the_reference() {
    for p in [1, 2, 4] {
        for batch in [1000, 8192] {
            check(200_000, p, batch, false);
        }
    }
}

#[test]
fn columnar_w1_matches_the_reference_with_rayon_and_large_batches() {
    check(300_000, 2, 65_536, true);
    check(100_001, 1, 40_000, true);
}

#[test]
fn fused_columnar_w1_matches_the_reference() {
    for p in [1, 2, 4] {
        check_form(200_000, p, 8192, false, true);
    }
    check_form(100_001, 2, 1000, false, true);
}
