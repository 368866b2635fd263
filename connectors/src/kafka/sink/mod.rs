//! The Kafka sink: a producer whose delivery reports are the acknowledgement.
//!
//! A batch's acknowledgement completes only when the broker has acknowledged every message of
//! it: `write_with_acks` registers the batch's acks and produces it; the producer's own
//! thread serves delivery reports and releases a batch's acks the moment its last message is
//! reported, in any order, whether or not the graph writes again. So the source's offsets
//! move only past durable messages, the sink keeps producing (it does not wait for each
//! batch's round trip: waiting held a passthrough to 0.59x of a hand-written loop on Tansu),
//! and an idle job's last batches are acknowledged too. On an error or an abort the held
//! acks are failed, never released. A full local queue (`QueueFull`) is backpressure: the
//! sink waits for room, it never drops. In-flight messages are bounded by
//! `queue.buffering.max.messages`. A message that still fails after librdkafka's own retries
//! (`message.timeout.ms` expired) either goes to the dead-letter path (counted in the ledger)
//! or fails the job (its batch's acks fail: never committed), as configured; never silently.

//!
//! # Files
//! - `delivery`: the producer context: held batches and their release on delivery reports.
//! - `routes`: which topic each priority class goes to.

mod delivery;
mod routes;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use sluice_engine::{Ack, ErrorKind, Sink, SinkError, CLASSES};

use crate::ConnectorError;

use super::config::KafkaConfig;
use delivery::{Ctx, HeldBatch};
pub use routes::{ClassOf, ClassRoutes};

/// Turns a record into an optional key and a payload.
pub type Encoder<T> = Arc<dyn Fn(&T) -> (Option<Vec<u8>>, Vec<u8>) + Send + Sync>;

/// Turns a record into an optional key and a payload, or says why it cannot: the record is
/// then dead-lettered (counted, and handed to the sink's dead-letter function with an empty
/// payload and the reason), never produced half-encoded.
pub type TryEncoder<T> =
    Arc<dyn Fn(&T) -> Result<(Option<Vec<u8>>, Vec<u8>), String> + Send + Sync>;

/// Rows one message may carry when records count many rows (the delivery report carries
/// the count in the low bits of its opaque value, beside the batch id).
pub const MAX_MESSAGE_ROWS: usize = (1 << ROW_BITS) - 1;
const ROW_BITS: u32 = 24;

/// Receives a message that failed for good: its payload and the error.
pub type DeadLetterFn = Arc<dyn Fn(Vec<u8>, String) + Send + Sync>;

/// What the sink does with a message the broker never acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExpired {
    /// Count it as dead-lettered (and hand it to the dead-letter callback).
    DeadLetter,
    /// Fail the job.
    FailJob,
}

/// How a Kafka sink produces.
#[derive(Clone)]
pub struct KafkaSinkConfig {
    /// Brokers and properties.
    pub kafka: KafkaConfig,
    /// The topic.
    pub topic: String,
    /// Idempotent producer (no duplicates from producer retries).
    pub idempotent: bool,
    /// Messages the local queue may hold (the in-flight bound).
    pub max_in_flight: usize,
    /// After how long a message counts as failed.
    pub message_timeout: Duration,
    /// What happens then.
    pub on_expired: OnExpired,
}

impl std::fmt::Debug for KafkaSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSinkConfig")
            .field("kafka", &self.kafka)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaSinkConfig {
    /// A sink to `topic`: idempotent, 16,384 messages in flight, 30 s timeout, failing the job
    /// on expiry.
    pub fn new(kafka: KafkaConfig, topic: &str) -> Self {
        KafkaSinkConfig {
            kafka,
            topic: topic.to_string(),
            idempotent: true,
            // The window a crash or a lost assignment can replay (measured: a 10 s broker
            // outage with 100k allowed queued 23,616 messages, all read again after the
            // group reassigned the partitions); 16k still covers ~50 ms at 300k msg/s.
            max_in_flight: 16_384,
            message_timeout: Duration::from_secs(30),
            on_expired: OnExpired::FailJob,
        }
    }
}

/// Live counters of a Kafka sink.
#[derive(Debug, Default)]
pub struct KafkaSinkStats {
    /// Messages the broker acknowledged.
    pub acked: AtomicU64,
    /// Messages that failed for good.
    pub failed: AtomicU64,
    /// Times the local queue was full (backpressure).
    pub queue_full: AtomicU64,
    /// Messages produced and not yet reported (delivered or failed), now, counting the one
    /// being offered to a full queue.
    pub in_flight: AtomicU64,
    /// Produce requests librdkafka retried (transient broker errors, timeouts), summed over
    /// brokers. Updated from librdkafka's statistics: only when `statistics.interval.ms` is
    /// set.
    pub request_retries: AtomicU64,
    /// Produce request errors librdkafka saw (each retried or failed), from the statistics.
    pub request_errors: AtomicU64,
    /// The longest a batch waited from produce to its last delivery report, in milliseconds
    /// (retries inside librdkafka, a broker away, a slow network all show here).
    pub max_ack_ms: AtomicU64,
    /// Messages produced per topic (with [`ClassRoutes`]; counted per batch).
    pub routed: Mutex<std::collections::BTreeMap<String, u64>>,
}

/// A Kafka sink instance.
pub struct KafkaSink<T> {
    producer: ThreadedProducer<Ctx>,
    cfg: KafkaSinkConfig,
    encode: TryEncoder<T>,
    dead: Option<DeadLetterFn>,
    /// Records (rows) dead-lettered and not yet reported.
    dead_count: u64,
    rows: sluice_engine::Rows<T>,
    /// Topics: the sink's own first, then the routes'.
    topics: Vec<String>,
    /// The class of a record and each class's topic index, when routing.
    route: Option<(ClassOf<T>, [usize; CLASSES])>,
    /// Messages produced per topic in this batch.
    per_topic: Vec<u64>,
    next_batch: u64,
}

impl<T> std::fmt::Debug for KafkaSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.cfg.topic)
            .finish_non_exhaustive()
    }
}

impl<T: 'static> KafkaSink<T> {
    /// Creates the producer.
    ///
    /// # Errors
    /// When the client cannot be created.
    pub fn new(
        cfg: KafkaSinkConfig,
        encode: Encoder<T>,
        dead: Option<DeadLetterFn>,
        stats: Arc<KafkaSinkStats>,
    ) -> Result<Self, ConnectorError> {
        let encode: TryEncoder<T> = Arc::new(move |r: &T| Ok(encode(r)));
        Self::with_try_encoder(cfg, encode, dead, stats)
    }

    /// Creates the producer, with an encoder that may refuse a record (it is then
    /// dead-lettered).
    ///
    /// # Errors
    /// When the client cannot be created.
    pub fn with_try_encoder(
        cfg: KafkaSinkConfig,
        encode: TryEncoder<T>,
        dead: Option<DeadLetterFn>,
        stats: Arc<KafkaSinkStats>,
    ) -> Result<Self, ConnectorError> {
        let rows = sluice_engine::rows::rows_of::<T>();
        let timeout = cfg.message_timeout.as_millis().to_string();
        let in_flight = cfg.max_in_flight.max(1).to_string();
        let producer: ThreadedProducer<Ctx> = cfg
            .kafka
            .client_config(&[
                (
                    "enable.idempotence",
                    if cfg.idempotent { "true" } else { "false" },
                ),
                ("message.timeout.ms", timeout.as_str()),
                ("queue.buffering.max.messages", in_flight.as_str()),
                ("linger.ms", "5"),
                ("compression.type", "lz4"),
            ])
            .create_with_context(Ctx {
                held: Mutex::new(HashMap::new()),
                errors: Mutex::new(Vec::new()),
                on_expired: cfg.on_expired,
                stats,
                row_bits: rows.is_counted().then_some(ROW_BITS),
            })
            .map_err(|e| ConnectorError::kafka("cannot create the Kafka producer", e))?;
        Ok(KafkaSink {
            producer,
            topics: vec![cfg.topic.clone()],
            route: None,
            per_topic: vec![0],
            cfg,
            encode,
            dead,
            dead_count: 0,
            rows,
            next_batch: 0,
        })
    }
}

impl<T> KafkaSink<T> {
    /// Routes records by class: `class_of` classes each record, `routes` picks its topic.
    pub fn with_routes(mut self, class_of: ClassOf<T>, routes: &ClassRoutes) -> Self {
        let (topics, table) = routes.table(&self.cfg.topic);
        self.per_topic = vec![0; topics.len()];
        self.topics = topics;
        self.route = Some((class_of, table));
        self
    }

    /// Produces `records` as batch `id`.
    fn produce(&mut self, records: &[T], id: u64) -> Result<(), SinkError> {
        let result = self.produce_inner(records, id);
        if self.route.is_some() {
            let mut routed = self.producer.context().stats.routed.lock();
            for (i, n) in self.per_topic.iter_mut().enumerate() {
                if *n > 0 {
                    *routed.entry(self.topics[i].clone()).or_default() += *n;
                    *n = 0;
                }
            }
        }
        result
    }

    fn produce_inner(&mut self, records: &[T], id: u64) -> Result<(), SinkError> {
        let ctx = self.producer.context();
        let counted = self.rows.is_counted();
        for (i, r) in records.iter().enumerate() {
            let rows = self.rows.of(r);
            let encoded = if counted && rows > MAX_MESSAGE_ROWS {
                Err(format!(
                    "a record of {rows} rows: one message carries at most {MAX_MESSAGE_ROWS}"
                ))
            } else {
                (self.encode)(r)
            };
            let (key, payload) = match encoded {
                Ok(m) => m,
                Err(reason) => {
                    // Never produced: dead-lettered, which ends it (its batch still completes).
                    ctx.stats.failed.fetch_add(1, Ordering::Relaxed);
                    self.dead_count += rows as u64;
                    if let Some(d) = &self.dead {
                        d(Vec::new(), format!("cannot encode: {reason}"));
                    }
                    ctx.ended(id, 1, false);
                    continue;
                }
            };
            // With counted records the report carries the message's rows beside the batch.
            let opaque = if counted {
                ((id as usize) << ROW_BITS) | rows
            } else {
                id as usize
            };
            let t = match &self.route {
                Some((class_of, table)) => table[class_of(r).index()],
                None => 0,
            };
            self.per_topic[t] += 1;
            let topic = &self.topics[t];
            let mut rec = BaseRecord::<Vec<u8>, Vec<u8>, usize>::with_opaque_to(topic, opaque)
                .payload(&payload);
            if let Some(k) = &key {
                rec = rec.key(k);
            }
            // Counted before the send: its delivery report may come before `send` returns.
            ctx.stats.in_flight.fetch_add(1, Ordering::AcqRel);
            loop {
                match self.producer.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // Backpressure: the producer's thread serves delivery reports; wait
                        // for room, never drop.
                        ctx.stats.queue_full.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(1));
                        rec = back;
                    }
                    Err((
                        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                        _,
                    )) => {
                        // This message can never be produced (over `message.max.bytes`):
                        // dead-letter it with the reason and go on, rather than fail every
                        // rerun on it. Dead-lettered is an end: its batch still completes.
                        ctx.stats.in_flight.fetch_sub(1, Ordering::AcqRel);
                        ctx.stats.failed.fetch_add(1, Ordering::Relaxed);
                        self.dead_count += rows as u64;
                        if let Some(d) = &self.dead {
                            let reason = format!(
                                "message of {} bytes is larger than the producer's message.max.bytes",
                                payload.len()
                            );
                            d(payload.clone(), reason);
                        }
                        ctx.ended(id, 1, false);
                        break;
                    }
                    Err((e, _)) => {
                        ctx.stats.in_flight.fetch_sub(1, Ordering::AcqRel);
                        // This message and the rest of the batch were never produced.
                        ctx.ended(id, (records.len() - i) as u64, true);
                        return Err(SinkError::new(
                            kind_of(&e),
                            ConnectorError::kafka(format!("cannot produce to {topic}"), e),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Handles messages that failed for good: the job fails, or they are dead-lettered.
    fn reap(&mut self) -> Result<(), SinkError> {
        let errors = std::mem::take(&mut *self.producer.context().errors.lock());
        if errors.is_empty() {
            return Ok(());
        }
        match self.cfg.on_expired {
            OnExpired::FailJob => {
                self.fail_held();
                Err(SinkError::permanent(format!(
                    "{} messages to {} failed: {}",
                    errors.len(),
                    self.cfg.topic,
                    errors[0].1
                )))
            }
            OnExpired::DeadLetter => {
                self.dead_count += errors.iter().map(|e| e.2).sum::<u64>();
                if let Some(d) = &self.dead {
                    for (payload, reason, _) in errors {
                        d(payload, reason);
                    }
                }
                Ok(())
            }
        }
    }

    /// Fails every held ack: those records were not (known to be) delivered.
    fn fail_held(&mut self) {
        self.producer.context().fail_all();
    }

    fn batches_in_flight(&self) -> usize {
        self.producer.context().held.lock().len()
    }
}

impl<T> Drop for KafkaSink<T> {
    fn drop(&mut self) {
        // An aborted job drops the sink with batches in flight: never let their acks complete.
        self.fail_held();
    }
}

impl<T: Send + 'static> Sink<T> for KafkaSink<T> {
    fn write(&mut self, records: Vec<T>) -> Result<(), SinkError> {
        // Without acks to hold: produce, then wait until the broker acknowledged the batch.
        let mut none = Vec::new();
        self.write_with_acks(records, &mut none)?;
        let deadline = Instant::now() + self.cfg.message_timeout + Duration::from_secs(10);
        while self.batches_in_flight() > 0
            || self
                .producer
                .context()
                .stats
                .in_flight
                .load(Ordering::Acquire)
                > 0
        {
            if Instant::now() >= deadline {
                return Err(SinkError::retryable(format!(
                    "{} messages to {} never got a delivery report",
                    self.producer
                        .context()
                        .stats
                        .in_flight
                        .load(Ordering::Acquire),
                    self.cfg.topic
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
            self.reap()?;
        }
        Ok(())
    }

    fn write_with_acks(&mut self, records: Vec<T>, acks: &mut Vec<Ack>) -> Result<(), SinkError> {
        if records.is_empty() {
            return self.reap();
        }
        let id = self.next_batch;
        self.next_batch += 1;
        // Held until every message of the batch is reported; registered before the first
        // message is produced, since reports come on the producer's thread.
        self.producer.context().held.lock().insert(
            id,
            HeldBatch {
                remaining: records.len() as u64,
                acks: std::mem::take(acks),
                produced: Instant::now(),
                failed: false,
            },
        );
        if let Err(e) = self.produce(&records, id) {
            self.fail_held();
            return Err(e);
        }
        self.reap()
    }

    fn take_dead_lettered(&mut self) -> u64 {
        std::mem::take(&mut self.dead_count)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        let flushed = self.producer.flush(self.cfg.message_timeout);
        self.reap()?;
        if let Err(e) = flushed {
            self.fail_held();
            return Err(SinkError::new(
                kind_of(&e),
                ConnectorError::kafka(format!("flushing {}", self.cfg.topic), e),
            ));
        }
        let n = self.batches_in_flight();
        if n > 0 {
            self.fail_held();
            return Err(SinkError::retryable(format!(
                "{n} batches to {} were never acknowledged",
                self.cfg.topic
            )));
        }
        Ok(())
    }
}

/// Whether a Kafka error may clear by itself (librdkafka's own classification).
fn kind_of(e: &KafkaError) -> ErrorKind {
    match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::QueueFull
            | RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::NotEnoughReplicas
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotLeaderForPartition,
        ) => ErrorKind::Retryable,
        _ => ErrorKind::Permanent,
    }
}
