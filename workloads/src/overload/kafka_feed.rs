//! Feeding a scenario through Kafka: an open-loop producer writes the schedule's records to a
//! topic, and the job reads them back with a consumer group (`KafkaSource`) whose members
//! pull at their own pace. With `Block` on the edge the topic buffers what the workers cannot
//! take yet (the `ingest` job: "provision for average"); with shedding the source reads at
//! the topic's pace and the edge sheds.
//!
//! Each message carries the run's nonce, its sequence number, its class and its intended send
//! time, so latency includes the time it waited in Kafka, and messages of earlier runs on a
//! shared topic are read once (the group's committed offsets move past them) and filtered out.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use sluice_connectors::kafka::{
    EmbeddedKafka, KafkaConfig, KafkaPipelineExt, KafkaSourceConfig, KafkaSourceStats,
};
use sluice_engine::{CodecError, Pipeline, Priority, Stream, CLASSES};
use sluice_operators::StreamExt;

use super::scenario::KafkaFeed;
use super::schedule::{class_of, Event, Schedule};
use sluice_testkit::send;

fn err(e: impl std::fmt::Display) -> Box<dyn std::error::Error> {
    e.to_string().into()
}

/// 25 bytes: nonce, sequence number, intended send time (little endian), class rank.
fn encode(nonce: u64, e: &Event) -> [u8; 25] {
    let mut b = [0u8; 25];
    b[..8].copy_from_slice(&nonce.to_le_bytes());
    b[8..16].copy_from_slice(&e.seq.to_le_bytes());
    b[16..24].copy_from_slice(&e.intended_ns.to_le_bytes());
    b[24] = e.class.index() as u8;
    b
}

/// `(nonce, event)`; messages of another shape are malformed (counted, skipped).
fn decode(b: &[u8]) -> Result<(u64, Event), CodecError> {
    if b.len() != 25 {
        return Err(CodecError::invalid(format!(
            "expected 25 bytes, got {}",
            b.len()
        )));
    }
    let word = |i: usize| {
        let mut w = [0u8; 8];
        if let Some(s) = b.get(i..i + 8) {
            w.copy_from_slice(s);
        }
        u64::from_le_bytes(w)
    };
    let class = b.get(24).copied().unwrap_or(0);
    if class as usize >= CLASSES {
        return Err(CodecError::invalid(format!(
            "class rank {class} out of range"
        )));
    }
    Ok((
        word(0),
        Event {
            seq: word(8),
            class: Priority::rank(class),
            intended_ns: word(16),
        },
    ))
}

/// The cluster a feed talks to: the embedded one (kept alive here) or the given brokers.
struct Cluster {
    _embedded: Option<EmbeddedKafka>,
    /// `host:port,...`.
    pub brokers: String,
}

/// Connects to the feed's brokers, or starts an embedded cluster with the topic.
fn connect(feed: &KafkaFeed) -> Result<Cluster, Box<dyn std::error::Error>> {
    match &feed.brokers {
        Some(b) => Ok(Cluster {
            _embedded: None,
            brokers: b.clone(),
        }),
        None => {
            let k = EmbeddedKafka::start(1).map_err(err)?;
            k.create_topic(&feed.topic, feed.partitions).map_err(err)?;
            Ok(Cluster {
                brokers: k.brokers(),
                _embedded: Some(k),
            })
        }
    }
}

/// The job's source: a consumer group of `feed.workers` members reading this run's events.
fn source(
    p: &Pipeline,
    feed: &KafkaFeed,
    brokers: &str,
    nonce: u64,
    stats: Arc<KafkaSourceStats>,
) -> Result<Stream<Event>, Box<dyn std::error::Error>> {
    let mut scfg = KafkaSourceConfig::new(
        KafkaConfig::new(brokers, format!("sluice-{}", feed.topic))?
            .set("auto.offset.reset", "earliest")?,
        &[&feed.topic],
    );
    scfg.batch_size = 256;
    Ok(p.kafka_source(
        "topic",
        feed.workers.max(1),
        scfg,
        sluice_connectors::kafka::codec::payload(decode),
        stats,
    )
    .filter("this-run", move |(n, _): &(u64, Event)| *n == nonce)
    .map("event", |(_, e): (u64, Event)| e))
}

/// Waits until the group holds every partition (a first join takes seconds on a real broker).
fn wait_assigned(
    stats: &KafkaSourceStats,
    feed: &KafkaFeed,
    timeout: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    // Every member must have had its assignment (a member joining after the first would
    // rebalance the group mid-run), and together they hold every partition.
    let deadline = Instant::now() + timeout;
    while stats.assigned.load(Ordering::Relaxed) < feed.partitions.max(1) as u64
        || stats.rebalances.load(Ordering::Relaxed) < feed.workers.max(1) as u64
    {
        if Instant::now() > deadline {
            let why = stats
                .error
                .lock()
                .as_ref()
                .map_or(String::new(), |e| format!(" (last error: {e})"));
            return Err(format!(
                "the consumer group got {} of the {} partitions of `{}` within {} s{why}; does the topic exist with that many partitions?",
                stats.assigned.load(Ordering::Relaxed),
                feed.partitions,
                feed.topic,
                timeout.as_secs()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The open-loop producer writing the schedule to the topic.
struct Producing {
    /// Messages handed to the producer so far.
    pub produced: Arc<AtomicU64>,
    /// Set when the producer could not write (the run fails).
    pub failed: Arc<AtomicBool>,
    /// Set when the producer is done (all sent and flushed, or failed).
    pub done: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Producing {
    /// Waits for the producer thread.
    pub fn join(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Starts producing `schedule` to `topic` from now; record `k` carries
/// `offset_ns + time_of(k)` as its intended time.
fn produce(
    brokers: &str,
    topic: &str,
    schedule: Arc<Schedule>,
    cumulative: [f64; CLASSES],
    offset_ns: u64,
    nonce: u64,
) -> Result<Producing, Box<dyn std::error::Error>> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(err)?;
    let produced = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let (p2, f2, d2, topic) = (
        produced.clone(),
        failed.clone(),
        done.clone(),
        topic.to_string(),
    );
    let epoch = Instant::now();
    let handle = std::thread::Builder::new()
        .name("feed-producer".into())
        .spawn(move || {
            let total = schedule.total();
            let mut k = 0u64;
            'outer: while k < total {
                let due = (schedule.due_by(epoch.elapsed().as_secs_f64()) as u64 + 1).min(total);
                while k < due {
                    let e = Event {
                        seq: k,
                        class: class_of(k, &cumulative),
                        intended_ns: offset_ns + (schedule.time_of(k) * 1e9) as u64,
                    };
                    let payload = encode(nonce, &e);
                    let key = k.to_le_bytes();
                    let rec = BaseRecord::to(&topic).key(&key[..]).payload(&payload[..]);
                    if send(&producer, rec, Duration::from_secs(10)).is_err() {
                        f2.store(true, Ordering::Relaxed);
                        break 'outer;
                    }
                    k += 1;
                    p2.store(k, Ordering::Relaxed);
                }
                producer.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_millis(1));
            }
            if producer.flush(Duration::from_secs(30)).is_err() {
                f2.store(true, Ordering::Relaxed);
            }
            d2.store(true, Ordering::Relaxed);
        })?;
    Ok(Producing {
        produced,
        failed,
        done,
        handle: Some(handle),
    })
}

/// A scenario's Kafka feed while it runs: the cluster, the consumer group's counters and,
/// once started, the open-loop producer. `run` sees only this.
pub(super) struct KafkaRun {
    cluster: Cluster,
    stats: Arc<KafkaSourceStats>,
    producing: Option<Producing>,
}

impl KafkaRun {
    /// Connects to the feed's brokers, or starts an embedded cluster with the topic.
    pub fn connect(feed: &KafkaFeed) -> Result<Self, Box<dyn std::error::Error>> {
        Ok(KafkaRun {
            cluster: connect(feed)?,
            stats: Arc::new(KafkaSourceStats::default()),
            producing: None,
        })
    }

    /// The job's source: the consumer group reading this run's events.
    pub fn source(
        &self,
        p: &Pipeline,
        feed: &KafkaFeed,
        nonce: u64,
    ) -> Result<Stream<Event>, Box<dyn std::error::Error>> {
        source(p, feed, &self.cluster.brokers, nonce, self.stats.clone())
    }

    /// Waits until the group holds every partition, then starts producing the schedule.
    pub fn start(
        &mut self,
        feed: &KafkaFeed,
        schedule: Arc<Schedule>,
        cumulative: [f64; CLASSES],
        offset_ns: u64,
        nonce: u64,
    ) -> Result<(), Box<dyn std::error::Error>> {
        wait_assigned(&self.stats, feed, Duration::from_secs(60))?;
        self.producing = Some(produce(
            &self.cluster.brokers,
            &feed.topic,
            schedule,
            cumulative,
            offset_ns,
            nonce,
        )?);
        Ok(())
    }

    /// Messages produced so far (none before `start`).
    pub fn produced(&self) -> Option<u64> {
        self.producing
            .as_ref()
            .map(|p| p.produced.load(Ordering::Relaxed))
    }

    /// Whether the producer is done (every message sent and flushed, or it failed).
    pub fn producer_done(&self) -> bool {
        self.producing
            .as_ref()
            .is_some_and(|p| p.done.load(Ordering::Relaxed))
    }

    /// Waits for the producer and returns how many messages it wrote.
    ///
    /// # Errors
    /// When it could not write them all.
    pub fn finish(&mut self) -> Result<u64, Box<dyn std::error::Error>> {
        let Some(p) = self.producing.as_mut() else {
            return Ok(0);
        };
        p.join();
        if p.failed.load(Ordering::Relaxed) {
            return Err("the producer could not write the records to Kafka".into());
        }
        Ok(p.produced.load(Ordering::Relaxed))
    }
}
