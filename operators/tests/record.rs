//! The record operators' fast paths keep the engine's guarantees: a filter over plain
//! records (compacted without branches) that panics mid-batch fails the job naming it, and
//! the records it held are accounted for.

use sluice_connectors::PipelineExt;
use sluice_engine::{JobError, Pipeline};
use sluice_operators::{SinkExt, StreamExt};

#[test]
fn a_filter_that_panics_mid_batch_is_named_and_the_books_balance() {
    let p = Pipeline::new("filter-panics").batch_size(64);
    let out = p
        .iter_source("numbers", 1, |_| 0..100_000u64)
        .filter("keep", |r: &u64| {
            assert!(*r != 50_000, "bad record");
            !r.is_multiple_of(3)
        })
        .collect("out");
    let err = p.run().expect("valid").wait().expect_err("must fail");
    let JobError::Panicked { operator, .. } = &err else {
        panic!("unexpected {err}");
    };
    assert_eq!(operator, "keep");
    let r = err.report();
    assert!(r.ledger.balanced, "{}", r.ledger.explain());
    let got = out.take();
    // What arrived passed the filter, in order, and came before the panicking batch.
    assert!(got.windows(2).all(|w| w[0] < w[1]));
    assert!(got.iter().all(|r| r % 3 != 0 && *r < 50_000));
}
