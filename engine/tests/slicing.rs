//! Items larger than an edge are cut into slices of rows ([`sluice_engine::slice_rows`]) so
//! the edge never holds more than its capacity, and edges bounded in bytes
//! ([`PortConfig::max_bytes`], `Stream::edge_bytes`) hold rows by their measured size.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sluice_engine::edge::{PortConfig, Receiver, Sender, TrySendError};
use sluice_engine::{AckOutcome, AckToken, Batch, EdgePolicy, Rows};

/// Rows `start..start + len`, moved as one item.
#[derive(Debug, Clone, PartialEq)]
struct Span {
    start: u32,
    len: u32,
}

fn rows(s: &Span) -> usize {
    s.len as usize
}

fn slice(s: &Span, offset: usize, len: usize) -> Span {
    Span {
        start: s.start + offset as u32,
        len: len as u32,
    }
}

/// 100 bytes per row.
fn bytes(s: &Span) -> usize {
    100 * s.len as usize
}

fn span(start: u32, len: u32) -> Span {
    Span { start, len }
}

fn port(capacity: usize, max_bytes: Option<usize>) -> (Receiver<Span>, Sender<Span>) {
    let rx = Receiver::new();
    let mut cfg = PortConfig::new(capacity);
    cfg.policy = EdgePolicy::Block;
    cfg.rows = Rows::counted(rows).sliced(slice).weighed(bytes);
    cfg.max_bytes = max_bytes;
    let tx = rx.add_port_with(cfg);
    (rx, tx)
}

/// The rows of `items`, in order.
fn flatten(items: &[Span]) -> Vec<u32> {
    items
        .iter()
        .flat_map(|s| s.start..s.start + s.len)
        .collect()
}

#[test]
fn an_item_larger_than_the_edge_is_cut_and_the_edge_never_holds_more_than_its_capacity() {
    let (rx, tx) = port(8, None);
    let acked = Arc::new(AtomicUsize::new(0));
    let a = acked.clone();
    let mut batch = Batch::new(vec![span(0, 100), span(100, 3)]);
    batch.acks.push(AckToken::new(move |o| {
        assert_eq!(o, AckOutcome::Done);
        a.fetch_add(1, Ordering::SeqCst);
    }));
    let sender = std::thread::spawn(move || {
        tx.send(batch).unwrap();
    });
    let mut got = Vec::new();
    let mut largest = 0;
    while let Ok(b) = rx.recv() {
        largest = largest.max(b.records.iter().map(rows).sum::<usize>());
        got.extend(b.records);
        // The batch (and its ack clone) ends here.
    }
    sender.join().unwrap();
    assert_eq!(flatten(&got), (0..103).collect::<Vec<_>>());
    assert!(
        largest <= 8,
        "a batch of {largest} rows passed an edge of 8"
    );
    let s = rx.snapshot(0);
    assert!(s.max_queued_records <= 8, "held {}", s.max_queued_records);
    assert_eq!((s.sent_records, s.received_records), (103, 103));
    assert_eq!(acked.load(Ordering::SeqCst), 1, "one ack, completed once");
}

#[test]
fn a_send_that_cannot_finish_hands_back_every_row_not_queued() {
    let (rx, tx) = port(8, None);
    tx.try_send(Batch::new(vec![span(1000, 5)])).unwrap();
    // The first 8 rows do not fit in the 3 left: nothing is queued, all 20 rows come back.
    let Err(TrySendError::Full(back)) = tx.try_send(Batch::new(vec![span(0, 20)])) else {
        panic!("20 rows cannot fit in 3 rows of credit");
    };
    assert_eq!(flatten(&back.records), (0..20).collect::<Vec<_>>());
    assert_eq!(rx.try_recv().unwrap().records, vec![span(1000, 5)]);
    // An empty edge takes the first 8 rows; the rest comes back.
    let Err(TrySendError::Full(back)) = tx.try_send(back) else {
        panic!("only 8 of 20 rows fit");
    };
    assert_eq!(flatten(&back.records), (8..20).collect::<Vec<_>>());
    assert_eq!(rx.snapshot(0).queued_records, 8);
}

#[test]
fn an_edge_bounded_in_bytes_holds_rows_by_their_measured_size() {
    // 1,000 rows, or 2,000 bytes: at 100 bytes per row, 20 rows.
    let (rx, tx) = port(1000, Some(2000));
    tx.try_send(Batch::new(vec![span(0, 15)])).unwrap();
    let s = rx.snapshot(0);
    assert_eq!((s.capacity, s.bytes_per_row), (20, Some(100.0)));
    assert!(matches!(
        tx.try_send(Batch::new(vec![span(15, 10)])),
        Err(TrySendError::Full(_))
    ));
    while rx.try_recv().is_ok() {}
    // A 50-row item is cut to the capacity in rows that the bytes allow.
    let Err(TrySendError::Full(back)) = tx.try_send(Batch::new(vec![span(100, 50)])) else {
        panic!("50 rows of 100 bytes cannot all fit in 2,000 bytes");
    };
    assert_eq!(flatten(&back.records), (120..150).collect::<Vec<_>>());
    let b = rx.try_recv().unwrap();
    assert_eq!(b.records, vec![span(100, 20)]);
}

#[test]
fn without_a_byte_bound_the_capacity_stays_in_rows() {
    let (rx, tx) = port(1000, None);
    tx.try_send(Batch::new(vec![span(0, 15)])).unwrap();
    let s = rx.snapshot(0);
    assert_eq!((s.capacity, s.bytes_per_row), (1000, None));
}
