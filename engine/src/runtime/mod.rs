//! The threaded runtime: one named OS thread per operator-chain instance.
//!
//! # Lifecycle
//! - **Run**: sources are polled for batches; every other task receives from its inbox.
//! - **Complete**: a source that is done finishes its chain; each `finish` forwards end of
//!   stream in band, so downstream tasks drain everything queued before they end.
//! - **Stop** ([`Job::stop`]): sources stop at their next batch boundary and the graph drains
//!   as on completion. If it has not drained by the deadline, the job is aborted.
//! - **Abort**: every edge wakes all its waiters and fails their calls; tasks exit, counting
//!   the records they held as abandoned (in flight) in the ledger.
//! - **Failure**: a panic in user code, or a sink error, records the failure (naming the
//!   operator) and aborts the job. [`Job::wait`] returns the error; it never hangs on a
//!   failed job: tasks stuck in user code are given a grace period, then detached and named
//!   in the report.

pub(crate) mod control;
pub(crate) mod exchange;
mod scatter;
pub(crate) mod sinkstats;
pub(crate) mod task;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::{BuildError, JobError};
use crate::ledger::Ledger;
use crate::metrics::TaskState;
use crate::plan::{EdgeId, Plan, PlanEdge, PlanOp, PlanStage};
use crate::policy::EdgePolicy;
use crate::report::{JobEvent, JobReport, JobStatus, Snapshot};
use crate::topology::Topology;
use control::{Control, Failure};
use task::{current_op, take_held, Halt};

pub use exchange::partition_of;

/// An [`EdgeId`] that does not name an edge of this job (it came from another pipeline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not an edge of this job")]
pub struct UnknownEdge(pub EdgeId);

/// How long a failed or aborted job waits for tasks stuck in user code before detaching them.
const ABORT_GRACE: Duration = Duration::from_secs(5);

/// A running job.
///
/// Dropping a `Job` without waiting aborts it.
pub struct Job {
    name: String,
    control: Arc<Control>,
    threads: Vec<(String, JoinHandle<()>)>,
    ops: Vec<PlanOp>,
    stages: Vec<PlanStage>,
    edges: Arc<Vec<PlanEdge>>,
    edge_ids: Arc<Vec<usize>>,
    topology: Topology,
    started: Instant,
    stuck: Vec<String>,
    events: Arc<Mutex<Vec<JobEvent>>>,
    tasks: usize,
}

/// A handle to a running job that other threads can hold: observe its edges, switch their
/// policies, record events. It outlives the job harmlessly.
#[derive(Clone)]
pub struct JobHandle {
    control: Arc<Control>,
    edges: Arc<Vec<PlanEdge>>,
    edge_ids: Arc<Vec<usize>>,
    events: Arc<Mutex<Vec<JobEvent>>>,
    started: Instant,
    tasks: usize,
}

impl std::fmt::Debug for JobHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle").finish_non_exhaustive()
    }
}

impl JobHandle {
    /// True when every task of the job has finished.
    pub fn is_finished(&self) -> bool {
        self.control.tasks_done() >= self.tasks
    }

    /// Asks the job to stop: sources stop at their next batch boundary and the graph drains;
    /// the thread in [`Job::wait`] then returns the report (status `Stopped`). Returns at
    /// once. A deferring edge leaves what it still holds in its log for the next run.
    pub fn request_stop(&self) {
        self.control.request_stop();
    }

    /// Like [`JobHandle::request_stop`], and if the graph has not drained within `deadline`
    /// the job is aborted; its report counts what was still in flight.
    pub fn stop_within(&self, deadline: Duration) {
        self.control.request_stop_within(deadline);
    }

    /// Waits up to `timeout` for the job to finish; true when it has.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.control
            .wait_done(self.tasks, Some(Instant::now() + timeout))
    }

    /// The job's edges, by name (`upstream op -> downstream op`), for display.
    pub fn edges(&self) -> Vec<String> {
        self.edges.iter().map(|e| e.name.clone()).collect()
    }

    /// The name of the edge an id names, for display.
    ///
    /// # Errors
    /// [`UnknownEdge`] for an id from another pipeline.
    pub fn edge_name(&self, edge: EdgeId) -> Result<&str, UnknownEdge> {
        self.edge(edge).map(|e| e.name.as_str())
    }

    /// The edge an [`EdgeId`] of this job's pipeline names.
    fn edge(&self, id: EdgeId) -> Result<&PlanEdge, UnknownEdge> {
        self.edge_ids
            .get(id.0)
            .and_then(|&e| self.edges.get(e))
            .ok_or(UnknownEdge(id))
    }

    /// How full an edge is: records queued over capacity, summed over its ports; 0..1, above
    /// 1 only while one batch larger than the edge is queued (such a batch is admitted whole
    /// so it cannot deadlock the edge).
    ///
    /// # Errors
    /// [`UnknownEdge`] for an id from another pipeline.
    pub fn edge_fill(&self, edge: EdgeId) -> Result<f64, UnknownEdge> {
        let e = self.edge(edge)?;
        let queued: usize = e
            .ports
            .iter()
            .map(|(p, i)| p.port_snapshot(*i).queued_records)
            .sum();
        Ok(queued as f64 / (e.capacity * e.ports.len().max(1)) as f64)
    }

    /// Switches an edge's overload policy on all its ports and records the change as an
    /// event. A policy that acts on classes uses the edge's classifier (set one when building
    /// the edge, or every record counts as `Priority::DEFAULT`).
    ///
    /// # Errors
    /// [`UnknownEdge`] for an id from another pipeline.
    pub fn set_edge_policy(&self, edge: EdgeId, policy: EdgePolicy) -> Result<(), UnknownEdge> {
        let e = self.edge(edge)?;
        for (p, i) in &e.ports {
            p.set_policy(*i, policy);
        }
        self.record_event("policy", format!("{}: {policy}", e.name));
        Ok(())
    }

    /// Records an event in the job's report.
    pub fn record_event(&self, kind: &str, detail: String) {
        self.events.lock().push(JobEvent {
            at_s: self.started.elapsed().as_secs_f64(),
            kind: kind.to_string(),
            detail,
        });
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name)
            .field("tasks", &self.threads.len())
            .finish_non_exhaustive()
    }
}

pub(crate) fn spawn(plan: Plan, topology: Topology) -> Result<Job, BuildError> {
    let Plan {
        name,
        ops,
        stages,
        edges,
        runners,
        edge_ids,
        control,
    } = plan;
    for e in &edges {
        for (probe, _) in &e.ports {
            control.add_probe(probe.clone());
        }
    }
    let tasks = runners.iter().map(Vec::len).sum();
    control::register(&name, &control);
    let mut job = Job {
        name,
        control: control.clone(),
        threads: Vec::new(),
        ops,
        stages,
        edges: Arc::new(edges),
        edge_ids: Arc::new(edge_ids),
        topology,
        started: Instant::now(),
        stuck: Vec::new(),
        events: Arc::new(Mutex::new(Vec::new())),
        tasks,
    };
    for (s, stage_runners) in runners.into_iter().enumerate() {
        for (i, slot) in stage_runners.into_iter().enumerate() {
            let Some(runner) = slot else { continue };
            let task = job.stages[s].tasks[i].clone();
            let ctl = control.clone();
            let tname = format!("{}#{i}", job.stages[s].name);
            let spawned = std::thread::Builder::new()
                .name(tname.clone())
                .spawn(move || {
                    task.set_state(TaskState::Running);
                    let r = catch_unwind(AssertUnwindSafe(move || runner.run()));
                    match r {
                        Ok(Ok(())) | Ok(Err(Halt::Aborted)) => {}
                        Ok(Err(Halt::SinkFailed { op, error })) => {
                            ctl.fail(Failure::SinkFailed { op, error })
                        }
                        Ok(Err(Halt::SourceFailed { op, error })) => {
                            ctl.fail(Failure::SourceFailed { op, error })
                        }
                        Err(payload) => {
                            // The batch the panicking code held is in flight, not gone.
                            task.add_abandoned(take_held() as u64);
                            let op = current_op();
                            ctl.fail(Failure::Panicked {
                                op,
                                message: panic_message(payload.as_ref()),
                            })
                        }
                    }
                    task.set_state(TaskState::Finished);
                    ctl.task_done();
                });
            match spawned {
                Ok(h) => job.threads.push((tname, h)),
                Err(e) => {
                    control.abort();
                    return Err(BuildError::Spawn {
                        operator: tname,
                        message: e.to_string(),
                    });
                }
            }
        }
    }
    Ok(job)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

impl Job {
    /// A handle other threads can hold (an overload controller, a dashboard).
    pub fn handle(&self) -> JobHandle {
        JobHandle {
            control: self.control.clone(),
            edges: self.edges.clone(),
            edge_ids: self.edge_ids.clone(),
            events: self.events.clone(),
            started: self.started,
            tasks: self.tasks,
        }
    }

    /// The job's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The job's graph.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// True when every task has finished.
    pub fn is_finished(&self) -> bool {
        self.control.tasks_done() >= self.threads.len()
    }

    /// Asks sources to stop at their next batch boundary; the graph then drains. Returns at
    /// once; [`Job::wait`] collects the report.
    pub fn request_stop(&self) {
        self.control.request_stop();
    }

    /// States of every task, by thread name, for observing where a job waits.
    pub fn task_states(&self) -> Vec<(String, TaskState)> {
        let mut v = Vec::new();
        for st in &self.stages {
            for (i, t) in st.tasks.iter().enumerate() {
                v.push((format!("{}#{i}", st.name), t.state()));
            }
        }
        v
    }

    /// A report of the job so far, while it runs. Its ledger's `in_flight` is what the other
    /// terms leave unaccounted (records queued or in hand), so it always balances; the
    /// independent check happens in the final report.
    pub fn report(&self) -> JobReport {
        let mut r = self.build_report(JobStatus::Running);
        let l = r.ledger;
        let accounted = l.delivered + l.filtered + l.dropped + l.deferred_pending + l.dead_lettered;
        r.ledger = Ledger::new(
            l.emitted,
            l.delivered,
            l.filtered,
            l.dropped,
            l.deferred_pending,
            l.dead_lettered,
            l.emitted.saturating_sub(accounted),
        );
        r
    }

    /// Waits for the job to complete and returns its report.
    ///
    /// # Errors
    /// [`JobError::Panicked`] or [`JobError::SinkFailed`] if an operator failed (the report
    /// is inside the error); [`JobError::LedgerMismatch`] if a record is unaccounted for.
    pub fn wait(mut self) -> Result<JobReport, JobError> {
        let total = self.threads.len();
        loop {
            // Wake at least every 100 ms: another thread may ask for a stop with a deadline.
            let tick = Instant::now() + Duration::from_millis(100);
            let until = self.control.stop_deadline().map_or(tick, |d| d.min(tick));
            if self.control.wait_done(total, Some(until)) {
                break;
            }
            let overdue = self
                .control
                .stop_deadline()
                .is_some_and(|d| Instant::now() >= d);
            if overdue {
                // A stop that has not drained in time: abort; the report counts what was
                // still in flight.
                self.control.abort();
            }
            if self.control.aborted() {
                let _ = self
                    .control
                    .wait_done(total, Some(Instant::now() + ABORT_GRACE));
                break;
            }
        }
        self.finish()
    }

    /// Waits up to `timeout` for every task to finish; true when they have (then
    /// [`Job::wait`] returns at once).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.control
            .wait_done(self.threads.len(), Some(Instant::now() + timeout))
    }

    /// Stops the job: sources stop, the graph drains, and the report is returned. If the
    /// graph has not drained within `deadline`, the job is aborted and the report shows what
    /// was in flight.
    ///
    /// # Errors
    /// As [`Job::wait`].
    pub fn stop(self, deadline: Duration) -> Result<JobReport, JobError> {
        self.control.request_stop_within(deadline);
        self.wait()
    }

    fn finish(&mut self) -> Result<JobReport, JobError> {
        // A task reports itself done just before its thread returns: once every task has,
        // joining is immediate. Only a task that never reported (stuck in user code after an
        // abort) is detached rather than joined.
        let all_done = self.control.tasks_done() >= self.threads.len();
        for (name, h) in std::mem::take(&mut self.threads) {
            if all_done || h.is_finished() {
                let _ = h.join();
            } else {
                self.stuck.push(name);
            }
        }
        let status = if self.control.failed() {
            JobStatus::Failed
        } else if self.control.aborted() {
            JobStatus::Aborted
        } else if self.control.stop_requested() {
            JobStatus::Stopped
        } else {
            JobStatus::Completed
        };
        let report = self.build_report(status);
        match self.control.take_failure() {
            Some(Failure::Panicked { op, message }) => Err(JobError::Panicked {
                operator: self.op_name(op),
                message,
                report: Box::new(report),
            }),
            Some(Failure::SinkFailed { op, error }) => Err(JobError::SinkFailed {
                operator: self.op_name(op),
                error,
                report: Box::new(report),
            }),
            Some(Failure::SourceFailed { op, error }) => Err(JobError::SourceFailed {
                operator: self.op_name(op),
                error,
                report: Box::new(report),
            }),
            None if !report.ledger.balanced => Err(JobError::LedgerMismatch {
                detail: report.ledger.explain(),
                report: Box::new(report),
            }),
            None => Ok(report),
        }
    }

    fn op_name(&self, op: usize) -> String {
        self.ops
            .get(op)
            .map(|o| o.name.clone())
            .unwrap_or_else(|| "<runtime>".to_string())
    }

    fn build_report(&self, status: JobStatus) -> JobReport {
        crate::report::assemble(&Snapshot {
            job: &self.name,
            status,
            elapsed: self.started.elapsed(),
            ops: &self.ops,
            stages: &self.stages,
            edges: &self.edges,
            stuck: &self.stuck,
            events: self.events.lock().clone(),
        })
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.control.abort();
        }
    }
}
