//! loom models of the edge: every interleaving of senders, the receiver, close, drop and
//! abort, with tiny capacities. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p sluice-engine --release --test loom_edge`.
#![cfg(loom)]
#![allow(clippy::unwrap_used, missing_docs)]

use loom::thread;
use sluice_engine::edge::{self, RecvError, SendError};
use sluice_engine::{Batch, EdgePolicy};

/// Explores interleavings with at most three preemptions: enough for every race between two
/// or three parties here, and it keeps the models to seconds.
fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

fn check_credit<T>(rx: &edge::Receiver<T>) {
    for p in 0..rx.ports() {
        let s = rx.snapshot(p);
        assert_eq!(
            s.available + s.in_flight_credit,
            s.capacity,
            "credit invariant"
        );
        assert!(s.queued_records <= s.capacity.max(s.queued_records));
    }
}

#[test]
fn sends_arrive_in_order_then_end_of_stream() {
    model(|| {
        let (tx, rx) = edge::bounded::<u32>(1);
        let t = thread::spawn(move || {
            for i in 0..3 {
                tx.send(Batch::new(vec![i])).expect("receiver alive");
            }
            // tx dropped here: end of stream after the three batches
        });
        let mut got = Vec::new();
        loop {
            check_credit(&rx);
            match rx.recv() {
                Ok(b) => got.extend(b.records),
                Err(RecvError::Closed) => break,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        t.join().expect("sender");
        assert_eq!(got, vec![0, 1, 2]);
        check_credit(&rx);
    });
}

#[test]
fn two_senders_share_a_port_without_losing_credit() {
    model(|| {
        let (tx, rx) = edge::bounded::<u32>(1);
        let tx2 = tx.clone();
        let a = thread::spawn(move || tx.send(Batch::new(vec![1])).is_ok());
        let b = thread::spawn(move || tx2.send(Batch::new(vec![2])).is_ok());
        let mut got = Vec::new();
        while let Ok(batch) = rx.recv() {
            check_credit(&rx);
            got.extend(batch.records);
        }
        assert!(a.join().expect("a") && b.join().expect("b"));
        got.sort_unstable();
        assert_eq!(got, vec![1, 2]);
        let s = rx.snapshot(0);
        assert_eq!(s.available, 1);
    });
}

#[test]
fn receiver_dropped_while_sender_blocked() {
    model(|| {
        let (tx, rx) = edge::bounded::<u32>(1);
        tx.send(Batch::new(vec![1])).expect("fits");
        let t = thread::spawn(move || tx.send(Batch::new(vec![2])));
        drop(rx);
        match t.join().expect("sender") {
            Err(SendError::Disconnected(b)) => assert_eq!(b.records, vec![2]),
            Ok(()) => panic!("a full edge accepted a batch after its receiver was gone"),
            Err(e) => panic!("unexpected {e:?}"),
        }
    });
}

#[test]
fn abort_wakes_blocked_sender_and_receiver() {
    model(|| {
        let rx = edge::Receiver::<u32>::new();
        let full = rx.add_port(1, EdgePolicy::Block);
        let idle = rx.add_port(1, EdgePolicy::Block);
        full.send(Batch::new(vec![1])).expect("fits");
        let probe = rx.probe();
        let s = thread::spawn(move || full.send(Batch::new(vec![2])).is_err());
        let r = thread::spawn(move || {
            // Drain what is there, then wait on the still-open ports until the abort.
            loop {
                match rx.recv() {
                    Ok(_) => continue,
                    Err(e) => return e,
                }
            }
        });
        probe.abort();
        let sender_failed = s.join().expect("sender");
        let recv_err = r.join().expect("receiver");
        assert_eq!(recv_err, RecvError::Aborted);
        // The sender either got in before the abort (and its batch was received) or failed.
        let _ = sender_failed;
        drop(idle);
    });
}

/// A port served by priority, capacity 2: two senders of mixed classes race the receiver.
/// Every interleaving keeps `available + in_flight == capacity` (also while a batch is split
/// into lanes), loses nothing, and a batch the lanes split comes out one class at a time.
#[test]
fn priority_port_keeps_credit_and_serves_the_higher_class_first() {
    use sluice_engine::edge::PortConfig;
    use sluice_engine::{Priority, ServiceOrder};
    model(|| {
        let rx = edge::Receiver::<u32>::new();
        let mut cfg = PortConfig::new(2);
        cfg.classifier = Some(sluice_engine::classifier(|v: &u32| {
            Priority::rank(*v as u8 % 2 * 3)
        }));
        cfg.service = ServiceOrder::Priority;
        let tx = rx.add_port_with(cfg);
        let tx2 = tx.clone();
        // 0 and 2 are debug, 1 and 3 errors.
        let a = thread::spawn(move || tx.send(Batch::new(vec![0, 1])).is_ok());
        let b = thread::spawn(move || tx2.send(Batch::new(vec![2, 3])).is_ok());
        let mut got = Vec::new();
        loop {
            check_credit(&rx);
            match rx.recv() {
                Ok(batch) => got.push(batch.records),
                Err(RecvError::Closed) => break,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert!(a.join().expect("a") && b.join().expect("b"));
        check_credit(&rx);
        let mut all: Vec<u32> = got.concat();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2, 3], "nothing lost or doubled");
        // Each class in its sender's order; a batch taken out of lanes is one class.
        for batch in &got {
            let mixed = batch.iter().any(|v| v % 2 != batch[0] % 2);
            assert!(
                !mixed || batch.len() == 2,
                "a split batch came out mixed: {got:?}"
            );
        }
        assert_eq!(rx.snapshot(0).available, 2);
    });
}
