//! What one run measured: the JSON report of `sluice bench overload` and the scenario jobs.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use sluice_engine::{DropReason, Ledger, Priority, ServiceOrder};

use super::scenario::{PipelineShape, PolicyChoice};
use super::schedule::Profile;

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
    /// The class (serialized by name: `debug`, `info`, ...).
    pub class: Priority,
    /// The reason (`shed_refused`, `drop_newest`, ...).
    pub reason: DropReason,
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
    /// Records delivered, per class.
    pub delivered: BTreeMap<Priority, u64>,
    /// Records dropped, per class.
    pub dropped: BTreeMap<Priority, u64>,
    /// Records queued on the edge.
    pub queued: u64,
    /// Records deferred and not yet replayed.
    pub deferred: u64,
    /// Records waiting in an external buffer (a Kafka topic) for the job to read them.
    #[serde(default)]
    pub buffered: u64,
    /// Resident memory of the process, bytes (0 where the OS does not say).
    #[serde(default)]
    pub rss_bytes: u64,
    /// The capacity of the edge under test now, in records (it moves under an edge budget).
    #[serde(default)]
    pub capacity: u64,
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
    pub policy: PolicyChoice,
    /// The load profile.
    pub profile: Profile,
    /// Seconds the producer offered load.
    pub duration_s: f64,
    /// The run was stopped before its window ended (a signal): `duration_s` and the rates
    /// cover the time it ran.
    #[serde(default)]
    pub stopped: bool,
    /// The run was aborted when the process's memory passed the scenario's cap
    /// (`max_rss_bytes`): it would have exhausted memory.
    #[serde(default)]
    pub memory_capped: bool,
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
    /// Delivered rate over sink capacity (its mean, if it stepped), while the load was offered.
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
    /// Per class (a map keyed by class name in JSON, lowest class first).
    pub classes: BTreeMap<Priority, ClassResult>,
    /// Drops by edge, class and reason.
    pub drops: Vec<DropRow>,
    /// The job's ledger.
    pub ledger: Ledger,
    /// The service order of the edges (none: the oracle baseline, or a report from before
    /// service orders).
    #[serde(default)]
    pub service: Option<ServiceOrder>,
    /// The pipeline.
    #[serde(default)]
    pub pipeline: PipelineShape,
    /// Latency before and after the sink's step, when the scenario had one.
    #[serde(default)]
    pub step: Option<StepResult>,
    /// The time series, every 100 ms.
    pub series: Vec<Sample>,
}

/// Latency per class on both sides of a change of the sink's capacity (by when records were
/// delivered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// Seconds after the start.
    pub at_s: f64,
    /// Sink capacity before and after, records per second.
    pub sink_capacity: [f64; 2],
    /// Median edge capacity over the samples before and after (the second half of each
    /// phase, once an edge sized in time has settled).
    pub edge_capacity: [u64; 2],
    /// Latency of the records delivered before the step.
    pub before: BTreeMap<Priority, Percentiles>,
    /// Latency of the records delivered after it.
    pub after: BTreeMap<Priority, Percentiles>,
}

/// Resident set size of this process now (`VmRSS`), where the OS reports it.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
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
