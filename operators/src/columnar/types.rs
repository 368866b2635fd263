//! What the columnar operators dead-letter, and the in-chain operator that does it.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, ArrowPrimitiveType, AsArray, PrimitiveArray, RecordBatch};
use arrow::buffer::ScalarBuffer;
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

/// Applies `f` to each batch of `input`. A batch it fails on goes to `dead_letter` and
/// counts its rows in `dead`; a result without rows carries nothing on (its rows were
/// filtered) and is left out.
pub(super) fn each_batch(
    input: Vec<RecordBatch>,
    dead: &mut u64,
    dead_letter: &DeadLetterFn<FailedBatch>,
    mut f: impl FnMut(&RecordBatch) -> Result<RecordBatch, ArrowError>,
) -> Vec<RecordBatch> {
    let mut out = Vec::with_capacity(input.len());
    for b in input {
        match f(&b) {
            Ok(o) if o.num_rows() == 0 => {}
            Ok(o) => out.push(o),
            Err(e) => {
                *dead += b.num_rows() as u64;
                dead_letter(FailedBatch {
                    batch: b,
                    error: Arc::new(e),
                });
            }
        }
    }
    out
}

/// A batch-at-a-time operator on record batches that hands failed batches to a dead-letter
/// function in the chain (no extra thread or edge) and reports their rows to the ledger.
pub(super) struct BatchOp<F> {
    pub f: Arc<F>,
    pub dead_letter: DeadLetterFn<FailedBatch>,
    pub dead: u64,
}

impl<F> Operator<RecordBatch, RecordBatch> for BatchOp<F>
where
    F: Fn(&RecordBatch) -> Result<RecordBatch, ArrowError> + Send + Sync + 'static,
{
    fn process(&mut self, input: Vec<RecordBatch>) -> Vec<RecordBatch> {
        let f = &self.f;
        each_batch(input, &mut self.dead, &self.dead_letter, |b| f(b))
    }

    fn take_dead_lettered(&mut self) -> u64 {
        std::mem::take(&mut self.dead)
    }
}

/// Applies `f` to each batch of `input`, by value ([`each_batch`] for kernels that reuse
/// their input's buffers). A batch `f` hands back as failed goes to `dead_letter` and counts
/// its rows in `dead`; a result without rows is left out.
pub(super) fn each_owned_batch(
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

/// [`BatchOp`] for a transform that takes each batch by value.
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
        each_owned_batch(input, &mut self.dead, &self.dead_letter, |b| f(b))
    }

    fn take_dead_lettered(&mut self) -> u64 {
        std::mem::take(&mut self.dead)
    }
}

/// The values of a primitive column of type `T` without nulls, as a vector to compute in
/// place: the column's own buffer when `col` is its only holder (no copy, no allocation),
/// a copy otherwise (the column is shared, sliced, or its buffer was not allocated as a
/// vector). `None` for a column of another type or with nulls.
///
/// ```
/// use std::sync::Arc;
/// use sluice_operators::columnar::arrow::array::{ArrayRef, UInt64Array};
/// use sluice_operators::columnar::arrow::datatypes::UInt64Type;
/// use sluice_operators::columnar::owned_values;
///
/// let col: ArrayRef = Arc::new(UInt64Array::from(vec![1, 2, 3]));
/// let at = col.to_data().buffers()[0].as_ptr();
/// let mut v = owned_values::<UInt64Type>(col).unwrap();
/// assert_eq!(v.as_ptr().cast(), at, "the only holder: the same memory");
/// v.iter_mut().for_each(|x| *x *= 10);
/// assert_eq!(v, [10, 20, 30]);
/// ```
pub fn owned_values<T: ArrowPrimitiveType>(col: ArrayRef) -> Option<Vec<T::Native>> {
    if col.null_count() > 0 {
        return None;
    }
    let array: PrimitiveArray<T> = col.as_primitive_opt::<T>()?.clone();
    // The batch's handle goes: the buffer is unique if nothing else held the column.
    drop(col);
    let (_, values, _) = array.into_parts();
    let values: ScalarBuffer<T::Native> = values;
    match values.into_inner().into_vec::<T::Native>() {
        Ok(v) => Some(v),
        Err(shared) => Some(ScalarBuffer::<T::Native>::from(shared).to_vec()),
    }
}
