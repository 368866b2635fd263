//! Assembling a [`JobReport`] from a running or finished job's counters: the runtime hands
//! over a snapshot of what the plan holds; nothing here touches threads or edges' state
//! beyond reading their probes.

use std::time::Duration;

use crate::ledger::Ledger;
use crate::plan::{PlanEdge, PlanOp, PlanStage};
use crate::policy::{DropReason, REASONS};
use crate::priority::{Priority, CLASSES};
use crate::topology::OpKind;

use super::{
    DropCount, EdgeReport, JobEvent, JobReport, JobStatus, LatencySummary, OperatorReport,
    SinkReport, StageReport,
};

/// What a report is built from.
pub(crate) struct Snapshot<'a> {
    pub job: &'a str,
    pub status: JobStatus,
    pub elapsed: Duration,
    pub ops: &'a [PlanOp],
    pub stages: &'a [PlanStage],
    pub edges: &'a [PlanEdge],
    pub stuck: &'a [String],
    pub events: Vec<JobEvent>,
}

/// The report of a job as it stands.
pub(crate) fn assemble(snap: &Snapshot<'_>) -> JobReport {
    let secs = snap.elapsed.as_secs_f64();
    let mut emitted = 0u64;
    let mut source_emitted = 0u64;
    let mut filtered = 0u64;
    let mut delivered = 0u64;
    let mut dead_lettered = 0u64;
    for o in snap.ops {
        emitted += o.stats.created();
        dead_lettered += o.stats.dead_lettered();
        filtered += o.stats.absorbed();
        if o.kind == OpKind::Source {
            source_emitted += o.stats.records_out();
        }
        if let Some(s) = &o.sink {
            delivered += s.delivered();
            dead_lettered += s.dead_lettered();
        }
    }
    let mut drops = Vec::new();
    let edges: Vec<EdgeReport> = snap
        .edges
        .iter()
        .map(|e| {
            let mut drop_matrix = [[0u64; CLASSES]; REASONS];
            let mut r = EdgeReport {
                name: e.name.clone(),
                from: snap.stages[e.from_stage].name.clone(),
                to: snap.stages[e.to_stage].name.clone(),
                exchange: e.exchange,
                policy: e.policy,
                service: e.service,
                capacity: e.capacity,
                ports: e.ports.len(),
                sent: 0,
                batches: 0,
                queued: 0,
                max_queued: 0,
                credit_wait_s: 0.0,
                blocked_sends: 0,
                dropped: 0,
                deferred: 0,
                deferred_pending: 0,
                restored: 0,
                defer_unreadable_bytes: 0,
                defer_corrupt_frames: 0,
                defer_io_errors: 0,
                defer_cursor_resets: 0,
                drain_rate: None,
                bytes_per_row: None,
            };
            let mut live_capacity = 0;
            for (probe, port) in &e.ports {
                let s = probe.port_snapshot(*port);
                live_capacity = live_capacity.max(s.capacity);
                if let Some(rate) = s.drain_rate {
                    *r.drain_rate.get_or_insert(0.0) += rate;
                }
                if let Some(b) = s.bytes_per_row {
                    let m = r.bytes_per_row.get_or_insert(0.0);
                    *m = m.max(b);
                }
                r.sent += s.sent_records;
                r.batches += s.sent_batches;
                r.queued += s.queued_records as u64;
                r.max_queued = r.max_queued.max(s.max_queued_records as u64);
                r.credit_wait_s += s.credit_wait_ns as f64 / 1e9;
                r.blocked_sends += s.blocked_sends;
                r.dropped += s.dropped();
                r.deferred += s.deferred;
                r.deferred_pending += s.deferred_pending;
                r.restored += s.restored;
                r.defer_unreadable_bytes += s.defer.truncated_bytes + s.defer.skipped_bytes;
                r.defer_corrupt_frames += s.defer.corrupt_frames;
                r.defer_io_errors += s.defer.io_errors;
                r.defer_cursor_resets += u64::from(s.defer.cursor_reset);
                for (ri, per_class) in s.drops.iter().enumerate() {
                    for (ci, &n) in per_class.iter().enumerate() {
                        drop_matrix[ri][ci] += n;
                    }
                }
            }
            if live_capacity > 0 {
                r.capacity = live_capacity;
            }
            for (ri, per_class) in drop_matrix.iter().enumerate() {
                for (ci, &n) in per_class.iter().enumerate() {
                    if n > 0 {
                        drops.push(DropCount {
                            edge: e.name.clone(),
                            class: Priority::rank(ci as u8),
                            reason: DropReason::ALL[ri],
                            count: n,
                        });
                    }
                }
            }
            r
        })
        .collect();
    let dropped: u64 = edges.iter().map(|e| e.dropped).sum();
    let deferred_pending: u64 = edges.iter().map(|e| e.deferred_pending).sum();
    // Records restored from a defer log enter this run's books as emitted.
    emitted += edges.iter().map(|e| e.restored).sum::<u64>();
    let queued: u64 = edges.iter().map(|e| e.queued).sum();
    let mut abandoned = 0u64;
    let stages: Vec<StageReport> = snap
        .stages
        .iter()
        .map(|st| {
            let n = st.tasks.len().max(1) as f64;
            let idle: f64 = st.tasks.iter().map(|t| t.idle_ns() as f64 / 1e9).sum();
            let bp: f64 = st
                .tasks
                .iter()
                .map(|t| t.backpressure_ns() as f64 / 1e9)
                .sum();
            abandoned += st.tasks.iter().map(|t| t.abandoned()).sum::<u64>();
            let busy = (secs * n - idle - bp).max(0.0);
            StageReport {
                name: st.name.clone(),
                parallelism: st.tasks.len(),
                operators: st
                    .ops
                    .iter()
                    .map(|&o| OperatorReport {
                        name: snap.ops[o].name.clone(),
                        kind: snap.ops[o].kind,
                        records_in: match &snap.ops[o].sink {
                            Some(s) => s.delivered(),
                            None => snap.ops[o].stats.records_in(),
                        },
                        records_out: snap.ops[o].stats.records_out(),
                    })
                    .collect(),
                busy_s: busy,
                idle_s: idle,
                backpressured_s: bp,
                busy_ratio: if secs > 0.0 { busy / (secs * n) } else { 0.0 },
                states: st.tasks.iter().map(|t| t.state()).collect(),
            }
        })
        .collect();
    let sinks = snap
        .ops
        .iter()
        .filter_map(|o| {
            o.sink.as_ref().map(|s| SinkReport {
                name: o.name.clone(),
                delivered: s.delivered(),
                dead_lettered: s.dead_lettered(),
                latency_ms: s
                    .latency_us()
                    .map(|h| LatencySummary::from_histogram_us(&h))
                    .unwrap_or_default(),
            })
        })
        .collect();
    let ledger = Ledger::new(
        emitted,
        delivered,
        filtered,
        dropped,
        deferred_pending,
        dead_lettered,
        queued + abandoned,
    );
    let bottleneck = super::bottleneck(&stages);
    JobReport {
        job: snap.job.to_string(),
        status: snap.status,
        duration_s: secs,
        source_emitted,
        delivered_rate: if secs > 0.0 {
            delivered as f64 / secs
        } else {
            0.0
        },
        stages,
        edges,
        sinks,
        drops,
        ledger,
        bottleneck,
        stuck_tasks: snap.stuck.to_vec(),
        events: snap.events.clone(),
    }
}
