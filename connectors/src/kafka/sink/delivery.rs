//! The producer's context: batches in flight and their acknowledgements, released when the
//! broker has reported every message of a batch (on the producer's own thread), failed when
//! a message failed for good and the sink fails the job.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::ClientContext;
use sluice_engine::Ack;

use super::{KafkaSinkStats, OnExpired};

/// A batch whose messages are in the producer: its acknowledgements, held until the broker
/// reported every message.
pub(super) struct HeldBatch {
    pub(super) remaining: u64,
    pub(super) acks: Vec<Ack>,
    pub(super) produced: Instant,
    pub(super) failed: bool,
}

pub(super) struct Ctx {
    /// Batches in flight, by id. Delivery reports (served by the producer's own thread)
    /// release a batch's acks the moment its last message is reported, whether or not the
    /// graph writes again (a sink that only released them on its next write left an idle
    /// job's last batches unacknowledged, their offsets uncommitted).
    pub(super) held: Mutex<HashMap<u64, HeldBatch>>,
    /// Messages that failed for good: payload, reason, records (rows) they held.
    pub(super) errors: Mutex<Vec<(Vec<u8>, String, u64)>>,
    pub(super) on_expired: OnExpired,
    pub(super) stats: Arc<KafkaSinkStats>,
    /// With records of many rows: the opaque value is `batch << bits | rows`.
    pub(super) row_bits: Option<u32>,
}

impl Ctx {
    /// `n` messages of batch `id` ended (`failed`: not delivered); releases or fails its
    /// acks when it has no message left.
    pub(super) fn ended(&self, id: u64, n: u64, failed: bool) {
        let done = {
            let mut held = self.held.lock();
            let Some(b) = held.get_mut(&id) else { return };
            b.remaining = b.remaining.saturating_sub(n);
            b.failed |= failed;
            if b.remaining > 0 {
                return;
            }
            held.remove(&id)
        };
        if let Some(b) = done {
            self.stats
                .max_ack_ms
                .fetch_max(b.produced.elapsed().as_millis() as u64, Ordering::Relaxed);
            // Dead-lettered is an end: those acks complete as usual. Failing the job: never
            // let the source commit past them.
            if b.failed && self.on_expired == OnExpired::FailJob {
                for a in &b.acks {
                    a.fail();
                }
            }
        }
    }

    pub(super) fn fail_all(&self) {
        for (_, b) in self.held.lock().drain() {
            for a in &b.acks {
                a.fail();
            }
        }
    }
}

impl ClientContext for Ctx {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::kafka::config::log(level, fac, log_message);
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        let (retries, errors) = statistics
            .brokers
            .values()
            .fold((0u64, 0u64), |(r, e), b| (r + b.txretries, e + b.txerrs));
        self.stats.request_retries.store(retries, Ordering::Relaxed);
        self.stats.request_errors.store(errors, Ordering::Relaxed);
    }
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let (batch, rows) = match self.row_bits {
            Some(bits) => (opaque >> bits, (opaque & ((1 << bits) - 1)) as u64),
            None => (opaque, 1),
        };
        let failed = match result {
            Ok(_) => {
                self.stats.acked.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err((e, m)) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                self.errors.lock().push((
                    m.payload().unwrap_or_default().to_vec(),
                    e.to_string(),
                    rows,
                ));
                true
            }
        };
        self.stats.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.ended(batch as u64, 1, failed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use sluice_engine::{AckOutcome, AckToken};

    use super::*;

    fn ctx(on_expired: OnExpired) -> Ctx {
        Ctx {
            held: Mutex::new(HashMap::new()),
            errors: Mutex::new(Vec::new()),
            on_expired,
            stats: Arc::new(KafkaSinkStats::default()),
            row_bits: None,
        }
    }

    /// An ack that counts how it completed: (done, failed).
    fn counted() -> (Ack, Arc<[AtomicU64; 2]>) {
        let c: Arc<[AtomicU64; 2]> = Arc::default();
        let c2 = c.clone();
        let ack = AckToken::new(move |o| {
            let i = usize::from(o == AckOutcome::Failed);
            c2[i].fetch_add(1, Ordering::Relaxed);
        });
        (ack, c)
    }

    fn hold(ctx: &Ctx, id: u64, messages: u64, ack: Ack) {
        ctx.held.lock().insert(
            id,
            HeldBatch {
                remaining: messages,
                acks: vec![ack],
                produced: Instant::now(),
                failed: false,
            },
        );
    }

    #[test]
    fn a_batch_is_acknowledged_when_its_last_message_is_reported() {
        let ctx = ctx(OnExpired::FailJob);
        let (ack, c) = counted();
        hold(&ctx, 1, 3, ack);
        ctx.ended(1, 1, false);
        ctx.ended(1, 1, false);
        assert_eq!(
            c[0].load(Ordering::Relaxed),
            0,
            "one message still in flight"
        );
        ctx.ended(1, 1, false);
        assert_eq!(
            (c[0].load(Ordering::Relaxed), c[1].load(Ordering::Relaxed)),
            (1, 0)
        );
        assert!(ctx.held.lock().is_empty());
    }

    #[test]
    fn a_failed_message_fails_its_batch_unless_it_is_dead_lettered() {
        let failing = ctx(OnExpired::FailJob);
        let (ack, c) = counted();
        hold(&failing, 7, 2, ack);
        failing.ended(7, 1, true);
        failing.ended(7, 1, false);
        assert_eq!(
            (c[0].load(Ordering::Relaxed), c[1].load(Ordering::Relaxed)),
            (0, 1)
        );

        // Dead-lettered is an end: the batch's acks complete, the source may commit.
        let dead = ctx(OnExpired::DeadLetter);
        let (ack, c) = counted();
        hold(&dead, 7, 2, ack);
        dead.ended(7, 2, true);
        assert_eq!(
            (c[0].load(Ordering::Relaxed), c[1].load(Ordering::Relaxed)),
            (1, 0)
        );
    }

    #[test]
    fn an_abort_fails_every_held_batch() {
        let ctx = ctx(OnExpired::FailJob);
        let (a, c1) = counted();
        let (b, c2) = counted();
        hold(&ctx, 1, 5, a);
        hold(&ctx, 2, 5, b);
        ctx.fail_all();
        assert_eq!(
            c1[1].load(Ordering::Relaxed) + c2[1].load(Ordering::Relaxed),
            2
        );
        assert!(ctx.held.lock().is_empty());
    }
}
