//! The job report: a readable table on a terminal, JSON for tools.

mod assemble;

pub(crate) use assemble::{assemble, Snapshot};

use std::fmt;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::ledger::Ledger;
use crate::metrics::TaskState;
use crate::policy::{DropReason, EdgePolicy};
use crate::priority::Priority;
use crate::topology::{ExchangeKind, OpKind};

/// How a job ended (or `Running` for a live report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Still running (a live report).
    Running,
    /// Every source finished and the graph drained.
    Completed,
    /// Stopped on request and drained within the deadline.
    Stopped,
    /// Stopped on request but not drained in time: aborted, records left in flight.
    Aborted,
    /// An operator failed.
    Failed,
}

/// Record counts of one operator, summed over its instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorReport {
    /// Operator name.
    pub name: String,
    /// What it is.
    pub kind: OpKind,
    /// Records in.
    pub records_in: u64,
    /// Records out.
    pub records_out: u64,
}

/// Time accounting of one stage (operator chain), summed over its tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    /// Chain name.
    pub name: String,
    /// Tasks.
    pub parallelism: usize,
    /// The chained operators.
    pub operators: Vec<OperatorReport>,
    /// Task-seconds spent working.
    pub busy_s: f64,
    /// Task-seconds spent waiting for input.
    pub idle_s: f64,
    /// Task-seconds spent waiting for credit downstream.
    pub backpressured_s: f64,
    /// Busy share of the stage's task time, 0..1.
    pub busy_ratio: f64,
    /// Each task's state when the report was made.
    pub states: Vec<TaskState>,
}

/// One logical edge, summed over its ports (one per downstream instance).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeReport {
    /// `upstream op -> downstream op`.
    pub name: String,
    /// Upstream stage.
    pub from: String,
    /// Downstream stage.
    pub to: String,
    /// How records cross.
    pub exchange: ExchangeKind,
    /// Overload policy.
    pub policy: EdgePolicy,
    /// The order in which the receiver takes queued records.
    pub service: crate::policy::ServiceOrder,
    /// Capacity per port, in records, at the time of the report (the largest over the ports:
    /// an edge sized in time moves it; otherwise it is the configured capacity).
    pub capacity: usize,
    /// On an edge sized in time ([`Stream::edge_budget`](crate::Stream::edge_budget)): its
    /// receivers' measured drain rate, records per second, summed over the ports.
    #[serde(default)]
    pub drain_rate: Option<f64>,
    /// On an edge bounded in bytes ([`Stream::edge_bytes`](crate::Stream::edge_bytes)): the
    /// bytes per row its senders offer (the largest over the ports), which sets its
    /// capacity in rows.
    #[serde(default)]
    pub bytes_per_row: Option<f64>,
    /// Ports (downstream instances).
    pub ports: usize,
    /// Records sent.
    pub sent: u64,
    /// Batches sent.
    pub batches: u64,
    /// Records queued when the report was made.
    pub queued: u64,
    /// Most records queued at once on one port.
    pub max_queued: u64,
    /// Seconds senders waited for credit (summed over senders).
    pub credit_wait_s: f64,
    /// Sends that had to wait.
    pub blocked_sends: u64,
    /// Records dropped by the edge's policy.
    pub dropped: u64,
    /// Records deferred to the edge's log in this run.
    pub deferred: u64,
    /// Records in the edge's defer log at the time of the report.
    pub deferred_pending: u64,
    /// Records an earlier run left in the defer log, replayed in this one.
    pub restored: u64,
    /// Bytes of the defer log that could not be read back (a torn tail, damaged frames);
    /// the records in them are counted as `defer_error` drops when found in this run.
    #[serde(default)]
    pub defer_unreadable_bytes: u64,
    /// Frames of an earlier run skipped because their checksum failed.
    #[serde(default)]
    pub defer_corrupt_frames: u64,
    /// Defer log cursor writes that failed (nothing lost; a restart may replay those records
    /// twice) and reads that failed.
    #[serde(default)]
    pub defer_io_errors: u64,
    /// Ports whose cursor was unusable at open, so replay restarted at the first frame.
    #[serde(default)]
    pub defer_cursor_resets: u64,
}

/// Records one edge dropped for one reason and class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropCount {
    /// The edge.
    pub edge: String,
    /// The records' class.
    pub class: Priority,
    /// Why they were dropped.
    pub reason: DropReason,
    /// How many.
    pub count: u64,
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Records measured.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl LatencySummary {
    /// Summarizes a histogram recorded in microseconds.
    pub fn from_histogram_us(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// One sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkReport {
    /// Sink name.
    pub name: String,
    /// Records delivered.
    pub delivered: u64,
    /// Records the sink dead-lettered (permanent failures).
    pub dead_lettered: u64,
    /// Source-to-sink latency.
    pub latency_ms: LatencySummary,
}

/// What a job did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    /// Job name.
    pub job: String,
    /// How it ended.
    pub status: JobStatus,
    /// Wall-clock seconds from start to report.
    pub duration_s: f64,
    /// Records produced by sources.
    pub source_emitted: u64,
    /// Records delivered per second over the run.
    pub delivered_rate: f64,
    /// Stages (operator chains) with time accounting.
    pub stages: Vec<StageReport>,
    /// Edges with traffic and credit accounting.
    pub edges: Vec<EdgeReport>,
    /// Sinks with latency.
    pub sinks: Vec<SinkReport>,
    /// Drops by edge, class and reason (non-zero entries only).
    pub drops: Vec<DropCount>,
    /// Where every record ended.
    pub ledger: Ledger,
    /// The stage that limits throughput: the busiest stage that is not itself mostly waiting
    /// for credit downstream.
    pub bottleneck: Option<String>,
    /// Tasks still stuck in user code after an abort, detached.
    pub stuck_tasks: Vec<String>,
    /// Things that happened while the job ran (overload level changes, policy switches).
    pub events: Vec<JobEvent>,
}

/// Something that happened while a job ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    /// Seconds since the job started.
    pub at_s: f64,
    /// What kind of event (`level`, `policy`, ...).
    pub kind: String,
    /// Details.
    pub detail: String,
}

impl JobReport {
    /// Records dropped with this class, over all edges and reasons.
    pub fn dropped_of_class(&self, class: Priority) -> u64 {
        self.drops
            .iter()
            .filter(|d| d.class == class)
            .map(|d| d.count)
            .sum()
    }

    /// Records dropped for this reason, over all edges and classes.
    pub fn dropped_for(&self, reason: DropReason) -> u64 {
        self.drops
            .iter()
            .filter(|d| d.reason == reason)
            .map(|d| d.count)
            .sum()
    }

    /// The report as pretty JSON.
    ///
    /// # Errors
    /// Only if serialization fails, which the report's plain types do not cause.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }
}

pub(crate) fn bottleneck(stages: &[StageReport]) -> Option<String> {
    stages
        .iter()
        .filter(|s| {
            let total = s.busy_s + s.idle_s + s.backpressured_s;
            total > 0.0 && s.backpressured_s / total < 0.2
        })
        .max_by(|a, b| a.busy_ratio.total_cmp(&b.busy_ratio))
        .filter(|s| s.busy_ratio > 0.5)
        .map(|s| s.name.clone())
}

fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for JobReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "job {}: {:?} in {:.3} s, {} delivered ({:.1} M/s)",
            self.job,
            self.status,
            self.duration_s,
            count(self.ledger.delivered),
            self.delivered_rate / 1e6
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<34} {:>3} {:>7} {:>7} {:>7}  operators (in -> out)",
            "stage", "p", "busy%", "idle%", "bp%"
        )?;
        for s in &self.stages {
            let total = (s.busy_s + s.idle_s + s.backpressured_s).max(1e-9);
            let ops = s
                .operators
                .iter()
                .map(|o| {
                    format!(
                        "{} ({} -> {})",
                        o.name,
                        count(o.records_in),
                        count(o.records_out)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            writeln!(
                f,
                "{:<34} {:>3} {:>6.1}% {:>6.1}% {:>6.1}%  {}",
                truncate(&s.name, 34),
                s.parallelism,
                100.0 * s.busy_s / total,
                100.0 * s.idle_s / total,
                100.0 * s.backpressured_s / total,
                ops
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<34} {:<11} {:<17} {:<8} {:>8} {:>14} {:>12} {:>8} {:>9} {:>11}",
            "edge",
            "exchange",
            "policy",
            "service",
            "capacity",
            "sent",
            "dropped",
            "queued",
            "max queue",
            "credit wait"
        )?;
        for e in &self.edges {
            writeln!(
                f,
                "{:<34} {:<11} {:<17} {:<8} {:>8} {:>14} {:>12} {:>8} {:>9} {:>10.3}s",
                truncate(&e.name, 34),
                e.exchange.to_string(),
                truncate(&e.policy.to_string(), 17),
                e.service.name(),
                count(e.capacity as u64),
                count(e.sent),
                count(e.dropped),
                count(e.queued),
                count(e.max_queued),
                e.credit_wait_s
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<34} {:>14} {:>9} {:>9} {:>9} {:>9}",
            "sink", "delivered", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
        )?;
        for s in &self.sinks {
            writeln!(
                f,
                "{:<34} {:>14} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                truncate(&s.name, 34),
                count(s.delivered),
                s.latency_ms.p50,
                s.latency_ms.p99,
                s.latency_ms.p999,
                s.latency_ms.max
            )?;
        }
        writeln!(f)?;
        if !self.drops.is_empty() {
            writeln!(
                f,
                "{:<34} {:<9} {:<14} {:>12}",
                "drops: edge", "class", "reason", "records"
            )?;
            for d in &self.drops {
                writeln!(
                    f,
                    "{:<34} {:<9} {:<14} {:>12}",
                    truncate(&d.edge, 34),
                    d.class.name(),
                    d.reason.name(),
                    count(d.count)
                )?;
            }
            writeln!(f)?;
        }
        let l = &self.ledger;
        writeln!(
            f,
            "ledger: emitted {} = delivered {} + filtered {} + dropped {} + deferred {} + dead-lettered {} + in flight {}  [{}]",
            count(l.emitted),
            count(l.delivered),
            count(l.filtered),
            count(l.dropped),
            count(l.deferred_pending),
            count(l.dead_lettered),
            count(l.in_flight),
            if l.balanced { "balanced" } else { "DOES NOT BALANCE" }
        )?;
        if let Some(b) = &self.bottleneck {
            writeln!(f, "bottleneck: {b}")?;
        }
        for e in &self.events {
            writeln!(f, "event at {:.3}s: {} {}", e.at_s, e.kind, e.detail)?;
        }
        if !self.stuck_tasks.is_empty() {
            writeln!(f, "stuck tasks (detached): {}", self.stuck_tasks.join(", "))?;
        }
        for e in &self.edges {
            if e.defer_unreadable_bytes
                + e.defer_corrupt_frames
                + e.defer_io_errors
                + e.defer_cursor_resets
                > 0
            {
                writeln!(
                    f,
                    "defer log of {}: {} bytes unreadable, {} corrupt frames skipped, {} I/O errors, cursor reset on {} ports (see defer_error drops)",
                    e.name,
                    count(e.defer_unreadable_bytes),
                    count(e.defer_corrupt_frames),
                    count(e.defer_io_errors),
                    e.defer_cursor_resets
                )?;
            }
        }
        Ok(())
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}
