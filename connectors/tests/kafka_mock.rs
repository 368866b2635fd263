//! Kafka connectors against librdkafka's in-process mock cluster (a real Kafka protocol
//! peer on a loopback port): round trip without loss or duplicates, offsets committed only
//! for what was processed, pause under backpressure while staying in the group, malformed
//! messages dead-lettered.

#![allow(clippy::unwrap_used, missing_docs)]

use sluice_engine::CodecError;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use sluice_connectors::kafka::{
    codec, EmbeddedKafka, KafkaConfig, KafkaPipelineExt, KafkaSinkConfig, KafkaSinkStats,
    KafkaSourceConfig, KafkaSourceStats, KafkaStreamExt,
};
use sluice_connectors::PipelineExt;
use sluice_engine::Pipeline;

use sluice_operators::{SinkExt, StreamExt};
use sluice_testkit::{produce_indexed, read_all};

fn source_cfg(brokers: &str, group: &str, topic: &str) -> KafkaSourceConfig {
    let mut cfg = KafkaSourceConfig::new(KafkaConfig::new(brokers, group).unwrap(), &[topic]);
    cfg.end_when_idle = Some(Duration::from_secs(3));
    cfg
}

#[test]
fn topic_to_topic_loses_nothing_and_duplicates_nothing() {
    let kafka = EmbeddedKafka::start(1).unwrap();
    let brokers = kafka.brokers();
    kafka.create_topic("in", 4).unwrap();
    kafka.create_topic("out", 4).unwrap();
    let n = 20_000u64;
    produce_indexed(&brokers, "in", n, |i| i.to_string().into_bytes()).unwrap();

    let p = Pipeline::new("kafka-roundtrip");
    let stats = Arc::new(KafkaSourceStats::default());
    let sink_stats = Arc::new(KafkaSinkStats::default());
    p.kafka_source(
        "in",
        2,
        source_cfg(&brokers, "roundtrip", "in"),
        codec::parse::<u64>(),
        stats.clone(),
    )
    .map("double", |x| x * 2)
    .kafka_sink(
        "out",
        KafkaSinkConfig::new(KafkaConfig::new(&brokers, "").unwrap(), "out"),
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
    assert_eq!(sink_stats.acked.load(Ordering::Relaxed), n);
    assert_eq!(
        stats.acked.load(Ordering::Relaxed),
        n,
        "every record acked end to end"
    );

    let out = read_all(&brokers, "out", n as usize).unwrap();
    let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
    for m in &out {
        let (k, v) = (&m.key, &m.payload);
        let k: u64 = k.parse().unwrap();
        let v: u64 = String::from_utf8_lossy(v).parse().unwrap();
        assert_eq!(v, k * 2);
        *seen.entry(k).or_default() += 1;
    }
    let lost = (0..n).filter(|i| !seen.contains_key(i)).count();
    let dups: u32 = seen.values().map(|c| c - 1).sum();
    assert_eq!((lost, dups), (0, 0));

    // The group committed the end of every partition: a restart would re-read nothing.
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "roundtrip")
        .create()
        .unwrap();
    let committed = sluice_connectors::kafka::committed_offsets(&probe, &["in"]);
    for (_, part, off) in &committed {
        let (_, high) = probe
            .fetch_watermarks("in", *part, Duration::from_secs(5))
            .unwrap();
        assert_eq!(*off, high, "partition {part}: committed up to the end");
    }
    assert_eq!(committed.len(), 4);
    let p2 = Pipeline::new("kafka-roundtrip-again");
    let stats2 = Arc::new(KafkaSourceStats::default());
    let mut cfg = source_cfg(&brokers, "roundtrip", "in");
    cfg.end_when_idle = Some(Duration::from_secs(2));
    let again = p2
        .kafka_source(
            "in",
            1,
            cfg,
            codec::payload(|b: &[u8]| Ok::<_, CodecError>(b.len())),
            stats2.clone(),
        )
        .count("count");
    // The idle timer starts at the first message; with nothing to read, stop after a while.
    let job = p2.run().unwrap();
    std::thread::sleep(Duration::from_secs(8));
    let r2 = job.stop(Duration::from_secs(10)).unwrap();
    assert_eq!(again.get(), 0, "nothing re-read after a full commit");
    assert!(r2.ledger.balanced);
}

#[test]
fn slow_sink_pauses_partitions_and_the_consumer_stays_in_its_group() {
    let kafka = EmbeddedKafka::start(1).unwrap();
    let brokers = kafka.brokers();
    kafka.create_topic("slow", 2).unwrap();
    let n = 3_000u64;
    produce_indexed(&brokers, "slow", n, |i| i.to_string().into_bytes()).unwrap();

    let stats = Arc::new(KafkaSourceStats::default());
    let kcfg = KafkaConfig::new(&brokers, "slow-group")
        .unwrap()
        .set("session.timeout.ms", "6000")
        .unwrap()
        .set("max.poll.interval.ms", "6000")
        .unwrap();
    let mut cfg = KafkaSourceConfig::new(kcfg, &["slow"]);
    cfg.batch_size = 100;
    cfg.prefetch_batches = 2;
    cfg.resume_below = 0;
    cfg.pause_after = Duration::from_millis(100);
    cfg.end_when_idle = Some(Duration::from_secs(2));
    let p = Pipeline::new("kafka-slow").batch_size(100);
    let out = p
        .kafka_source("slow", 1, cfg, codec::raw(), stats.clone())
        .edge_capacity(100)
        .new_chain()
        // 3,000 records at 7 ms each: about 21 s, more than 3x max.poll.interval.ms (6 s).
        .for_each("slow", |_| std::thread::sleep(Duration::from_millis(7)));
    let job = p.run().unwrap();
    let mut saw_paused = false;
    let mut max_ahead = 0u64;
    let t0 = Instant::now();
    let mut last_print = Instant::now();
    while !job.is_finished() && t0.elapsed() < Duration::from_secs(60) {
        saw_paused |= stats.paused.load(Ordering::Relaxed);
        // Read from Kafka but not yet through the slow stage: what the job holds in memory.
        let polled = stats.polled.load(Ordering::Relaxed);
        max_ahead = max_ahead.max(polled.saturating_sub(out.delivered()));
        if last_print.elapsed() > Duration::from_secs(2) {
            last_print = Instant::now();
            eprintln!(
                "t={:.1}s paused={} pauses={} resumes={} rebalances={} polled={} acked={} delivered={} err={:?}",
                t0.elapsed().as_secs_f64(),
                stats.paused.load(Ordering::Relaxed),
                stats.pauses.load(Ordering::Relaxed),
                stats.resumes.load(Ordering::Relaxed),
                stats.rebalances.load(Ordering::Relaxed),
                stats.polled.load(Ordering::Relaxed),
                stats.acked.load(Ordering::Relaxed),
                out.delivered(),
                stats.error.lock()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = job.wait().unwrap();
    assert!(
        t0.elapsed() > Duration::from_secs(6),
        "ran longer than 3x max.poll.interval.ms"
    );
    assert!(saw_paused && stats.pauses.load(Ordering::Relaxed) >= 1);
    assert!(stats.resumes.load(Ordering::Relaxed) >= 1);
    // One assignment at the start and no rebalance since: never kicked out of the group.
    assert_eq!(
        stats.rebalances.load(Ordering::Relaxed),
        1,
        "rebalanced while paused"
    );
    assert_eq!(out.delivered(), n);
    assert!(report.ledger.balanced);
    // Memory stays bounded: the source reads ahead of the slow stage by at most its prefetch
    // (2 batches of 100), the held and the partial batch (100 each), the edge (100) and the
    // batches the two tasks hold (100 each): 700. Without backpressure it would read all
    // 3,000 at once.
    assert!(
        max_ahead <= 700,
        "read {max_ahead} records ahead of the sink"
    );
    eprintln!("read at most {max_ahead} records ahead of the slow stage");
}

#[test]
fn malformed_messages_go_to_the_dead_letter_topic_with_the_reason() {
    let kafka = EmbeddedKafka::start(1).unwrap();
    let brokers = kafka.brokers();
    kafka.create_topic("mixed", 1).unwrap();
    kafka.create_topic("dlq", 1).unwrap();
    produce_indexed(&brokers, "mixed", 1_000, |i| {
        if i % 10 == 0 {
            b"not a number".to_vec()
        } else {
            i.to_string().into_bytes()
        }
    })
    .unwrap();
    let stats = Arc::new(KafkaSourceStats::default());
    let mut cfg = source_cfg(&brokers, "mixed-group", "mixed");
    cfg.dead_letter_topic = Some("dlq".into());
    let p = Pipeline::new("kafka-dlq");
    let out = p
        .kafka_source(
            "mixed",
            1,
            cfg,
            codec::payload(|b: &[u8]| {
                std::str::from_utf8(b)
                    .map_err(|e| CodecError::format("UTF-8", e))?
                    .parse::<u64>()
                    .map_err(|e| CodecError::invalid(format!("not a u64: {e}")))
            }),
            stats.clone(),
        )
        .count("count");
    let report = p.run().unwrap().wait().unwrap();
    assert_eq!(out.get(), 900);
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 100);
    assert!(report.ledger.balanced);
    // Each dead letter is in the books once it is durable: taken in, dead-lettered.
    assert_eq!(
        (report.ledger.emitted, report.ledger.dead_lettered),
        (1_000, 100)
    );
    assert_eq!(stats.dead_letter_failures.load(Ordering::Relaxed), 0);
    let dlq = read_all(&brokers, "dlq", 100).unwrap();
    assert_eq!(dlq.len(), 100);
    assert!(dlq.iter().all(|m| m.payload == b"not a number"
        && m.header("sluice-error")
            .is_some_and(|r| r.contains("not a u64"))));
}

/// A log record (its `level` is read by the decoder for the class).
#[derive(Debug, serde::Deserialize)]
struct Log {
    msg: String,
}

/// JSON logs classed by their `level` field; malformed ones (bad JSON, an unknown level)
/// dead-lettered with the reason; warn and above routed to `alerts`, the rest parked in
/// `parked`, which a second job works through later. Every message ends in exactly one place.
#[test]
fn json_logs_are_routed_by_class_and_parked_work_is_done_later() {
    use sluice_connectors::kafka::codec::{json_with_priority, Classed, PriorityFrom};
    use sluice_connectors::kafka::ClassRoutes;
    use sluice_engine::Priority;

    let kafka = EmbeddedKafka::start(1).unwrap();
    let brokers = kafka.brokers();
    for t in ["logs", "alerts", "parked", "logs-dlq"] {
        kafka.create_topic(t, 2).unwrap();
    }
    let levels = ["debug", "info", "WARNING", "error"];
    // 2,000 logs, 1 in 50 without a level (info by default), plus 20 that are not JSON and
    // 10 with an unknown level.
    let n = 2_030u64;
    produce_indexed(&brokers, "logs", n, |i| {
        if i >= 2_020 {
            format!(r#"{{"level":"loud","msg":"m{i}"}}"#).into_bytes()
        } else if i >= 2_000 {
            format!("{{oops {i}").into_bytes()
        } else if i % 50 == 7 {
            format!(r#"{{"msg":"m{i}"}}"#).into_bytes()
        } else {
            format!(r#"{{"level":"{}","msg":"m{i}"}}"#, levels[(i % 4) as usize]).into_bytes()
        }
    })
    .unwrap();
    let expect_alerts = (0..2_000u64).filter(|i| i % 50 != 7 && i % 4 >= 2).count() as u64;

    let stats = Arc::new(KafkaSourceStats::default());
    let sink_stats = Arc::new(KafkaSinkStats::default());
    let mut cfg = source_cfg(&brokers, "logs-group", "logs");
    cfg.dead_letter_topic = Some("logs-dlq".into());
    let p = Pipeline::new("kafka-route");
    p.kafka_source(
        "logs",
        1,
        cfg,
        json_with_priority::<Log>(PriorityFrom::Field("level".into()), Priority::INFO),
        stats.clone(),
    )
    .kafka_sink_by_class(
        "by-class",
        KafkaSinkConfig::new(KafkaConfig::new(&brokers, "").unwrap(), "parked"),
        ClassRoutes::new().at_or_above(Priority::WARN, "alerts"),
        Arc::new(|r: &Classed<Log>| (None, format!("{}:{}", r.priority, r.value.msg).into_bytes())),
        sink_stats.clone(),
    );
    let report = p.run().unwrap().wait().unwrap();
    assert!(report.ledger.balanced);
    assert_eq!(report.ledger.delivered, 2_000);
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 30);
    assert_eq!(report.ledger.dead_lettered, 30);
    let routed = sink_stats.routed.lock().clone();
    assert_eq!(routed.get("alerts"), Some(&expect_alerts), "{routed:?}");
    assert_eq!(routed.get("parked"), Some(&(2_000 - expect_alerts)));

    let alerts = read_all(&brokers, "alerts", expect_alerts as usize).unwrap();
    assert_eq!(alerts.len() as u64, expect_alerts);
    assert!(alerts.iter().all(|m| {
        let v = String::from_utf8_lossy(&m.payload);
        v.starts_with("warn:") || v.starts_with("error:")
    }));
    let dlq = read_all(&brokers, "logs-dlq", 30).unwrap();
    assert_eq!(dlq.len(), 30);
    let reason = |m: &sluice_testkit::Received| m.header("sluice-error").unwrap_or("").to_string();
    assert_eq!(
        dlq.iter()
            .filter(|m| reason(m).contains("invalid JSON"))
            .count(),
        20
    );
    assert_eq!(
        dlq.iter()
            .filter(|m| reason(m).contains("\"loud\" is not a priority class"))
            .count(),
        10
    );

    // Later, when there is capacity: a second job works through the parked topic.
    let later = Pipeline::new("kafka-parked");
    let done = later
        .kafka_source(
            "parked",
            1,
            source_cfg(&brokers, "parked-group", "parked"),
            codec::utf8(),
            Arc::new(KafkaSourceStats::default()),
        )
        .filter("low", |s: &String| {
            s.starts_with("debug:") || s.starts_with("info:")
        })
        .count("processed");
    let r2 = later.run().unwrap().wait().unwrap();
    assert!(r2.ledger.balanced);
    assert_eq!(
        done.get(),
        2_000 - expect_alerts,
        "every parked log processed"
    );
}

/// A record larger than the producer's `message.max.bytes` cannot ever be produced: the sink
/// dead-letters it with the reason and goes on, instead of failing the job (and every rerun).
#[test]
fn an_oversized_message_is_dead_lettered_and_the_job_goes_on() {
    let kafka = EmbeddedKafka::start(1).unwrap();
    let brokers = kafka.brokers();
    kafka.create_topic("big", 1).unwrap();
    let records: Vec<Vec<u8>> = (0..10u8)
        .map(|i| vec![i; 10])
        .chain(std::iter::once(vec![7u8; 2 << 20]))
        .chain((10..20u8).map(|i| vec![i; 10]))
        .collect();
    let stats = Arc::new(KafkaSinkStats::default());
    let p = Pipeline::new("big");
    p.iter_source("records", 1, move |_| records.clone())
        .kafka_sink(
            "out",
            KafkaSinkConfig::new(KafkaConfig::new(&brokers, "").unwrap(), "big"),
            Arc::new(|r: &Vec<u8>| (None, r.clone())),
            stats.clone(),
        );
    let report = p.run().unwrap().wait().expect("the job goes on");
    let l = &report.ledger;
    assert_eq!((l.emitted, l.delivered, l.dead_lettered), (21, 20, 1));
    assert!(l.balanced);
    assert_eq!(read_all(&brokers, "big", 20).unwrap().len(), 20);
}

/// Stopping a job mid-stream: the dead letters the source makes durable while it stops are
/// in that run's ledger too (the runtime asks the source once more after closing it).
#[test]
fn a_stopped_source_counts_every_durable_dead_letter() {
    let kafka = EmbeddedKafka::start(1).unwrap();
    let brokers = kafka.brokers();
    kafka.create_topic("stopme", 1).unwrap();
    kafka.create_topic("stopme-dlq", 1).unwrap();
    produce_indexed(&brokers, "stopme", 20_000, |i| {
        if i % 10 == 0 {
            b"not a number".to_vec()
        } else {
            i.to_string().into_bytes()
        }
    })
    .unwrap();
    let stats = Arc::new(KafkaSourceStats::default());
    let mut cfg = source_cfg(&brokers, "stopme-group", "stopme");
    cfg.dead_letter_topic = Some("stopme-dlq".into());
    cfg.batch_size = 100;
    let p = Pipeline::new("kafka-dlq-stop").batch_size(100);
    p.kafka_source("stopme", 1, cfg, codec::parse::<u64>(), stats.clone())
        .edge_capacity(200)
        .new_chain()
        .map("slow", |x: u64| {
            std::thread::sleep(Duration::from_micros(200));
            x
        })
        .count("count");
    let job = p.run().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats.dead_lettered.load(Ordering::Relaxed) < 50 {
        assert!(Instant::now() < deadline, "no dead letters within 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let report = job.stop(Duration::from_secs(20)).unwrap();
    let durable = stats.dead_lettered.load(Ordering::Relaxed);
    assert!(durable < 2_000, "stopped mid-stream ({durable})");
    assert_eq!(
        report.ledger.dead_lettered, durable,
        "every durable dead letter counted"
    );
    assert!(report.ledger.balanced);
}
