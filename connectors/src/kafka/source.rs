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
//!   header and are counted; they never stop the job.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ConnectorError;
use crossbeam_channel::{bounded, Receiver, SendTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sluice_engine::{Ack, AckOutcome, AckToken, Source, SourceError, SourceStatus};

use super::config::KafkaConfig;

pub use super::codec::Decoder;
use super::codec::Incoming;

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
    /// End the stream once no message arrived for this long after the first one, for reading
    /// a finite topic to its end. (A source that never receives a message does not end by
    /// itself: stop the job.)
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
    /// Malformed messages sent to the dead-letter path.
    pub dead_lettered: AtomicU64,
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

/// Offset ranges of one batch, per (topic, partition).
type Ranges = Vec<(String, i32, i64, i64)>;

struct AckMsg {
    ranges: Ranges,
    outcome: AckOutcome,
    records: u64,
}

#[derive(Default)]
struct Tracker {
    /// (topic, partition) -> outstanding ranges start -> end (inclusive).
    outstanding: HashMap<(String, i32), BTreeMap<i64, i64>>,
    /// (topic, partition) -> one past the highest offset polled.
    next: HashMap<(String, i32), i64>,
    /// Ranges whose ack failed: never stored past.
    failed: HashMap<(String, i32), i64>,
}

impl Tracker {
    fn polled(&mut self, tp: (String, i32), first: i64, last: i64) {
        self.outstanding
            .entry(tp.clone())
            .or_default()
            .insert(first, last);
        let n = self.next.entry(tp).or_insert(last + 1);
        *n = (*n).max(last + 1);
    }

    fn ack(&mut self, m: &AckMsg) {
        for (t, p, first, _) in &m.ranges {
            let tp = (t.clone(), *p);
            if m.outcome == AckOutcome::Failed {
                let f = self.failed.entry(tp).or_insert(*first);
                *f = (*f).min(*first);
            } else if let Some(o) = self.outstanding.get_mut(&tp) {
                o.remove(first);
            }
        }
    }

    /// The offset to store for a partition: the oldest outstanding (or failed) offset, or one
    /// past everything polled.
    fn committable(&self, tp: &(String, i32)) -> Option<i64> {
        let next = *self.next.get(tp)?;
        let oldest = self
            .outstanding
            .get(tp)
            .and_then(|o| o.keys().next().copied())
            .unwrap_or(next);
        Some(match self.failed.get(tp) {
            Some(f) => oldest.min(*f),
            None => oldest,
        })
    }

    /// A range handed back unprocessed (taken out of the prefetch on a revoke): it is no
    /// longer waited for, and the stored offset never passes it.
    fn returned(&mut self, t: &str, p: i32, first: i64) {
        let tp = (t.to_string(), p);
        if let Some(o) = self.outstanding.get_mut(&tp) {
            o.remove(&first);
        }
        let f = self.failed.entry(tp).or_insert(first);
        *f = (*f).min(first);
    }

    fn forget(&mut self, tp: &(String, i32)) {
        self.outstanding.remove(tp);
        self.next.remove(tp);
        self.failed.remove(tp);
    }
}

struct Ctx<T> {
    tracker: Arc<Mutex<Tracker>>,
    /// The ready channel's receiving side: on a revoke, batches of revoked partitions that
    /// the graph has not taken yet are taken back.
    ready: Receiver<Ready<T>>,
    /// Its sending side, to put back batches that also hold partitions still assigned
    /// (taken away when the poller ends, so the channel then disconnects).
    ready_back: Mutex<Option<Sender<Ready<T>>>>,
    /// The poller's held batch, parked here while it polls (only when it has one), so a
    /// revoke can take it back too.
    held: Mutex<Option<Ready<T>>>,
    /// Set by a revoke: the poller drops its partial batch of those partitions.
    revoked: Mutex<Option<Vec<(String, i32)>>>,
    revoke_seen: AtomicBool,
    acks: Receiver<AckMsg>,
    stats: Arc<KafkaSourceStats>,
    revoke_wait: Duration,
    /// Partitions this instance holds (`stats.assigned` sums over instances sharing it).
    assigned_here: AtomicU64,
}

impl<T: Send + 'static> ClientContext for Ctx<T> {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        super::config::log(level, fac, log_message);
    }
}

fn drain_acks<T>(ctx: &Ctx<T>) {
    let mut t = ctx.tracker.lock();
    while let Ok(m) = ctx.acks.try_recv() {
        t.ack(&m);
        if m.outcome == AckOutcome::Done {
            ctx.stats.acked.fetch_add(m.records, Ordering::Relaxed);
        } else {
            ctx.stats.failed_acks.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn store_all<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tracker: &Tracker,
    only: Option<&[(String, i32)]>,
    stats: &KafkaSourceStats,
) {
    // `store_offsets` stores exactly the offsets given: the next offset to consume.
    // (`store_offset` stores `offset + 1`, librdkafka's legacy convention: using it here
    // committed one past what was processed.)
    let mut tpl = TopicPartitionList::new();
    for tp in tracker.next.keys() {
        if only.is_some_and(|o| !o.contains(tp)) {
            continue;
        }
        if let Some(off) = tracker.committable(tp) {
            let _ = tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(off));
        }
    }
    if tpl.count() > 0 {
        let mut done = stats.done_below.lock();
        for e in tpl.elements() {
            if let Offset::Offset(off) = e.offset() {
                let d = done
                    .entry((e.topic().to_string(), e.partition()))
                    .or_insert(0);
                *d = (*d).max(off);
            }
        }
    }
    if tpl.count() > 0 {
        // Storing offsets of a partition no longer assigned fails harmlessly.
        let _ = consumer.store_offsets(&tpl);
    }
}

impl<T: Send + 'static> ConsumerContext for Ctx<T> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            self.stats.rebalances.fetch_add(1, Ordering::Relaxed);
        }
        if let Rebalance::Revoke(tpl) = rebalance {
            let revoked: Vec<(String, i32)> = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            // Batches of revoked partitions still in the prefetch were never handed to the
            // graph: take them back (whoever gets the partitions re-reads them from the
            // committed offset) instead of delivering them as well, which would duplicate
            // everything prefetched (measured: 23,616 duplicates of 40,000 after a 10 s
            // broker outage, with 8 batches of 4096 prefetched).
            let only_revoked = |b: &Ready<T>| {
                b.ranges
                    .iter()
                    .all(|(t, p, _, _)| revoked.iter().any(|(rt, rp)| rt == t && rp == p))
            };
            let mut returned = 0u64;
            {
                let mut t = self.tracker.lock();
                let mut give_back = |b: Ready<T>, t: &mut Tracker| {
                    returned += b.records.len() as u64;
                    for (topic, p, first, _) in &b.ranges {
                        t.returned(topic, *p, *first);
                    }
                };
                let mut keep = Vec::new();
                while let Ok(b) = self.ready.try_recv() {
                    if only_revoked(&b) {
                        give_back(b, &mut t);
                    } else {
                        keep.push(b);
                    }
                }
                let mut held = self.held.lock();
                if let Some(b) = held.take_if(|b| only_revoked(b)) {
                    give_back(b, &mut t);
                }
                // Batches with partitions still assigned (incremental rebalances) go back in
                // order; the channel has room, its only sender is this thread.
                if let Some(tx) = self.ready_back.lock().as_ref() {
                    for b in keep {
                        if let Err(e) = tx.try_send(b) {
                            // Cannot happen (drained above); keep it rather than lose it.
                            let b = e.into_inner();
                            match held.as_mut() {
                                Some(h) => {
                                    h.records.extend(b.records);
                                    h.ranges.extend(b.ranges);
                                }
                                None => *held = Some(b),
                            }
                        }
                    }
                }
            }
            self.stats.returned.fetch_add(returned, Ordering::Relaxed);
            *self.revoked.lock() = Some(revoked.clone());
            self.revoke_seen.store(true, Ordering::Release);
            // Wait (bounded) for the revoked partitions' in-flight records to end.
            let deadline = Instant::now() + self.revoke_wait;
            loop {
                drain_acks(self);
                let busy = {
                    let t = self.tracker.lock();
                    revoked
                        .iter()
                        .any(|tp| t.outstanding.get(tp).is_some_and(|o| !o.is_empty()))
                };
                if !busy || Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let mut t = self.tracker.lock();
            store_all(consumer, &t, Some(&revoked), &self.stats);
            let _ = consumer.commit_consumer_state(CommitMode::Sync);
            for tp in &revoked {
                t.forget(tp);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        let n = consumer.assignment().map(|a| a.count()).unwrap_or(0) as u64;
        let before = self.assigned_here.swap(n, Ordering::Relaxed);
        if n >= before {
            self.stats.assigned.fetch_add(n - before, Ordering::Relaxed);
        } else {
            self.stats.assigned.fetch_sub(before - n, Ordering::Relaxed);
        }
    }
}

struct Ready<T> {
    records: Vec<T>,
    ranges: Ranges,
}

/// A Kafka source instance (give one per parallel instance; they join the same group).
pub struct KafkaSource<T> {
    rx: Receiver<Ready<T>>,
    ack_tx: Sender<AckMsg>,
    pending: Option<Ack>,
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
        let dlq: Option<(BaseProducer, String)> = match &cfg.dead_letter_topic {
            Some(t) => Some((
                cfg.kafka.client_config(&[]).create().map_err(|e| {
                    ConnectorError::kafka("cannot create the dead-letter producer", e)
                })?,
                t.clone(),
            )),
            None => None,
        };
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

#[allow(clippy::too_many_arguments)]
fn poller<T: Send + 'static>(
    consumer: BaseConsumer<Ctx<T>>,
    cfg: KafkaSourceConfig,
    decode: Decoder<T>,
    tx: Sender<Ready<T>>,
    acks: Receiver<AckMsg>,
    tracker: Arc<Mutex<Tracker>>,
    stats: Arc<KafkaSourceStats>,
    stop: Arc<AtomicBool>,
    dlq: Option<(BaseProducer, String)>,
) {
    let mut held: Option<Ready<T>> = None;
    let mut current = Ready {
        records: Vec::with_capacity(cfg.batch_size),
        ranges: Vec::new(),
    };
    let mut paused_at: Option<Instant> = None;
    let mut blocked_since: Option<Instant> = None;
    // Idleness (for `end_when_idle`) counts only while this member holds partitions, is not
    // paused and has nothing waiting: time spent in a rebalance, paused, or blocked on the
    // graph is not a quiet topic (counting it ended a member that was revoked mid-stream).
    let mut seen_msg = false;
    let mut idle_since: Option<Instant> = None;
    let mut emitted = 0u64;
    // Acks are applied as they come; offsets are stored when acks arrived, at most every
    // 10 ms (storing walks every partition and crosses into librdkafka: once per message it
    // capped the source at a few thousand messages per second).
    let mut last_store = Instant::now();
    let mut unstored = false;
    let mut ctx_drain = |stats: &KafkaSourceStats, force: bool| {
        if acks.is_empty() && !unstored {
            return;
        }
        let mut t = tracker.lock();
        while let Ok(m) = acks.try_recv() {
            t.ack(&m);
            unstored = true;
            if m.outcome == AckOutcome::Done {
                stats.acked.fetch_add(m.records, Ordering::Relaxed);
            } else {
                stats.failed_acks.fetch_add(1, Ordering::Relaxed);
            }
        }
        if unstored && (force || last_store.elapsed() >= Duration::from_millis(10)) {
            store_all(&consumer, &t, None, stats);
            last_store = Instant::now();
            unstored = false;
        }
    };
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        ctx_drain(&stats, false);
        // Hand over what is ready; hold it while the channel is full.
        if let Some(r) = held.take() {
            match tx.try_send(r) {
                Ok(()) => blocked_since = None,
                Err(TrySendError::Full(r)) => {
                    held = Some(r);
                    blocked_since.get_or_insert_with(Instant::now);
                }
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
        // A short stall: wait for room without polling (librdkafka's bounded queue holds
        // what it fetches meanwhile).
        if let (Some(since), None) = (blocked_since, paused_at) {
            let left = cfg.pause_after.saturating_sub(since.elapsed());
            if let Some(r) = held.take_if(|_| !left.is_zero()) {
                match tx.send_timeout(r, left.min(Duration::from_millis(20))) {
                    Ok(()) => blocked_since = None,
                    Err(SendTimeoutError::Timeout(r)) => held = Some(r),
                    Err(SendTimeoutError::Disconnected(_)) => break,
                }
                continue;
            }
        }
        let waiting = tx.len() + usize::from(held.is_some());
        let stalled = blocked_since.is_some_and(|t| t.elapsed() >= cfg.pause_after);
        match paused_at {
            None if stalled && waiting >= cfg.prefetch_batches => {
                if let Ok(a) = consumer.assignment() {
                    if consumer.pause(&a).is_ok() {
                        paused_at = Some(Instant::now());
                        stats.paused.store(true, Ordering::Relaxed);
                        stats.pauses.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Some(at) if waiting <= cfg.resume_below && at.elapsed() >= cfg.min_pause => {
                if let Ok(a) = consumer.assignment() {
                    if consumer.resume(&a).is_ok() {
                        paused_at = None;
                        stats.paused.store(false, Ordering::Relaxed);
                        stats.resumes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            _ => {}
        }
        if cfg.max_records.is_some_and(|m| emitted >= m) && held.is_none() {
            break;
        }
        let timeout = if paused_at.is_some() || held.is_some() {
            Duration::from_millis(20)
        } else {
            Duration::from_millis(5)
        };
        // A revoke during this poll may take the held batch back.
        let parked = held.is_some();
        if parked {
            *consumer.context().held.lock() = held.take();
        }
        let polled = consumer.poll(timeout);
        if parked {
            held = consumer.context().held.lock().take();
            if held.is_none() {
                blocked_since = None;
            }
        }
        match polled {
            Some(Ok(m)) => {
                seen_msg = true;
                idle_since = None;
                stats.polled.fetch_add(1, Ordering::Relaxed);
                let (topic, partition, offset) = (m.topic().to_string(), m.partition(), m.offset());
                match decode(&Incoming::from_message(&m)) {
                    Ok(r) => {
                        current.records.push(r);
                        emitted += 1;
                        match current.ranges.last_mut() {
                            Some((t, p, _, last)) if *t == topic && *p == partition => {
                                *last = offset
                            }
                            _ => current.ranges.push((topic, partition, offset, offset)),
                        }
                    }
                    Err(reason) => {
                        dead_letter(&dlq, &m, &reason.to_string());
                        stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        // Nothing downstream will ack it: it ended here.
                        let mut t = tracker.lock();
                        t.polled((topic.clone(), partition), offset, offset);
                        t.ack(&AckMsg {
                            ranges: vec![(topic, partition, offset, offset)],
                            outcome: AckOutcome::Done,
                            records: 0,
                        });
                    }
                }
                let limit_hit = cfg.max_records.is_some_and(|mx| emitted >= mx);
                if current.records.len() >= cfg.batch_size || limit_hit {
                    flush(&mut current, &mut held, &tracker, cfg.batch_size);
                }
            }
            Some(Err(e)) => {
                // Transient client errors (broker down, rebalancing) are retried by
                // librdkafka; record the latest for the report.
                stats.errors.fetch_add(1, Ordering::Relaxed);
                *stats.error.lock() = Some(e.to_string());
            }
            None => {
                if consumer
                    .context()
                    .revoke_seen
                    .swap(false, Ordering::Acquire)
                {
                    let revoked = consumer.context().revoked.lock().take().unwrap_or_default();
                    // The partial batch was never handed over: drop it if it only holds
                    // revoked partitions (re-read by their next owner).
                    let only_revoked = current
                        .ranges
                        .iter()
                        .all(|(t, p, _, _)| revoked.iter().any(|(rt, rp)| rt == t && rp == p));
                    if only_revoked {
                        stats
                            .returned
                            .fetch_add(current.records.len() as u64, Ordering::Relaxed);
                        current.records.clear();
                        current.ranges.clear();
                    }
                    // A new assignment starts unpaused.
                    if paused_at.take().is_some() {
                        stats.paused.store(false, Ordering::Relaxed);
                    }
                }
                if !current.records.is_empty() && held.is_none() {
                    flush(&mut current, &mut held, &tracker, cfg.batch_size);
                }
                if let (Some(idle), true) = (cfg.end_when_idle, seen_msg) {
                    let quiet = paused_at.is_none()
                        && held.is_none()
                        && current.records.is_empty()
                        && tx.is_empty()
                        && consumer.context().assigned_here.load(Ordering::Relaxed) > 0;
                    if !quiet {
                        idle_since = None;
                    } else if idle_since.get_or_insert_with(Instant::now).elapsed() >= idle {
                        break;
                    }
                }
            }
        }
    }
    // Hand over what remains, then wait for outstanding acks briefly and commit.
    if !current.records.is_empty() && held.is_none() {
        flush(&mut current, &mut held, &tracker, cfg.batch_size);
    }
    if !stop.load(Ordering::Relaxed) {
        if let Some(r) = held.take() {
            let _ = tx.send_timeout(r, Duration::from_secs(5));
        }
    }
    consumer.context().ready_back.lock().take();
    drop(tx);
    stats.ended.store(true, Ordering::Relaxed);
    // Records still in the graph end soon (delivered, or failed if the job aborts): wait a
    // bounded time for their acks so their offsets are stored before leaving.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        ctx_drain(&stats, false);
        let busy = tracker.lock().outstanding.values().any(|o| !o.is_empty());
        if !busy {
            break;
        }
        consumer.poll(Duration::from_millis(10));
    }
    ctx_drain(&stats, true);
    let _ = consumer.commit_consumer_state(CommitMode::Sync);
}

fn flush<T>(
    current: &mut Ready<T>,
    held: &mut Option<Ready<T>>,
    tracker: &Mutex<Tracker>,
    batch_size: usize,
) {
    let ready = std::mem::replace(
        current,
        Ready {
            records: Vec::with_capacity(batch_size),
            ranges: Vec::new(),
        },
    );
    let mut t = tracker.lock();
    for (topic, p, first, last) in &ready.ranges {
        t.polled((topic.clone(), *p), *first, *last);
    }
    *held = Some(ready);
}

fn dead_letter<M: Message>(dlq: &Option<(BaseProducer, String)>, m: &M, reason: &str) {
    let Some((producer, topic)) = dlq else { return };
    let headers = OwnedHeaders::new().insert(Header {
        key: "sluice-error",
        value: Some(reason),
    });
    let mut record = BaseRecord::<[u8], [u8]>::to(topic)
        .payload(m.payload().unwrap_or_default())
        .headers(headers);
    if let Some(k) = m.key() {
        record = record.key(k);
    }
    // The dead-letter topic is best effort and bounded: try a few times, then count only.
    for _ in 0..50 {
        match producer.send(record) {
            Ok(()) => break,
            Err((_, r)) => {
                record = r;
                producer.poll(Duration::from_millis(10));
            }
        }
    }
    let _ = producer.flush(Duration::from_secs(5));
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
}

impl<T> Drop for KafkaSource<T> {
    fn drop(&mut self) {
        // A poller that ended by itself is waiting for the last acks; otherwise (the job
        // stopped the source) tell it to stop. Either way it stores what completed, commits
        // and leaves the group.
        if !self.stats.ended.load(Ordering::Relaxed) {
            self.stop.store(true, Ordering::Relaxed);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
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
