//! Helpers shared by the Kafka tests: produce and read back with plain rdkafka clients.
#![allow(clippy::unwrap_used, clippy::type_complexity, missing_docs, dead_code)]

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

pub fn produce(brokers: &str, topic: &str, n: u64, payload: impl Fn(u64) -> Vec<u8>) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for i in 0..n {
        let key = i.to_string();
        let body = payload(i);
        let mut rec = BaseRecord::to(topic).key(&key).payload(&body);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    p.poll(Duration::from_millis(5));
                }
            }
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// Reads a topic to its end: (key, payload, headers) per message.
pub fn read_all(
    brokers: &str,
    topic: &str,
    expect: usize,
) -> Vec<(String, Vec<u8>, Vec<(String, String)>)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut idle_since = Instant::now();
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                idle_since = Instant::now();
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                (
                                    x.key.to_string(),
                                    String::from_utf8_lossy(x.value.unwrap_or_default())
                                        .to_string(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((key, m.payload().unwrap_or_default().to_vec(), headers));
            }
            _ => {
                if out.len() >= expect && idle_since.elapsed() > Duration::from_secs(1) {
                    break;
                }
            }
        }
    }
    out
}

/// One past the highest offset of each partition, read with a fresh group.
pub fn partition_ends(
    brokers: &str,
    topic: &str,
    expect: usize,
) -> std::collections::BTreeMap<i32, i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("ends-{topic}-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut ends = std::collections::BTreeMap::new();
    let mut n = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut idle_since = Instant::now();
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                idle_since = Instant::now();
                n += 1;
                let e = ends.entry(m.partition()).or_insert(0);
                *e = (*e).max(m.offset() + 1);
            }
            _ => {
                if n >= expect && idle_since.elapsed() > Duration::from_secs(1) {
                    break;
                }
            }
        }
    }
    ends
}
