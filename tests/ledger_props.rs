//! Property: for random graphs, capacities, batch sizes, policies, classes and sink speeds,
//! every run completes and its ledger balances (`Job::wait` checks the identity and fails
//! with `LedgerMismatch` otherwise).

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use proptest::prelude::*;
use sluice::engine::{Priority, SampleConfig, Watermarks};
use sluice::prelude::*;

fn policy() -> impl Strategy<Value = EdgePolicy> {
    prop_oneof![
        Just(EdgePolicy::Block),
        Just(EdgePolicy::DropNewest),
        Just(EdgePolicy::DropOldest),
        Just(EdgePolicy::shed_by_priority()),
        Just(EdgePolicy::ShedByPriority(
            Watermarks::none()
                .with(Priority::DEBUG, Some(0.2))
                .with(Priority::INFO, Some(0.6))
        )),
        (1u32..5, 0u8..5).prop_map(|(n, b)| EdgePolicy::Sample(SampleConfig {
            keep_one_in: n,
            below: Priority::rank(b)
        })),
        (0u64..3).prop_map(|ms| EdgePolicy::Deadline(Duration::from_millis(ms))),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    records: u64,
    second_source: Option<u64>,
    source_par: usize,
    batch: usize,
    filter: bool,
    flat: bool,
    cap1: usize,
    policy1: EdgePolicy,
    keyed: Option<(usize, usize, EdgePolicy)>,
    sink_us: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (
            0u64..3000,
            proptest::option::of(0u64..1000),
            1usize..4,
            1usize..64,
        ),
        (any::<bool>(), any::<bool>(), 1usize..80, policy()),
        (
            proptest::option::of((1usize..4, 1usize..80, policy())),
            0u64..150,
        ),
    )
        .prop_map(
            |(
                (records, second_source, source_par, batch),
                (filter, flat, cap1, policy1),
                (keyed, sink_us),
            )| Case {
                records,
                second_source,
                source_par,
                batch,
                filter,
                flat,
                cap1,
                policy1,
                keyed,
                sink_us,
            },
        )
}

fn class(r: &u64) -> Priority {
    Priority::rank((r % 5) as u8)
}

fn run(c: &Case) -> JobReport {
    let p = Pipeline::new("prop").batch_size(c.batch);
    let mut s = p.generator("a", c.source_par, GeneratorConfig::count(c.records), |i| i);
    if let Some(n) = c.second_source {
        s = s.union(p.generator("b", 1, GeneratorConfig::count(n), |i| i + 7));
    }
    if c.filter {
        s = s.filter("f", |r| r % 3 != 0);
    }
    if c.flat {
        s = s.flat_map("fm", |r| std::iter::repeat_n(r, (r % 3) as usize));
    }
    let s = s
        .edge_capacity(c.cap1)
        .edge_policy(c.policy1)
        .classify(class)
        .new_chain();
    let s = match c.keyed {
        Some((par, cap, pol)) => s
            .key_by(|r| r % 17)
            .parallelism(par)
            .edge_capacity(cap)
            .edge_policy(pol)
            .classify(class)
            .fold(
                "sum",
                || 0u64,
                |acc, r| {
                    *acc = acc.wrapping_add(r);
                    r
                },
            ),
        None => s,
    };
    let us = c.sink_us;
    s.new_chain().for_each("sink", move |_| {
        if us > 0 && us.is_multiple_of(7) {
            std::thread::sleep(Duration::from_micros(us));
        }
    });
    p.run()
        .expect("valid graph")
        .wait()
        .expect("run completes and balances")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn ledger_balances_for_random_graphs(c in case()) {
        let r = run(&c);
        let l = r.ledger;
        prop_assert!(l.balanced, "{}", l.explain());
        prop_assert_eq!(l.in_flight, 0);
        prop_assert_eq!(r.source_emitted, c.records + c.second_source.unwrap_or(0));
        prop_assert_eq!(l.delivered + l.filtered + l.dropped, l.emitted);
        let by_class: u64 = r.drops.iter().map(|d| d.count).sum();
        prop_assert_eq!(by_class, l.dropped);
        // Policies that never drop did not.
        if c.policy1 == EdgePolicy::Block && c.keyed.is_none_or(|k| k.2 == EdgePolicy::Block) {
            prop_assert_eq!(l.dropped, 0);
        }
    }
}

/// An item holding many rows (a stand-in for an Arrow batch), counted by its rows.
#[derive(Debug, Clone)]
struct Chunk {
    id: u64,
    rows: Vec<u64>,
}

fn chunk_rows(c: &Chunk) -> usize {
    c.rows.len()
}

fn chunk(i: u64) -> Chunk {
    // 0 to 12 rows: empty items and items larger than the smallest edges too.
    Chunk {
        id: i,
        rows: (0..i % 13).map(|k| i * 16 + k).collect(),
    }
}

fn chunk_class(c: &Chunk) -> Priority {
    Priority::rank((c.id % 5) as u8)
}

fn run_chunks(c: &Case) -> (JobReport, u64) {
    sluice::engine::count_rows(chunk_rows).unwrap();
    let p = Pipeline::new("prop-rows").batch_size(c.batch);
    let mut s = p.generator(
        "a",
        c.source_par,
        GeneratorConfig::count(c.records / 8),
        chunk,
    );
    if let Some(n) = c.second_source {
        s = s.union(p.generator("b", 1, GeneratorConfig::count(n / 8), |i| chunk(i + 7)));
    }
    if c.filter {
        // Drops whole items and rows within items.
        s = s
            .filter("f", |c: &Chunk| !c.id.is_multiple_of(3))
            .map("m", |mut c: Chunk| {
                c.rows.retain(|r| r % 4 != 0);
                c
            });
    }
    if c.flat {
        // Splits items in two (and creates a copy of some).
        s = s.flat_map("fm", |c: Chunk| {
            let mid = c.rows.len() / 2;
            let (a, b) = c.rows.split_at(mid);
            vec![
                Chunk {
                    id: c.id,
                    rows: a.to_vec(),
                },
                Chunk {
                    id: c.id + 1,
                    rows: b.to_vec(),
                },
            ]
        });
    }
    let s = s
        .edge_capacity(c.cap1)
        .edge_policy(c.policy1)
        .classify(chunk_class)
        .new_chain();
    let s = match c.keyed {
        Some((par, cap, pol)) => s
            .key_by(|c: &Chunk| c.id % 17)
            .parallelism(par)
            .edge_capacity(cap)
            .edge_policy(pol)
            .classify(chunk_class)
            .fold(
                "count",
                || 0u64,
                |acc, c: Chunk| {
                    *acc += c.rows.len() as u64;
                    c
                },
            ),
        None => s,
    };
    let us = c.sink_us;
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen2 = seen.clone();
    s.new_chain().for_each("sink", move |c: Chunk| {
        seen2.fetch_add(c.rows.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if us > 0 && us.is_multiple_of(7) {
            std::thread::sleep(Duration::from_micros(us));
        }
    });
    let r = p
        .run()
        .expect("valid graph")
        .wait()
        .expect("run completes and balances");
    (r, seen.load(std::sync::atomic::Ordering::Relaxed))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The same, with items of 0 to 12 rows counted by their rows: every counter and the
    /// ledger are in rows, and they balance.
    #[test]
    fn ledger_balances_in_rows_for_items_of_many_rows(c in case()) {
        let (r, seen) = run_chunks(&c);
        let l = r.ledger;
        prop_assert!(l.balanced, "{}", l.explain());
        prop_assert_eq!(l.in_flight, 0);
        let rows = |n: u64| (0..n).map(|i| chunk(i).rows.len() as u64).sum::<u64>();
        let second = c.second_source.map_or(0, |n| (0..n / 8).map(|i| chunk(i + 7).rows.len() as u64).sum());
        prop_assert_eq!(r.source_emitted, rows(c.records / 8) + second);
        prop_assert_eq!(l.delivered, seen, "the sink saw what the ledger says it got");
        prop_assert_eq!(l.delivered + l.filtered + l.dropped, l.emitted);
        let by_class: u64 = r.drops.iter().map(|d| d.count).sum();
        prop_assert_eq!(by_class, l.dropped);
        if c.policy1 == EdgePolicy::Block && c.keyed.is_none_or(|k| k.2 == EdgePolicy::Block) {
            prop_assert_eq!(l.dropped, 0);
        }
    }
}
