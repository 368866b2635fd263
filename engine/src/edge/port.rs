//! One port of an inbox: its queue, credit, policy and counters. Everything here runs under
//! the inbox lock and never blocks; the blocking lives in `channel.rs`.
//!
//! # Overload
//! [`Port::offer`] applies the port's [`EdgePolicy`] to an incoming batch. The fast path (the
//! batch fits and no watermark is crossed) is one comparison. Under pressure the policy may
//! refuse part of the batch, evict queued records, or ask the sender to wait for the rest.
//! Every refused or evicted record is counted in `drops[reason][class]`, and one in
//! `tap_every` of them is handed to the drop tap (outside the lock, by the caller).
//!
//! Evicting from a queued batch shrinks it; its weight becomes `min(len, capacity)` and the
//! difference returns to `available`, so `available + sum(weights) == capacity` holds after
//! every operation.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::budget::{ByteBound, Sizer};
use super::lanes::{Entry, Lanes};
use super::spill::{DeferHealth, SpillError, SpillLog};
use crate::batch::Batch;
use crate::policy::{
    DeferConfig, DropReason, EdgePolicy, SampleConfig, ServiceOrder, Watermarks, WhenLogFull,
    REASONS,
};
use crate::priority::{Classifier, Priority, CLASSES};
use crate::rows::Rows;

/// A record an edge dropped, as handed to a drop tap.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped<T> {
    /// The record.
    pub record: T,
    /// Its class.
    pub class: Priority,
    /// Why it was dropped.
    pub reason: DropReason,
}

/// A callback that sees a sample of what an edge drops.
pub type DropTapFn<T> = Arc<dyn Fn(Dropped<T>) + Send + Sync>;

/// Everything that configures one port.
pub struct PortConfig<T> {
    /// Capacity in records (credits); at least 1.
    pub capacity: usize,
    /// What to do when credit is short.
    pub policy: EdgePolicy,
    /// How to classify records (policies that act on classes need one).
    pub classifier: Option<Classifier<T>>,
    /// A tap that sees one in `every` dropped records.
    pub tap: Option<(u64, DropTapFn<T>)>,
    /// The defer log of a `Defer` edge.
    pub spill: Option<SpillLog<T>>,
    /// The order in which the receiver takes queued records (by class needs a classifier;
    /// without one every record is of the default class and the order is FIFO).
    pub service: ServiceOrder,
    /// Size the port in time: its capacity follows `budget x` the receiver's drain rate,
    /// between 1 record and `capacity` (see the `budget` module docs).
    pub budget: Option<std::time::Duration>,
    /// How items are counted in credit and counters: one record each, or their rows
    /// ([`crate::rows`]).
    pub rows: Rows<T>,
    /// Bound the port in bytes too: its capacity in rows follows `max_bytes` divided by the
    /// bytes per row its senders offer (measured with the type's byte hook,
    /// [`crate::count_bytes`]), between 1 and `capacity`.
    pub max_bytes: Option<usize>,
}

impl<T> PortConfig<T> {
    /// A port of `capacity` records with the `Block` policy.
    pub fn new(capacity: usize) -> Self {
        PortConfig {
            capacity,
            policy: EdgePolicy::Block,
            classifier: None,
            tap: None,
            spill: None,
            service: ServiceOrder::Fifo,
            budget: None,
            rows: Rows::ONE,
            max_bytes: None,
        }
    }
}

/// Records per class. A presence mask first (an OR reduction the compiler vectorizes), then a
/// counting pass per present class: a plain `counts[c] += 1` loop serializes on one counter
/// when a batch is mostly one class, which cost more than everything else on this path.
fn class_counts(classes: &[Priority]) -> [u32; CLASSES] {
    let mask = classes.iter().fold(0u32, |m, c| m | (1 << c.index()));
    let mut counts = [0u32; CLASSES];
    for (k, n) in counts.iter_mut().enumerate() {
        if mask & (1 << k) != 0 {
            *n = classes.iter().filter(|c| c.index() == k).count() as u32;
        }
    }
    counts
}

/// Records (rows) per class of `records`, whose classes are `classes`.
fn class_rows<T>(rows: Rows<T>, records: &[T], classes: &[Priority]) -> [u32; CLASSES] {
    if !rows.is_counted() {
        return class_counts(classes);
    }
    let mut counts = [0u32; CLASSES];
    for (r, c) in records.iter().zip(classes) {
        let n = u32::try_from(rows.of(r)).unwrap_or(u32::MAX);
        counts[c.index()] = counts[c.index()].saturating_add(n);
    }
    counts
}

/// What became of an offered batch.
pub(super) enum Offer<T> {
    /// Queued, or dropped by policy: nothing left for the sender.
    Done,
    /// Not enough credit for these records: wait, then offer them again.
    Wait(Batch<T>),
}

pub(super) struct Port<T> {
    /// How items are counted: credit, queued, sent and dropped are in records (rows).
    pub rows: Rows<T>,
    pub capacity: usize,
    pub available: usize,
    pub policy: EdgePolicy,
    pub classifier: Option<Classifier<T>>,
    pub tap: Option<(u64, DropTapFn<T>)>,
    /// Batches as accepted (the whole queue of a FIFO port; the arrival queue of a port
    /// served by class, whose older records are in `lanes`).
    pub queue: VecDeque<Entry<T>>,
    /// Per-class lanes of a port served by class.
    pub lanes: Option<Lanes<T>>,
    /// The capacity's controller on a port sized in time.
    sizer: Option<Sizer>,
    /// The bound in bytes, on a port bounded in bytes.
    bytes: Option<ByteBound>,
    pub queued_records: usize,
    pub open_senders: usize,
    pub sent_records: u64,
    pub sent_batches: u64,
    pub received_records: u64,
    pub credit_wait_ns: u64,
    pub blocked_sends: u64,
    pub max_queued_records: usize,
    /// Senders parked on this port, and the largest weight one of them waits for.
    pub waiting: usize,
    pub wanted: usize,
    pub drops: [[u64; CLASSES]; REASONS],
    pub spill: Option<SpillLog<T>>,
    /// Records written to the defer log, and read back from it.
    pub deferred: u64,
    pub replayed: u64,
    /// Records the log held when the port opened (kept if the log is later discarded).
    pub restored_at_open: u64,
    /// The log's health when it was discarded (while it is open, it reports its own).
    pub health_at_drop: DeferHealth,
    /// Replays in a row that failed with an I/O error.
    replay_failures: u32,
    sample_seen: u64,
    tap_seen: u64,
}

/// Failed replays in a row after which a defer log is given up (its records counted).
pub const REPLAY_ATTEMPTS: u32 = 3;

impl<T> Port<T> {
    pub fn new(cfg: PortConfig<T>) -> Self {
        let classifies = cfg.classifier.is_some();
        Port {
            rows: cfg.rows,
            capacity: cfg.capacity,
            available: cfg.capacity,
            policy: cfg.policy,
            classifier: cfg.classifier,
            tap: cfg.tap,
            queue: VecDeque::new(),
            lanes: if classifies {
                Lanes::for_order(cfg.service, cfg.rows)
            } else {
                None
            },
            sizer: cfg.budget.map(|b| Sizer::new(b, cfg.capacity)),
            bytes: cfg.max_bytes.map(|b| ByteBound::new(b, cfg.capacity)),
            queued_records: 0,
            open_senders: 1,
            sent_records: 0,
            sent_batches: 0,
            received_records: 0,
            credit_wait_ns: 0,
            blocked_sends: 0,
            max_queued_records: 0,
            waiting: 0,
            wanted: 0,
            drops: [[0; CLASSES]; REASONS],
            restored_at_open: cfg.spill.as_ref().map_or(0, |s| s.restored),
            health_at_drop: DeferHealth::default(),
            replay_failures: 0,
            spill: cfg.spill,
            deferred: 0,
            replayed: 0,
            sample_seen: 0,
            tap_seen: 0,
        }
    }

    /// Whether returning credit should wake this port's parked senders: as soon as the
    /// largest waiting batch fits. (Waiting for more credit, e.g. half the capacity, saved no
    /// measurable time once waiters back off before parking, and it left a stopped
    /// consumer's edge partly empty while its producer slept.)
    pub fn should_wake_senders(&self) -> bool {
        self.waiting > 0 && self.available >= self.wanted
    }

    /// True when nothing more will come out of this port: its senders are closed, its queue
    /// is empty, and its defer log is empty (or not to be replayed in this run).
    pub fn ended(&self, replay: bool) -> bool {
        self.open_senders == 0 && self.is_empty() && (!replay || self.deferred_pending() == 0)
    }

    /// True when no record is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.lanes.as_ref().is_none_or(Lanes::is_empty)
    }

    /// Every queued entry.
    pub fn entries(&self) -> impl Iterator<Item = &Entry<T>> {
        self.queue
            .iter()
            .chain(self.lanes.iter().flat_map(|l| l.entries()))
    }

    /// Moves the arrival queue into the lanes (a port served by class; no-op otherwise).
    fn sort(&mut self) {
        if let Some(lanes) = &mut self.lanes {
            if !self.queue.is_empty() {
                let classifier = &self.classifier;
                lanes.sort_in(&mut self.queue, &|r| classify_with(classifier, r));
            }
        }
    }

    /// The highest class queued, for choosing between the ports of one inbox (`None`: empty).
    /// A FIFO port's records count as the default class.
    pub fn top_class(&mut self) -> Option<usize> {
        if self.lanes.is_none() {
            return (!self.queue.is_empty()).then_some(Priority::DEFAULT.index());
        }
        self.sort();
        self.lanes.as_ref().and_then(Lanes::top)
    }

    /// Records in the defer log.
    pub fn deferred_pending(&self) -> u64 {
        self.spill.as_ref().map_or(0, SpillLog::pending)
    }

    /// Records in the defer log now, and its health.
    pub fn defer_health(&self) -> DeferHealth {
        self.spill
            .as_ref()
            .map_or(self.health_at_drop, SpillLog::health)
    }

    /// Reads the next batch of deferred records, if any. Undecodable records and records in
    /// damaged frames are counted as dropped (`DeferError`), never lost silently. A read that
    /// fails is retried on the next call; after [`REPLAY_ATTEMPTS`] in a row the rest of the
    /// log is counted as dropped and the port goes on without it.
    pub fn replay(&mut self, max: usize) -> Option<Batch<T>> {
        let log = self.spill.as_mut()?;
        if log.pending() == 0 {
            return None;
        }
        let mut bad = 0u64;
        let result = log.read_batch(max, &mut bad);
        let mut lost = 0;
        match &result {
            Ok(_) => self.replay_failures = 0,
            Err(_) => {
                self.replay_failures += 1;
                if self.replay_failures >= REPLAY_ATTEMPTS {
                    lost = log.pending();
                    let mut health = log.health();
                    health.io_errors += u64::from(self.replay_failures);
                    self.health_at_drop = health;
                    self.spill = None;
                }
            }
        }
        self.drops[DropReason::DeferError.index()][Priority::DEFAULT.index()] += bad + lost;
        let (records, created, ack) = result.ok()?;
        self.replayed += self.rows.all(&records) as u64;
        if records.is_empty() {
            return None;
        }
        let mut batch = Batch::with_created(records, created);
        // The log's cursor passes these records only once they all ended.
        batch.acks.push(ack);
        Some(batch)
    }

    /// The credit `rows` records take: clamped to the capacity, so an oversized batch (or
    /// item) passes through an empty port instead of waiting forever; at least 1.
    pub fn weight(&self, rows: usize) -> usize {
        // At least one: a batch of items without rows (empty record batches) still takes a
        // credit, so an edge cannot fill with them without bound.
        rows.max(1).min(self.capacity)
    }

    /// The credit a batch takes.
    pub fn weight_of(&self, batch: &Batch<T>) -> usize {
        self.weight(self.rows.all(&batch.records))
    }

    fn push(&mut self, mut batch: Batch<T>, weight: usize) {
        // A bound in records must bound memory: a batch holding a few records in an
        // allocation sized for many (a source that polled what was due, a filter that kept
        // a few) would keep all of it while it waits, and an edge of 10,000 records full of
        // 3-record batches held ~70 MB of 24-byte records. Such a batch is shrunk as it is
        // queued (a copy of the few records; a full batch costs one comparison).
        if batch.records.capacity() > 2 * batch.records.len() + 8 {
            batch.records.shrink_to_fit();
        }
        let n = self.rows.all(&batch.records);
        self.available -= weight;
        self.queued_records += n;
        self.sent_records += n as u64;
        self.sent_batches += 1;
        self.max_queued_records = self.max_queued_records.max(self.queued_records);
        self.queue.push_back(Entry {
            batch,
            weight,
            classes: None,
        });
    }

    /// Marks the acks of everything queued failed (the job is aborting: these records will
    /// not reach an end in this run).
    pub fn fail_queued(&self) {
        for e in self.entries() {
            e.batch.fail_acks();
        }
    }

    /// Takes the oldest queued batch and returns its credit.
    pub fn pop(&mut self) -> Option<Batch<T>> {
        let e = self.queue.pop_front()?;
        let n = self.rows.all(&e.batch.records);
        self.available += e.weight;
        self.queued_records -= n;
        self.received_records += n as u64;
        Some(e.batch)
    }

    /// Takes the oldest queued batch, merged with the batches queued behind it while the
    /// total stays within `max` records: a stage behind a split or a slow consumer gets
    /// full batches instead of many small ones. The merged batch keeps the oldest creation
    /// instant.
    ///
    /// A port served by class takes from its lanes (merging only within a lane), except when
    /// its lanes are empty and one batch is queued: that batch is taken as sent, unclassified.
    pub fn pop_coalesced(&mut self, max: usize) -> Option<Batch<T>> {
        if self
            .lanes
            .as_ref()
            .is_some_and(|l| !l.is_empty() || self.queue.len() > 1)
        {
            self.sort();
            let (batch, weight) = self.lanes.as_mut()?.pop(max)?;
            let n = self.rows.all(&batch.records);
            self.available += weight;
            self.queued_records -= n;
            self.received_records += n as u64;
            self.after_take(n);
            return Some(batch);
        }
        let mut first = self.pop()?;
        let mut n = self.rows.all(&first.records);
        while let Some(next) = self.queue.front() {
            let m = self.rows.all(&next.batch.records);
            if n + m > max {
                break;
            }
            let Some(mut b) = self.pop() else { break };
            n += m;
            first.records.append(&mut b.records);
            crate::ack::merge_acks(&mut first.acks, &b.acks);
        }
        self.after_take(n);
        Some(first)
    }

    /// On a port sized in time: measures the drain and moves the capacity toward its target.
    fn after_take(&mut self, taken: usize) {
        let Some(sizer) = &mut self.sizer else {
            return;
        };
        let still_queued = self.queued_records > 0;
        sizer.observe(Instant::now(), taken, still_queued);
        self.resize();
    }

    /// On a port bounded in bytes: a sender offers `rows` rows holding `bytes` bytes; the
    /// capacity moves toward the bound at the measured bytes per row.
    pub fn observe_bytes(&mut self, rows: usize, bytes: usize) {
        if let Some(b) = &mut self.bytes {
            b.observe(rows, bytes);
            self.resize();
        }
    }

    /// Moves the capacity toward the smallest target (time budget, byte bound), growing with
    /// new credit, shrinking only by credit that is free.
    fn resize(&mut self) {
        let target = match (&self.sizer, &self.bytes) {
            (Some(s), Some(b)) => s.target.min(b.target),
            (Some(s), None) => s.target,
            (None, Some(b)) => b.target,
            (None, None) => return,
        };
        if self.capacity > target {
            let x = self.available.min(self.capacity - target);
            self.capacity -= x;
            self.available -= x;
        } else if self.capacity < target {
            self.available += target - self.capacity;
            self.capacity = target;
        }
    }

    /// The bytes per row a port bounded in bytes measured.
    pub fn bytes_per_row(&self) -> Option<f64> {
        self.bytes.as_ref().map(ByteBound::per_row)
    }

    /// The drain rate a port sized in time measured, records per second.
    pub fn drain_rate(&self) -> Option<f64> {
        self.sizer.as_ref().map(Sizer::rate)
    }

    /// Classes of `records`, in order (all `Priority::DEFAULT` without a classifier).
    fn classify(&self, records: &[T]) -> Vec<Priority> {
        classify_with(&self.classifier, records)
    }

    /// The classes of `batch`, from the sender's cache when it still matches the batch.
    fn classes_of(&self, batch: &Batch<T>, cache: &mut Option<Vec<Priority>>) -> Vec<Priority> {
        match cache.take() {
            Some(v) if v.len() == batch.len() => v,
            _ => self.classify(&batch.records),
        }
    }

    fn record_drop(
        &mut self,
        record: T,
        class: Priority,
        reason: DropReason,
        tapped: &mut Vec<Dropped<T>>,
    ) {
        self.drops[reason.index()][class.index()] += self.rows.of(&record) as u64;
        if let Some((every, _)) = &self.tap {
            self.tap_seen += 1;
            if self.tap_seen.is_multiple_of((*every).max(1)) {
                tapped.push(Dropped {
                    record,
                    class,
                    reason,
                });
            }
        }
    }

    fn drop_all(&mut self, records: Vec<T>, reason: DropReason, tapped: &mut Vec<Dropped<T>>) {
        let classes = self.classify(&records);
        for (r, c) in records.into_iter().zip(classes) {
            self.record_drop(r, c, reason, tapped);
        }
    }

    /// Applies the policy to an incoming batch. `first` is false when the sender offers the
    /// remainder of a batch it already offered and then waited for (sampling is not
    /// repeated). `cache` keeps the batch's classes across such retries, so a waiting sender
    /// classifies its batch once.
    pub fn offer(
        &mut self,
        mut batch: Batch<T>,
        cache: &mut Option<Vec<Priority>>,
        first: bool,
        tapped: &mut Vec<Dropped<T>>,
    ) -> Offer<T> {
        if batch.is_empty() {
            return Offer::Done;
        }
        let weight = self.weight_of(&batch);
        match self.policy {
            EdgePolicy::Block | EdgePolicy::Deadline(_) => {
                if self.available >= weight {
                    self.push(batch, weight);
                    Offer::Done
                } else {
                    Offer::Wait(batch)
                }
            }
            EdgePolicy::DropNewest => {
                if self.available < weight {
                    let mut keep = self.rows.fitting(&batch.records, self.available);
                    // Items without rows still take a credit: none is left for them.
                    if self.weight(self.rows.all(&batch.records[..keep])) > self.available {
                        keep = 0;
                    }
                    let refused = batch.records.split_off(keep);
                    self.drop_all(refused, DropReason::Newest, tapped);
                }
                if !batch.is_empty() {
                    let w = self.weight_of(&batch);
                    self.push(batch, w);
                }
                Offer::Done
            }
            EdgePolicy::DropOldest => {
                let n = self.rows.all(&batch.records);
                if n > self.capacity {
                    // Keep the newest records that fit (at least the last item).
                    let tail = self
                        .rows
                        .fitting_from_back(&batch.records, self.capacity)
                        .max(1);
                    let excess = batch.len() - tail.min(batch.len());
                    let old: Vec<T> = batch.records.drain(..excess).collect();
                    self.drop_all(old, DropReason::Oldest, tapped);
                }
                let w = self.weight_of(&batch);
                self.evict_oldest(w, tapped);
                self.push(batch, w);
                Offer::Done
            }
            EdgePolicy::ShedByPriority(w) => self.offer_shed(batch, cache, &w, tapped),
            EdgePolicy::Defer(cfg) => {
                if self.available < weight && self.spill.is_some() {
                    batch = self.defer(batch, cache, cfg, tapped);
                }
                let w = self.weight_of(&batch);
                if batch.is_empty() {
                    Offer::Done
                } else if self.available >= w {
                    self.push(batch, w);
                    Offer::Done
                } else {
                    Offer::Wait(batch)
                }
            }
            EdgePolicy::Sample(cfg) => {
                if self.available >= weight {
                    self.push(batch, weight);
                    return Offer::Done;
                }
                if first {
                    batch = self.sample(batch, cfg, tapped);
                }
                let w = self.weight_of(&batch);
                if batch.is_empty() {
                    Offer::Done
                } else if self.available >= w {
                    self.push(batch, w);
                    Offer::Done
                } else {
                    Offer::Wait(batch)
                }
            }
        }
    }

    fn sample(
        &mut self,
        mut batch: Batch<T>,
        cfg: SampleConfig,
        tapped: &mut Vec<Dropped<T>>,
    ) -> Batch<T> {
        let n = u64::from(cfg.keep_one_in.max(1));
        let created = batch.created;
        let acks = std::mem::take(&mut batch.acks);
        let mut kept = Vec::with_capacity(batch.len());
        let classes = self.classify(&batch.records);
        for (r, c) in batch.records.into_iter().zip(classes) {
            if c < cfg.below {
                self.sample_seen += 1;
                if !self.sample_seen.is_multiple_of(n) {
                    self.record_drop(r, c, DropReason::Sampled, tapped);
                    continue;
                }
            }
            kept.push(r);
        }
        Batch {
            records: kept,
            created,
            acks,
        }
    }

    /// Moves the records of classes below `cfg.below` to the defer log; returns the rest (and,
    /// if the log is full and `when_full` is `Block`, the low records too, in order).
    fn defer(
        &mut self,
        mut batch: Batch<T>,
        cache: &mut Option<Vec<Priority>>,
        cfg: DeferConfig,
        tapped: &mut Vec<Dropped<T>>,
    ) -> Batch<T> {
        let created = batch.created;
        let classes = self.classes_of(&batch, cache);
        if !classes.iter().any(|c| *c < cfg.below) {
            *cache = Some(classes);
            return batch;
        }
        // Records written to the log are durable: the acks stay with what remains in memory
        // (and complete once it ends).
        let acks = std::mem::take(&mut batch.acks);
        let (mut low, mut high) = (Vec::new(), Vec::new());
        for (r, c) in batch.records.into_iter().zip(classes.iter()) {
            if *c < cfg.below {
                low.push(r);
            } else {
                high.push(r);
            }
        }
        let high_classes: Vec<Priority> = classes
            .iter()
            .copied()
            .filter(|c| *c >= cfg.below)
            .collect();
        let Some(log) = self.spill.as_mut() else {
            low.extend(high);
            return Batch {
                records: low,
                created,
                acks,
            };
        };
        match log.append(&low, created) {
            Ok(()) => {
                self.deferred += self.rows.all(&low) as u64;
                *cache = Some(high_classes);
                Batch {
                    records: high,
                    created,
                    acks,
                }
            }
            Err(SpillError::Full { .. }) if cfg.when_full == WhenLogFull::Block => {
                // Keep the original order: re-interleave by class.
                let (mut lo, mut hi) = (low.into_iter(), high.into_iter());
                let merged = classes
                    .iter()
                    .filter_map(|c| if *c < cfg.below { lo.next() } else { hi.next() })
                    .collect();
                *cache = Some(classes);
                Batch {
                    records: merged,
                    created,
                    acks,
                }
            }
            Err(e) => {
                let reason = match e {
                    SpillError::Full { .. } => DropReason::DeferFull,
                    _ => DropReason::DeferError,
                };
                let low_classes = classes.iter().copied().filter(|c| *c < cfg.below);
                for (r, c) in low.into_iter().zip(low_classes) {
                    self.record_drop(r, c, reason, tapped);
                }
                *cache = Some(high_classes);
                Batch {
                    records: high,
                    created,
                    acks,
                }
            }
        }
    }

    /// Evicts the oldest queued records until `needed` credits are available (on a port served
    /// by class: the oldest of the lowest class queued).
    fn evict_oldest(&mut self, needed: usize, tapped: &mut Vec<Dropped<T>>) {
        if self.lanes.is_some() {
            self.sort();
            let mut old = Vec::new();
            while self.available < needed {
                let Some(lanes) = self.lanes.as_mut() else {
                    break;
                };
                let Some(class) = lanes.bottom() else { break };
                let before = old.len();
                let freed = lanes.evict_front(class, needed - self.available, &mut old);
                self.available += freed;
                self.queued_records -= self.rows.all(&old[before..]);
                let c = Priority::rank(class as u8);
                for r in old.drain(..) {
                    self.record_drop(r, c, DropReason::Oldest, tapped);
                }
            }
            return;
        }
        while self.available < needed {
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            // Free exactly what is missing when the oldest batch has more than that (whole
            // items of counted records: the fewest that cover it).
            let deficit = needed - self.available;
            let rows = self.rows;
            let n = rows.all(&front.batch.records);
            let take = if n > deficit && front.weight == n {
                rows.covering(&front.batch.records, deficit)
            } else {
                front.batch.len()
            };
            let old: Vec<T> = front.batch.records.drain(..take).collect();
            front.classes = None;
            let new_n = rows.all(&front.batch.records);
            let new_w = front.weight.min(new_n);
            self.available += front.weight - new_w;
            front.weight = new_w;
            self.queued_records -= n - new_n;
            if front.batch.is_empty() {
                self.queue.pop_front();
            }
            self.drop_all(old, DropReason::Oldest, tapped);
        }
    }

    fn offer_shed(
        &mut self,
        mut batch: Batch<T>,
        cache: &mut Option<Vec<Priority>>,
        w: &Watermarks,
        tapped: &mut Vec<Dropped<T>>,
    ) -> Offer<T> {
        let cap = self.capacity as f64;
        let in_use = self.capacity - self.available;
        let weight = self.weight_of(&batch);
        let fill_after = (in_use + weight) as f64 / cap;
        if self.available >= weight && w.lowest().is_none_or(|l| fill_after <= l) {
            self.push(batch, weight);
            return Offer::Done;
        }
        // Under pressure: classify the incoming records (once per batch, across retries).
        let mut classes = self.classes_of(&batch, cache);
        let counts = class_rows(self.rows, &batch.records, &classes).map(|n| n as usize);
        // 1. Refuse incoming classes whose watermark is exceeded, lowest class first. The fill
        //    a class sees counts what it cannot displace: queued records of its own class and
        //    above, plus the incoming records of its class and above. (Counting everything
        //    queued let a queue full of info refuse warn outright, and info then took the
        //    room warn should have had: at 10x, warn was shed 50% while info got through.)
        //    A class over its watermark is still not refused while records of a lower
        //    sheddable class are queued: they make room for it first (step 2).
        let queued = self.queued_class_counts();
        let mut cut = [0usize; CLASSES];
        let mut remaining: usize = counts.iter().sum();
        let mut lower = 0usize;
        for c in 0..CLASSES {
            if let Some(f) = w.fill[c] {
                if counts[c] > 0 && lower == 0 {
                    let mine: usize = (c..CLASSES).map(|k| queued[k] + counts[k]).sum();
                    let fill = mine.min(in_use + remaining).min(self.capacity) as f64 / cap;
                    if fill > f {
                        cut[c] = counts[c];
                        remaining -= counts[c];
                    }
                }
                lower += queued[c];
            }
        }
        // 2. Admit the incoming classes highest first. A class that does not fit in the free
        //    credit evicts queued records of lower sheddable classes (lowest class, oldest
        //    first), never of its own class or above; what still does not fit is refused
        //    (newest first) if the class is sheddable, and waits if it is not.
        // An empty port takes a batch of any size (clamped to the capacity, as on any edge):
        // counting its room in records would make a batch of more unsheddable records than
        // the capacity wait forever.
        let mut room = if self.available == self.capacity {
            usize::MAX
        } else {
            self.available
        };
        let mut wait = false;
        for c in (0..CLASSES).rev() {
            let n = counts[c] - cut[c];
            if n == 0 {
                continue;
            }
            for (k, queued_k) in queued.iter().enumerate().take(c) {
                if room >= n {
                    break;
                }
                if w.fill[k].is_some() && *queued_k > 0 {
                    let before = self.available;
                    self.evict_class(k, self.available + (n - room), tapped);
                    room = room.saturating_add(self.available - before);
                }
            }
            if room >= n {
                room -= n;
            } else {
                if w.fill[c].is_some() {
                    cut[c] += n - room;
                } else {
                    wait = true;
                }
                room = 0;
            }
        }
        if cut.iter().any(|n| *n > 0) {
            (batch, classes) = self.refuse_newest(batch, classes, &counts, &cut, tapped);
        }
        if batch.is_empty() {
            return Offer::Done;
        }
        let weight = self.weight_of(&batch);
        if !wait && self.available >= weight {
            self.push(batch, weight);
            Offer::Done
        } else {
            // What is left has no lower class to displace: it blocks (Error and up never drop).
            *cache = Some(classes);
            Offer::Wait(batch)
        }
    }

    /// Refuses the newest `cut[c]` of the `counts[c]` records of each class `c` in `batch`
    /// (counted as `ShedRefused`; of counted records, the newest whole items that hold them);
    /// returns the rest and their classes, in order.
    fn refuse_newest(
        &mut self,
        mut batch: Batch<T>,
        classes: Vec<Priority>,
        counts: &[usize; CLASSES],
        cut: &[usize; CLASSES],
        tapped: &mut Vec<Dropped<T>>,
    ) -> (Batch<T>, Vec<Priority>) {
        let keep_n: usize = (0..CLASSES).map(|c| counts[c] - cut[c]).sum();
        let created = batch.created;
        let acks = std::mem::take(&mut batch.acks);
        let mut kept = Vec::with_capacity(keep_n);
        let mut kept_classes = Vec::with_capacity(keep_n);
        let mut seen = [0usize; CLASSES];
        let rows = self.rows;
        for (r, c) in batch.records.into_iter().zip(classes) {
            let k = c.index();
            seen[k] += rows.of(&r);
            if seen[k] > counts[k] - cut[k] {
                self.record_drop(r, c, DropReason::ShedRefused, tapped);
            } else {
                kept.push(r);
                kept_classes.push(c);
            }
        }
        (
            Batch {
                records: kept,
                created,
                acks,
            },
            kept_classes,
        )
    }

    /// Records queued per class (classifying queued batches whose classes are not cached yet).
    fn queued_class_counts(&mut self) -> [usize; CLASSES] {
        if self.lanes.is_some() {
            self.sort();
            return self.lanes.as_ref().map_or([0; CLASSES], |l| l.records);
        }
        let mut total = [0usize; CLASSES];
        for i in 0..self.queue.len() {
            let counts = match self.queue[i].classes {
                Some(c) => c,
                None => {
                    let records = &self.queue[i].batch.records;
                    let c = class_rows(self.rows, records, &self.classify(records));
                    self.queue[i].classes = Some(c);
                    c
                }
            };
            for (t, n) in total.iter_mut().zip(counts) {
                *t += n as usize;
            }
        }
        total
    }

    /// Evicts queued records of class `class`, oldest first, until `needed` credits are free.
    fn evict_class(&mut self, class: usize, needed: usize, tapped: &mut Vec<Dropped<T>>) {
        let c = Priority::rank(class as u8);
        if self.lanes.is_some() {
            self.sort();
            let mut evicted = Vec::new();
            while self.available < needed {
                let Some(lanes) = self.lanes.as_mut() else {
                    break;
                };
                if lanes.records[class] == 0 {
                    break;
                }
                let before = evicted.len();
                self.available += lanes.evict_front(class, needed - self.available, &mut evicted);
                self.queued_records -= self.rows.all(&evicted[before..]);
            }
            for r in evicted {
                self.record_drop(r, c, DropReason::ShedEvicted, tapped);
            }
            return;
        }
        let cap = self.capacity;
        let mut evicted: Vec<T> = Vec::new();
        for i in 0..self.queue.len() {
            if self.available >= needed {
                break;
            }
            let counts = match self.queue[i].classes {
                Some(c) => c,
                None => {
                    let records = &self.queue[i].batch.records;
                    let c = class_rows(self.rows, records, &self.classify(records));
                    self.queue[i].classes = Some(c);
                    c
                }
            };
            if counts[class] == 0 {
                continue;
            }
            let deficit = needed - self.available;
            let classes = self.classify(&self.queue[i].batch.records);
            let rows = self.rows;
            let e = &mut self.queue[i];
            let old_len = e.batch.len();
            // Remove records of the class (oldest first, keeping order) until `deficit` are
            // removed (of counted records: whole items until they cover it).
            let mut removed = 0usize;
            let records = std::mem::take(&mut e.batch.records);
            let mut kept = Vec::with_capacity(old_len);
            for (r, c) in records.into_iter().zip(classes) {
                let is_class = removed < deficit && c.index() == class;
                if is_class {
                    removed += rows.of(&r);
                    evicted.push(r);
                } else {
                    kept.push(r);
                }
            }
            e.batch.records = kept;
            if let Some(c) = &mut e.classes {
                c[class] = c[class].saturating_sub(removed as u32);
            }
            let new_w = e.weight.min(rows.all(&e.batch.records)).min(cap);
            self.available += e.weight - new_w;
            e.weight = new_w;
            self.queued_records -= removed;
        }
        self.queue.retain(|e| !e.batch.is_empty());
        for r in evicted {
            self.record_drop(r, c, DropReason::ShedEvicted, tapped);
        }
    }

    /// Under `Deadline(d)`: drops queued batches created more than `d` before `now`, oldest
    /// first, returning their credit.
    pub fn expire(&mut self, now: Instant, tapped: &mut Vec<Dropped<T>>) {
        let EdgePolicy::Deadline(d) = self.policy else {
            return;
        };
        if let Some(lanes) = self.lanes.as_mut() {
            let mut gone = Vec::new();
            let freed = lanes.expire(now, d, &mut |records, class| gone.push((records, class)));
            self.available += freed;
            for (records, class) in gone {
                self.queued_records -= self.rows.all(&records);
                for r in records {
                    self.record_drop(r, class, DropReason::Expired, tapped);
                }
            }
        }
        while let Some(front) = self.queue.front() {
            if now.saturating_duration_since(front.batch.created) <= d {
                break;
            }
            let Some(e) = self.queue.pop_front() else {
                break;
            };
            self.available += e.weight;
            self.queued_records -= self.rows.all(&e.batch.records);
            self.drop_all(e.batch.records, DropReason::Expired, tapped);
        }
    }
}

/// Classes of `records`, in order (all `Priority::DEFAULT` without a classifier).
fn classify_with<T>(classifier: &Option<Classifier<T>>, records: &[T]) -> Vec<Priority> {
    match classifier {
        Some(c) => {
            let mut v = Vec::with_capacity(records.len());
            c(records, &mut v);
            // A classifier that returns too few classes gets the default for the rest.
            v.resize(records.len(), Priority::DEFAULT);
            v
        }
        None => vec![Priority::DEFAULT; records.len()],
    }
}
