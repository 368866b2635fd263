//! Kafka passthrough throughput: Sluice (`KafkaSource` -> map -> `KafkaSink`, at least once:
//! offsets stored only for delivered records) against the consume -> produce loop a person
//! writes by hand with rdkafka (one `BaseConsumer`, one `BaseProducer`, auto commit), on the
//! same cluster and input in the same run, alternating rounds.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use sluice_connectors::kafka::{
    EmbeddedKafka, KafkaConfig, KafkaPipelineExt, KafkaSinkConfig, KafkaSinkStats,
    KafkaSourceConfig, KafkaSourceStats, KafkaStreamExt,
};
use sluice_engine::Pipeline;
use sluice_operators::StreamExt;

use crate::stats::median;
use sluice_testkit::send;

/// Parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaBenchConfig {
    /// Brokers; none: an embedded mock cluster.
    pub brokers: Option<String>,
    /// Messages in the input topic.
    pub messages: u64,
    /// Payload size in bytes.
    pub payload: usize,
    /// Input topic (on a real broker it must exist).
    pub input: String,
    /// Output topic (on a real broker it must exist).
    pub output: String,
    /// Partitions (embedded cluster only).
    pub partitions: i32,
    /// Rounds of each contender.
    pub rounds: usize,
    /// The Kafka source's batch size (none: its default).
    pub source_batch: Option<usize>,
}

impl Default for KafkaBenchConfig {
    fn default() -> Self {
        KafkaBenchConfig {
            brokers: None,
            messages: 200_000,
            payload: 64,
            input: "sluice-bench-in".into(),
            output: "sluice-bench-out".into(),
            partitions: 8,
            rounds: 3,
            source_batch: None,
        }
    }
}

/// What the benchmark measured (messages per second, from the first message consumed to the
/// last one acknowledged by the broker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KafkaBenchResult {
    /// Each round of the hand-written loop.
    pub baseline: Vec<f64>,
    /// Each round of Sluice.
    pub sluice: Vec<f64>,
    /// Median of each.
    pub baseline_median: f64,
    /// Median of each.
    pub sluice_median: f64,
    /// `sluice_median / baseline_median`.
    pub ratio: f64,
}

fn err(e: impl std::fmt::Display) -> Box<dyn std::error::Error> {
    e.to_string().into()
}

/// The producer settings both contenders use (Sluice's sink defaults).
fn producer(brokers: &str) -> Result<BaseProducer, Box<dyn std::error::Error>> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("enable.idempotence", "true")
        .set("queue.buffering.max.messages", "100000")
        .create()
        .map_err(err)
}

/// The hand-written loop: poll, produce, serve delivery reports; flush at the end.
fn baseline(
    brokers: &str,
    cfg: &KafkaBenchConfig,
    group: &str,
) -> Result<f64, Box<dyn std::error::Error>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(err)?;
    consumer.subscribe(&[&cfg.input]).map_err(err)?;
    let producer = producer(brokers)?;
    let mut n = 0u64;
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    while n < cfg.messages {
        if Instant::now() > deadline {
            return Err(format!("the baseline read {n} of {} messages", cfg.messages).into());
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                let rec: BaseRecord<'_, [u8], [u8]> =
                    BaseRecord::to(&cfg.output).payload(m.payload().unwrap_or_default());
                send(&producer, rec, Duration::from_secs(60)).map_err(err)?;
                producer.poll(Duration::ZERO);
                n += 1;
            }
            Some(Err(e)) => return Err(err(e)),
            None => {}
        }
    }
    producer.flush(Duration::from_secs(60)).map_err(err)?;
    let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    Ok(cfg.messages as f64 / secs.max(1e-9))
}

/// Sluice: source -> map (identity) -> sink.
fn sluice(
    brokers: &str,
    cfg: &KafkaBenchConfig,
    group: &str,
) -> Result<f64, Box<dyn std::error::Error>> {
    let stats = Arc::new(KafkaSourceStats::default());
    let mut scfg = KafkaSourceConfig::new(KafkaConfig::new(brokers, group)?, &[&cfg.input]);
    scfg.max_records = Some(cfg.messages);
    if let Some(b) = cfg.source_batch {
        scfg.batch_size = b;
    }
    let sink_stats = Arc::new(KafkaSinkStats::default());
    let p = Pipeline::new("kafka-bench");
    let s = p
        .kafka_source(
            "input",
            1,
            scfg,
            sluice_connectors::kafka::codec::raw(),
            stats.clone(),
        )
        .map("identity", |v: Vec<u8>| v);
    s.kafka_sink(
        "output",
        KafkaSinkConfig::new(KafkaConfig::new(brokers, "")?, &cfg.output),
        Arc::new(|v: &Vec<u8>| (None, v.clone())),
        sink_stats,
    );
    let job = p.run()?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while stats.polled.load(Ordering::Relaxed) == 0 && !job.is_finished() {
        if Instant::now() > deadline {
            return Err("Sluice never read a message".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let first = Instant::now();
    let report = job.wait()?;
    let secs = first.elapsed().as_secs_f64();
    if report.ledger.delivered != cfg.messages {
        return Err(format!(
            "Sluice delivered {} of {} messages",
            report.ledger.delivered, cfg.messages
        )
        .into());
    }
    Ok(cfg.messages as f64 / secs.max(1e-9))
}

/// Runs the benchmark; `progress` hears about each round.
///
/// # Errors
/// When a client cannot be created, a round does not finish, or Sluice loses messages.
pub fn run(
    cfg: &KafkaBenchConfig,
    progress: &mut dyn FnMut(&str, usize, f64),
) -> Result<KafkaBenchResult, Box<dyn std::error::Error>> {
    let embedded = match &cfg.brokers {
        Some(_) => None,
        None => {
            let k = EmbeddedKafka::start(1).map_err(err)?;
            k.create_topic(&cfg.input, cfg.partitions).map_err(err)?;
            k.create_topic(&cfg.output, cfg.partitions).map_err(err)?;
            Some(k)
        }
    };
    let brokers = match (&cfg.brokers, &embedded) {
        (Some(b), _) => b.clone(),
        (None, Some(k)) => k.brokers(),
        (None, None) => return Err("no brokers".into()),
    };
    // The input, produced once; each round reads all of it with a fresh group.
    let p = producer(&brokers)?;
    let payload = vec![b'x'; cfg.payload];
    for i in 0..cfg.messages {
        let key = i.to_le_bytes();
        let rec = BaseRecord::to(&cfg.input)
            .key(&key[..])
            .payload(&payload[..]);
        send(&p, rec, Duration::from_secs(60)).map_err(err)?;
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(60)).map_err(err)?;
    let tag = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let (mut b, mut s) = (Vec::new(), Vec::new());
    for round in 0..cfg.rounds.max(1) {
        let r = baseline(&brokers, cfg, &format!("bench-base-{tag}-{round}"))?;
        progress("hand-written rdkafka loop", round, r);
        b.push(r);
        let r = sluice(&brokers, cfg, &format!("bench-sluice-{tag}-{round}"))?;
        progress("sluice", round, r);
        s.push(r);
    }
    let (bm, sm) = (median(&b), median(&s));
    Ok(KafkaBenchResult {
        baseline: b,
        sluice: s,
        baseline_median: bm,
        sluice_median: sm,
        ratio: sm / bm.max(1e-9),
    })
}
