//! Record batches through Kafka (librdkafka's mock cluster): JSON lines payloads decoded
//! straight into batches, malformed messages dead-lettered with their line, batches written
//! back as Arrow IPC and as JSON lines, and the books balanced in rows.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sluice_connectors::files::arrow::array::{AsArray, RecordBatch};
use sluice_connectors::files::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use sluice_connectors::kafka::{
    batches, EmbeddedKafka, KafkaConfig, KafkaPipelineExt, KafkaSinkConfig, KafkaSinkStats,
    KafkaSourceConfig, KafkaSourceStats, KafkaStreamExt,
};
use sluice_engine::Pipeline;
use sluice_operators::columnar::BatchStreamExt;
use sluice_operators::StreamExt;
use sluice_testkit::{produce_indexed, read_all};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("level", DataType::Utf8, false),
    ]))
}

fn source_cfg(brokers: &str, group: &str, topic: &str) -> KafkaSourceConfig {
    let mut cfg = KafkaSourceConfig::new(KafkaConfig::new(brokers, group).unwrap(), &[topic]);
    cfg.end_when_idle = Some(Duration::from_secs(2));
    cfg
}

/// Message `m` of the input: 20 JSON lines of ids `20m..20m+20`; message 10 has a bad
/// third line, message 25 is not JSON at all.
fn message(m: u64) -> Vec<u8> {
    if m == 25 {
        return b"\x00\x01 not json".to_vec();
    }
    let mut s = String::new();
    for i in 20 * m..20 * m + 20 {
        if m == 10 && i == 20 * m + 2 {
            s.push_str("{\"id\": \"three\", \"level\": \"info\"}\n");
        } else {
            let level = ["debug", "info", "warn", "error"][(i % 4) as usize];
            s.push_str(&format!("{{\"id\": {i}, \"level\": \"{level}\"}}\n"));
        }
    }
    s.into_bytes()
}

fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

#[test]
fn json_lines_messages_become_batches_and_go_back_out_as_ipc_and_json_lines() {
    let kafka = EmbeddedKafka::start(1).unwrap();
    let brokers = kafka.brokers();
    for t in ["lines", "ipc", "json", "dlq"] {
        kafka.create_topic(t, 1).unwrap();
    }
    produce_indexed(&brokers, "lines", 50, message).unwrap();
    let good: Vec<i64> = (0..50)
        .filter(|m| *m != 10 && *m != 25)
        .flat_map(|m| 20 * m..20 * m + 20)
        .collect();

    // 1. JSON lines -> batches -> Arrow IPC messages.
    let stats = Arc::new(KafkaSourceStats::default());
    let mut cfg = source_cfg(&brokers, "lines-group", "lines");
    cfg.dead_letter_topic = Some("dlq".into());
    let p = Pipeline::new("lines-to-ipc");
    let ipc_stats = Arc::new(KafkaSinkStats::default());
    p.kafka_source(
        "lines",
        1,
        cfg,
        batches::json_lines(schema()),
        stats.clone(),
    )
    .concat_batches("join", 4096)
    .kafka_sink_with(
        "ipc",
        KafkaSinkConfig::new(KafkaConfig::new(&brokers, "").unwrap(), "ipc"),
        batches::arrow_ipc_encoder(),
        ipc_stats.clone(),
    );
    let report = p.run().unwrap().wait().unwrap();
    let l = &report.ledger;
    assert!(l.balanced, "{}", l.explain());
    // Rows delivered; a malformed message counts as one record, dead-lettered.
    assert_eq!(
        (l.emitted, l.delivered, l.dead_lettered),
        (good.len() as u64 + 2, good.len() as u64, 2)
    );
    let dlq = read_all(&brokers, "dlq", 2).unwrap();
    assert_eq!(dlq.len(), 2);
    assert!(
        dlq.iter().any(|m| m.payload == message(10)
            && m.header("sluice-error")
                .is_some_and(|r| r.contains("line 3"))),
        "{dlq:?}"
    );
    assert!(dlq.iter().any(|m| m.payload == message(25)));

    // 2. Arrow IPC messages -> batches -> JSON lines messages.
    let p = Pipeline::new("ipc-to-json");
    let json_stats = Arc::new(KafkaSinkStats::default());
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    p.kafka_source(
        "ipc",
        1,
        source_cfg(&brokers, "ipc-group", "ipc"),
        batches::arrow_ipc(Some(schema())),
        Arc::new(KafkaSourceStats::default()),
    )
    .map("look", move |b: RecordBatch| {
        s2.lock().push(b.clone());
        b
    })
    .kafka_sink_with(
        "json",
        KafkaSinkConfig::new(KafkaConfig::new(&brokers, "").unwrap(), "json"),
        batches::json_lines_encoder(),
        json_stats.clone(),
    );
    let report = p.run().unwrap().wait().unwrap();
    let l = &report.ledger;
    assert!(l.balanced, "{}", l.explain());
    assert_eq!(
        (l.emitted, l.delivered),
        (good.len() as u64, good.len() as u64)
    );
    let seen = seen.lock();
    assert_eq!(ids(&seen), good, "every row, in order, through Arrow IPC");
    assert!(seen.iter().all(|b| b.schema() == schema()));
    let messages = json_stats.acked.load(Ordering::Relaxed) as usize;
    assert_eq!(messages, seen.len(), "one message per batch");
    let back = read_all(&brokers, "json", messages).unwrap();
    let mut json_ids = Vec::new();
    for m in &back {
        for line in std::str::from_utf8(&m.payload).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            json_ids.push(v["id"].as_i64().unwrap());
            assert!(v["level"].is_string());
        }
    }
    assert_eq!(json_ids, good, "and back out as JSON lines");
}

#[test]
fn a_message_of_another_schema_or_not_arrow_is_dead_lettered() {
    use sluice_connectors::files::arrow::array::{ArrayRef, Int32Array};
    use sluice_connectors::kafka::codec::Incoming;
    let decode = batches::arrow_ipc(Some(schema()));
    assert!(decode(&Incoming::new(b"garbage")).is_err());
    let other: ArrayRef = Arc::new(Int32Array::from(vec![1]));
    let other = RecordBatch::try_from_iter([("x", other)]).unwrap();
    let (_, payload) = batches::arrow_ipc_encoder()(&other).unwrap();
    let err = decode(&Incoming::new(&payload)).unwrap_err();
    assert!(err.to_string().contains("schema"), "{err}");
    // A truncated stream is malformed, not a short batch.
    assert!(decode(&Incoming::new(&payload[..payload.len() / 2])).is_err());
    // Without an expected schema, any stream decodes.
    let any = batches::arrow_ipc(None)(&Incoming::new(&payload)).unwrap();
    assert_eq!(any, other);
}
