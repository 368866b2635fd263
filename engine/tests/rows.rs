//! Items of many rows ([`sluice_engine::count_rows`]): an edge's credit, its counters and its
//! drops are in rows, policies act on whole items, an item larger than the edge passes an
//! empty edge, and a defer edge refuses them at build time.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use sluice_engine::edge::{PortConfig, Receiver, TrySendError};
use sluice_engine::{
    Batch, BuildError, Codec, CodecError, DeferConfig, DropReason, EdgePolicy, Pipeline, Priority,
    Rows, WhenLogFull,
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

struct NoCodec;
impl Codec<Rowset> for NoCodec {
    fn encode(&self, _: &Rowset, _: &mut Vec<u8>) -> Result<(), CodecError> {
        Err(CodecError::invalid("unused"))
    }
    fn decode(&self, _: &[u8]) -> Result<Rowset, CodecError> {
        Err(CodecError::invalid("unused"))
    }
}

#[test]
fn a_defer_edge_refuses_items_of_many_rows_at_build_time() {
    sluice_engine::count_rows(rows).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::new("defer-rows");
    p.source("rowsets", 1, |_| Rowsets(3))
        .classify(|r: &Rowset| Priority::rank(r.class))
        .edge_policy(EdgePolicy::Defer(DeferConfig {
            below: Priority::INFO,
            when_full: WhenLogFull::Block,
        }))
        .defer_to(dir.path(), 1 << 20, NoCodec)
        .new_chain()
        .sink("out", |_| common::GatedSink(common::Gate::new(u64::MAX)));
    let Err(e) = p.run() else {
        panic!("must not build")
    };
    assert!(matches!(e, BuildError::DeferNeedsUnitRecords { .. }), "{e}");
    assert!(e.to_string().contains("Rowset"), "{e}");
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
        out.push(item(0, 7));
        Ok(sluice_engine::SourceStatus::More)
    }
}
