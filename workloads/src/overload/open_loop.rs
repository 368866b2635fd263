//! The open-loop producer: record `k` is emitted when it is due, stamped with that time.

use std::sync::Arc;
use std::time::Instant;

use sluice_engine::{Source, SourceError, SourceStatus, CLASSES};

use super::schedule::{class_of, Event, Schedule};

/// The open-loop producer.
pub(super) struct OpenLoop {
    pub(super) epoch: Instant,
    /// The end of the offered window: records not emitted by then never enter (they were
    /// held back at the producer by backpressure).
    pub(super) end: Instant,
    pub(super) schedule: Arc<Schedule>,
    pub(super) produced: u64,
    pub(super) cumulative: [f64; CLASSES],
}

impl Source<Event> for OpenLoop {
    fn poll_batch(
        &mut self,
        out: &mut Vec<Event>,
        max: usize,
    ) -> Result<SourceStatus, SourceError> {
        let total = self.schedule.total();
        loop {
            if Instant::now() >= self.end || self.produced >= total {
                return Ok(SourceStatus::Done);
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
                return Ok(SourceStatus::More);
            }
            let wait = self.schedule.time_of(self.produced) - elapsed;
            if wait > 0.002 {
                return Ok(SourceStatus::Idle);
            }
            std::thread::yield_now();
        }
    }
}
