//! Graph validation returns typed errors before anything runs.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use sluice_engine::{BuildError, ExchangeKind, Pipeline, Topology, TopologyEdge, TopologyStage};

#[test]
fn zero_capacity_is_rejected() {
    let p = Pipeline::new("z");
    p.source("src", 1, range(10))
        .edge_capacity(0)
        .new_chain()
        .sink("sink", |_| SlowSink(std::time::Duration::ZERO));
    match p.run() {
        Err(BuildError::ZeroCapacity { edge }) => assert!(edge.contains("src"), "{edge}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn zero_parallelism_and_batch_size_are_rejected() {
    let p = Pipeline::new("z");
    p.source("src", 0, range(10))
        .sink("sink", |_| SlowSink(std::time::Duration::ZERO));
    assert!(matches!(p.run(), Err(BuildError::ZeroParallelism { operator }) if operator == "src"));

    let p = Pipeline::new("z").batch_size(0);
    p.source("src", 1, range(10))
        .sink("sink", |_| SlowSink(std::time::Duration::ZERO));
    assert_eq!(p.run().unwrap_err(), BuildError::ZeroBatchSize);
}

#[test]
fn unconnected_output_is_rejected() {
    let p = Pipeline::new("u");
    let s = p
        .source("src", 1, range(10))
        .operator("dangling", |_| Identity);
    drop(s);
    match p.run() {
        Err(BuildError::UnconnectedOutput { operator }) => assert_eq!(operator, "dangling"),
        other => panic!("unexpected {other:?}"),
    }
    let msg = BuildError::UnconnectedOutput {
        operator: "x".into(),
    }
    .to_string();
    assert!(
        msg.contains("sink"),
        "the message says how to fix it: {msg}"
    );
}

#[test]
fn stream_kept_alive_past_run_is_rejected() {
    let p = Pipeline::new("u");
    let s = p.source("src", 1, range(10)).operator("held", |_| Identity);
    let r = p.run();
    assert!(matches!(r, Err(BuildError::UnconnectedOutput { operator }) if operator == "held"));
    drop(s);
}

#[test]
fn empty_pipeline_has_no_source() {
    assert_eq!(Pipeline::new("e").run().unwrap_err(), BuildError::NoSource);
}

fn stage(name: &str, is_source: bool) -> TopologyStage {
    TopologyStage {
        name: name.into(),
        parallelism: 1,
        operators: vec![name.into()],
        is_source,
    }
}

fn edge(from: usize, to: usize) -> TopologyEdge {
    TopologyEdge {
        from,
        to,
        exchange: ExchangeKind::Forward,
        capacity: 8,
    }
}

#[test]
fn cycle_is_found_and_named() {
    let t = Topology {
        stages: vec![
            stage("a", true),
            stage("b", false),
            stage("c", false),
            stage("d", false),
        ],
        edges: vec![edge(0, 1), edge(1, 2), edge(2, 3), edge(3, 1)],
    };
    assert_eq!(t.find_cycle(), Some(vec![1, 2, 3, 1]));
    match t.validate() {
        Err(BuildError::Cycle { path }) => assert_eq!(path, "b -> c -> d -> b"),
        other => panic!("unexpected {other:?}"),
    }
    let dag = Topology {
        stages: t.stages.clone(),
        edges: vec![edge(0, 1), edge(0, 2), edge(1, 3), edge(2, 3)],
    };
    assert_eq!(dag.find_cycle(), None);
    assert!(dag.validate().is_ok());
}

#[test]
fn built_pipelines_describe_their_topology() {
    let p = Pipeline::new("t");
    p.source("src", 2, range(10))
        .operator("id", |_| Identity)
        .edge_capacity(77)
        .rebalance(3)
        .sink("sink", |_| SlowSink(std::time::Duration::ZERO));
    let t = p.topology();
    assert_eq!(t.stages.len(), 2);
    assert_eq!(t.stages[0].name, "src+id");
    assert_eq!(t.stages[1].parallelism, 3);
    assert_eq!(
        t.edges,
        vec![TopologyEdge {
            from: 0,
            to: 1,
            exchange: ExchangeKind::RoundRobin,
            capacity: 77
        }]
    );
    let job = p.run().expect("valid");
    let r = job.wait().expect("completes");
    assert_eq!(r.ledger.delivered, 10);
}

#[test]
fn an_edge_setting_that_no_edge_follows_is_a_build_error() {
    // The trap: settings after `new_chain()` are for the next edge, and a chained sink
    // makes none. They used to be dropped without a word.
    let p = Pipeline::new("e");
    p.source("src", 1, range(10))
        .new_chain()
        .edge_capacity(64)
        .sink("sink", |_| SlowSink(std::time::Duration::ZERO));
    match p.run() {
        Err(e @ BuildError::EdgeSettingUnused { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("edge_capacity") && msg.contains("`sink`"),
                "{msg}"
            );
            assert!(msg.contains("before the `.new_chain()`"), "{msg}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let p = Pipeline::new("e");
    p.source("src", 1, range(10))
        .edge_budget(std::time::Duration::from_millis(5))
        .sink("sink", |_| SlowSink(std::time::Duration::ZERO));
    assert!(matches!(
        p.run(),
        Err(BuildError::EdgeSettingUnused { setting, .. }) if setting == "edge_budget"
    ));
    // Set before `new_chain()`, the same setting sizes the edge, and the job runs.
    let p = Pipeline::new("e");
    p.source("src", 1, range(10))
        .edge_capacity(64)
        .new_chain()
        .sink("sink", |_| SlowSink(std::time::Duration::ZERO));
    assert_eq!(p.topology().edges[0].capacity, 64);
    assert_eq!(p.run().unwrap().wait().unwrap().ledger.delivered, 10);
}

#[test]
fn an_edge_id_must_name_an_edge_and_addresses_it_in_a_running_job() {
    // Taken from a stream whose next operator chains into the same thread: no edge.
    let p = Pipeline::new("e");
    let s = p.source("src", 1, range(10));
    let _ = s.edge_id();
    s.sink("sink", |_| SlowSink(std::time::Duration::ZERO));
    match p.run() {
        Err(e @ BuildError::EdgeIdUnused { .. }) => {
            assert!(e.to_string().contains("new_chain"), "{e}")
        }
        other => panic!("unexpected {other:?}"),
    }

    // One id per stream; it names the edge the next `new_chain` creates.
    let p = Pipeline::new("e").batch_size(5);
    let s = p.source("src", 1, range(1000)).edge_capacity(10);
    let (a, b) = (s.edge_id(), s.edge_id());
    assert_eq!(a, b);
    s.new_chain()
        .sink("sink", |_| SlowSink(std::time::Duration::from_micros(10)));
    let job = p.run().unwrap();
    let h = job.handle();
    assert_eq!(h.edge_name(a).unwrap(), "src -> sink");
    let fill = h.edge_fill(a).unwrap();
    assert!((0.0..=1.0).contains(&fill), "{fill}");
    h.set_edge_policy(a, sluice_engine::EdgePolicy::DropNewest)
        .unwrap();
    let report = job.wait().unwrap();
    assert!(report
        .events
        .iter()
        .any(|e| e.kind == "policy" && e.detail.starts_with("src -> sink")));
    assert!(report.ledger.balanced);

    // An id from another pipeline is refused, not applied to whatever edge has its number.
    let other = Pipeline::new("other");
    let o = other.source("x", 1, range(1));
    let foreign = o.edge_id();
    let _ = o.edge_id();
    let o2 = other.source("y", 1, range(1));
    let foreign2 = o2.edge_id();
    o.new_chain()
        .sink("s1", |_| SlowSink(std::time::Duration::ZERO));
    o2.new_chain()
        .sink("s2", |_| SlowSink(std::time::Duration::ZERO));
    other.run().unwrap().wait().unwrap();
    let _ = foreign;
    let p = Pipeline::new("e");
    p.source("src", 1, range(10))
        .new_chain()
        .sink("sink", |_| SlowSink(std::time::Duration::ZERO));
    let job = p.run().unwrap();
    assert!(job.handle().edge_fill(foreign2).is_err());
    job.wait().unwrap();
}
