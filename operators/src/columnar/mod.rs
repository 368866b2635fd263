//! Arrow record batches through the dataflow (feature `arrow`).
//!
//! A `Stream<RecordBatch>` moves Arrow batches as items; the engine counts each batch as its
//! rows ([`sluice_engine::rows`]), so edges hold rows, and operator counters, drops and the
//! ledger are in rows. The operators here work a batch at a time with Arrow's compute
//! kernels:
//!
//! - [`BatchStreamExt::filter_rows`] keeps the rows a predicate over columns selects (the
//!   filter kernel), [`BatchStreamExt::map_batches`] projects and computes columns;
//! - [`BatchStreamExt::classify_by_column`] splits each batch into one batch per class of a
//!   class column (integer ranks, or names such as `"debug"` in a string or dictionary
//!   column) and classifies the next edge by it, so `ShedByPriority`, `Defer`, `Sample` and
//!   the priority service order drop, defer and serve exactly the rows of a class (whole
//!   batches of it: `Sample` keeps one in n batches of a class, not one in n rows);
//! - [`RowStreamExt::to_batches`] and [`BatchStreamExt::to_rows`] convert between typed
//!   Rust rows (serde) and batches.
//!
//! A kernel that fails on a batch (a missing column, a type mismatch) does not fail the job
//! and loses nothing: the batch goes, with the error, to the operator's dead-letter function
//! (a log, a file, a topic: called on the operator's thread, no extra thread or edge), and
//! its rows count as dead-lettered in the ledger. Rows that do not convert go the same way,
//! one by one.
//!
//! ```
//! use std::sync::Arc;
//! use sluice_connectors::PipelineExt;
//! use sluice_engine::Pipeline;
//! use sluice_operators::columnar::arrow::array::{ArrayRef, Int64Array, RecordBatch};
//! use sluice_operators::columnar::arrow::compute::kernels::cmp::gt;
//! use sluice_operators::columnar::BatchStreamExt;
//! use sluice_operators::SinkExt;
//!
//! let batch = |from: i64| {
//!     let v: ArrayRef = Arc::new(Int64Array::from_iter_values(from..from + 100));
//!     RecordBatch::try_from_iter([("v", v)]).unwrap()
//! };
//! let p = Pipeline::new("columnar");
//! let rows = p
//!     .iter_source("batches", 1, move |_| [batch(0), batch(100)])
//!     .filter_rows(
//!         "v > 149",
//!         |b| gt(b.column(0), &Int64Array::new_scalar(149)),
//!         |f| eprintln!("{}", f.error),
//!     )
//!     .count("rows");
//! let report = p.run()?.wait()?;
//! // Counted in rows: 200 emitted, 50 delivered, 150 filtered.
//! assert_eq!((report.ledger.emitted, report.ledger.delivered), (200, 50));
//! assert_eq!(rows.get(), 50);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod classes;
mod convert;
mod inplace;
mod keyed;
mod types;

pub use arrow;
pub use inplace::owned_values;
pub use keyed::{Agg, KeyedBatchStreamExt};
pub use types::{FailedBatch, FailedRow};

use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use sluice_engine::{Priority, Stream};

use crate::{Failed, StreamExt};
use classes::{class_of_first_row, split_by_class};
use convert::{ToBatches, ToRows};
use types::OwnedBatchOp;

/// Operators on a stream of Arrow record batches. Each runs in its upstream's thread; each
/// that can fail takes a `dead_letter` function for what it cannot process.
pub trait BatchStreamExt: Sized {
    /// Keeps the rows for which `predicate` (a boolean column computed from the batch, e.g.
    /// with `arrow::compute::kernels::cmp`) is true; a null counts as false. The other rows
    /// count as filtered. Batches left empty are not passed on. A batch whose predicate
    /// fails (or has the wrong length) goes to `dead_letter`.
    fn filter_rows<F, D>(self, name: &str, predicate: F, dead_letter: D) -> Stream<RecordBatch>
    where
        F: Fn(&RecordBatch) -> Result<BooleanArray, ArrowError> + Send + Sync + 'static,
        D: Fn(FailedBatch) + Send + Sync + 'static;

    /// Transforms each batch (project, compute or rename columns). Rows it adds or removes
    /// count as created or filtered. A batch the transform fails on goes to `dead_letter`.
    fn map_batches<F, D>(self, name: &str, f: F, dead_letter: D) -> Stream<RecordBatch>
    where
        F: Fn(&RecordBatch) -> Result<RecordBatch, ArrowError> + Send + Sync + 'static,
        D: Fn(FailedBatch) + Send + Sync + 'static;

    /// [`BatchStreamExt::map_batches`] with the batch given by value, so `f` can compute in
    /// place in the buffers nothing else holds ([`owned_values`], arrow's `unary_mut`)
    /// instead of allocating new columns: for long chains of cheap kernels, allocating and
    /// zeroing a fresh column per kernel costs more than the kernel. A batch `f` fails on
    /// comes back inside the [`FailedBatch`] and goes to `dead_letter`; `f` must check
    /// before it changes anything, so that what is dead-lettered is the batch as it came
    /// (failing after it started writing, it returns [`FailedBatch::lost`] with the number
    /// of rows, which still count).
    fn map_batches_owned<F, D>(self, name: &str, f: F, dead_letter: D) -> Stream<RecordBatch>
    where
        F: Fn(RecordBatch) -> Result<RecordBatch, FailedBatch> + Send + Sync + 'static,
        D: Fn(FailedBatch) + Send + Sync + 'static;

    /// Splits each batch into one batch per class of `column` (rows keep their order within
    /// a class; a batch of one class passes unchanged, without a copy) and classifies the
    /// next edge by it. The column holds integer ranks (`0` debug .. `4` critical, up to
    /// `7`) or class names (`"debug"`, `"INFO"`, ...) in a string or dictionary column.
    /// Rows whose class is null, unknown, or whose batch has no such column are of class
    /// `unknown`.
    fn classify_by_column(self, name: &str, column: &str, unknown: Priority)
        -> Stream<RecordBatch>;

    /// Converts each batch into typed rows (through JSON: each row is encoded, then
    /// deserialized). Rows that do not deserialize go to `dead_letter`, one by one.
    fn to_rows<T, D>(self, name: &str, dead_letter: D) -> Stream<T>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
        D: Fn(FailedRow) + Send + Sync + 'static;

    /// Joins small batches: the consecutive batches of one schema that arrive together (in
    /// one batch of the stream) become batches of up to `max_rows` rows, in order (a
    /// batch already larger passes as it is). For sources that make a batch per message,
    /// such as a Kafka topic of one JSON object per message. It holds nothing across calls,
    /// so it adds no latency and no state.
    fn concat_batches(self, name: &str, max_rows: usize) -> Stream<RecordBatch>;
}

impl BatchStreamExt for Stream<RecordBatch> {
    fn filter_rows<F, D>(self, name: &str, predicate: F, dead_letter: D) -> Stream<RecordBatch>
    where
        F: Fn(&RecordBatch) -> Result<BooleanArray, ArrowError> + Send + Sync + 'static,
        D: Fn(FailedBatch) + Send + Sync + 'static,
    {
        self.map_batches(
            name,
            move |b| {
                let keep = predicate(b)?;
                if keep.len() != b.num_rows() {
                    return Err(ArrowError::InvalidArgumentError(format!(
                        "the predicate returned {} values for a batch of {} rows",
                        keep.len(),
                        b.num_rows()
                    )));
                }
                filter_record_batch(b, &keep)
            },
            dead_letter,
        )
    }

    fn map_batches<F, D>(self, name: &str, f: F, dead_letter: D) -> Stream<RecordBatch>
    where
        F: Fn(&RecordBatch) -> Result<RecordBatch, ArrowError> + Send + Sync + 'static,
        D: Fn(FailedBatch) + Send + Sync + 'static,
    {
        // A kernel that reads the batch: the batch it fails on is handed back as it came.
        self.map_batches_owned(
            name,
            move |b| {
                f(&b).map_err(|e| FailedBatch {
                    batch: b,
                    error: Arc::new(e),
                })
            },
            dead_letter,
        )
    }

    fn map_batches_owned<F, D>(self, name: &str, f: F, dead_letter: D) -> Stream<RecordBatch>
    where
        F: Fn(RecordBatch) -> Result<RecordBatch, FailedBatch> + Send + Sync + 'static,
        D: Fn(FailedBatch) + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let dead_letter: types::DeadLetterFn<FailedBatch> = Arc::new(dead_letter);
        self.operator(name, move |_| OwnedBatchOp {
            f: f.clone(),
            dead_letter: dead_letter.clone(),
            dead: 0,
        })
    }

    fn classify_by_column(
        self,
        name: &str,
        column: &str,
        unknown: Priority,
    ) -> Stream<RecordBatch> {
        let col = column.to_string();
        let col2 = column.to_string();
        self.flat_map(name, move |b: RecordBatch| split_by_class(b, &col, unknown))
            .classify(move |b: &RecordBatch| class_of_first_row(b, &col2, unknown))
    }

    fn to_rows<T, D>(self, name: &str, dead_letter: D) -> Stream<T>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
        D: Fn(FailedRow) + Send + Sync + 'static,
    {
        let dead_letter: types::DeadLetterFn<FailedRow> = Arc::new(dead_letter);
        self.operator(name, move |_| ToRows {
            dead_letter: dead_letter.clone(),
            dead: 0,
            _t: std::marker::PhantomData,
        })
    }

    fn concat_batches(self, name: &str, max_rows: usize) -> Stream<RecordBatch> {
        let max_rows = max_rows.max(1);
        self.operator(name, move |_| Concat { max_rows })
    }
}

/// The operator of [`BatchStreamExt::concat_batches`].
struct Concat {
    max_rows: usize,
}

impl sluice_engine::Operator<RecordBatch, RecordBatch> for Concat {
    fn process(&mut self, input: Vec<RecordBatch>) -> Vec<RecordBatch> {
        if input.len() < 2 {
            return input;
        }
        let mut out = Vec::new();
        let mut group: Vec<RecordBatch> = Vec::new();
        let mut rows = 0;
        for b in input {
            let fits = group
                .first()
                .is_none_or(|g| g.schema() == b.schema() && rows + b.num_rows() <= self.max_rows);
            if !fits {
                flush_group(&mut group, &mut out);
                rows = 0;
            }
            rows += b.num_rows();
            group.push(b);
        }
        flush_group(&mut group, &mut out);
        out
    }
}

/// Moves `group` to `out` as one batch (as it is, should joining fail: nothing is lost).
fn flush_group(group: &mut Vec<RecordBatch>, out: &mut Vec<RecordBatch>) {
    match group.len() {
        0 => {}
        1 => out.append(group),
        _ => match arrow::compute::concat_batches(&group[0].schema(), group.iter()) {
            Ok(b) => {
                out.push(b);
                group.clear();
            }
            Err(_) => out.append(group),
        },
    }
}

/// Operators that turn typed rows into Arrow batches.
pub trait RowStreamExt<T>: Sized {
    /// Collects the rows of each input batch into one record batch of `schema` (through
    /// serde: field names are column names). Rows that do not fit the schema go to
    /// `dead_letter`, one by one, with the reason; the others still make a batch.
    fn to_batches<D>(self, name: &str, schema: SchemaRef, dead_letter: D) -> Stream<RecordBatch>
    where
        D: Fn(Failed<T, String>) + Send + Sync + 'static;
}

impl<T> RowStreamExt<T> for Stream<T>
where
    T: serde::Serialize + Send + 'static,
{
    fn to_batches<D>(self, name: &str, schema: SchemaRef, dead_letter: D) -> Stream<RecordBatch>
    where
        D: Fn(Failed<T, String>) + Send + Sync + 'static,
    {
        let dead_letter: types::DeadLetterFn<Failed<T, String>> = Arc::new(dead_letter);
        self.operator(name, move |_| ToBatches {
            schema: schema.clone(),
            dead_letter: dead_letter.clone(),
            dead: 0,
        })
    }
}
