//! Property test: an inbox of ports served by priority, driven by random sends, receives and
//! closes, against a model of per-class FIFO queues. After every step the credit identity
//! holds and the port's counts match the model; every received batch is the oldest records of
//! the highest class queued on any port; what was sent is received, dropped by a named
//! reason, or still queued, exactly.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use parking_lot::Mutex;
use proptest::prelude::*;
use sluice_engine::edge::{Dropped, PortConfig, Receiver, Sender, TryRecvError, TrySendError};
use sluice_engine::{classifier, Batch, DropReason, EdgePolicy, Priority, ServiceOrder};

/// A record: its value and class (the class is derived from the value, so the edge's
/// classifier and the model agree).
fn class(v: &u64) -> Priority {
    Priority::rank((*v % 5) as u8)
}

#[derive(Debug, Clone)]
enum Op {
    /// try_send a batch on this port: one class per record.
    Send {
        port: usize,
        classes: Vec<u8>,
    },
    Recv,
    Close {
        port: usize,
    },
}

fn op(ports: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..ports, proptest::collection::vec(0u8..5, 1..10))
            .prop_map(|(port, classes)| Op::Send { port, classes }),
        4 => Just(Op::Recv),
        1 => (0..ports).prop_map(|port| Op::Close { port }),
    ]
}

type Taps = Arc<Mutex<Vec<Dropped<u64>>>>;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn priority_service_matches_per_class_fifo_model(
        caps in proptest::collection::vec(1usize..16, 1..4),
        shed in any::<bool>(),
        ops in proptest::collection::vec(op(3), 1..200),
    ) {
        let policy = if shed { EdgePolicy::shed_by_priority() } else { EdgePolicy::Block };
        let rx: Receiver<u64> = Receiver::new();
        let dropped: Taps = Arc::default();
        let mut txs: Vec<Option<Sender<u64>>> = caps
            .iter()
            .map(|&c| {
                let d = dropped.clone();
                let mut cfg = PortConfig::new(c);
                cfg.policy = policy;
                cfg.classifier = Some(classifier(class));
                cfg.tap = Some((1, Arc::new(move |x: Dropped<u64>| d.lock().push(x))));
                cfg.service = ServiceOrder::Priority;
                Some(rx.add_port_with(cfg))
            })
            .collect();
        // The model: per port, the queued records in the order the port accepted them.
        let mut queued: Vec<Vec<u64>> = vec![Vec::new(); caps.len()];
        let mut open = vec![true; caps.len()];
        let (mut sent, mut received, mut ndropped) = (0u64, 0u64, 0u64);
        // Values increase with every record sent, and the class is value % 5: a value that
        // encodes its class and its sending order.
        let mut next = [0u64; 5];
        for op in ops {
            match op {
                Op::Send { port, classes } => {
                    let port = port % caps.len();
                    let Some(tx) = &txs[port] else { continue };
                    let records: Vec<u64> = classes
                        .iter()
                        .map(|&c| {
                            let v = next[c as usize] * 5 + u64::from(c);
                            next[c as usize] += 1;
                            v
                        })
                        .collect();
                    match tx.try_send(Batch::new(records.clone())) {
                        Ok(()) => {
                            sent += records.len() as u64;
                            queued[port].extend(&records);
                        }
                        Err(TrySendError::Full(rest)) => {
                            // What was not handed back was queued (or dropped, below).
                            sent += records.len() as u64;
                            let back: Vec<u64> = rest.records;
                            sent -= back.len() as u64;
                            prop_assert!(shed || back == records, "block hands back the batch");
                            queued[port].extend(records.iter().filter(|r| !back.contains(r)));
                        }
                        Err(e) => prop_assert!(false, "unexpected {:?}", e),
                    }
                    // Refused and evicted records leave the model's queue.
                    for d in dropped.lock().drain(..) {
                        prop_assert!(shed, "block never drops");
                        prop_assert!(d.class < Priority::ERROR, "error dropped: {:?}", d);
                        prop_assert!(matches!(d.reason, DropReason::ShedRefused | DropReason::ShedEvicted));
                        prop_assert_eq!(class(&d.record), d.class);
                        ndropped += 1;
                        if d.reason == DropReason::ShedEvicted {
                            let pos = queued[port].iter().position(|r| *r == d.record);
                            prop_assert!(pos.is_some(), "evicted a record not queued");
                            if let Some(p) = pos { queued[port].remove(p); }
                        } else {
                            let pos = queued[port].iter().position(|r| *r == d.record);
                            if let Some(p) = pos { queued[port].remove(p); }
                        }
                    }
                }
                Op::Recv => {
                    let top = queued.iter().flatten().map(class).max();
                    match rx.try_recv() {
                        Ok(b) => {
                            let got = b.records;
                            received += got.len() as u64;
                            // One port's records: find it.
                            let port = queued.iter().position(|q| q.contains(&got[0]));
                            prop_assert!(port.is_some(), "received {:?}, not queued", got);
                            let port = port.unwrap();
                            prop_assert!(got.iter().any(|r| Some(class(r)) == top),
                                "took {:?} while class {:?} was queued", got, top);
                            let q = &mut queued[port];
                            // Per class: the oldest queued records of that class.
                            for c in Priority::all() {
                                let mine: Vec<u64> = got.iter().copied().filter(|r| class(r) == c).collect();
                                let oldest: Vec<u64> = q.iter().copied().filter(|r| class(r) == c).take(mine.len()).collect();
                                prop_assert_eq!(mine, oldest, "class {} out of order", c);
                            }
                            // A mixed batch is taken whole only when it was all the port held.
                            let mixed = got.iter().any(|r| class(r) != class(&got[0]));
                            prop_assert!(!mixed || got.len() == q.len(), "mixed batch {:?} of {:?}", got, q);
                            q.retain(|r| !got.contains(r));
                        }
                        Err(TryRecvError::Empty) => {
                            prop_assert!(top.is_none(), "empty with {:?} queued", queued);
                            prop_assert!(open.iter().any(|o| *o));
                        }
                        Err(TryRecvError::Closed) => {
                            prop_assert!(top.is_none() && open.iter().all(|o| !o));
                        }
                        Err(e) => prop_assert!(false, "unexpected {:?}", e),
                    }
                }
                Op::Close { port } => {
                    let port = port % caps.len();
                    txs[port] = None;
                    open[port] = false;
                }
            }
            for (i, q) in queued.iter().enumerate() {
                let s = rx.snapshot(i);
                prop_assert_eq!(s.available + s.in_flight_credit, s.capacity, "credit identity");
                prop_assert_eq!(s.queued_records, q.len(), "queued records");
                // Credit is held while records wait; a batch larger than the capacity (clamped
                // to it) may overshoot the bound by less than its own length.
                prop_assert!(!q.is_empty() || s.in_flight_credit == 0);
                prop_assert!(s.queued_records < s.capacity + 10, "{} queued", s.queued_records);
            }
            let in_queue: u64 = queued.iter().map(|q| q.len() as u64).sum();
            prop_assert_eq!(sent, received + ndropped + in_queue, "books");
        }
        // Drain: everything queued comes out, highest class first.
        drop(txs);
        let mut last_top: Option<Priority> = None;
        loop {
            match rx.try_recv() {
                Ok(b) => {
                    received += b.records.len() as u64;
                    let c = b.records.iter().map(class).max();
                    prop_assert!(last_top.is_none() || c <= last_top, "class rose while draining");
                    last_top = c;
                    for q in &mut queued {
                        q.retain(|r| !b.records.contains(r));
                    }
                }
                Err(TryRecvError::Closed) => break,
                Err(e) => prop_assert!(false, "unexpected {:?}", e),
            }
        }
        prop_assert_eq!(sent, received + ndropped, "nothing lost");
    }
}
