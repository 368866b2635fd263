//! Acknowledgements: how a source learns that what it emitted has reached an end.
//!
//! A source may attach an [`Ack`] to each batch it emits. Every batch derived from it (after
//! a map, a split, a hash exchange, a merge) holds a clone. The ack completes when the last
//! clone is dropped, which happens when every derived record has ended: delivered by a sink,
//! dropped by a policy, deferred to disk, dead-lettered or filtered. Its callback then runs
//! once with [`AckOutcome::Done`], and the source may commit (a Kafka source stores the
//! offsets).
//!
//! A batch abandoned on an abnormal path (the job aborts or fails, a sink errors, user code
//! panics) marks its acks failed first; the callback then gets [`AckOutcome::Failed`] and the
//! source must not commit, so the records are replayed after a restart (at least once).
//! Failing is the safe side: a spurious failure costs a duplicate, a spurious success would
//! lose data.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// How the records of an acknowledged batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// Every record reached an end (delivered, dropped by policy, deferred, dead-lettered,
    /// filtered).
    Done,
    /// Some record was abandoned: do not commit.
    Failed,
}

type Callback = Box<dyn FnOnce(AckOutcome) + Send>;

/// The shared state behind an [`Ack`].
pub struct AckToken {
    callback: Mutex<Option<Callback>>,
    failed: AtomicBool,
}

/// A reference-counted acknowledgement; see the module docs.
pub type Ack = Arc<AckToken>;

impl AckToken {
    /// An ack whose callback runs once, when the last clone is dropped.
    pub fn new(callback: impl FnOnce(AckOutcome) + Send + 'static) -> Ack {
        Arc::new(AckToken {
            callback: Mutex::new(Some(Box::new(callback))),
            failed: AtomicBool::new(false),
        })
    }

    /// Marks the ack failed: its callback will get [`AckOutcome::Failed`].
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Release);
    }
}

impl std::fmt::Debug for AckToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckToken")
            .field("failed", &self.failed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Drop for AckToken {
    fn drop(&mut self) {
        // Dropped while a thread unwinds from a panic: the records did not reach an end.
        let failed = self.failed.load(Ordering::Acquire) || std::thread::panicking();
        if let Some(cb) = self.callback.get_mut().take() {
            cb(if failed {
                AckOutcome::Failed
            } else {
                AckOutcome::Done
            });
        }
    }
}

/// Adds `more` to `acks`, skipping ones already present (the same source batch reaching a
/// buffer twice).
pub(crate) fn merge_acks(acks: &mut Vec<Ack>, more: &[Ack]) {
    for a in more {
        if !acks.iter().any(|b| Arc::ptr_eq(a, b)) {
            acks.push(a.clone());
        }
    }
}

/// Marks every ack failed.
pub(crate) fn fail_acks(acks: &[Ack]) {
    for a in acks {
        a.fail();
    }
}
