//! Arrow batches through pipelines: conversions round-trip, failures are dead-lettered and
//! counted in rows, and shedding by a class column removes exactly the low-class rows.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_connectors::PipelineExt;
use sluice_engine::{EdgePolicy, Pipeline, Priority};
use sluice_operators::columnar::arrow::array::{
    ArrayRef, AsArray, Int64Array, RecordBatch, StringArray,
};
use sluice_operators::columnar::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use sluice_operators::columnar::arrow::error::ArrowError;
use sluice_operators::columnar::{owned_values, BatchStreamExt, FailedBatch, RowStreamExt};
use sluice_operators::{SinkExt, StreamExt};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Log {
    id: i64,
    level: String,
    msg: Option<String>,
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("level", DataType::Utf8, false),
        // Not nullable: a row without a message does not fit.
        Field::new("msg", DataType::Utf8, false),
    ]))
}

fn log(id: i64) -> Log {
    let level = ["debug", "info", "warn", "error"][(id % 4) as usize];
    Log {
        id,
        level: level.into(),
        msg: (id % 10 != 9).then(|| format!("line {id}")),
    }
}

#[test]
fn rows_to_batches_and_back_are_equal_and_misfits_are_dead_lettered() {
    let p = Pipeline::new("round-trip").batch_size(64);
    let misfits = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let m2 = misfits.clone();
    let out = p
        .iter_source("logs", 1, |_| (0..1000).map(log))
        .to_batches("to arrow", schema(), move |f| m2.lock().push(f))
        .to_rows::<Log, _>("to rows", |f| panic!("{f:?} does not come back"))
        .collect("out");
    let report = p.run().unwrap().wait().unwrap();
    let want: Vec<Log> = (0..1000).map(log).filter(|l| l.msg.is_some()).collect();
    assert_eq!(out.take(), want);
    let bad = misfits.lock();
    assert_eq!(bad.len(), 100);
    assert!(bad
        .iter()
        .all(|f| f.record.id % 10 == 9 && f.error.contains("msg")));
    let l = report.ledger;
    assert!(l.balanced, "{}", l.explain());
    assert_eq!((l.emitted, l.delivered, l.dead_lettered), (1000, 900, 100));
}

fn level_batch(from: i64, n: i64) -> RecordBatch {
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(from..from + n));
    let levels: ArrayRef = Arc::new(StringArray::from_iter_values(
        (from..from + n).map(|i| ["debug", "info", "warn", "error"][(i % 4) as usize]),
    ));
    RecordBatch::try_from_iter([("id", ids), ("level", levels)]).unwrap()
}

#[test]
fn shedding_by_the_level_column_drops_only_low_rows_and_the_books_balance_in_rows() {
    let p = Pipeline::new("shed-rows").batch_size(4);
    // 200 mixed batches of 256 rows into a sink that takes ~1 batch per ms.
    let delivered = p
        .iter_source("logs", 1, |_| (0..200).map(|b| level_batch(b * 256, 256)))
        .classify_by_column("by level", "level", Priority::INFO)
        .edge_capacity(1024)
        .edge_policy(EdgePolicy::shed_by_priority())
        .new_chain()
        .map("slow", |b: RecordBatch| {
            std::thread::sleep(Duration::from_micros(300));
            b
        })
        .collect("out");
    let report = p.run().unwrap().wait().unwrap();
    let l = &report.ledger;
    assert!(l.balanced, "{}", l.explain());
    assert_eq!(l.emitted, 200 * 256);
    assert!(
        l.dropped > 0,
        "the sink is slower than the source: something is shed"
    );
    let got = delivered.take();
    let mut per_class = [0u64; 4];
    for b in &got {
        let ids = b.column(0).as_primitive::<Int64Type>();
        let levels = b.column(1).as_string::<i32>();
        for i in 0..b.num_rows() {
            // Each delivered batch holds one class, and ids match their level.
            assert_eq!(levels.value(i), levels.value(0));
            per_class[(ids.value(i) % 4) as usize] += 1;
        }
    }
    assert_eq!(per_class[3], 200 * 64, "every error row delivered");
    assert_eq!(per_class.iter().sum::<u64>(), l.delivered);
    // Drops are counted by class, in rows, and never of errors.
    for d in &report.drops {
        assert!(d.class < Priority::ERROR, "{d:?}");
    }
    let dropped: u64 = report.drops.iter().map(|d| d.count).sum();
    assert_eq!(dropped, l.dropped);
}

#[test]
fn a_failing_kernel_dead_letters_the_batch_as_its_rows() {
    let p = Pipeline::new("kernel-fails");
    let errors = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let e2 = errors.clone();
    let rows = p
        .iter_source("batches", 1, |_| (0..10).map(|b| level_batch(b * 10, 10)))
        .map_batches(
            "project",
            |b| {
                let id = b.column(0).as_primitive::<Int64Type>();
                if id.value(0) == 50 {
                    return Err(ArrowError::ComputeError("id 50 is cursed".into()));
                }
                b.project(&[0])
            },
            move |f| e2.lock().push(f.error.to_string()),
        )
        .count("rows");
    let report = p.run().unwrap().wait().unwrap();
    assert_eq!(rows.get(), 90);
    assert_eq!(*errors.lock(), ["Compute error: id 50 is cursed"]);
    let l = report.ledger;
    assert!(l.balanced, "{}", l.explain());
    assert_eq!((l.emitted, l.delivered, l.dead_lettered), (100, 90, 10));
}

#[test]
fn an_owned_kernel_computes_in_place_and_hands_back_what_it_fails_on() {
    let p = Pipeline::new("owned");
    let failed = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let f2 = failed.clone();
    // Where each batch's `id` values were when the source made them, and where the kernel
    // found them.
    let made = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (m2, m3) = (made.clone(), made.clone());
    let ids = p
        .iter_source("batches", 1, move |_| {
            let made = m2.clone();
            (0..10).map(move |b| {
                let batch = level_batch(b * 10, 10);
                let at = batch
                    .column(0)
                    .as_primitive::<Int64Type>()
                    .values()
                    .as_ptr();
                made.lock().push(at as usize);
                batch
            })
        })
        .map_batches_owned(
            "times ten",
            move |b| {
                let first = b.column(0).as_primitive::<Int64Type>().value(0);
                if first == 50 {
                    let e = ArrowError::ComputeError("id 50 is cursed".into());
                    return Err(FailedBatch {
                        batch: b,
                        error: Arc::new(e),
                    });
                }
                let (schema, mut cols, _) = b.into_parts();
                let id = std::mem::replace(&mut cols[0], Arc::new(Int64Array::from(vec![0])));
                let mut v = owned_values::<Int64Type>(id).unwrap();
                let same = m3.lock().contains(&(v.as_ptr() as usize));
                assert!(same, "the source's buffer, not a copy");
                v.iter_mut().for_each(|x| *x *= 10);
                cols[0] = Arc::new(Int64Array::from(v));
                Ok(RecordBatch::try_new(schema, cols).unwrap())
            },
            move |f| f2.lock().push(f),
        )
        .flat_map("ids", |b: RecordBatch| {
            b.column(0).as_primitive::<Int64Type>().values().to_vec()
        })
        .collect("ids");
    let report = p.run().unwrap().wait().unwrap();
    let want: Vec<i64> = (0..100)
        .filter(|i| !(50..60).contains(i))
        .map(|i| i * 10)
        .collect();
    assert_eq!(ids.take(), want);
    // The failed batch is the one that came in, unchanged.
    let failed = failed.lock();
    assert_eq!(failed.len(), 1);
    let ids = failed[0].batch.column(0).as_primitive::<Int64Type>();
    assert_eq!(
        ids.values().as_ref(),
        (50..60).collect::<Vec<i64>>().as_slice()
    );
    let l = report.ledger;
    assert!(l.balanced, "{}", l.explain());
    assert_eq!((l.emitted, l.delivered, l.dead_lettered), (100, 90, 10));
}

#[test]
fn a_predicate_of_the_wrong_length_is_a_dead_letter_not_a_crash() {
    let p = Pipeline::new("bad-predicate");
    p.iter_source("batches", 1, |_| [level_batch(0, 10)])
        .filter_rows(
            "short",
            |_| Ok(vec![true; 3].into()),
            |f| assert!(f.error.to_string().contains("3 values")),
        )
        .count("rows");
    let l = p.run().unwrap().wait().unwrap().ledger;
    assert_eq!((l.emitted, l.dead_lettered, l.delivered), (10, 10, 0));
}

#[test]
fn a_batch_larger_than_its_edge_is_sliced_and_the_edge_holds_at_most_its_capacity() {
    let p = Pipeline::new("slices").batch_size(4);
    let out = p
        .iter_source("big", 1, |_| {
            (0..3).map(|b| level_batch(b * 65_536, 65_536))
        })
        .edge_capacity(8192)
        .new_chain()
        .map("slow", |b: RecordBatch| {
            std::thread::sleep(Duration::from_micros(200));
            b
        })
        .collect("out");
    let report = p.run().unwrap().wait().unwrap();
    let got = out.take();
    assert!(
        got.iter().all(|b| b.num_rows() <= 8192),
        "sliced to the edge"
    );
    let ids: Vec<i64> = got
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(
        ids,
        (0..3 * 65_536).collect::<Vec<_>>(),
        "every row, in order"
    );
    let edge = &report.edges[0];
    assert!(edge.max_queued <= 8192, "held {} rows", edge.max_queued);
    let l = &report.ledger;
    assert!(l.balanced, "{}", l.explain());
    assert_eq!((l.emitted, l.delivered), (3 * 65_536, 3 * 65_536));
}

#[test]
fn an_edge_bounded_in_bytes_holds_fewer_wide_rows_than_narrow_ones() {
    // Rows of 8 bytes (one i64) and of ~1 KB (an i64 and a 1,016-byte string).
    let narrow = |b: i64| {
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(b * 1024..(b + 1) * 1024));
        RecordBatch::try_from_iter([("id", ids)]).unwrap()
    };
    let wide = |b: i64| {
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(b * 1024..(b + 1) * 1024));
        let text: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..1024).map(|_| "x".repeat(1016)),
        ));
        RecordBatch::try_from_iter([("id", ids), ("text", text)]).unwrap()
    };
    let run = |make: fn(i64) -> RecordBatch| {
        let p = Pipeline::new("bytes").batch_size(4);
        let n = p
            .iter_source("rows", 1, move |_| (0..32).map(make))
            .edge_capacity(100_000)
            .edge_bytes(1 << 20)
            .new_chain()
            .map("slow", |b: RecordBatch| {
                std::thread::sleep(Duration::from_micros(500));
                b
            })
            .count("out");
        let report = p.run().unwrap().wait().unwrap();
        assert_eq!(n.get(), 32 * 1024);
        assert!(report.ledger.balanced, "{}", report.ledger.explain());
        report.edges[0].clone()
    };
    let n = run(narrow);
    let w = run(wide);
    let (nb, wb) = (n.bytes_per_row.unwrap(), w.bytes_per_row.unwrap());
    assert!((nb - 8.0).abs() < 0.5, "narrow rows measured {nb} bytes");
    assert!(wb > 1000.0, "wide rows measured {wb} bytes");
    // 1 MiB holds all 32k narrow rows (capped by the edge's 100,000), about 1,000 wide ones.
    assert_eq!(n.capacity, 100_000);
    assert!(w.capacity <= (1 << 20) / 1000, "capacity {}", w.capacity);
    assert!(
        w.max_queued as f64 * wb <= 1.1 * (1 << 20) as f64,
        "held {} wide rows ({} bytes)",
        w.max_queued,
        w.max_queued as f64 * wb
    );
}
