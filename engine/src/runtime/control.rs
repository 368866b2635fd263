//! Job-wide control: stop and abort requests, the first failure, task completion.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::edge::EdgeProbe;
use crate::operator::{SinkError, SourceError};

/// The first failure of a job.
#[derive(Debug)]
pub(crate) enum Failure {
    Panicked { op: usize, message: String },
    SinkFailed { op: usize, error: SinkError },
    SourceFailed { op: usize, error: SourceError },
}

/// Every job of this process that is still running, for a process-wide stop
/// ([`crate::shutdown`]).
static LIVE: Mutex<Vec<(String, std::sync::Weak<Control>)>> = Mutex::new(Vec::new());

/// Registers a job's control for [`stop_all`].
pub(crate) fn register(name: &str, control: &Arc<Control>) {
    let mut live = LIVE.lock();
    live.retain(|(_, c)| c.strong_count() > 0);
    live.push((name.to_string(), Arc::downgrade(control)));
}

/// Asks every running job of this process to stop within `deadline`; returns their names
/// and the records each holds on its edges now.
pub(crate) fn stop_all(deadline: Duration) -> Vec<(String, u64)> {
    live_jobs(|c| c.request_stop_within(deadline))
}

/// The running jobs and the records each holds on its edges, applying `f` to each.
pub(crate) fn live_jobs(f: impl Fn(&Control)) -> Vec<(String, u64)> {
    let live: Vec<(String, Arc<Control>)> = LIVE
        .lock()
        .iter()
        .filter_map(|(n, c)| c.upgrade().map(|c| (n.clone(), c)))
        .collect();
    live.into_iter()
        .filter(|(_, c)| !c.aborted())
        .map(|(n, c)| {
            f(&c);
            let queued = c.probes.lock().iter().map(|p| p.queued_records()).sum();
            (n, queued)
        })
        .collect()
}

pub(crate) struct Control {
    stop: AtomicBool,
    /// When a stop that has not drained by then turns into an abort.
    stop_deadline: Mutex<Option<Instant>>,
    aborted: AtomicBool,
    failure: Mutex<Option<Failure>>,
    probes: Mutex<Vec<Arc<dyn EdgeProbe>>>,
    done: Mutex<usize>,
    done_cv: Condvar,
}

impl Control {
    pub(crate) fn new() -> Self {
        Self {
            stop: AtomicBool::new(false),
            stop_deadline: Mutex::new(None),
            aborted: AtomicBool::new(false),
            failure: Mutex::new(None),
            probes: Mutex::new(Vec::new()),
            done: Mutex::new(0),
            done_cv: Condvar::new(),
        }
    }

    pub(crate) fn add_probe(&self, probe: Arc<dyn EdgeProbe>) {
        self.probes.lock().push(probe);
    }

    /// Sources stop producing at their next batch boundary; the graph then drains.
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for p in self.probes.lock().iter() {
            p.stop_replay();
        }
    }

    /// A stop that must have drained within `deadline` (the earliest of several wins).
    pub(crate) fn request_stop_within(&self, deadline: Duration) {
        let at = Instant::now() + deadline;
        {
            let mut d = self.stop_deadline.lock();
            *d = Some(d.map_or(at, |x| x.min(at)));
        }
        self.request_stop();
        self.done_cv.notify_all();
    }

    pub(crate) fn stop_deadline(&self) -> Option<Instant> {
        *self.stop_deadline.lock()
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Wakes every task blocked on an edge and makes it exit.
    pub(crate) fn abort(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if !self.aborted.swap(true, Ordering::AcqRel) {
            for p in self.probes.lock().iter() {
                p.abort();
            }
        }
    }

    pub(crate) fn aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    /// Records the first failure and aborts the job.
    pub(crate) fn fail(&self, f: Failure) {
        {
            let mut slot = self.failure.lock();
            if slot.is_none() {
                *slot = Some(f);
            }
        }
        self.abort();
    }

    pub(crate) fn failed(&self) -> bool {
        self.failure.lock().is_some()
    }

    /// Takes the first failure, for the job's result.
    pub(crate) fn take_failure(&self) -> Option<Failure> {
        self.failure.lock().take()
    }

    pub(crate) fn task_done(&self) {
        *self.done.lock() += 1;
        self.done_cv.notify_all();
    }

    pub(crate) fn tasks_done(&self) -> usize {
        *self.done.lock()
    }

    /// Waits until `total` tasks are done or `deadline` passes; true if all are done.
    pub(crate) fn wait_done(&self, total: usize, deadline: Option<Instant>) -> bool {
        let mut done = self.done.lock();
        while *done < total {
            match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    self.done_cv.wait_for(&mut done, d - now);
                }
                None => {
                    // Wake periodically: a failure elsewhere may need the caller to act.
                    self.done_cv.wait_for(&mut done, Duration::from_millis(100));
                    if self.aborted() {
                        return *done >= total;
                    }
                }
            }
        }
        true
    }
}
