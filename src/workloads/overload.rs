//! The overload scenario: an open-loop producer at `overload` times a sink's capacity, one
//! edge with the policy under test, and a sink that can do exactly `sink_capacity` records
//! per second.
//!
//! # Open loop
//! Record `k` is due at `k / rate` seconds after the start and carries that *intended* time.
//! Latency is measured from it, so time a record spent waiting to be produced (the producer
//! blocked by backpressure) counts: there is no coordinated omission. Under `Block` the
//! producer falls behind its schedule and the latency shows it.
//!
//! # Classes
//! Each record's class is drawn from the mix (default Debug 70%, Info 20%, Warn 8%, Error 2%)
//! by a hash of its sequence number, so every run offers the same records.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sluice_engine::{
    DeferConfig, EdgePolicy, JobStatus, JsonCodec, Ledger, Pipeline, Priority, SampleConfig, Sink,
    SinkError, Source, SourceStatus, WhenLogFull, CLASSES,
};
use sluice_operators::resilience::{Backoff, RetryDecision};

/// One event: a sequence number, a class, and when it was meant to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Sequence number.
    pub seq: u64,
    /// Priority class.
    pub class: Priority,
    /// Intended send time, nanoseconds after the scenario's start.
    pub intended_ns: u64,
}

/// The policy a scenario puts on its edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
}

impl PolicyChoice {
    /// Every choice, in the order reports list them.
    pub const ALL: [PolicyChoice; 8] = [
        PolicyChoice::Unbounded,
        PolicyChoice::Block,
        PolicyChoice::DropNewest,
        PolicyChoice::DropOldest,
        PolicyChoice::Shed,
        PolicyChoice::Sample,
        PolicyChoice::Deadline,
        PolicyChoice::Defer,
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
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<PolicyChoice> {
        PolicyChoice::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// The shape of the offered load over the window, as multiples of the sink's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// 0.8x capacity throughout: the control run, nothing should be lost.
    Steady,
    /// 0.5x for the first third, then `overload` x to the end.
    Step,
    /// 0.5x, a burst of `overload` x from 20% to 40% of the window, 0.5x again: the run
    /// measures how long the backlog takes to drain after the burst (`recovery_s`).
    Burst,
    /// `overload` x throughout.
    Sustained,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 4] = [
        Profile::Steady,
        Profile::Step,
        Profile::Burst,
        Profile::Sustained,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Steady => "steady",
            Profile::Step => "step",
            Profile::Burst => "burst",
            Profile::Sustained => "sustained",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.name() == s)
    }

    /// `(start, end, multiple of capacity)` segments over a window of `d` seconds.
    fn shape(self, d: f64, overload: f64) -> Vec<(f64, f64, f64)> {
        match self {
            Profile::Steady => vec![(0.0, d, 0.8)],
            Profile::Step => vec![(0.0, d / 3.0, 0.5), (d / 3.0, d, overload)],
            Profile::Burst => vec![
                (0.0, 0.2 * d, 0.5),
                (0.2 * d, 0.4 * d, overload),
                (0.4 * d, d, 0.5),
            ],
            Profile::Sustained => vec![(0.0, d, overload)],
        }
    }

    /// When the overload ends, for profiles that end one inside the window.
    pub fn burst_end(self, d: f64) -> Option<f64> {
        (self == Profile::Burst).then_some(0.4 * d)
    }
}

/// A piecewise-constant offered rate: when each record is due, and how many are due by when.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// `(start_s, end_s, records per second, records due before start)`.
    segments: Vec<(f64, f64, f64, f64)>,
    total: u64,
}

impl Schedule {
    /// The schedule of `profile` over `duration` against a sink of `capacity` records/s.
    pub fn new(profile: Profile, duration: Duration, capacity: f64, overload: f64) -> Self {
        let mut segments = Vec::new();
        let mut before = 0.0;
        for (a, b, m) in profile.shape(duration.as_secs_f64(), overload) {
            let rate = (m * capacity).max(1e-9);
            segments.push((a, b, rate, before));
            before += rate * (b - a);
        }
        Schedule {
            segments,
            total: before as u64,
        }
    }

    /// Records the window offers in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Records due by `t` seconds after the start (fractional).
    pub fn due_by(&self, t: f64) -> f64 {
        for &(a, b, rate, before) in &self.segments {
            if t < b {
                return before + (t - a).max(0.0) * rate;
            }
        }
        self.total as f64
    }

    /// When record `k` is due, in seconds after the start.
    pub fn time_of(&self, k: u64) -> f64 {
        let k = k as f64;
        for &(a, b, rate, before) in &self.segments {
            if k < before + rate * (b - a) {
                return a + (k - before) / rate;
            }
        }
        self.segments.last().map_or(0.0, |s| s.1)
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
        }
    }
}

/// Per-class results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassResult {
    /// Records of this class the schedule offered.
    pub offered: u64,
    /// Records delivered.
    pub delivered: u64,
    /// Records dropped.
    pub dropped: u64,
    /// Records left deferred at the end.
    pub deferred: u64,
    /// Latency from intended send time to the sink.
    pub latency_ms: Percentiles,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
}

impl Percentiles {
    /// Of a histogram in microseconds (zeros when it is empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        Percentiles {
            p50: ms(0.5),
            p99: ms(0.99),
            p999: ms(0.999),
        }
    }
}

/// Records dropped on one edge, of one class, for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropRow {
    /// The edge, `upstream -> downstream`.
    pub edge: String,
    /// The class name (`debug`, `info`, ...).
    pub class: String,
    /// The reason (`shed`, `drop_newest`, ...).
    pub reason: String,
    /// How many.
    pub count: u64,
}

/// One point of the time series, sampled every 100 ms. Counts are cumulative since the start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the start.
    pub t_s: f64,
    /// Records the schedule had made due.
    pub offered: u64,
    /// Records the producer had emitted (behind `offered` when backpressure held it back).
    pub emitted: u64,
    /// Records delivered, per class name.
    pub delivered: BTreeMap<String, u64>,
    /// Records dropped, per class name.
    pub dropped: BTreeMap<String, u64>,
    /// Records queued on the edge.
    pub queued: u64,
    /// Records deferred and not yet replayed.
    pub deferred: u64,
    /// Records waiting in an external buffer (a Kafka topic) for the job to read them.
    #[serde(default)]
    pub buffered: u64,
}

impl Sample {
    /// Records delivered, all classes.
    pub fn delivered_total(&self) -> u64 {
        self.delivered.values().sum()
    }

    /// Records dropped, all classes.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// Records offered but not yet delivered, dropped or deferred: held back at the producer
    /// or queued on the edge, plus the deferred log.
    pub fn backlog(&self) -> u64 {
        self.offered.saturating_sub(self.emitted) + self.queued + self.deferred + self.buffered
    }
}

/// What one run measured: the JSON report of `sluice bench overload` and the scenario jobs
/// (the schema is documented in the README).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// The job (`overload` or an example job's name).
    pub job: String,
    /// The policy.
    pub policy: String,
    /// The load profile.
    pub profile: String,
    /// Seconds the producer offered load.
    pub duration_s: f64,
    /// Seconds until the job finished draining.
    pub total_s: f64,
    /// Records the schedule offered per second, on average over the window.
    pub offered_rate: f64,
    /// Records the producer actually emitted (fewer than offered when it was blocked).
    pub emitted: u64,
    /// Records delivered per second, over the offered window.
    pub delivered_rate: f64,
    /// The sink's capacity, records per second.
    pub sink_capacity: f64,
    /// Delivered rate over sink capacity, while the load was offered.
    pub goodput_ratio: f64,
    /// Offered rate as a multiple of capacity in the overloaded part of the profile.
    pub overload: f64,
    /// Edge capacity in records.
    pub edge_capacity: usize,
    /// Peak resident memory of the process running the scenario, in bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Seconds from the end of the burst until the backlog was drained (burst profile only);
    /// null when not measured or when the backlog had not drained by the end of the run.
    pub recovery_s: Option<f64>,
    /// Sink calls retried after a transient failure.
    pub sink_retries: u64,
    /// Per class, by class name.
    pub classes: BTreeMap<String, ClassResult>,
    /// Drops by edge, class and reason.
    pub drops: Vec<DropRow>,
    /// The job's ledger.
    pub ledger: Ledger,
    /// The time series, every 100 ms.
    pub series: Vec<Sample>,
}

pub(crate) fn class_of(seq: u64, cumulative: &[f64; CLASSES]) -> Priority {
    let u = unit(seq);
    let idx = cumulative
        .iter()
        .position(|c| u < *c)
        .unwrap_or(CLASSES - 1);
    Priority::rank(idx as u8)
}

/// The open-loop producer.
struct OpenLoop {
    epoch: Instant,
    /// The end of the offered window: records not emitted by then never enter (they were
    /// held back at the producer by backpressure).
    end: Instant,
    schedule: Arc<Schedule>,
    produced: u64,
    cumulative: [f64; CLASSES],
}

impl Source<Event> for OpenLoop {
    fn poll_batch(&mut self, out: &mut Vec<Event>, max: usize) -> SourceStatus {
        let total = self.schedule.total();
        loop {
            if Instant::now() >= self.end || self.produced >= total {
                return SourceStatus::Done;
            }
            let elapsed = self.epoch.elapsed().as_secs_f64();
            let due = (self.schedule.due_by(elapsed) as u64 + 1).min(total);
            if due > self.produced {
                let n = (due - self.produced).min(max as u64);
                for k in self.produced..self.produced + n {
                    out.push(Event {
                        seq: k,
                        class: class_of(k, &self.cumulative),
                        intended_ns: (self.schedule.time_of(k) * 1e9) as u64,
                    });
                }
                self.produced += n;
                return SourceStatus::More;
            }
            let wait = self.schedule.time_of(self.produced) - elapsed;
            if wait > 0.002 {
                return SourceStatus::Idle;
            }
            std::thread::yield_now();
        }
    }
}

/// Counters the sink shares with the sampler: delivered records per class.
pub(crate) type ClassCounters = Arc<[AtomicU64; CLASSES]>;

/// A sink that processes exactly `capacity` records per second and records latency per
/// class from each event's intended time. With a failure rate, some batches fail transiently
/// and are retried with backoff (the time counts against the sink's pace).
pub(crate) struct PacedSink {
    epoch: Instant,
    per_record: Duration,
    next: Option<Instant>,
    hists: Vec<Histogram<u64>>,
    out: Arc<Mutex<Vec<Histogram<u64>>>>,
    delivered: ClassCounters,
    failure_rate: f64,
    backoff: Backoff,
    retries: Arc<AtomicU64>,
    calls: u64,
    dead: u64,
}

impl PacedSink {
    /// Waits until the sink's clock has done `n` records.
    fn pace(&mut self, n: usize) {
        let now = Instant::now();
        // The sink's own clock: it cannot bank idle time beyond one millisecond.
        let start = match self.next {
            Some(t) if t + Duration::from_millis(1) > now => t,
            _ => now,
        };
        let done = start + self.per_record * n as u32;
        self.next = Some(done);
        loop {
            let now = Instant::now();
            if now >= done {
                break;
            }
            let left = done - now;
            if left > Duration::from_millis(1) {
                std::thread::sleep(left - Duration::from_micros(500));
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Whether call number `call` (from 1) fails: one call in `1 / failure_rate`, the first
    /// call included, so every run fails the same calls.
    fn fails(&self, call: u64) -> bool {
        if self.failure_rate <= 0.0 {
            return false;
        }
        let period = (1.0 / self.failure_rate).round().max(1.0) as u64;
        call % period == 1 % period
    }
}

impl Sink<Event> for PacedSink {
    fn write(&mut self, records: Vec<Event>) -> Result<(), SinkError> {
        // A transiently failing call: retried with backoff until it succeeds or the budget is
        // spent (then the batch goes to the dead-letter count, never silently).
        let first = Instant::now();
        let mut attempts = 0;
        loop {
            self.calls += 1;
            if !self.fails(self.calls) {
                break;
            }
            attempts += 1;
            self.pace(records.len().div_ceil(4));
            match self.backoff.next(attempts, first.elapsed(), None) {
                RetryDecision::RetryAfter(d) => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(d);
                }
                RetryDecision::GiveUp => {
                    self.dead += records.len() as u64;
                    return Ok(());
                }
            }
        }
        self.pace(records.len());
        let now_ns = self.epoch.elapsed().as_nanos() as u64;
        let mut counts = [0u64; CLASSES];
        for r in &records {
            let us = now_ns.saturating_sub(r.intended_ns) / 1000;
            if let Some(h) = self.hists.get_mut(r.class.index()) {
                h.saturating_record(us.max(1));
            }
            if let Some(c) = counts.get_mut(r.class.index()) {
                *c += 1;
            }
        }
        for (d, c) in self.delivered.iter().zip(counts) {
            if c > 0 {
                d.fetch_add(c, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn take_dead_lettered(&mut self) -> u64 {
        std::mem::take(&mut self.dead)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.publish();
        Ok(())
    }
}

impl PacedSink {
    fn publish(&mut self) {
        let mut out = self.out.lock();
        for (o, h) in out.iter_mut().zip(&mut self.hists) {
            let _ = o.add(&*h);
            h.reset();
        }
    }
}

impl Drop for PacedSink {
    fn drop(&mut self) {
        // An aborted run never calls `finish`: publish what was measured anyway.
        self.publish();
    }
}

/// A fixed hash of `x` mapped to [0, 1).
fn unit(x: u64) -> f64 {
    let h = x
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let h = (h ^ (h >> 31)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((h ^ (h >> 29)) >> 11) as f64 / (1u64 << 53) as f64
}

/// One histogram per class, microseconds from 1 us to 1 h. The bounds are constants
/// hdrhistogram accepts; were it ever to refuse them, latency would go unrecorded (empty
/// percentiles) rather than the benchmark panicking.
pub(crate) fn histograms() -> Vec<Histogram<u64>> {
    (0..CLASSES)
        .filter_map(|_| Histogram::new_with_bounds(1, 3_600_000_000, 3).ok())
        .collect()
}

/// Peak resident set size of this process (`VmHWM`), where the OS reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Seconds from `burst_end` to the first sample whose backlog is at most `threshold`.
pub fn recovery(series: &[Sample], burst_end: f64, threshold: u64) -> Option<f64> {
    series
        .iter()
        .filter(|x| x.t_s >= burst_end)
        .find(|x| x.backlog() <= threshold)
        .map(|x| x.t_s - burst_end)
}

/// The entries of a per-class map, lowest class first (maps serialize by name; people read
/// by rank).
pub fn ranked<V>(map: &BTreeMap<String, V>) -> Vec<(&String, &V)> {
    let mut v: Vec<(&String, &V)> = map.iter().collect();
    v.sort_by_key(|(k, _)| Priority::parse(k).map_or(u8::MAX as usize, |p| p.index()));
    v
}

fn by_class(
    values: impl Iterator<Item = (Priority, u64)>,
    mix: &[f64; CLASSES],
) -> BTreeMap<String, u64> {
    values
        .filter(|(c, _)| mix.get(c.index()).is_some_and(|m| *m > 0.0))
        .map(|(c, v)| (c.name().to_string(), v))
        .collect()
}

/// Runs one scenario in this process, calling `progress` with every sample (every 100 ms).
///
/// # Errors
/// When the job cannot be built or fails (including a ledger that does not balance).
pub fn run(
    s: &Scenario,
    progress: &mut dyn FnMut(&Sample),
) -> Result<ScenarioResult, Box<dyn std::error::Error>> {
    let schedule = Arc::new(Schedule::new(
        s.profile,
        s.duration,
        s.sink_capacity,
        s.overload,
    ));
    let total = schedule.total();
    let mut cumulative = [0.0; CLASSES];
    let sum: f64 = s.mix.iter().sum::<f64>().max(1e-12);
    let mut acc = 0.0;
    for (c, m) in cumulative.iter_mut().zip(s.mix) {
        acc += m / sum;
        *c = acc;
    }
    let defer_dir = tempfile::tempdir()?;
    let p = Pipeline::new(format!("{}-{}", s.job, s.policy.name())).batch_size(256);
    // Latency is measured from `base`. The in-process producer's schedule starts there; a
    // Kafka feed's starts once the consumer group holds its partitions (`epoch`).
    let base = Instant::now();
    let (capacity, policy) = match s.policy {
        PolicyChoice::Unbounded => (usize::MAX / 4, EdgePolicy::Block),
        PolicyChoice::Block => (s.capacity, EdgePolicy::Block),
        PolicyChoice::DropNewest => (s.capacity, EdgePolicy::DropNewest),
        PolicyChoice::DropOldest => (s.capacity, EdgePolicy::DropOldest),
        PolicyChoice::Shed => (s.capacity, EdgePolicy::shed_by_priority()),
        PolicyChoice::Sample => (
            s.capacity,
            EdgePolicy::Sample(SampleConfig {
                keep_one_in: 10,
                below: Priority::WARN,
            }),
        ),
        // Records that waited more than half the time a full queue takes to drain.
        PolicyChoice::Deadline => (
            s.capacity,
            EdgePolicy::Deadline(Duration::from_secs_f64(
                s.capacity as f64 / s.sink_capacity.max(1.0) / 2.0,
            )),
        ),
        PolicyChoice::Defer => (
            s.capacity,
            EdgePolicy::Defer(DeferConfig {
                below: Priority::WARN,
                when_full: WhenLogFull::Drop,
            }),
        ),
    };
    let hists = Arc::new(Mutex::new(histograms()));
    let h2 = hists.clone();
    let delivered: ClassCounters = Arc::new(std::array::from_fn(|_| AtomicU64::new(0)));
    let d2 = delivered.clone();
    let retries = Arc::new(AtomicU64::new(0));
    let r2 = retries.clone();
    let workers = s.kafka.as_ref().map_or(1, |k| k.workers.max(1));
    let per_record = Duration::from_secs_f64(workers as f64 / s.sink_capacity.max(1.0));
    let failure_rate = s.sink_failure_rate;
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    #[cfg(feature = "kafka")]
    let kafka_stats = Arc::new(sluice_connectors::kafka::KafkaSourceStats::default());
    #[cfg(feature = "kafka")]
    let cluster = match &s.kafka {
        Some(feed) => Some(super::kafka_feed::connect(feed)?),
        None => None,
    };
    let stream = match &s.kafka {
        None => {
            let sched = schedule.clone();
            let end = base + s.duration;
            p.source("producer", 1, move |_| OpenLoop {
                epoch: base,
                end,
                schedule: sched.clone(),
                produced: 0,
                cumulative,
            })
        }
        #[cfg(feature = "kafka")]
        Some(feed) => {
            let brokers = cluster
                .as_ref()
                .map(|c| c.brokers.clone())
                .unwrap_or_default();
            super::kafka_feed::source(&p, feed, &brokers, nonce, kafka_stats.clone())?
        }
        #[cfg(not(feature = "kafka"))]
        Some(_) => return Err("this build has no Kafka support (feature `kafka`)".into()),
    };
    stream
        .edge_capacity(capacity)
        .edge_policy(policy)
        .classify(|e: &Event| e.class)
        .defer_to(defer_dir.path(), 256 << 20, JsonCodec::<Event>::new())
        .new_chain()
        .sink("sink", move |_| PacedSink {
            epoch: base,
            per_record,
            next: None,
            hists: histograms(),
            out: h2.clone(),
            delivered: d2.clone(),
            failure_rate,
            backoff: Backoff::new(
                Duration::from_millis(1),
                Duration::from_millis(50),
                20,
                Duration::from_secs(10),
                7,
            ),
            retries: r2.clone(),
            calls: 0,
            dead: 0,
        });
    let mut job = Some(p.run()?);
    // A Kafka feed: once the group holds its partitions, the producer starts the schedule.
    #[cfg(feature = "kafka")]
    let mut producing = None;
    #[cfg(feature = "kafka")]
    if let (Some(feed), Some(cluster)) = (&s.kafka, &cluster) {
        if let Err(e) =
            super::kafka_feed::wait_assigned(&kafka_stats, feed, Duration::from_secs(60))
        {
            if let Some(j) = job.take() {
                let _ = j.stop(Duration::from_secs(5));
            }
            return Err(e);
        }
        producing = Some(super::kafka_feed::produce(
            &cluster.brokers,
            &feed.topic,
            schedule.clone(),
            cumulative,
            base.elapsed().as_nanos() as u64,
            nonce,
        )?);
    }
    let epoch = Instant::now()
        - if s.kafka.is_some() {
            Duration::ZERO
        } else {
            base.elapsed()
        };
    let mut stopping = false;
    let mut stop_at: Option<Instant> = None;
    let mut series = Vec::new();
    let mut delivered_in_window = None;
    let mut aborted = None;
    let window = s.duration.as_secs_f64();
    while let Some(j) = job.as_ref() {
        let finished = j.is_finished();
        let t = epoch.elapsed();
        let r = j.report();
        #[cfg(feature = "kafka")]
        let produced = producing
            .as_ref()
            .map(|p| p.produced.load(Ordering::Relaxed));
        #[cfg(not(feature = "kafka"))]
        let produced: Option<u64> = None;
        let offered = match produced {
            Some(n) => n,
            None => (schedule.due_by(t.as_secs_f64().min(window)) as u64).min(total),
        };
        let sample = Sample {
            t_s: t.as_secs_f64(),
            offered,
            emitted: produced.unwrap_or(r.source_emitted),
            delivered: by_class(
                Priority::all().map(|c| {
                    (
                        c,
                        delivered
                            .get(c.index())
                            .map_or(0, |d| d.load(Ordering::Relaxed)),
                    )
                }),
                &s.mix,
            ),
            dropped: by_class(Priority::all().map(|c| (c, r.dropped_of_class(c))), &s.mix),
            queued: r.edges.iter().map(|e| e.queued).sum(),
            deferred: r.ledger.deferred_pending,
            buffered: produced.map_or(0, |n| n.saturating_sub(r.source_emitted)),
        };
        let ended = sample.delivered_total() + sample.dropped_total() + r.ledger.dead_lettered;
        progress(&sample);
        series.push(sample);
        if finished {
            break;
        }
        // A job asked to stop gets 10 s to drain; then it is stopped (aborted if it must).
        if stop_at.is_some_and(|at| at.elapsed() > Duration::from_secs(10)) {
            break;
        }
        #[cfg(feature = "kafka")]
        if let Some(p) = &producing {
            // A Kafka feed never ends by itself: stop once every produced record ended (or
            // the drain took too long).
            let done = p.done.load(Ordering::Relaxed);
            let made = p.produced.load(Ordering::Relaxed);
            if !stopping && done && (ended >= made || t > s.duration + Duration::from_secs(120)) {
                j.request_stop();
                stopping = true;
                stop_at = Some(Instant::now());
            }
        }
        if delivered_in_window.is_none() && t >= s.duration {
            delivered_in_window = Some(r.ledger.delivered);
            // The producer ends with the window and the edge drains (a deferring edge replays
            // its log). Draining an unbounded backlog would take `overload` times the window:
            // that run is aborted, and its report counts what was still queued as in flight.
            if s.policy == PolicyChoice::Unbounded && s.kafka.is_none() {
                if let Some(j) = job.take() {
                    aborted = Some(j.stop(Duration::ZERO)?);
                }
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let report = match (aborted, job) {
        (Some(r), _) => r,
        (None, Some(j)) if stopping => j.stop(Duration::from_secs(10))?,
        (None, Some(j)) => j.wait()?,
        (None, None) => return Err("the job disappeared".into()),
    };
    #[cfg(feature = "kafka")]
    let total = match producing.as_mut() {
        Some(p) => {
            p.join();
            if p.failed.load(Ordering::Relaxed) {
                return Err("the producer could not write the records to Kafka".into());
            }
            p.produced.load(Ordering::Relaxed)
        }
        None => total,
    };
    let total_s = epoch.elapsed().as_secs_f64();
    let delivered_window = delivered_in_window.unwrap_or(report.ledger.delivered);
    let hists = hists.lock();
    let mut offered = [0u64; CLASSES];
    for k in 0..total {
        if let Some(o) = offered.get_mut(class_of(k, &cumulative).index()) {
            *o += 1;
        }
    }
    let mut classes = BTreeMap::new();
    for c in Priority::all() {
        let offered = offered.get(c.index()).copied().unwrap_or(0);
        if offered == 0 {
            continue;
        }
        let Some(h) = hists.get(c.index()) else {
            continue;
        };
        let ms = |q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        let dropped = report.dropped_of_class(c);
        classes.insert(
            c.name().to_string(),
            ClassResult {
                offered,
                delivered: h.len(),
                dropped,
                deferred: if s.policy == PolicyChoice::Defer {
                    offered.saturating_sub(h.len() + dropped)
                } else {
                    0
                },
                latency_ms: Percentiles {
                    p50: ms(0.5),
                    p99: ms(0.99),
                    p999: ms(0.999),
                },
            },
        );
    }
    if report.status == JobStatus::Failed {
        return Err(format!("scenario ended {:?}", report.status).into());
    }
    // Recovery: from the end of the burst to the first sample whose backlog is back under a
    // tenth of the edge (or 64 records), draining after the window included. Records held
    // back at the producer when the window closed never enter, so a producer still behind
    // its schedule at the end has not recovered.
    // Within a tenth of the edge, or (fed through Kafka, whose consumer prefetches) 50 ms
    // of the sink's work.
    let threshold = if s.kafka.is_some() {
        (s.capacity as u64 / 10).max((s.sink_capacity / 20.0) as u64)
    } else {
        (s.capacity as u64 / 10).max(64)
    };
    let recovery_s = s
        .profile
        .burst_end(window)
        .and_then(|b| recovery(&series, b, threshold));
    Ok(ScenarioResult {
        job: s.job.clone(),
        policy: s.policy.name().to_string(),
        profile: s.profile.name().to_string(),
        duration_s: window,
        total_s,
        offered_rate: total as f64 / window,
        emitted: report.source_emitted,
        delivered_rate: delivered_window as f64 / window,
        sink_capacity: s.sink_capacity,
        goodput_ratio: delivered_window as f64 / window / s.sink_capacity,
        overload: s.overload,
        edge_capacity: s.capacity,
        peak_rss_bytes: peak_rss_bytes(),
        recovery_s,
        sink_retries: retries.load(Ordering::Relaxed),
        classes,
        drops: report
            .drops
            .iter()
            .map(|d| DropRow {
                edge: d.edge.clone(),
                class: d.class.name().to_string(),
                reason: d.reason.name().to_string(),
                count: d.count,
            })
            .collect(),
        ledger: report.ledger,
        series,
    })
}
