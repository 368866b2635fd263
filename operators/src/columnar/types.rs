//! What the columnar operators dead-letter, and the in-chain operator that does it.

use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::Schema;
use arrow::error::ArrowError;
use sluice_engine::Operator;

/// A batch an operator could not process, with the error: rows that end dead-lettered.
#[derive(Debug, Clone)]
pub struct FailedBatch {
    /// The batch, as it came in.
    pub batch: RecordBatch,
    /// What the kernel said.
    pub error: Arc<ArrowError>,
}

impl FailedBatch {
    /// `rows` rows whose columns are gone: a kernel that computes in place
    /// ([`BatchStreamExt::map_batches_owned`](super::BatchStreamExt::map_batches_owned))
    /// and fails after it has started writing. The batch has the rows and no columns, so
    /// they still count as dead-lettered.
    ///
    /// ```
    /// use sluice_operators::columnar::arrow::error::ArrowError;
    /// use sluice_operators::columnar::FailedBatch;
    ///
    /// let f = FailedBatch::lost(7, ArrowError::ComputeError("overflow".into()));
    /// assert_eq!((f.batch.num_rows(), f.batch.num_columns()), (7, 0));
    /// ```
    pub fn lost(rows: usize, error: ArrowError) -> FailedBatch {
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        // A batch without columns and with its row count given is always valid.
        let batch =
            RecordBatch::try_new_with_options(Arc::new(Schema::empty()), Vec::new(), &options)
                .unwrap_or_else(|_| RecordBatch::new_empty(Arc::new(Schema::empty())));
        FailedBatch {
            batch,
            error: Arc::new(error),
        }
    }
}

/// A row that did not convert between a typed record and a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRow {
    /// The row as JSON (as far as it could be encoded).
    pub json: String,
    /// Why it did not convert.
    pub error: String,
}

/// Where an operator's failures go: called on the operator's thread, once per failed batch
/// (or row); what it is given counts as dead-lettered once it returns.
pub(super) type DeadLetterFn<X> = Arc<dyn Fn(X) + Send + Sync>;

/// Applies `f` to each batch of `input`, by value (a kernel may reuse the buffers the batch
/// alone holds). A batch `f` hands back as failed goes to `dead_letter` and counts its rows
/// in `dead`; a result without rows carries nothing on (its rows were filtered) and is left
/// out.
pub(super) fn each_batch(
    input: Vec<RecordBatch>,
    dead: &mut u64,
    dead_letter: &DeadLetterFn<FailedBatch>,
    mut f: impl FnMut(RecordBatch) -> Result<RecordBatch, FailedBatch>,
) -> Vec<RecordBatch> {
    let mut out = Vec::with_capacity(input.len());
    for b in input {
        match f(b) {
            Ok(o) if o.num_rows() == 0 => {}
            Ok(o) => out.push(o),
            Err(failed) => {
                *dead += failed.batch.num_rows() as u64;
                dead_letter(failed);
            }
        }
    }
    out
}

/// A batch-at-a-time operator on record batches, each given by value, that hands failed
/// batches to a dead-letter function in the chain (no extra thread or edge) and reports
/// their rows to the ledger.
pub(super) struct OwnedBatchOp<F> {
    pub f: Arc<F>,
    pub dead_letter: DeadLetterFn<FailedBatch>,
    pub dead: u64,
}

impl<F> Operator<RecordBatch, RecordBatch> for OwnedBatchOp<F>
where
    F: Fn(RecordBatch) -> Result<RecordBatch, FailedBatch> + Send + Sync + 'static,
{
    fn process(&mut self, input: Vec<RecordBatch>) -> Vec<RecordBatch> {
        let f = &self.f;
        each_batch(input, &mut self.dead, &self.dead_letter, |b| f(b))
    }

    fn take_dead_lettered(&mut self) -> u64 {
        std::mem::take(&mut self.dead)
    }
}
