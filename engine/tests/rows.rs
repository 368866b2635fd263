//! Items of many rows ([`sluice_engine::count_rows`]): an edge's credit, its counters and its
//! drops are in rows, policies act on whole items, an item larger than the edge passes an
//! empty edge, and a defer edge defers and replays them, counted in rows.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use sluice_engine::edge::{PortConfig, Receiver, TrySendError};
use sluice_engine::{
    Batch, Codec, CodecError, DeferConfig, DropReason, EdgePolicy, Pipeline, Priority, Rows,
    WhenLogFull,
};

/// `n` rows of class `class` moved as one item.
#[derive(Debug, Clone, PartialEq)]
struct Rowset {
    class: u8,
    n: usize,
}

fn rows(r: &Rowset) -> usize {
    r.n
}

fn item(class: u8, n: usize) -> Rowset {
    Rowset { class, n }
}

fn port(
    capacity: usize,
    policy: EdgePolicy,
) -> (Receiver<Rowset>, sluice_engine::edge::Sender<Rowset>) {
    let rx = Receiver::new();
    let mut cfg = PortConfig::new(capacity);
    cfg.policy = policy;
    cfg.rows = Rows::counted(rows);
    cfg.classifier = Some(sluice_engine::classifier(|r: &Rowset| {
        Priority::rank(r.class)
    }));
    let tx = rx.add_port_with(cfg);
    (rx, tx)
}

#[test]
fn credit_and_counters_are_in_rows() {
    let (rx, tx) = port(100, EdgePolicy::Block);
    tx.try_send(Batch::new(vec![item(0, 40)])).unwrap();
    tx.try_send(Batch::new(vec![item(0, 40)])).unwrap();
    // 80 of 100 rows taken: a third item of 40 rows waits.
    let Err(TrySendError::Full(b)) = tx.try_send(Batch::new(vec![item(0, 40)])) else {
        panic!("a third item of 40 rows must not fit in 20 rows of credit");
    };
    let s = rx.snapshot(0);
    assert_eq!(
        (s.queued_records, s.available, s.sent_records),
        (80, 20, 80)
    );
    assert_eq!(rx.try_recv().unwrap().records, vec![item(0, 40)]);
    tx.try_send(b).unwrap();
    let s = rx.snapshot(0);
    assert_eq!(
        (s.queued_records, s.received_records, s.available),
        (80, 40, 20)
    );
}

#[test]
fn an_item_larger_than_the_edge_passes_an_empty_edge_alone() {
    let (rx, tx) = port(10, EdgePolicy::Block);
    tx.try_send(Batch::new(vec![item(0, 500)])).unwrap();
    assert!(matches!(
        tx.try_send(Batch::new(vec![item(0, 1)])),
        Err(TrySendError::Full(_))
    ));
    let s = rx.snapshot(0);
    // Clamped to the capacity in credit, counted in full.
    assert_eq!(
        (s.queued_records, s.available, s.in_flight_credit),
        (500, 0, 10)
    );
    rx.try_recv().unwrap();
    tx.try_send(Batch::new(vec![item(0, 1)])).unwrap();
}

#[test]
fn drop_newest_refuses_whole_items_and_counts_their_rows() {
    let (rx, tx) = port(100, EdgePolicy::DropNewest);
    tx.try_send(Batch::new(vec![item(0, 40)])).unwrap();
    let batch = vec![item(0, 40), item(0, 30), item(0, 5)];
    tx.try_send(Batch::new(batch)).unwrap();
    let s = rx.snapshot(0);
    // 40 more fit in 60 rows of credit; the 30-row item does not fit in the 20 left and is
    // refused whole, with what follows it.
    assert_eq!(s.queued_records, 80);
    assert_eq!(s.drops[DropReason::Newest.index()][0], 35);
}

#[test]
fn shedding_evicts_low_class_items_for_high_class_ones_counted_in_rows() {
    let (rx, tx) = port(100, EdgePolicy::shed_by_priority());
    // 40 debug rows: under debug's 50% watermark.
    tx.try_send(Batch::new(vec![item(0, 20), item(0, 20)]))
        .unwrap();
    // 80 error rows need 20 more than the free 60: the oldest debug item goes, whole.
    let error = Priority::ERROR.index() as u8;
    tx.try_send(Batch::new(vec![item(error, 80)])).unwrap();
    let s = rx.snapshot(0);
    assert_eq!(s.queued_records, 100, "one debug item evicted, one kept");
    assert_eq!(s.drops[DropReason::ShedEvicted.index()][0], 20);
    let dropped: u64 = s.drops.iter().flatten().sum();
    assert_eq!(dropped, 20);
    assert_eq!(s.available + s.in_flight_credit, s.capacity);
}

/// A row count and a class, as text.
struct TextCodec;
impl Codec<Rowset> for TextCodec {
    fn encode(&self, r: &Rowset, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(format!("{} {}", r.class, r.n).as_bytes());
        Ok(())
    }
    fn decode(&self, b: &[u8]) -> Result<Rowset, CodecError> {
        let s = std::str::from_utf8(b).map_err(|e| CodecError::format("UTF-8", e))?;
        let mut it = s.split(' ').map(str::parse::<usize>);
        match (it.next(), it.next()) {
            (Some(Ok(c)), Some(Ok(n))) => Ok(item(c as u8, n)),
            _ => Err(CodecError::invalid(format!("not a rowset: {s}"))),
        }
    }
}

#[test]
fn a_defer_edge_defers_and_replays_items_of_many_rows_counted_in_rows() {
    sluice_engine::count_rows(rows).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::new("defer-rows").batch_size(4);
    let got = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let g = got.clone();
    p.source("rowsets", 1, |_| Rowsets(300))
        .classify(|r: &Rowset| Priority::rank(r.class))
        .edge_capacity(50)
        .edge_policy(EdgePolicy::Defer(DeferConfig {
            below: Priority::WARN,
            when_full: WhenLogFull::Block,
        }))
        .defer_to(dir.path(), 1 << 20, TextCodec)
        .new_chain()
        .sink("slow", move |_| {
            common::SlowCollectAny(std::time::Duration::from_micros(300), g.clone())
        });
    let r = p.run().unwrap().wait().unwrap();
    let l = &r.ledger;
    assert!(l.balanced, "{}", l.explain());
    // 300 items of 7 rows: every row delivered, the debug ones after a stay on disk.
    assert_eq!((l.emitted, l.delivered, l.dropped), (2100, 2100, 0));
    let deferred = r.edges[0].deferred;
    assert!(
        deferred > 0 && deferred.is_multiple_of(7),
        "deferred {deferred} rows, whole items"
    );
    let got = got.lock();
    assert_eq!(got.iter().map(|r: &Rowset| r.n).sum::<usize>(), 2100);
}

struct Rowsets(u64);
impl sluice_engine::Source<Rowset> for Rowsets {
    fn poll_batch(
        &mut self,
        out: &mut Vec<Rowset>,
        _max: usize,
    ) -> Result<sluice_engine::SourceStatus, sluice_engine::SourceError> {
        if self.0 == 0 {
            return Ok(sluice_engine::SourceStatus::Done);
        }
        self.0 -= 1;
        // Debug and error in turn.
        out.push(item(if self.0.is_multiple_of(2) { 0 } else { 3 }, 7));
        Ok(sluice_engine::SourceStatus::More)
    }
}

#[test]
fn batches_of_items_without_rows_still_take_a_credit() {
    let (rx, tx) = port(3, EdgePolicy::Block);
    for _ in 0..3 {
        tx.try_send(Batch::new(vec![item(0, 0), item(0, 0)]))
            .unwrap();
    }
    assert!(matches!(
        tx.try_send(Batch::new(vec![item(0, 0)])),
        Err(TrySendError::Full(_))
    ));
    let s = rx.snapshot(0);
    assert_eq!(
        (s.queued_records, s.available, s.in_flight_credit),
        (0, 0, 3)
    );
    // The receiver takes them together (no rows to fill its batch) and returns the credit.
    assert_eq!(rx.try_recv().unwrap().len(), 6);
    assert_eq!(rx.snapshot(0).available, 3);
    // Under DropNewest, with no credit left, they are refused (counted as 0 rows), not queued.
    let (rx, tx) = port(1, EdgePolicy::DropNewest);
    tx.try_send(Batch::new(vec![item(0, 1)])).unwrap();
    tx.try_send(Batch::new(vec![item(0, 0)])).unwrap();
    let s = rx.snapshot(0);
    assert_eq!((s.queued_records, s.sent_batches, s.available), (1, 1, 0));
}
