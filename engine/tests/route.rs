//! `route_to`: each record goes to the instance it names (modulo the parallelism), in the
//! order each upstream instance sent it.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;

use parking_lot::Mutex;
use sluice_engine::{Pipeline, Sink, SinkError};

/// Collects (its instance, record).
struct InfoSink(usize, Arc<Mutex<Vec<(usize, u64)>>>);

impl Sink<u64> for InfoSink {
    fn write(&mut self, records: Vec<u64>) -> Result<(), SinkError> {
        self.1
            .lock()
            .extend(records.into_iter().map(|r| (self.0, r)));
        Ok(())
    }
}

#[test]
fn records_reach_the_instance_they_name_in_order() {
    let got: Arc<Mutex<Vec<(usize, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let p = Pipeline::new("route").batch_size(16);
    let g = got.clone();
    p.source("numbers", 2, common::range(10_000))
        .route_to(3, |r: &u64| (*r % 7) as usize)
        .sink("by instance", move |info| {
            InfoSink(info.instance, g.clone())
        });
    let report = p.run().unwrap().wait().unwrap();
    assert!(report.ledger.balanced);
    let got = got.lock();
    assert_eq!(got.len(), 10_000);
    for &(instance, r) in got.iter() {
        assert_eq!(instance, (r % 7) as usize % 3, "record {r}");
    }
    // Per instance and per upstream instance (r % 2), in increasing order.
    for instance in 0..3 {
        for up in 0..2 {
            let seq: Vec<u64> = got
                .iter()
                .filter(|(i, r)| *i == instance && r % 2 == up)
                .map(|(_, r)| *r)
                .collect();
            assert!(seq.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
