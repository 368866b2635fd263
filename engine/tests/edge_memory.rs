//! An edge's bound in records bounds its memory: small batches queued on it do not keep the
//! large allocations they were built in.
#![allow(clippy::unwrap_used, missing_docs)]

use sluice_engine::edge::Receiver;
use sluice_engine::{Batch, EdgePolicy};

#[test]
fn a_queued_small_batch_does_not_keep_a_large_allocation() {
    for policy in [
        EdgePolicy::Block,
        EdgePolicy::DropNewest,
        EdgePolicy::DropOldest,
    ] {
        let rx: Receiver<u64> = Receiver::new();
        let tx = rx.add_port(10_000, policy);
        // What a paced source polled: three records due, in a buffer sized for a batch.
        for i in 0..1_000u64 {
            let mut v = Vec::with_capacity(1024);
            v.extend([i, i, i]);
            tx.try_send(Batch::new(v)).unwrap();
        }
        let mut queued_capacity = 0;
        let mut n = 0;
        while let Ok(b) = rx.try_recv() {
            queued_capacity += b.records.capacity();
            n += b.len();
        }
        assert_eq!(n, 3_000, "{policy:?}");
        // Before: 1,000 x 1,024 slots (24 MB of u64 for 24 KB of records).
        assert!(
            queued_capacity <= 2 * n + 8 * 1_000,
            "{policy:?}: {queued_capacity} slots held for {n} records"
        );
    }
}

#[test]
fn a_full_batch_is_queued_as_it_is() {
    let rx: Receiver<u64> = Receiver::new();
    let tx = rx.add_port(10_000, EdgePolicy::Block);
    let v: Vec<u64> = (0..1024).collect();
    let ptr = v.as_ptr();
    tx.try_send(Batch::new(v)).unwrap();
    let b = rx.try_recv().unwrap();
    assert_eq!(b.records.as_ptr(), ptr, "moved, not copied");
}
