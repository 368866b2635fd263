//! The Kafka source: a consumer-group member that pauses its partitions under
//! backpressure and stores offsets only for records that reached an end.
//!
//! ```text
//!   poller thread (owns the consumer)              source task (Sluice runtime)
//!   ┌─────────────────────────────────┐  bounded  ┌─────────────────────────────┐
//!   │ poll ─► decode ─► batch ────────┼─channel──►│ poll_batch: take a batch,   │
//!   │ channel above high: pause all   │ (batches) │ attach its ack              │
//!   │ below low (after min pause):    │           └──────────────┬──────────────┘
//!   │   resume                        │◄── acks (offset ranges) ─┘ when every derived
//!   │ store contiguous acked offsets  │                            record has ended
//!   └─────────────────────────────────┘
//! ```
//!
//! - **Backpressure.** The runtime polls the source only when the graph accepted its last
//!   batch; while it does not, the channel fills. A short stall (under `pause_after`) is
//!   absorbed by librdkafka's own bounded fetch queue: the poller waits for room without
//!   polling. A longer one makes the poller *pause* every assigned partition, then keep
//!   polling (so it stays in its group: paused polls return no messages but serve
//!   heartbeats and rebalances). It resumes when the channel has drained below the low
//!   watermark and the pause has lasted at least `min_pause`. Why not pause at once: a pause
//!   drops librdkafka's prefetched data and, measured on the mock cluster, the first message
//!   after a resume arrives ~0.9 s later; pausing on every full channel held a consumer
//!   that could do 10k msg/s to 2.3k msg/s.
//! - **Memory.** The channel holds at most `prefetch_batches` batches; librdkafka's own
//!   queue is bounded by `queued.max.messages.kbytes` and `fetch.max.bytes`.
//! - **Offsets.** `enable.auto.offset.store=false`: an offset is stored (and then
//!   auto-committed) only when every record up to it ended. Per partition the poller tracks
//!   outstanding offset ranges; the stored offset is the start of the oldest outstanding
//!   range. A failed ack (abort, crash) never advances it: those records are replayed.
//! - **Rebalance.** On revoke the poller waits (bounded by `revoke_wait`) for the acks of the
//!   revoked partitions, stores what completed and commits synchronously; on assign it starts
//!   from the committed offsets.
//! - **Malformed messages** go to the dead-letter topic with the reason in a `sluice-error`
//!   header, asynchronously (`dead_letter`): the offset is stored only once the dead letter
//!   is durable, and each counts in the ledger as emitted and dead-lettered. They never stop
//!   the job.

//!
//! # Files
//! - `offsets`: the offset tracker, the core of at-least-once: which offset may be stored.
//! - `rebalance`: the consumer context: assignment counters and what a revoke does.
//! - `poller`: the thread that owns the consumer: poll, decode, batch, pause and resume.
//! - `dead_letter`: malformed messages to the dead-letter topic, acked when durable.

mod dead_letter;
mod offsets;
mod poller;
mod rebalance;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use sluice_engine::{Ack, AckToken, Source, SourceError, SourceStatus};

use super::config::KafkaConfig;
use crate::ConnectorError;
use dead_letter::DeadLetters;
use offsets::{AckMsg, Ready, Tracker};
use poller::poller;
use rebalance::Ctx;

pub use super::codec::Decoder;

/// How a Kafka source consumes.
#[derive(Clone)]
pub struct KafkaSourceConfig {
    /// Brokers, group and properties.
    pub kafka: KafkaConfig,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// Records per batch handed to the graph.
    pub batch_size: usize,
    /// Batches the poller may hold ready; at this many it pauses the partitions.
    pub prefetch_batches: usize,
    /// It resumes when at most this many batches are waiting.
    pub resume_below: usize,
    /// Shortest pause.
    pub min_pause: Duration,
    /// How long the graph may refuse batches before the partitions are paused (shorter stalls
    /// are absorbed by librdkafka's bounded queue; keep it well under `max.poll.interval.ms`).
    pub pause_after: Duration,
    /// How long a revoke waits for in-flight acks of the revoked partitions.
    pub revoke_wait: Duration,
    /// Where malformed messages go (none: they are counted and skipped).
    pub dead_letter_topic: Option<String>,
    /// End the stream after this many records (demos and tests; none: run until stopped).
    pub max_records: Option<u64>,
    /// End the stream once no message arrived for this long while this member held
    /// partitions, for reading a finite topic to its end. Time without partitions (joining
    /// the group, a rebalance), paused, or blocked on the graph does not count. A member
    /// that restarts on a topic its group has already read to the end ends after this long
    /// too (before, it waited for a first message forever).
    pub end_when_idle: Option<Duration>,
}

impl std::fmt::Debug for KafkaSourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSourceConfig")
            .field("kafka", &self.kafka)
            .field("topics", &self.topics)
            .field("prefetch_batches", &self.prefetch_batches)
            .finish_non_exhaustive()
    }
}

impl KafkaSourceConfig {
    /// A source for `topics` with defaults: batches of 4096, 8 prefetched, resume at 2,
    /// pause after the graph refused batches for 500 ms, pauses of at least 100 ms.
    pub fn new(kafka: KafkaConfig, topics: &[&str]) -> Self {
        KafkaSourceConfig {
            kafka,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            // Measured with `sluice bench kafka` (passthrough, 64-byte messages): 1024 gave
            // 0.69x of a hand-written loop on the mock cluster and 0.3-0.5x on Tansu, 4096
            // 0.99x and 1.23x. A partial batch is handed over as soon as a poll comes back
            // empty, so a larger batch costs no latency when the topic is quiet.
            batch_size: 4096,
            prefetch_batches: 8,
            resume_below: 2,
            min_pause: Duration::from_millis(100),
            pause_after: Duration::from_millis(500),
            revoke_wait: Duration::from_secs(2),
            dead_letter_topic: None,
            max_records: None,
            end_when_idle: None,
        }
    }
}

/// Live counters of a Kafka source.
#[derive(Debug, Default)]
pub struct KafkaSourceStats {
    /// Messages polled.
    pub polled: AtomicU64,
    /// Malformed messages sent to the dead-letter path (and acknowledged by its topic).
    pub dead_lettered: AtomicU64,
    /// Dead letters that could not be written (their offsets are not stored: read again
    /// after a restart).
    pub dead_letter_failures: AtomicU64,
    /// Times the partitions were paused, and resumed.
    pub pauses: AtomicU64,
    /// Times the partitions were resumed.
    pub resumes: AtomicU64,
    /// True while the partitions are paused.
    pub paused: AtomicBool,
    /// Assignments received (the first join counts one; a consumer that stays in its group
    /// sees no more).
    pub rebalances: AtomicU64,
    /// Partitions assigned now, over all instances sharing these stats.
    pub assigned: AtomicU64,
    /// Records whose offsets were stored (acknowledged end to end).
    pub acked: AtomicU64,
    /// Acks that failed (their records will be replayed).
    pub failed_acks: AtomicU64,
    /// Prefetched records of revoked partitions taken back before the graph saw them (their
    /// new owner re-reads them from the committed offset).
    pub returned: AtomicU64,
    /// Set by the poller when it ended (error or end of input).
    pub ended: AtomicBool,
    /// Client errors the consumer reported (broker down, transport failures); librdkafka
    /// retries them itself.
    pub errors: AtomicU64,
    /// The latest of those errors.
    pub error: Mutex<Option<String>>,
    /// Per (topic, partition): every offset below this one has ended (delivered, dropped or
    /// dead-lettered), by any instance sharing these stats. Reaching a partition's high
    /// watermark means all of it was processed at least once.
    pub done_below: Mutex<BTreeMap<(String, i32), i64>>,
}

/// A Kafka source instance (give one per parallel instance; they join the same group).
pub struct KafkaSource<T> {
    rx: Receiver<Ready<T>>,
    ack_tx: Sender<AckMsg>,
    pending: Option<Ack>,
    /// Dead letters made durable, not yet taken into the ledger.
    dead: Arc<AtomicU64>,
    stats: Arc<KafkaSourceStats>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<T> std::fmt::Debug for KafkaSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource").finish_non_exhaustive()
    }
}

impl<T: Send + 'static> KafkaSource<T> {
    /// Creates the consumer, subscribes and starts its poller thread.
    ///
    /// # Errors
    /// When the client cannot be created or the subscription fails.
    pub fn start(
        cfg: KafkaSourceConfig,
        decode: Decoder<T>,
        stats: Arc<KafkaSourceStats>,
    ) -> Result<Self, ConnectorError> {
        let (tx, rx) = bounded::<Ready<T>>(cfg.prefetch_batches.max(1));
        let (ack_tx, ack_rx) = crossbeam_channel::unbounded::<AckMsg>();
        let tracker = Arc::new(Mutex::new(Tracker::default()));
        let ctx = Ctx {
            ready: rx.clone(),
            ready_back: Mutex::new(Some(tx.clone())),
            held: Mutex::new(None),
            revoked: Mutex::new(None),
            revoke_seen: AtomicBool::new(false),
            tracker: tracker.clone(),
            acks: ack_rx.clone(),
            stats: stats.clone(),
            revoke_wait: cfg.revoke_wait,
            assigned_here: AtomicU64::new(0),
        };
        let consumer: BaseConsumer<Ctx<T>> = cfg
            .kafka
            .client_config(&[
                ("group.id", cfg.kafka.group.as_str()),
                ("enable.auto.commit", "true"),
                ("auto.commit.interval.ms", "1000"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                ("enable.partition.eof", "false"),
                ("queued.max.messages.kbytes", "16384"),
                ("fetch.max.bytes", "8388608"),
                ("session.timeout.ms", "10000"),
                ("max.poll.interval.ms", "60000"),
            ])
            .create_with_context(ctx)
            .map_err(|e| ConnectorError::kafka("cannot create the Kafka consumer", e))?;
        let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| ConnectorError::kafka(format!("cannot subscribe to {topics:?}"), e))?;
        let dead = Arc::new(AtomicU64::new(0));
        let dlq = DeadLetters::new(
            cfg.dead_letter_topic
                .as_ref()
                .map(|t| (cfg.kafka.client_config(&[]), t.clone())),
            ack_tx.clone(),
            dead.clone(),
            stats.clone(),
        )
        .map_err(|e| ConnectorError::kafka("cannot create the dead-letter producer", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stats.clone();
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("kafka-poller".into())
            .spawn(move || poller(consumer, cfg, decode, tx, ack_rx, tracker, s2, stop2, dlq))
            .map_err(|e| ConnectorError::io("cannot start the Kafka poller thread", e))?;
        Ok(KafkaSource {
            rx,
            ack_tx,
            pending: None,
            dead,
            stats,
            stop,
            thread: Some(thread),
        })
    }

    /// The source's counters.
    pub fn stats(&self) -> Arc<KafkaSourceStats> {
        self.stats.clone()
    }
}

impl<T: Send + 'static> Source<T> for KafkaSource<T> {
    fn poll_batch(&mut self, out: &mut Vec<T>, _max: usize) -> Result<SourceStatus, SourceError> {
        match self.rx.recv_timeout(Duration::from_millis(2)) {
            Ok(ready) => {
                let records = ready.records.len() as u64;
                out.extend(ready.records);
                let ack_tx = self.ack_tx.clone();
                let ranges = ready.ranges;
                self.pending = Some(AckToken::new(move |outcome| {
                    let _ = ack_tx.send(AckMsg {
                        ranges,
                        outcome,
                        records,
                    });
                }));
                Ok(SourceStatus::More)
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Ok(SourceStatus::Idle),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Ok(SourceStatus::Done),
        }
    }

    fn take_ack(&mut self) -> Option<Ack> {
        self.pending.take()
    }

    fn take_dead_lettered(&mut self) -> u64 {
        self.dead.swap(0, Ordering::Relaxed)
    }

    fn close(&mut self) {
        self.shut_down();
    }
}

impl<T> KafkaSource<T> {
    /// Ends the poller: a poller that ended by itself is waiting for the last acks;
    /// otherwise (the job stopped the source) it is told to stop. Either way it stores what
    /// completed, commits and leaves the group. Idempotent.
    fn shut_down(&mut self) {
        if !self.stats.ended.load(Ordering::Relaxed) {
            self.stop.store(true, Ordering::Relaxed);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl<T> Drop for KafkaSource<T> {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// The offset that was stored for each partition, for tests and reports.
pub fn committed_offsets<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topics: &[&str],
) -> Vec<(String, i32, i64)> {
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        if let Ok(md) = consumer.fetch_metadata(Some(t), Duration::from_secs(5)) {
            for topic in md.topics() {
                for p in topic.partitions() {
                    tpl.add_partition(t, p.id());
                }
            }
        }
    }
    consumer
        .committed_offsets(tpl, Duration::from_secs(5))
        .map(|l| {
            l.elements()
                .iter()
                .map(|e| {
                    let off = match e.offset() {
                        Offset::Offset(o) => o,
                        _ => -1,
                    };
                    (e.topic().to_string(), e.partition(), off)
                })
                .collect()
        })
        .unwrap_or_default()
}
