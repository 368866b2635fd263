//! Kafka connectors against a real broker over TCP (Tansu, started by `scripts/broker`; the
//! address comes from `SLUICE_KAFKA_BROKERS`). In CI the broker is required; elsewhere the
//! test says it was skipped when no broker is configured.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use sluice_connectors::kafka::{
    codec, committed_offsets, KafkaConfig, KafkaPipelineExt, KafkaSinkConfig, KafkaSinkStats,
    KafkaSourceConfig, KafkaSourceStats, KafkaStreamExt,
};
use sluice_engine::Pipeline;
use sluice_operators::StreamExt;

use sluice_testkit::{produce_indexed, read_all};

#[test]
fn real_broker_round_trip_commits_what_was_processed() {
    let Some(brokers) = sluice_testkit::broker_from_env() else {
        return;
    };
    let run = std::process::id();
    let (tin, tout) = (format!("rt-in-{run}"), format!("rt-out-{run}"));
    sluice_testkit::create_topic(&tin, 4).unwrap();
    sluice_testkit::create_topic(&tout, 4).unwrap();
    let n = 20_000u64;
    produce_indexed(&brokers, &tin, n, |i| i.to_string().into_bytes()).unwrap();

    let group = format!("rt-{run}");
    let stats = Arc::new(KafkaSourceStats::default());
    let sink_stats = Arc::new(KafkaSinkStats::default());
    let mut cfg = KafkaSourceConfig::new(KafkaConfig::new(&brokers, &group).unwrap(), &[&tin]);
    cfg.end_when_idle = Some(Duration::from_secs(4));
    let p = Pipeline::new("kafka-broker-roundtrip");
    p.kafka_source("in", 2, cfg, codec::parse::<u64>(), stats.clone())
        .map("double", |x| x * 2)
        .kafka_sink(
            "out",
            KafkaSinkConfig::new(KafkaConfig::new(&brokers, "").unwrap(), &tout),
            Arc::new(|x: &u64| {
                (
                    Some((x / 2).to_string().into_bytes()),
                    x.to_string().into_bytes(),
                )
            }),
            sink_stats.clone(),
        );
    let report = p.run().unwrap().wait().unwrap();
    assert!(report.ledger.balanced);
    assert_eq!(report.ledger.delivered, n);
    assert_eq!(stats.acked.load(Ordering::Relaxed), n);

    let out = read_all(&brokers, &tout, n as usize).unwrap();
    let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
    for m in &out {
        let (k, v) = (&m.key, &m.payload);
        let k: u64 = k.parse().unwrap();
        assert_eq!(String::from_utf8_lossy(v).parse::<u64>().unwrap(), k * 2);
        *seen.entry(k).or_default() += 1;
    }
    let lost = (0..n).filter(|i| !seen.contains_key(i)).count();
    let dups: u32 = seen.values().map(|c| c - 1).sum();
    assert_eq!((lost, dups), (0, 0), "lost, duplicates");

    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &group)
        .create()
        .unwrap();
    let committed = committed_offsets(&probe, &[&tin]);
    assert_eq!(committed.len(), 4);
    // The end of each partition, as read back (Tansu 0.6.0's ListOffsets high watermark
    // lags the log, so it is not used here).
    let ends = sluice_testkit::partition_ends(&brokers, &tin, n as usize).unwrap();
    for (_, part, off) in &committed {
        assert_eq!(
            Some(off),
            ends.get(part),
            "partition {part}: committed to the end"
        );
    }
    let _ = probe.assignment();
}
