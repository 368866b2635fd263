//! Overload policies: what an edge does when its sender is short of credit.
//!
//! The policy is a parameter of each edge port, consulted only on the slow path (when the
//! credit a batch needs is not available, or the port's fill is above a shedding watermark),
//! so a policy that is configured but never triggered costs one comparison per batch.
//!
//! | policy | on short credit | lever |
//! | --- | --- | --- |
//! | [`Block`](EdgePolicy::Block) | the sender waits; the wait is counted as backpressure | control |
//! | [`DropNewest`](EdgePolicy::DropNewest) | accept what fits, refuse the rest of the new batch | drop |
//! | [`DropOldest`](EdgePolicy::DropOldest) | evict the oldest queued records to make room | drop |
//! | [`ShedByPriority`](EdgePolicy::ShedByPriority) | refuse, then evict, the lowest classes above their fill watermark; classes without a watermark block | drop |
//! | [`Sample`](EdgePolicy::Sample) | keep one in `n` records of the low classes, block for the rest | drop |
//! | [`Deadline`](EdgePolicy::Deadline) | block; at dequeue, drop batches older than the deadline | drop |
//!
//! Every refused or evicted record is counted by the port with its class and a
//! [`DropReason`], and appears in the report and the ledger.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::priority::{Priority, CLASSES};

/// What an edge does when the receiver has not granted enough credit for a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EdgePolicy {
    /// The sender waits until credit returns; the time waited is counted as backpressure.
    /// Nothing is dropped: slowness propagates upstream to the source.
    #[default]
    Block,
    /// Accept the part of the new batch that fits; refuse (drop) the rest. Old data wins.
    DropNewest,
    /// Evict the oldest queued records to make room for the new batch. Fresh data wins.
    DropOldest,
    /// Shed by priority class: a class whose watermark the port's fill exceeds is refused,
    /// and queued records of classes below the incoming ones are evicted (lowest class,
    /// oldest first) before a higher class would have to wait. Classes without a watermark
    /// never drop: they block.
    ShedByPriority(Watermarks),
    /// Under pressure, keep one in `keep_one_in` records of the classes below `below` and
    /// drop the others; everything else blocks.
    Sample(SampleConfig),
    /// Block when full; at dequeue, drop batches that have waited longer than the deadline
    /// since their source created them (freshness: records too old to matter).
    Deadline(#[serde(with = "duration_ms")] Duration),
    /// Under pressure, spill records of the classes below `below` to a bounded on-disk log
    /// (set with `Stream::defer_to`) and replay them, in the order they were deferred, when
    /// the edge is idle; higher classes block. Deferred records survive a restart of the job.
    Defer(DeferConfig),
}

impl EdgePolicy {
    /// `ShedByPriority` with the default watermarks: Debug above 50% fill, Info above 80%,
    /// Warn above 95%, Error and up never.
    pub fn shed_by_priority() -> Self {
        EdgePolicy::ShedByPriority(Watermarks::default())
    }

    /// Whether this policy classifies records (and so wants a classifier on the edge).
    pub fn uses_classes(&self) -> bool {
        matches!(
            self,
            EdgePolicy::ShedByPriority(_) | EdgePolicy::Sample(_) | EdgePolicy::Defer(_)
        )
    }
}

impl fmt::Display for EdgePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EdgePolicy::Block => f.write_str("block"),
            EdgePolicy::DropNewest => f.write_str("drop_newest"),
            EdgePolicy::DropOldest => f.write_str("drop_oldest"),
            EdgePolicy::ShedByPriority(_) => f.write_str("shed_by_priority"),
            EdgePolicy::Sample(s) => write!(f, "sample(1/{} below {})", s.keep_one_in, s.below),
            EdgePolicy::Deadline(d) => write!(f, "deadline({} ms)", d.as_millis()),
            EdgePolicy::Defer(d) => write!(f, "defer(below {})", d.below),
        }
    }
}

/// Per-class fill watermarks for [`EdgePolicy::ShedByPriority`]: `Some(f)` sheds the class
/// once the port's fill (credits in use over capacity, counting the incoming batch) exceeds
/// `f`; `None` never sheds it (it blocks).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Watermarks {
    /// Indexed by class rank.
    pub fill: [Option<f64>; CLASSES],
}

impl Default for Watermarks {
    fn default() -> Self {
        let mut fill = [None; CLASSES];
        fill[Priority::DEBUG.index()] = Some(0.5);
        fill[Priority::INFO.index()] = Some(0.8);
        fill[Priority::WARN.index()] = Some(0.95);
        Watermarks { fill }
    }
}

impl Watermarks {
    /// No class is ever shed.
    pub fn none() -> Self {
        Watermarks {
            fill: [None; CLASSES],
        }
    }

    /// Sets one class's watermark (`None`: never shed).
    pub fn with(mut self, class: Priority, fill: Option<f64>) -> Self {
        self.fill[class.index()] = fill;
        self
    }

    /// The lowest watermark, if any class is sheddable.
    pub fn lowest(&self) -> Option<f64> {
        self.fill.iter().flatten().copied().reduce(f64::min)
    }
}

/// Configuration of [`EdgePolicy::Sample`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleConfig {
    /// Keep one record in this many (at least 1).
    pub keep_one_in: u32,
    /// Classes strictly below this one are sampled; the others block.
    pub below: Priority,
}

/// Configuration of [`EdgePolicy::Defer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeferConfig {
    /// Classes strictly below this one are deferred under pressure; the others block.
    pub below: Priority,
    /// What to do when the defer log is at its size cap.
    pub when_full: WhenLogFull,
}

/// What a deferring edge does with a low-class record when its log is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenLogFull {
    /// Wait for credit like any other record (the producer slows down).
    Block,
    /// Drop it, counted as [`DropReason::DeferFull`].
    Drop,
}

/// Why an edge dropped a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Refused at a full edge under `DropNewest`.
    #[serde(rename = "drop_newest")]
    Newest,
    /// Evicted from the queue under `DropOldest`.
    #[serde(rename = "drop_oldest")]
    Oldest,
    /// Refused (incoming) under `ShedByPriority`: its class was above its watermark.
    ShedRefused,
    /// Evicted (queued) under `ShedByPriority` to make room for a higher class.
    ShedEvicted,
    /// Not kept by `Sample`.
    Sampled,
    /// Older than the `Deadline` when dequeued.
    Expired,
    /// Could not be deferred: the defer log was full (`WhenLogFull::Drop`).
    DeferFull,
    /// Could not be deferred or replayed: encoding, decoding or file-system error.
    DeferError,
}

/// Number of [`DropReason`]s.
pub const REASONS: usize = 8;

impl DropReason {
    /// Every reason, in order.
    pub const ALL: [DropReason; REASONS] = [
        DropReason::Newest,
        DropReason::Oldest,
        DropReason::ShedRefused,
        DropReason::ShedEvicted,
        DropReason::Sampled,
        DropReason::Expired,
        DropReason::DeferFull,
        DropReason::DeferError,
    ];

    /// Index `0..REASONS`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The reason's name, as in reports and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Newest => "drop_newest",
            DropReason::Oldest => "drop_oldest",
            DropReason::ShedRefused => "shed_refused",
            DropReason::ShedEvicted => "shed_evicted",
            DropReason::Sampled => "sampled",
            DropReason::Expired => "expired",
            DropReason::DeferFull => "defer_full",
            DropReason::DeferError => "defer_error",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// The order in which an edge's receiver takes queued records.
///
/// | order | the receiver takes | cost |
/// | --- | --- | --- |
/// | [`Fifo`](ServiceOrder::Fifo) | the oldest queued batch | none: batches stay as sent |
/// | [`Priority`](ServiceOrder::Priority) | the oldest records of the highest class queued | classification and a split by class, only while two or more batches are queued |
/// | [`Weighted`](ServiceOrder::Weighted) | the class furthest behind its share of service | as `Priority` |
///
/// Records are never reordered within a class and a sender. Across classes they are: under
/// `Priority` an error sent after a debug record can be received before it. Keyed state
/// downstream sees each key's records in order only if every record of a key has one class
/// (the usual case: a key's level does not change), so order-sensitive operators should
/// classify by something that is constant per key, or keep the edge `Fifo`.
///
/// The default ([`ServiceOrder::for_edge`]): `Priority` for an edge that classifies its
/// records, `Fifo` for one that does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServiceOrder {
    /// First in, first out, across classes.
    #[default]
    Fifo,
    /// Highest class first; first in, first out within a class.
    Priority,
    /// Work-conserving shares per class: while several classes wait, each receives service in
    /// proportion to its share, so a low class still gets its fraction under sustained
    /// overload; a class alone gets everything.
    Weighted(Shares),
}

impl ServiceOrder {
    /// The default order for an edge: `Priority` if it classifies its records, else `Fifo`.
    pub fn for_edge(classifies: bool) -> Self {
        if classifies {
            ServiceOrder::Priority
        } else {
            ServiceOrder::Fifo
        }
    }

    /// The order's name: `fifo`, `priority` or `weighted`.
    pub fn name(self) -> &'static str {
        match self {
            ServiceOrder::Fifo => "fifo",
            ServiceOrder::Priority => "priority",
            ServiceOrder::Weighted(_) => "weighted",
        }
    }
}

impl fmt::Display for ServiceOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceOrder::Fifo => f.write_str("fifo"),
            ServiceOrder::Priority => f.write_str("priority"),
            ServiceOrder::Weighted(s) => {
                f.write_str("weighted(")?;
                let mut first = true;
                for c in Priority::all() {
                    let w = s.share[c.index()];
                    if w > 0 {
                        if !first {
                            f.write_str(",")?;
                        }
                        write!(f, "{c}={w}")?;
                        first = false;
                    }
                }
                f.write_str(")")
            }
        }
    }
}

/// Shares of service per class for [`ServiceOrder::Weighted`], indexed by class rank. A class
/// with share 0 is served only when no class with a share waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shares {
    /// Indexed by class rank.
    pub share: [u32; CLASSES],
}

impl Default for Shares {
    /// Each class twice the share of the one below it: debug 1, info 2, warn 4, error 8, ...
    fn default() -> Self {
        Shares {
            share: std::array::from_fn(|c| 1 << c),
        }
    }
}

impl Shares {
    /// Sets one class's share.
    pub fn with(mut self, class: Priority, share: u32) -> Self {
        self.share[class.index()] = share;
        self
    }
}
