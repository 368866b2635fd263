//! A file a sink writes under a `.tmp` name and completes at the end: synced, renamed to its
//! final name, its directory synced. The acknowledgements of the batches it holds complete
//! only then; a file dropped before it is complete (the job failed, the sink errored or
//! went away) fails them, so a source never commits records that are not in a complete file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use sluice_engine::{Ack, SinkError};

use crate::ConnectorError;

pub(super) struct TmpFile {
    /// Written here.
    pub tmp: PathBuf,
    /// Renamed to this once complete: a reader never sees half a file.
    pub path: PathBuf,
    dir: PathBuf,
    acks: Vec<Ack>,
}

impl TmpFile {
    /// `dir/name`, written as `dir/name.tmp` (created now).
    pub fn create(dir: &Path, name: &str) -> Result<(Self, File), SinkError> {
        let f = TmpFile {
            tmp: dir.join(format!("{name}.tmp")),
            path: dir.join(name),
            dir: dir.to_path_buf(),
            acks: Vec::new(),
        };
        let file = File::create(&f.tmp).map_err(|e| io_error(&f.tmp, "creating", e))?;
        Ok((f, file))
    }

    /// Holds `acks` (each once) until the file is complete.
    pub fn hold(&mut self, acks: &mut Vec<Ack>) {
        for a in acks.drain(..) {
            if !self.acks.iter().any(|b| Arc::ptr_eq(&a, b)) {
                self.acks.push(a);
            }
        }
    }

    /// Completes the file, whose writer has finished it as `file`: sync, rename, sync the
    /// directory; then records its path in `closed` and lets its acks complete.
    pub fn complete(mut self, file: File, closed: &Mutex<Vec<PathBuf>>) -> Result<(), SinkError> {
        file.sync_all()
            .map_err(|e| io_error(&self.tmp, "syncing", e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path)
            .map_err(|e| io_error(&self.path, "renaming to", e))?;
        if let Ok(dir) = File::open(&self.dir) {
            // Makes the rename durable where the platform allows it.
            let _ = dir.sync_all();
        }
        closed.lock().push(self.path.clone());
        // Complete: dropping them now counts as done.
        drop(std::mem::take(&mut self.acks));
        Ok(())
    }
}

impl Drop for TmpFile {
    /// Not completed: its records are not durable, so their acks fail (a dropped ack would
    /// count as done and let the source commit them).
    fn drop(&mut self) {
        for a in &self.acks {
            a.fail();
        }
    }
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> SinkError {
    SinkError::retryable(ConnectorError::io(format!("{what} {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::atomic::{AtomicU8, Ordering};

    use sluice_engine::{AckOutcome, AckToken};

    use super::*;

    /// An ack that records its outcome: 1 done, 2 failed.
    fn ack() -> (Ack, Arc<AtomicU8>) {
        let o = Arc::new(AtomicU8::new(0));
        let o2 = o.clone();
        let a = AckToken::new(move |x| {
            o2.store(if x == AckOutcome::Done { 1 } else { 2 }, Ordering::SeqCst)
        });
        (a, o)
    }

    #[test]
    fn a_completed_file_is_renamed_and_its_acks_complete_then() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, mut file) = TmpFile::create(dir.path(), "a.arrow").unwrap();
        file.write_all(b"rows").unwrap();
        let (a, outcome) = ack();
        f.hold(&mut vec![a.clone(), a]);
        assert_eq!(
            outcome.load(Ordering::SeqCst),
            0,
            "held while the file is open"
        );
        let closed = Mutex::new(Vec::new());
        f.complete(file, &closed).unwrap();
        assert_eq!(outcome.load(Ordering::SeqCst), 1);
        assert_eq!(*closed.lock(), vec![dir.path().join("a.arrow")]);
        assert_eq!(std::fs::read(dir.path().join("a.arrow")).unwrap(), b"rows");
        assert!(!dir.path().join("a.arrow.tmp").exists());
    }

    #[test]
    fn a_file_dropped_before_it_is_complete_fails_its_acks() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, _file) = TmpFile::create(dir.path(), "b.parquet").unwrap();
        let (a, outcome) = ack();
        f.hold(&mut vec![a]);
        drop(f);
        assert_eq!(outcome.load(Ordering::SeqCst), 2);
        assert!(!dir.path().join("b.parquet").exists());
    }
}
