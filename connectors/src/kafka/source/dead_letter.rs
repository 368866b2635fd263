//! The source's dead-letter path: a message that does not decode is written to the
//! dead-letter topic with the reason in a `sluice-error` header, asynchronously, and its
//! offset is stored only once the broker acknowledged the dead letter. A dead letter counts
//! in the ledger (emitted and dead-lettered) when it is durable; one that cannot be written
//! fails its offset, so the message is read again after a restart, never skipped.
//!
//! Without a dead-letter topic a malformed message is counted as dead-lettered at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use sluice_engine::AckOutcome;

use super::offsets::AckMsg;
use super::KafkaSourceStats;

/// How long a dead letter may wait for room in the producer's queue before it counts as not
/// written (its offset then fails: the message is read again after a restart).
const QUEUE_PATIENCE: Duration = Duration::from_secs(30);

/// Where a dead letter came from, carried through the producer to its delivery report.
type Origin = Box<(String, i32, i64)>;

/// The producer's context: turns delivery reports into acks of the source offsets.
pub(super) struct DlqCtx {
    acks: Sender<AckMsg>,
    durable: Arc<AtomicU64>,
    stats: Arc<KafkaSourceStats>,
}

impl ClientContext for DlqCtx {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::kafka::config::log(level, fac, log_message);
    }
}

impl ProducerContext for DlqCtx {
    type DeliveryOpaque = Origin;

    fn delivery(&self, result: &DeliveryResult<'_>, origin: Origin) {
        let (topic, partition, offset) = *origin;
        let outcome = match result {
            Ok(_) => {
                self.durable.fetch_add(1, Ordering::Relaxed);
                self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                AckOutcome::Done
            }
            Err(_) => {
                self.stats
                    .dead_letter_failures
                    .fetch_add(1, Ordering::Relaxed);
                AckOutcome::Failed
            }
        };
        let _ = self.acks.send(AckMsg {
            ranges: vec![(topic, partition, offset, offset)],
            outcome,
            records: 0,
        });
    }
}

/// The dead-letter path of one source instance.
pub(super) struct DeadLetters {
    producer: Option<(ThreadedProducer<DlqCtx>, String)>,
    acks: Sender<AckMsg>,
    /// Dead letters made durable (or counted, without a topic), for the ledger.
    durable: Arc<AtomicU64>,
    stats: Arc<KafkaSourceStats>,
}

impl DeadLetters {
    /// A path to `topic` (none: count only), acking offsets on `acks`.
    pub(super) fn new(
        producer: Option<(rdkafka::ClientConfig, String)>,
        acks: Sender<AckMsg>,
        durable: Arc<AtomicU64>,
        stats: Arc<KafkaSourceStats>,
    ) -> Result<Self, KafkaError> {
        let producer = match producer {
            Some((config, topic)) => {
                let ctx = DlqCtx {
                    acks: acks.clone(),
                    durable: durable.clone(),
                    stats: stats.clone(),
                };
                Some((config.create_with_context(ctx)?, topic))
            }
            None => None,
        };
        Ok(DeadLetters {
            producer,
            acks,
            durable,
            stats,
        })
    }

    /// Sends `m` to the dead-letter path with `reason`. Its offset (already tracked by the
    /// caller) is acked when the dead letter is durable, failed when it cannot be written.
    pub(super) fn send<M: Message>(&self, m: &M, reason: &str) {
        let origin = || Box::new((m.topic().to_string(), m.partition(), m.offset()));
        let Some((producer, topic)) = &self.producer else {
            self.durable.fetch_add(1, Ordering::Relaxed);
            self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            self.ack(*origin(), AckOutcome::Done);
            return;
        };
        let headers = OwnedHeaders::new().insert(Header {
            key: "sluice-error",
            value: Some(reason),
        });
        let mut record = BaseRecord::<[u8], [u8], Origin>::with_opaque_to(topic, origin())
            .payload(m.payload().unwrap_or_default())
            .headers(headers);
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        let deadline = Instant::now() + QUEUE_PATIENCE;
        loop {
            match producer.send(record) {
                Ok(()) => return,
                // A full queue is backpressure: the producer's thread is draining it.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if Instant::now() < deadline =>
                {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((_, r)) => {
                    self.stats
                        .dead_letter_failures
                        .fetch_add(1, Ordering::Relaxed);
                    self.ack(*r.delivery_opaque, AckOutcome::Failed);
                    return;
                }
            }
        }
    }

    fn ack(&self, (topic, partition, offset): (String, i32, i64), outcome: AckOutcome) {
        let _ = self.acks.send(AckMsg {
            ranges: vec![(topic, partition, offset, offset)],
            outcome,
            records: 0,
        });
    }

    /// Waits (bounded) for every dead letter in flight to be reported.
    pub(super) fn flush(&self) {
        if let Some((p, _)) = &self.producer {
            let _ = p.flush(Duration::from_secs(10));
        }
    }
}
