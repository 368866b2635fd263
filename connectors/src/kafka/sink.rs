//! The Kafka sink: a producer whose delivery reports are the acknowledgement.
//!
//! A batch counts as delivered only when the broker has acknowledged every message of it:
//! `write` produces the whole batch, then serves delivery reports until none of the batch is
//! outstanding. A full local queue (`QueueFull`) is backpressure: the sink serves delivery
//! reports and tries again, it never drops. In-flight messages are bounded by
//! `queue.buffering.max.messages`. A message that still fails after librdkafka's own retries
//! (`message.timeout.ms` expired) either goes to the dead-letter path (counted in the ledger)
//! or fails the job, as configured; never silently.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use sluice_engine::{Sink, SinkError};

use super::config::KafkaConfig;

/// Turns a record into an optional key and a payload.
pub type Encoder<T> = Arc<dyn Fn(&T) -> (Option<Vec<u8>>, Vec<u8>) + Send + Sync>;

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
    /// A sink to `topic`: idempotent, 100k messages in flight, 30 s timeout, failing the job
    /// on expiry.
    pub fn new(kafka: KafkaConfig, topic: &str) -> Self {
        KafkaSinkConfig {
            kafka,
            topic: topic.to_string(),
            idempotent: true,
            max_in_flight: 100_000,
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
}

struct Ctx {
    outstanding: AtomicU64,
    errors: Mutex<Vec<(Vec<u8>, String)>>,
    stats: Arc<KafkaSinkStats>,
}

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.stats.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, m)) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                self.errors
                    .lock()
                    .push((m.payload().unwrap_or_default().to_vec(), e.to_string()));
            }
        }
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A Kafka sink instance.
pub struct KafkaSink<T> {
    producer: BaseProducer<Ctx>,
    cfg: KafkaSinkConfig,
    encode: Encoder<T>,
    dead: Option<DeadLetterFn>,
    dead_count: u64,
}

impl<T> std::fmt::Debug for KafkaSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.cfg.topic)
            .finish_non_exhaustive()
    }
}

impl<T> KafkaSink<T> {
    /// Creates the producer.
    ///
    /// # Errors
    /// When the client cannot be created.
    pub fn new(
        cfg: KafkaSinkConfig,
        encode: Encoder<T>,
        dead: Option<DeadLetterFn>,
        stats: Arc<KafkaSinkStats>,
    ) -> Result<Self, String> {
        let timeout = cfg.message_timeout.as_millis().to_string();
        let in_flight = cfg.max_in_flight.max(1).to_string();
        let producer: BaseProducer<Ctx> = cfg
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
                outstanding: AtomicU64::new(0),
                errors: Mutex::new(Vec::new()),
                stats,
            })
            .map_err(|e| format!("cannot create the Kafka producer: {e}"))?;
        Ok(KafkaSink {
            producer,
            cfg,
            encode,
            dead,
            dead_count: 0,
        })
    }
}

impl<T: Send + 'static> Sink<T> for KafkaSink<T> {
    fn write(&mut self, records: Vec<T>) -> Result<(), SinkError> {
        let ctx = self.producer.context();
        for r in &records {
            let (key, payload) = (self.encode)(r);
            let mut rec = BaseRecord::<Vec<u8>, Vec<u8>>::to(&self.cfg.topic).payload(&payload);
            if let Some(k) = &key {
                rec = rec.key(k);
            }
            ctx.outstanding.fetch_add(1, Ordering::AcqRel);
            loop {
                match self.producer.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // Backpressure: serve delivery reports until there is room.
                        ctx.stats.queue_full.fetch_add(1, Ordering::Relaxed);
                        self.producer.poll(Duration::from_millis(10));
                        rec = back;
                    }
                    Err((e, _)) => {
                        ctx.outstanding.fetch_sub(1, Ordering::AcqRel);
                        return Err(SinkError::new(format!(
                            "cannot produce to {}: {e}",
                            self.cfg.topic
                        )));
                    }
                }
            }
        }
        // The batch is delivered when the broker acknowledged all of it.
        let deadline = Instant::now() + self.cfg.message_timeout + Duration::from_secs(10);
        while ctx.outstanding.load(Ordering::Acquire) > 0 {
            if Instant::now() >= deadline {
                return Err(SinkError::new(format!(
                    "{} messages to {} never got a delivery report",
                    ctx.outstanding.load(Ordering::Acquire),
                    self.cfg.topic
                )));
            }
            self.producer.poll(Duration::from_millis(5));
        }
        let errors = std::mem::take(&mut *ctx.errors.lock());
        if !errors.is_empty() {
            match self.cfg.on_expired {
                OnExpired::FailJob => {
                    return Err(SinkError::new(format!(
                        "{} messages to {} failed: {}",
                        errors.len(),
                        self.cfg.topic,
                        errors[0].1
                    )))
                }
                OnExpired::DeadLetter => {
                    self.dead_count += errors.len() as u64;
                    if let Some(d) = &self.dead {
                        for (payload, reason) in errors {
                            d(payload, reason);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn take_dead_lettered(&mut self) -> u64 {
        std::mem::take(&mut self.dead_count)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.producer
            .flush(self.cfg.message_timeout)
            .map_err(|e| SinkError::new(format!("flushing {}: {e}", self.cfg.topic)))
    }
}
