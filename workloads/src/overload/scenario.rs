//! What one run is asked to do.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_engine::{Priority, ServiceOrder, CLASSES};

use super::schedule::Profile;

/// The policy a scenario puts on its edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyChoice {
    /// A queue without a bound (the edge's capacity is effectively infinite): the baseline
    /// that shows why bounds exist.
    Unbounded,
    /// Block: the producer slows down.
    Block,
    /// Drop the newest records.
    DropNewest,
    /// Drop the oldest records.
    DropOldest,
    /// Shed by priority with the default watermarks.
    Shed,
    /// Keep one in ten Debug and Info records under pressure.
    Sample,
    /// Drop records that waited longer than half a full queue's drain time, at dequeue.
    Deadline,
    /// Defer Debug and Info to an on-disk log.
    Defer,
    /// Not Sluice: the hand-written baseline, per-class queues under one lock with the same
    /// bound, serving the highest class first and evicting the oldest of the lowest class.
    Oracle,
}

impl PolicyChoice {
    /// Every choice, in the order reports list them.
    pub const ALL: [PolicyChoice; 9] = [
        PolicyChoice::Unbounded,
        PolicyChoice::Block,
        PolicyChoice::DropNewest,
        PolicyChoice::DropOldest,
        PolicyChoice::Shed,
        PolicyChoice::Sample,
        PolicyChoice::Deadline,
        PolicyChoice::Defer,
        PolicyChoice::Oracle,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            PolicyChoice::Unbounded => "unbounded",
            PolicyChoice::Block => "block",
            PolicyChoice::DropNewest => "drop-newest",
            PolicyChoice::DropOldest => "drop-oldest",
            PolicyChoice::Shed => "shed",
            PolicyChoice::Sample => "sample",
            PolicyChoice::Deadline => "deadline",
            PolicyChoice::Defer => "defer",
            PolicyChoice::Oracle => "oracle",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<PolicyChoice> {
        PolicyChoice::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// The pipeline a scenario drives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PipelineShape {
    /// producer -> (the edge under test) -> sink.
    #[default]
    Edge,
    /// producer -> (the edge under test) -> parse -> (edge) -> enrich -> (keyed exchange) ->
    /// 2 sink instances, each with half the capacity: three edges, every one served in the
    /// scenario's order and holding the same number of records.
    Keyed,
    /// producer -> Arrow record batches split by their class column -> (the edge under
    /// test, counted and shed by row; deferred rows written as Arrow IPC) -> typed rows ->
    /// sink.
    Arrow,
}

impl PipelineShape {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            PipelineShape::Edge => "edge",
            PipelineShape::Keyed => "keyed",
            PipelineShape::Arrow => "arrow",
        }
    }
}

/// Feed a scenario through a Kafka topic instead of an in-process producer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaFeed {
    /// Brokers (`host:port,...`); none: an embedded mock cluster.
    pub brokers: Option<String>,
    /// The topic (on a real broker it must exist with `partitions` partitions).
    pub topic: String,
    /// Partitions of the topic; the job starts offering load once its group holds them all.
    pub partitions: i32,
    /// Consumer group members (and sink instances, each with its share of the capacity).
    pub workers: usize,
}

/// Parameters of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// The job's name in reports (`overload` for the benchmark, or an example job's name).
    pub job: String,
    /// The edge policy.
    pub policy: PolicyChoice,
    /// The shape of the offered load.
    pub profile: Profile,
    /// How long the producer offers load.
    pub duration: Duration,
    /// Records per second the sink can process.
    pub sink_capacity: f64,
    /// Offered rate as a multiple of the sink capacity (in the overloaded part of the profile).
    pub overload: f64,
    /// Edge capacity in records.
    pub capacity: usize,
    /// Share of each class in the offered load, by rank.
    pub mix: [f64; CLASSES],
    /// Share of sink calls that fail transiently and are retried with backoff inside the sink
    /// (a payment gateway that times out now and then); 0 for a sink that never fails.
    pub sink_failure_rate: f64,
    /// Feed the records through Kafka (none: an in-process open-loop producer).
    pub kafka: Option<KafkaFeed>,
    /// The run is aborted once the process's resident memory passes this many bytes (the
    /// `unbounded` policy grows without limit): the result says it hit the cap.
    #[serde(default = "default_max_rss")]
    pub max_rss_bytes: u64,
    /// Where a deferring edge keeps its log; none: a temporary directory removed at the end.
    #[serde(default)]
    pub defer_dir: Option<std::path::PathBuf>,
    /// The edges' service order; none: the default (priority, since the edges classify).
    #[serde(default)]
    pub service: Option<ServiceOrder>,
    /// The pipeline.
    #[serde(default)]
    pub pipeline: PipelineShape,
    /// Size the edge under test in time: its capacity follows this much of the sink's
    /// measured drain rate, up to `capacity`.
    #[serde(default)]
    pub budget: Option<Duration>,
    /// The sink slows down (or speeds up) during the run.
    #[serde(default)]
    pub sink_step: Option<SinkStep>,
    /// Records per batch: the most the producer emits at once and the sink takes at once
    /// (default [`DEFAULT_BATCH`]).
    #[serde(default)]
    pub batch: Option<usize>,
}

/// The benchmark's batch size unless a scenario sets one.
pub const DEFAULT_BATCH: usize = 256;

impl Scenario {
    /// Records per batch.
    pub fn batch(&self) -> usize {
        self.batch.unwrap_or(DEFAULT_BATCH).max(1)
    }
}

/// A change of the sink's capacity during a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SinkStep {
    /// When, after the start.
    pub at: Duration,
    /// Records per second the sink processes from then on.
    pub capacity: f64,
}

/// 2 GiB.
fn default_max_rss() -> u64 {
    2 << 30
}

impl Default for Scenario {
    fn default() -> Self {
        let mut mix = [0.0; CLASSES];
        mix[Priority::DEBUG.index()] = 0.70;
        mix[Priority::INFO.index()] = 0.20;
        mix[Priority::WARN.index()] = 0.08;
        mix[Priority::ERROR.index()] = 0.02;
        Scenario {
            job: "overload".into(),
            policy: PolicyChoice::Shed,
            profile: Profile::Sustained,
            duration: Duration::from_secs(5),
            sink_capacity: 100_000.0,
            overload: 10.0,
            capacity: 512,
            mix,
            sink_failure_rate: 0.0,
            kafka: None,
            max_rss_bytes: default_max_rss(),
            defer_dir: None,
            service: None,
            pipeline: PipelineShape::Edge,
            budget: None,
            sink_step: None,
            batch: None,
        }
    }
}

impl Scenario {
    /// The offered load over the run.
    pub fn schedule(&self) -> super::schedule::Schedule {
        super::schedule::Schedule::new(
            self.profile,
            self.duration,
            self.sink_capacity,
            self.overload,
        )
    }

    /// The sink's capacity averaged over the first `window` seconds (its capacity, unless it
    /// steps within the window).
    pub fn mean_sink_capacity(&self, window: f64) -> f64 {
        match self.sink_step {
            Some(st) if st.at.as_secs_f64() < window && window > 0.0 => {
                let at = st.at.as_secs_f64();
                (at * self.sink_capacity + (window - at) * st.capacity) / window
            }
            _ => self.sink_capacity,
        }
    }
}

impl std::fmt::Display for PolicyChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}
