//! What the Kafka benchmarks, fault jobs and tests need around a job under test, written
//! once with plain rdkafka clients (never with Sluice itself, so a bug in Sluice cannot hide
//! in its own yardstick): producing with backpressure, reading a topic back, the test
//! broker.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message, ToBytes};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

/// Sends `rec`, treating a full local queue as backpressure: serve delivery reports and try
/// again, for at most `patience`. Any other error is returned at once.
///
/// # Errors
/// The producer's error, or `QueueFull` when the queue stayed full for `patience`.
pub fn send<K, P>(
    producer: &BaseProducer,
    mut rec: BaseRecord<'_, K, P>,
    patience: Duration,
) -> Result<(), KafkaError>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    let deadline = Instant::now() + patience;
    loop {
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                if Instant::now() < deadline =>
            {
                rec = r;
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Produces `n` messages to `topic`, message `i` being `message(i)` = `(key, payload)`, and
/// waits until the broker acknowledged them all.
///
/// # Errors
/// When the producer cannot be created, a send fails or the flush times out.
pub fn produce(
    brokers: &str,
    topic: &str,
    n: u64,
    message: impl Fn(u64) -> (String, Vec<u8>),
) -> Result<(), KafkaError> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()?;
    for i in 0..n {
        let (key, payload) = message(i);
        send(
            &producer,
            BaseRecord::to(topic).key(&key).payload(&payload),
            Duration::from_secs(60),
        )?;
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60))
}

/// Like [`produce`], keyed by the message's index: key `i`, payload `payload(i)`.
///
/// # Errors
/// As [`produce`].
pub fn produce_indexed(
    brokers: &str,
    topic: &str,
    n: u64,
    payload: impl Fn(u64) -> Vec<u8>,
) -> Result<(), KafkaError> {
    produce(brokers, topic, n, |i| (i.to_string(), payload(i)))
}

/// A message read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The key (lossy UTF-8; empty without one).
    pub key: String,
    /// The payload (empty for a null payload).
    pub payload: Vec<u8>,
    /// The headers, `(name, lossy UTF-8 value)`.
    pub headers: Vec<(String, String)>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

impl Received {
    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads `topic` from the beginning with a fresh consumer group (`group`, or a unique one),
/// calling `enough` with each message; once it returned true, reading goes on until the topic
/// stayed quiet for a second (to catch duplicates). Ends after `max_wait` in any case.
///
/// # Errors
/// When the consumer cannot be created or subscribe.
pub fn read_topic(
    brokers: &str,
    topic: &str,
    group: Option<&str>,
    max_wait: Duration,
    mut enough: impl FnMut(&Received) -> bool,
) -> Result<Vec<Received>, KafkaError> {
    let group = group.map_or_else(|| unique_group(topic), str::to_string);
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    reader.subscribe(&[topic])?;
    let mut out = Vec::new();
    let mut done = false;
    let deadline = Instant::now() + max_wait;
    let mut idle = Instant::now();
    while Instant::now() < deadline {
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                idle = Instant::now();
                let r = Received {
                    key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|x| {
                                    let v = x.value.unwrap_or_default();
                                    (x.key.to_string(), String::from_utf8_lossy(v).into_owned())
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    partition: m.partition(),
                    offset: m.offset(),
                };
                done |= enough(&r);
                out.push(r);
            }
            _ => {
                if done && idle.elapsed() > Duration::from_secs(1) {
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// Reads `topic` until at least `expect` messages arrived (see [`read_topic`]), within 60 s.
///
/// # Errors
/// As [`read_topic`].
pub fn read_all(brokers: &str, topic: &str, expect: usize) -> Result<Vec<Received>, KafkaError> {
    let mut n = 0;
    read_topic(brokers, topic, None, Duration::from_secs(60), |_| {
        n += 1;
        n >= expect
    })
}

/// What reading a run's messages back found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadBack {
    /// Times each distinct payload was read.
    pub counts: HashMap<String, u64>,
    /// How many distinct payloads the run produced.
    pub expected: u64,
}

impl ReadBack {
    /// Distinct payloads read.
    pub fn delivered(&self) -> u64 {
        self.counts.len() as u64
    }

    /// Payloads produced and never read.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered())
    }

    /// Reads beyond the first of each payload.
    pub fn duplicates(&self) -> u64 {
        self.counts.values().map(|c| c - 1).sum()
    }
}

/// Reads `topic` with the consumer group `group` and counts each payload that starts with
/// `prefix` (a run's tag), until `expect` distinct ones were seen and the topic stayed quiet
/// for a second, or `max_wait` passed.
///
/// # Errors
/// As [`read_topic`].
pub fn count_payloads(
    brokers: &str,
    topic: &str,
    group: &str,
    prefix: &str,
    expect: u64,
    max_wait: Duration,
) -> Result<ReadBack, KafkaError> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    read_topic(brokers, topic, Some(group), max_wait, |m| {
        let v = String::from_utf8_lossy(&m.payload);
        if v.starts_with(prefix) {
            *counts.entry(v.into_owned()).or_default() += 1;
        }
        counts.len() as u64 >= expect
    })?;
    Ok(ReadBack {
        counts,
        expected: expect,
    })
}

/// One past the highest offset of each partition of `topic`, once `expect` messages were read.
///
/// # Errors
/// As [`read_topic`].
pub fn partition_ends(
    brokers: &str,
    topic: &str,
    expect: usize,
) -> Result<BTreeMap<i32, i64>, KafkaError> {
    let mut ends = BTreeMap::new();
    for m in read_all(brokers, topic, expect)? {
        let e = ends.entry(m.partition).or_insert(0);
        *e = (*e).max(m.offset + 1);
    }
    Ok(ends)
}

/// An id unique to this run (process and wall clock), to tag its messages and groups so a
/// shared topic's earlier contents are told apart.
pub fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}

/// Message `i` of a run tagged `run_id`: key = payload = `{run_id}-{i}`, for [`produce`].
pub fn tagged(run_id: &str, i: u64) -> (String, Vec<u8>) {
    let v = format!("{run_id}-{i}");
    (v.clone(), v.into_bytes())
}

fn unique_group(topic: &str) -> String {
    format!("reader-{topic}-{}", run_id())
}

/// The real broker the tests use: `SLUICE_KAFKA_BROKERS`, set by `scripts/test` after
/// `scripts/broker start`. Without it a test skips (returns `None`), except under CI, where
/// skipping would hide a missing broker.
///
/// # Panics
/// Under CI (`CI` set) when the variable is missing: the broker tests must run there.
pub fn broker_from_env() -> Option<String> {
    match std::env::var("SLUICE_KAFKA_BROKERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "CI must run the broker tests: start it with scripts/broker start and set SLUICE_KAFKA_BROKERS"
            );
            eprintln!("skipped: SLUICE_KAFKA_BROKERS is not set (scripts/broker start)");
            None
        }
    }
}

/// Creates `name` with `partitions` partitions on the test broker (`scripts/broker topic`;
/// Tansu does not create topics by itself).
///
/// # Errors
/// When the script cannot run or fails.
pub fn create_topic(name: &str, partitions: u32) -> std::io::Result<()> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/broker");
    let st = std::process::Command::new(script)
        .args(["topic", name, &partitions.to_string()])
        .status()?;
    if st.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "scripts/broker topic {name} {partitions} failed: {st}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_back_counts_lost_and_duplicated() {
        let mut counts = HashMap::new();
        counts.insert("r-0".to_string(), 1);
        counts.insert("r-1".to_string(), 3);
        let r = ReadBack {
            counts,
            expected: 4,
        };
        assert_eq!((r.delivered(), r.lost(), r.duplicates()), (2, 2, 2));
        assert_eq!(tagged("r", 7), ("r-7".to_string(), b"r-7".to_vec()));
    }
}
