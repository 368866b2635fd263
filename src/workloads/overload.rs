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

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sluice_engine::{
    DeferConfig, DropCount, EdgePolicy, JobStatus, JsonCodec, Ledger, Pipeline, Priority,
    SampleConfig, Sink, SinkError, Source, SourceStatus, WhenLogFull, CLASSES,
};

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

/// Parameters of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// The edge policy.
    pub policy: PolicyChoice,
    /// How long the producer offers load.
    pub duration: Duration,
    /// Records per second the sink can process.
    pub sink_capacity: f64,
    /// Offered rate as a multiple of the sink capacity.
    pub overload: f64,
    /// Edge capacity in records.
    pub capacity: usize,
    /// Share of each class in the offered load, by rank.
    pub mix: [f64; CLASSES],
}

impl Default for Scenario {
    fn default() -> Self {
        let mut mix = [0.0; CLASSES];
        mix[Priority::DEBUG.index()] = 0.70;
        mix[Priority::INFO.index()] = 0.20;
        mix[Priority::WARN.index()] = 0.08;
        mix[Priority::ERROR.index()] = 0.02;
        Scenario {
            policy: PolicyChoice::Shed,
            duration: Duration::from_secs(5),
            sink_capacity: 100_000.0,
            overload: 10.0,
            capacity: 512,
            mix,
        }
    }
}

/// Per-class results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassResult {
    /// The class.
    pub class: String,
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

/// What one run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// The policy.
    pub policy: String,
    /// Seconds the producer offered load.
    pub duration_s: f64,
    /// Seconds until the job finished draining.
    pub total_s: f64,
    /// Records the schedule offered per second.
    pub offered_rate: f64,
    /// Records the producer actually emitted (fewer than offered when it was blocked).
    pub emitted: u64,
    /// Records delivered per second, over the offered duration.
    pub delivered_rate: f64,
    /// The sink's capacity.
    pub sink_capacity: f64,
    /// Delivered rate over sink capacity, while the load was offered.
    pub goodput_ratio: f64,
    /// Peak resident memory of the process running the scenario, in bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Per class.
    pub classes: Vec<ClassResult>,
    /// Drops by edge, class and reason.
    pub drops: Vec<DropCount>,
    /// `(seconds, records queued on the edge)`, sampled every 100 ms.
    pub queue: Vec<(f64, u64)>,
    /// The job's ledger.
    pub ledger: Ledger,
}

fn class_of(seq: u64, cumulative: &[f64; CLASSES]) -> Priority {
    // A fixed hash of the sequence number, mapped to [0, 1).
    let h = seq
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let h = (h ^ (h >> 31)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let u = ((h ^ (h >> 29)) >> 11) as f64 / (1u64 << 53) as f64;
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
    rate: f64,
    total: u64,
    produced: u64,
    cumulative: [f64; CLASSES],
}

impl Source<Event> for OpenLoop {
    fn poll_batch(&mut self, out: &mut Vec<Event>, max: usize) -> SourceStatus {
        loop {
            if Instant::now() >= self.end {
                return SourceStatus::Done;
            }
            let elapsed = self.epoch.elapsed().as_secs_f64();
            let due = ((elapsed * self.rate) as u64 + 1).min(self.total);
            if due > self.produced {
                let n = (due - self.produced).min(max as u64);
                for k in self.produced..self.produced + n {
                    out.push(Event {
                        seq: k,
                        class: class_of(k, &self.cumulative),
                        intended_ns: (k as f64 / self.rate * 1e9) as u64,
                    });
                }
                self.produced += n;
                return if self.produced >= self.total {
                    SourceStatus::Done
                } else {
                    SourceStatus::More
                };
            }
            if self.produced >= self.total {
                return SourceStatus::Done;
            }
            let wait = (self.produced as f64 + 1.0) / self.rate - elapsed;
            if wait > 0.002 {
                return SourceStatus::Idle;
            }
            std::thread::yield_now();
        }
    }
}

/// A sink that processes exactly `capacity` records per second and records latency per
/// class from each event's intended time.
struct PacedSink {
    epoch: Instant,
    per_record: Duration,
    next: Option<Instant>,
    hists: Vec<Histogram<u64>>,
    out: Arc<Mutex<Vec<Histogram<u64>>>>,
}

impl Sink<Event> for PacedSink {
    fn write(&mut self, records: Vec<Event>) -> Result<(), SinkError> {
        let now = Instant::now();
        let now_ns = now.duration_since(self.epoch).as_nanos() as u64;
        for r in &records {
            let us = now_ns.saturating_sub(r.intended_ns) / 1000;
            if let Some(h) = self.hists.get_mut(r.class.index()) {
                h.saturating_record(us.max(1));
            }
        }
        // The sink's own clock: it cannot bank idle time beyond one millisecond.
        let start = match self.next {
            Some(n) if n + Duration::from_millis(1) > now => n,
            _ => now,
        };
        let done = start + self.per_record * records.len() as u32;
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
        Ok(())
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

/// One histogram per class, microseconds from 1 us to 1 h. The bounds are constants
/// hdrhistogram accepts; were it ever to refuse them, latency would go unrecorded (empty
/// percentiles) rather than the benchmark panicking.
fn histograms() -> Vec<Histogram<u64>> {
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

/// Runs one scenario in this process.
///
/// # Errors
/// When the job cannot be built or fails (including a ledger that does not balance).
pub fn run(s: &Scenario) -> Result<ScenarioResult, Box<dyn std::error::Error>> {
    let rate = s.sink_capacity * s.overload;
    let total = (rate * s.duration.as_secs_f64()) as u64;
    let mut cumulative = [0.0; CLASSES];
    let sum: f64 = s.mix.iter().sum::<f64>().max(1e-12);
    let mut acc = 0.0;
    for (c, m) in cumulative.iter_mut().zip(s.mix) {
        acc += m / sum;
        *c = acc;
    }
    let defer_dir = tempfile::tempdir()?;
    let p = Pipeline::new(format!("overload-{}", s.policy.name())).batch_size(256);
    let epoch = Instant::now();
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
    let per_record = Duration::from_secs_f64(1.0 / s.sink_capacity.max(1.0));
    let end = epoch + s.duration;
    p.source("producer", 1, move |_| OpenLoop {
        epoch,
        end,
        rate,
        total,
        produced: 0,
        cumulative,
    })
    .edge_capacity(capacity)
    .edge_policy(policy)
    .classify(|e: &Event| e.class)
    .defer_to(defer_dir.path(), 256 << 20, JsonCodec::<Event>::new())
    .new_chain()
    .sink("sink", move |_| PacedSink {
        epoch,
        per_record,
        next: None,
        hists: histograms(),
        out: h2.clone(),
    });
    let mut job = Some(p.run()?);
    let mut queue = Vec::new();
    let mut delivered_in_window = None;
    let mut aborted = None;
    while let Some(j) = job.as_ref() {
        if j.is_finished() {
            break;
        }
        let t = epoch.elapsed();
        let r = j.report();
        queue.push((t.as_secs_f64(), r.edges.first().map_or(0, |e| e.queued)));
        if delivered_in_window.is_none() && t >= s.duration {
            delivered_in_window = Some(r.ledger.delivered);
            // The producer ends with the window and the edge drains (a deferring edge replays
            // its log). Draining an unbounded backlog would take `overload` times the window:
            // that run is aborted, and its report counts what was still queued as in flight.
            if s.policy == PolicyChoice::Unbounded {
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
        (None, Some(j)) => j.wait()?,
        (None, None) => return Err("the job disappeared".into()),
    };
    let total_s = epoch.elapsed().as_secs_f64();
    let window = s.duration.as_secs_f64();
    let delivered_window = delivered_in_window.unwrap_or(report.ledger.delivered);
    let hists = hists.lock();
    let mut classes = Vec::new();
    for c in Priority::all() {
        let offered = (0..total)
            .filter(|k| class_of(*k, &cumulative) == c)
            .count() as u64;
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
        classes.push(ClassResult {
            class: c.name().to_string(),
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
        });
    }
    if report.status == JobStatus::Failed {
        return Err(format!("scenario ended {:?}", report.status).into());
    }
    Ok(ScenarioResult {
        policy: s.policy.name().to_string(),
        duration_s: window,
        total_s,
        offered_rate: rate,
        emitted: report.source_emitted,
        delivered_rate: delivered_window as f64 / window,
        sink_capacity: s.sink_capacity,
        goodput_ratio: delivered_window as f64 / window / s.sink_capacity,
        peak_rss_bytes: peak_rss_bytes(),
        classes,
        drops: report.drops.clone(),
        queue,
        ledger: report.ledger,
    })
}
