//! A pipeline's own failures go to a dead-letter output that the ledger counts as
//! dead-lettered, not delivered.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use parking_lot::Mutex;
use sluice::prelude::*;

#[test]
fn try_map_sends_failures_to_a_dead_letter_sink_counted_as_dead_lettered() {
    let p = Pipeline::new("dlq");
    let (ok, failed) = p
        .generator("lines", 2, GeneratorConfig::count(1_000), |i| {
            if i % 10 == 3 {
                format!("bad{i}")
            } else {
                i.to_string()
            }
        })
        .try_map("parse", |s: &String| {
            s.parse::<u64>().map_err(|e| e.to_string())
        });
    let parsed = ok.collect("parsed");
    let bad: Arc<Mutex<Vec<Failed<String, String>>>> = Arc::default();
    let b = bad.clone();
    failed.dead_letter("bad lines", move |f| b.lock().push(f));
    let report = p.run().unwrap().wait().unwrap();

    let mut parsed = parsed.take();
    parsed.sort_unstable();
    let want: Vec<u64> = (0..1_000).filter(|i| i % 10 != 3).collect();
    assert_eq!(parsed, want);
    let bad = bad.lock();
    assert_eq!(bad.len(), 100);
    assert!(bad
        .iter()
        .all(|f| f.record.starts_with("bad") && f.error.contains("invalid digit")));
    let l = &report.ledger;
    assert_eq!((l.emitted, l.delivered, l.dead_lettered), (1_000, 900, 100));
    assert!(l.balanced);
}
