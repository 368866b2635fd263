//! Fan-in, fan-out, exchanges and chaining, with exact counts and a balanced ledger.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;

use sluice::prelude::*;

fn numbers(p: &Pipeline, name: &str, parallelism: usize, n: u64) -> Stream<u64> {
    p.generator(name, parallelism, GeneratorConfig::count(n), |i| i)
}

#[test]
fn stateless_operators_chain_into_one_thread() {
    let p = Pipeline::new("chain");
    let out = numbers(&p, "src", 2, 10_000)
        .map("double", |x| x * 2)
        .filter("mod3", |x| x % 3 == 0)
        .inspect("look", |_| {})
        .flat_map("dup", |x| [x, x + 1])
        .collect("out");
    let report = p.run().expect("valid").wait().expect("completes");
    assert_eq!(report.stages.len(), 1, "one chain");
    assert_eq!(report.stages[0].name, "src+double+mod3+look+dup+out");
    assert!(report.edges.is_empty());
    let kept = (0..10_000u64).filter(|x| (x * 2) % 3 == 0).count() as u64;
    let mut got = out.take();
    got.sort_unstable();
    assert_eq!(got.len() as u64, 2 * kept);
    let l = report.ledger;
    assert!(l.balanced, "{}", l.explain());
    assert_eq!(
        l.emitted,
        10_000 + kept,
        "flat_map's extra outputs count as emitted"
    );
    assert_eq!(l.filtered, 10_000 - kept);
    assert_eq!(l.delivered, 2 * kept);
}

#[test]
fn union_merges_two_sources() {
    let p = Pipeline::new("union");
    let a = numbers(&p, "a", 1, 5_000);
    let b = numbers(&p, "b", 3, 7_000).map("shift", |x| x + 1_000_000);
    let out = a.union(b).map("id", |x| x).collect("out");
    let report = p.run().expect("valid").wait().expect("completes");
    let mut got = out.take();
    got.sort_unstable();
    let mut want: Vec<u64> = (0..5_000)
        .chain((0..7_000).map(|x| x + 1_000_000))
        .collect();
    want.sort_unstable();
    assert_eq!(got, want);
    assert!(report.ledger.balanced);
    assert_eq!(report.edges.len(), 2);
}

#[test]
fn split_routes_by_predicate() {
    let p = Pipeline::new("split");
    let (even, odd) = numbers(&p, "src", 2, 10_001).split("parity", |x| x % 2 == 0);
    let e = even.count("even");
    let o = odd.map("neg", |x| x + 1).collect("odd");
    let report = p.run().expect("valid").wait().expect("completes");
    assert_eq!(e.get(), 5_001);
    let odd = o.take();
    assert_eq!(odd.len(), 5_000);
    assert!(odd.iter().all(|x| x % 2 == 0));
    assert!(report.ledger.balanced);
    assert_eq!(report.ledger.delivered, 10_001);
}

#[test]
fn fork_copies_to_every_branch() {
    let p = Pipeline::new("fork");
    let branches = numbers(&p, "src", 1, 3_000).fork("tee", 3);
    let counts: Vec<_> = branches
        .into_iter()
        .enumerate()
        .map(|(i, s)| s.count(&format!("branch{i}")))
        .collect();
    let report = p.run().expect("valid").wait().expect("completes");
    assert!(counts.iter().all(|c| c.get() == 3_000));
    assert_eq!(report.ledger.emitted, 9_000, "copies are created records");
    assert_eq!(report.ledger.delivered, 9_000);
    assert!(report.ledger.balanced);
}

#[test]
fn broadcast_and_rebalance_exchanges() {
    let p = Pipeline::new("bcast");
    let out = numbers(&p, "src", 1, 1_000).broadcast(4).collect("out");
    let report = p.run().expect("valid").wait().expect("completes");
    let got = out.take();
    assert_eq!(got.len(), 4_000);
    let mut per_value: BTreeMap<u64, usize> = BTreeMap::new();
    for v in got {
        *per_value.entry(v).or_default() += 1;
    }
    assert!(per_value.values().all(|&c| c == 4));
    assert!(report.ledger.balanced);

    let p = Pipeline::new("rebalance").batch_size(10);
    let out = numbers(&p, "src", 1, 1_000).parallelism(3).collect("out");
    let report = p.run().expect("valid").wait().expect("completes");
    assert_eq!(out.take().len(), 1_000);
    assert_eq!(
        report.edges[0].exchange,
        sluice::engine::ExchangeKind::RoundRobin
    );
    assert_eq!(report.edges[0].ports, 3);
    assert!(report.ledger.balanced);
}

#[test]
fn key_by_keeps_per_key_order_across_instances() {
    let p = Pipeline::new("keyed");
    // Each key's records come from one source instance in increasing order; the fold checks
    // it sees them in that order at the keyed instance.
    let out = numbers(&p, "src", 2, 100_000)
        .key_by(|x| x % 64)
        .parallelism(3)
        .fold(
            "order",
            || (0u64, true),
            |st, x| {
                let ok = st.1 && (st.0 == 0 || x > st.0);
                *st = (x, ok);
                ok
            },
        )
        .collect("out");
    let report = p.run().expect("valid").wait().expect("completes");
    let got = out.take();
    assert_eq!(got.len(), 100_000);
    assert!(
        got.iter().all(|ok| *ok),
        "a key's records arrived out of order"
    );
    assert_eq!(report.stages[1].parallelism, 3);
    assert!(report.ledger.balanced);
}

#[test]
fn report_renders_and_serializes() {
    let p = Pipeline::new("render");
    numbers(&p, "src", 1, 10_000)
        .key_by(|x| x % 10)
        .fold(
            "sum",
            || 0u64,
            |s, x| {
                *s += x;
                *s
            },
        )
        .discard("sink");
    let report = p.run().expect("valid").wait().expect("completes");
    let table = report.to_string();
    assert!(table.contains("ledger: emitted 10,000"), "{table}");
    assert!(table.contains("[balanced]"));
    let json: serde_json::Value =
        serde_json::from_str(&report.to_json().expect("json")).expect("parses");
    assert_eq!(json["ledger"]["delivered"], 10_000);
    assert_eq!(json["ledger"]["balanced"], true);
    assert_eq!(json["status"], "completed");
    assert!(json["sinks"][0]["latency_ms"]["p99"].is_number());
    assert_eq!(json["edges"][0]["exchange"], "hash");
    let back: JobReport = serde_json::from_value(json).expect("round-trips");
    assert_eq!(back.ledger, report.ledger);
}
