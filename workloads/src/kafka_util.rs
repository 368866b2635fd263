//! Helpers shared by the Kafka workloads: producing with backpressure and reading a topic
//! back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, ToBytes};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

/// Sends `rec`, treating a full local queue as backpressure: serve delivery reports and try
/// again, for at most `patience`. Any other error is returned at once.
pub(crate) fn send<K, P>(
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

/// An id unique to this run (process and wall clock), to tag its messages and groups so a
/// shared topic's earlier contents are told apart.
pub(crate) fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

/// Produces `{run_id}-0` .. `{run_id}-{n-1}` (key = payload) to `topic` and waits until the
/// broker acknowledged them all.
///
/// # Errors
/// When the producer cannot be created, a send fails or the flush times out.
pub(crate) fn produce_tagged(
    brokers: &str,
    topic: &str,
    run_id: &str,
    n: u64,
) -> Result<(), KafkaError> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()?;
    for i in 0..n {
        let v = format!("{run_id}-{i}");
        send(
            &producer,
            BaseRecord::to(topic).key(&v).payload(&v),
            Duration::from_secs(60),
        )?;
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60))
}

/// Reads `topic` from the beginning with a fresh group and counts each payload that starts
/// with `prefix`, until `expect` distinct ones were seen and the topic stayed quiet for a
/// second, or `max_wait` passed.
///
/// # Errors
/// When the reader cannot be created or subscribe.
pub(crate) fn read_back(
    brokers: &str,
    topic: &str,
    group: &str,
    prefix: &str,
    expect: u64,
    max_wait: Duration,
) -> Result<HashMap<String, u64>, KafkaError> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    reader.subscribe(&[topic])?;
    let mut seen: HashMap<String, u64> = HashMap::new();
    let deadline = Instant::now() + max_wait;
    let mut idle = Instant::now();
    while Instant::now() < deadline {
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                idle = Instant::now();
                let v = String::from_utf8_lossy(m.payload().unwrap_or_default());
                if v.starts_with(prefix) {
                    *seen.entry(v.into_owned()).or_default() += 1;
                }
            }
            _ => {
                if seen.len() as u64 >= expect && idle.elapsed() > Duration::from_secs(1) {
                    break;
                }
            }
        }
    }
    Ok(seen)
}
