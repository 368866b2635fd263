//! Property test: random send / receive / close sequences on an edge behave like a
//! `VecDeque` model with credit, and the credit invariant holds after every step.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::VecDeque;

use proptest::prelude::*;
use sluice_engine::edge::{self, Receiver, TryRecvError, TrySendError};
use sluice_engine::{Batch, EdgePolicy};

#[derive(Debug, Clone)]
enum Op {
    /// try_send a batch of this many records on this port.
    Send {
        port: usize,
        len: usize,
    },
    Recv,
    /// Close the sender of this port.
    Close {
        port: usize,
    },
}

fn op(ports: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..ports, 1usize..12).prop_map(|(port, len)| Op::Send { port, len }),
        4 => Just(Op::Recv),
        1 => (0..ports).prop_map(|port| Op::Close { port }),
    ]
}

struct ModelPort {
    capacity: usize,
    available: usize,
    queue: VecDeque<(Vec<u64>, usize)>,
    open: bool,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn edge_matches_model(
        caps in proptest::collection::vec(1usize..20, 1..4),
        ops in proptest::collection::vec(op(3), 1..200),
    ) {
        let rx: Receiver<u64> = Receiver::new();
        let mut txs: Vec<Option<edge::Sender<u64>>> =
            caps.iter().map(|&c| Some(rx.add_port(c, EdgePolicy::Block))).collect();
        let mut model: Vec<ModelPort> = caps
            .iter()
            .map(|&c| ModelPort { capacity: c, available: c, queue: VecDeque::new(), open: true })
            .collect();
        let mut cursor = 0usize;
        let mut next_value = 0u64;
        for op in ops {
            match op {
                Op::Send { port, len } => {
                    let port = port % caps.len();
                    let Some(tx) = &txs[port] else { continue };
                    let records: Vec<u64> = (next_value..next_value + len as u64).collect();
                    next_value += len as u64;
                    let m = &mut model[port];
                    let weight = len.min(m.capacity);
                    match tx.try_send(Batch::new(records.clone())) {
                        Ok(()) => {
                            prop_assert!(m.available >= weight, "accepted without credit");
                            m.available -= weight;
                            m.queue.push_back((records, weight));
                        }
                        Err(TrySendError::Full(b)) => {
                            prop_assert!(m.available < weight, "refused with credit");
                            prop_assert_eq!(b.records, records, "batch handed back intact");
                        }
                        Err(e) => prop_assert!(false, "unexpected {:?}", e),
                    }
                }
                Op::Recv => {
                    // Round robin over ports, as the edge does.
                    let n = model.len();
                    let mut expected = None;
                    for i in 0..n {
                        let idx = (cursor + i) % n;
                        if let Some((recs, w)) = model[idx].queue.pop_front() {
                            model[idx].available += w;
                            cursor = (idx + 1) % n;
                            expected = Some(recs);
                            break;
                        }
                    }
                    match (rx.try_recv(), expected) {
                        (Ok(b), Some(recs)) => prop_assert_eq!(b.records, recs),
                        (Err(TryRecvError::Empty), None) => {
                            prop_assert!(model.iter().any(|m| m.open), "empty but all closed");
                        }
                        (Err(TryRecvError::Closed), None) => {
                            prop_assert!(model.iter().all(|m| !m.open), "closed with a port open");
                        }
                        (got, want) => prop_assert!(false, "got {:?}, model {:?}", got.map(|b| b.records), want),
                    }
                }
                Op::Close { port } => {
                    let port = port % caps.len();
                    txs[port] = None; // dropping the sender closes the port
                    model[port].open = false;
                }
            }
            for (i, m) in model.iter().enumerate() {
                let s = rx.snapshot(i);
                prop_assert_eq!(s.available + s.in_flight_credit, s.capacity, "credit invariant");
                prop_assert_eq!(s.available, m.available);
                prop_assert_eq!(s.queued_records, m.queue.iter().map(|(r, _)| r.len()).sum::<usize>());
            }
        }
    }
}

#[test]
fn oversized_batch_is_clamped_not_deadlocked() {
    let (tx, rx) = edge::bounded::<u32>(4);
    // Larger than the whole capacity: takes all the credit, waits for an empty port.
    tx.send(Batch::new((0..10).collect()))
        .expect("clamped batch fits an empty port");
    assert!(tx.try_send(Batch::new(vec![1])).unwrap_err().is_full());
    let s = rx.snapshot(0);
    assert_eq!(
        (s.available, s.in_flight_credit, s.queued_records),
        (0, 4, 10)
    );
    assert_eq!(rx.recv().expect("batch").len(), 10);
    tx.try_send(Batch::new(vec![1])).expect("credit returned");
}

#[test]
fn blocked_sender_waits_for_credit_and_counts_it() {
    let (tx, rx) = edge::bounded::<u32>(2);
    tx.send(Batch::new(vec![1, 2])).expect("fits");
    let t = std::thread::spawn(move || {
        tx.send(Batch::new(vec![3]))
            .expect("sent once credit returns");
        tx.snapshot()
    });
    // Wait until the sender is blocked, then receive to return credit.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rx.snapshot(0).blocked_sends == 0 {
        assert!(std::time::Instant::now() < deadline, "sender never blocked");
        std::thread::yield_now();
    }
    assert_eq!(rx.recv().expect("first").records, vec![1, 2]);
    let s = t.join().expect("sender");
    assert_eq!(s.blocked_sends, 1);
    assert!(s.credit_wait_ns > 0);
    assert_eq!(rx.recv().expect("second").records, vec![3]);
    assert_eq!(rx.recv().unwrap_err(), edge::RecvError::Closed);
}

#[test]
fn dropped_receiver_disconnects_and_abort_wakes_everyone() {
    let (tx, rx) = edge::bounded::<u32>(1);
    tx.send(Batch::new(vec![1])).expect("fits");
    let t = std::thread::spawn(move || {
        tx.send(Batch::new(vec![2]))
            .map_err(|e| e.into_inner().records)
    });
    std::thread::sleep(std::time::Duration::from_millis(20));
    drop(rx);
    assert_eq!(t.join().expect("sender"), Err(vec![2]), "batch handed back");

    let (tx, rx) = edge::bounded::<u32>(1);
    let t = std::thread::spawn(move || rx.recv());
    std::thread::sleep(std::time::Duration::from_millis(20));
    // Abort through a probe while the receiver waits on an empty edge.
    let (tx2, rx2) = edge::bounded::<u32>(1);
    let p = rx2.probe();
    let t2 = std::thread::spawn(move || rx2.recv());
    std::thread::sleep(std::time::Duration::from_millis(20));
    p.abort();
    assert_eq!(
        t2.join().expect("receiver").map(|b| b.records),
        Err(edge::RecvError::Aborted)
    );
    assert!(matches!(
        tx2.try_send(Batch::new(vec![1])),
        Err(TrySendError::Aborted(_))
    ));
    drop(tx);
    assert_eq!(
        t.join().expect("receiver").map(|b| b.records),
        Err(edge::RecvError::Closed)
    );
}
