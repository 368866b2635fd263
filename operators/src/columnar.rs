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
//!   column) and classifies the next edge by it, so `ShedByPriority`, `Sample` and the
//!   priority service order drop and serve exactly the rows of a class;
//! - [`RowStreamExt::to_batches`] and [`BatchStreamExt::to_rows`] convert between typed
//!   Rust rows (serde) and batches.
//!
//! A kernel that fails on a batch (a missing column, a type mismatch) does not fail the job
//! and loses nothing: the batch goes, with the error, to a second stream of [`FailedBatch`]es
//! that ends in a [`SinkExt::dead_letter`](crate::SinkExt::dead_letter) sink, counted as
//! dead-lettered rows. Rows that do not convert go the same way, one by one.
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
//! let (big, failed) = p
//!     .iter_source("batches", 1, move |_| [batch(0), batch(100)])
//!     .filter_rows("v > 149", |b| gt(b.column(0), &Int64Array::new_scalar(149)));
//! let rows = big.count("rows");
//! failed.dead_letter("failed", |f| eprintln!("{}", f.error));
//! let report = p.run()?.wait()?;
//! // Counted in rows: 200 emitted, 50 delivered, 150 filtered.
//! assert_eq!((report.ledger.emitted, report.ledger.delivered), (200, 50));
//! assert_eq!(rows.get(), 50);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;

pub use arrow;
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt8Array};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use arrow::error::ArrowError;
use sluice_engine::{Priority, Stream, CLASSES};

use crate::{Failed, StreamExt};

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

fn failed_rows(f: &FailedBatch) -> usize {
    f.batch.num_rows()
}

fn result_rows(r: &Result<RecordBatch, FailedBatch>) -> usize {
    match r {
        Ok(b) => b.num_rows(),
        Err(f) => f.batch.num_rows(),
    }
}

/// Registers the row counts of this module's item types (idempotent).
fn count_rows() {
    // The same functions every time: registering again is a no-op. A type a pipeline
    // already used uncounted is refused; it cannot happen for these private types before
    // this runs, since only this module creates them.
    let _ = sluice_engine::count_rows(failed_rows as fn(&FailedBatch) -> usize);
    let _ =
        sluice_engine::count_rows(result_rows as fn(&Result<RecordBatch, FailedBatch>) -> usize);
}

/// Splits a stream of results into its batches and its failures, each on a new chain.
fn split_failed(
    s: Stream<Result<RecordBatch, FailedBatch>>,
    name: &str,
) -> (Stream<RecordBatch>, Stream<FailedBatch>) {
    let (ok, failed) = s.split(&format!("{name}: ok or failed"), Result::is_ok);
    (
        ok.flat_map(&format!("{name}: ok"), Result::ok),
        failed.flat_map(&format!("{name}: failed"), Result::err),
    )
}

/// Operators on a stream of Arrow record batches.
pub trait BatchStreamExt: Sized {
    /// Keeps the rows for which `predicate` (a boolean column computed from the batch, e.g.
    /// with `arrow::compute::kernels::cmp`) is true; a null counts as false. The other rows
    /// count as filtered. Batches left empty are not passed on. A predicate that fails sends
    /// the batch to the second stream.
    fn filter_rows<F>(self, name: &str, predicate: F) -> (Stream<RecordBatch>, Stream<FailedBatch>)
    where
        F: Fn(&RecordBatch) -> Result<BooleanArray, ArrowError> + Send + Sync + 'static;

    /// Transforms each batch (project, compute or rename columns). Rows it adds or removes
    /// count as created or filtered. A transform that fails sends the batch to the second
    /// stream.
    fn map_batches<F>(self, name: &str, f: F) -> (Stream<RecordBatch>, Stream<FailedBatch>)
    where
        F: Fn(&RecordBatch) -> Result<RecordBatch, ArrowError> + Send + Sync + 'static;

    /// Splits each batch into one batch per class of `column` (rows keep their order within
    /// a class; a batch of one class passes unchanged, without a copy) and classifies the
    /// next edge by it. The column holds integer ranks (`0` debug .. `4` critical, up to
    /// `7`) or class names (`"debug"`, `"INFO"`, ...) in a string or dictionary column.
    /// Rows whose class is null, unknown, or whose batch has no such column are of class
    /// `unknown`.
    fn classify_by_column(self, name: &str, column: &str, unknown: Priority)
        -> Stream<RecordBatch>;

    /// Converts each batch into typed rows (through JSON: each row is encoded, then
    /// deserialized). Rows that do not deserialize go to the second stream, one by one.
    fn to_rows<T>(self, name: &str) -> (Stream<T>, Stream<FailedRow>)
    where
        T: serde::de::DeserializeOwned + Send + 'static;
}

impl BatchStreamExt for Stream<RecordBatch> {
    fn filter_rows<F>(self, name: &str, predicate: F) -> (Stream<RecordBatch>, Stream<FailedBatch>)
    where
        F: Fn(&RecordBatch) -> Result<BooleanArray, ArrowError> + Send + Sync + 'static,
    {
        self.map_batches(name, move |b| {
            let keep = predicate(b)?;
            if keep.len() != b.num_rows() {
                return Err(ArrowError::InvalidArgumentError(format!(
                    "the predicate returned {} values for a batch of {} rows",
                    keep.len(),
                    b.num_rows()
                )));
            }
            filter_record_batch(b, &keep)
        })
    }

    fn map_batches<F>(self, name: &str, f: F) -> (Stream<RecordBatch>, Stream<FailedBatch>)
    where
        F: Fn(&RecordBatch) -> Result<RecordBatch, ArrowError> + Send + Sync + 'static,
    {
        count_rows();
        let results = self.map(name, move |b: RecordBatch| match f(&b) {
            Ok(out) => Ok(out),
            Err(e) => Err(FailedBatch {
                batch: b,
                error: Arc::new(e),
            }),
        });
        let (ok, failed) = split_failed(results, name);
        // An empty batch carries no row: not passed on (its rows were filtered).
        (
            ok.filter(&format!("{name}: non-empty"), |b| b.num_rows() > 0),
            failed,
        )
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

    fn to_rows<T>(self, name: &str) -> (Stream<T>, Stream<FailedRow>)
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let rows = self.flat_map(name, |b: RecordBatch| batch_to_rows::<T>(&b));
        let (ok, failed) = rows.split(&format!("{name}: ok or failed"), Result::is_ok);
        (
            ok.flat_map(&format!("{name}: ok"), Result::ok),
            failed.flat_map(&format!("{name}: failed"), Result::err),
        )
    }
}

/// Operators that turn typed rows into Arrow batches.
pub trait RowStreamExt<T>: Sized {
    /// Collects the rows of each input batch into one record batch of `schema` (through
    /// serde: field names are column names). Rows that do not fit the schema go to the
    /// second stream, one by one, with the reason; the others still make a batch.
    fn to_batches(
        self,
        name: &str,
        schema: SchemaRef,
    ) -> (Stream<RecordBatch>, Stream<Failed<T, String>>);
}

impl<T> RowStreamExt<T> for Stream<T>
where
    T: serde::Serialize + Send + 'static,
{
    fn to_batches(
        self,
        name: &str,
        schema: SchemaRef,
    ) -> (Stream<RecordBatch>, Stream<Failed<T, String>>) {
        count_converted::<T>();
        self.operator(name, move |_| ToBatches {
            schema: schema.clone(),
        })
        .split_batches(name)
    }
}

/// Rows to one batch per input batch, and the rows that did not fit.
struct ToBatches {
    schema: SchemaRef,
}

/// What [`ToBatches`] emits: a batch, or one row that did not convert.
enum Converted<T> {
    Batch(RecordBatch),
    Failed(Failed<T, String>),
}

fn converted_rows<T>(c: &Converted<T>) -> usize {
    match c {
        Converted::Batch(b) => b.num_rows(),
        Converted::Failed(_) => 1,
    }
}

impl<T: serde::Serialize + Send + 'static> sluice_engine::Operator<T, Converted<T>> for ToBatches {
    fn process(&mut self, input: Vec<T>) -> Vec<Converted<T>> {
        match encode(&self.schema, &input) {
            Ok(Some(b)) => vec![Converted::Batch(b)],
            Ok(None) => Vec::new(),
            Err(_) => {
                // Some row does not fit: encode one by one, keeping the good ones together.
                let mut good = Vec::with_capacity(input.len());
                let mut out = Vec::new();
                for r in input {
                    match encode(&self.schema, std::slice::from_ref(&r)) {
                        Ok(_) => good.push(r),
                        Err(e) => out.push(Converted::Failed(Failed {
                            record: r,
                            error: e.to_string(),
                        })),
                    }
                }
                match encode(&self.schema, &good) {
                    Ok(Some(b)) => out.insert(0, Converted::Batch(b)),
                    Ok(None) => {}
                    Err(e) => out.extend(good.into_iter().map(|r| {
                        Converted::Failed(Failed {
                            record: r,
                            error: e.to_string(),
                        })
                    })),
                }
                out
            }
        }
    }
}

fn encode<T: serde::Serialize>(
    schema: &SchemaRef,
    rows: &[T],
) -> Result<Option<RecordBatch>, ArrowError> {
    let mut d = arrow::json::ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.len().max(1))
        .build_decoder()?;
    d.serialize(rows)?;
    d.flush()
}

trait SplitConverted<T> {
    fn split_batches(self, name: &str) -> (Stream<RecordBatch>, Stream<Failed<T, String>>);
}

impl<T: Send + 'static> SplitConverted<T> for Stream<Converted<T>> {
    fn split_batches(self, name: &str) -> (Stream<RecordBatch>, Stream<Failed<T, String>>) {
        let (ok, failed) = self.split(&format!("{name}: ok or failed"), |c| {
            matches!(c, Converted::Batch(_))
        });
        (
            ok.flat_map(&format!("{name}: ok"), |c| match c {
                Converted::Batch(b) => Some(b),
                Converted::Failed(_) => None,
            }),
            failed.flat_map(&format!("{name}: failed"), |c| match c {
                Converted::Failed(f) => Some(f),
                Converted::Batch(_) => None,
            }),
        )
    }
}

/// Registers `Converted<T>`'s row count, before a pipeline carrying it is wired.
fn count_converted<T: 'static>() {
    let _ = sluice_engine::count_rows(converted_rows::<T> as fn(&Converted<T>) -> usize);
}

/// Each row of `b` as a `T`, or the reason it is not one.
fn batch_to_rows<T: serde::de::DeserializeOwned>(b: &RecordBatch) -> Vec<Result<T, FailedRow>> {
    let mut w = arrow::json::LineDelimitedWriter::new(Vec::new());
    let written = w.write(b).and_then(|()| w.finish());
    if let Err(e) = written {
        // The batch does not encode: every row fails with the reason.
        return (0..b.num_rows())
            .map(|_| {
                Err(FailedRow {
                    json: String::new(),
                    error: e.to_string(),
                })
            })
            .collect();
    }
    let buf = w.into_inner();
    buf.split(|c| *c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            serde_json::from_slice::<T>(line).map_err(|e| FailedRow {
                json: String::from_utf8_lossy(line).into_owned(),
                error: e.to_string(),
            })
        })
        .collect()
}

/// The class of each row of `col` (`unknown` where it has none).
fn row_classes(col: &ArrayRef, unknown: Priority) -> Result<Vec<u8>, ArrowError> {
    let u = unknown.index() as u8;
    let dt = col.data_type();
    if dt.is_integer() {
        let ints = cast(col, &DataType::Int64)?;
        let ints = ints.as_primitive::<Int64Type>();
        return Ok((0..ints.len())
            .map(|i| {
                if ints.is_null(i) {
                    return u;
                }
                match ints.value(i) {
                    v @ 0..=7 if (v as usize) < CLASSES => v as u8,
                    _ => u,
                }
            })
            .collect());
    }
    if let Some(dict) = col.as_any_dictionary_opt() {
        let per_value = row_classes(dict.values(), unknown)?;
        let keys = dict.normalized_keys();
        return Ok((0..col.len())
            .map(|i| {
                if col.is_null(i) {
                    u
                } else {
                    keys.get(i)
                        .and_then(|k| per_value.get(*k))
                        .copied()
                        .unwrap_or(u)
                }
            })
            .collect());
    }
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let s = cast(col, &DataType::Utf8)?;
            let s = s.as_string::<i32>();
            Ok((0..s.len())
                .map(|i| {
                    if s.is_null(i) {
                        return u;
                    }
                    Priority::parse(s.value(i)).map_or(u, |p| p.index() as u8)
                })
                .collect())
        }
        other => Err(ArrowError::InvalidArgumentError(format!(
            "a class column holds integers, strings or a dictionary of them, not {other}"
        ))),
    }
}

/// The classes of `b`'s rows by `column` (all `unknown` if it has no such column or its
/// type holds no classes).
fn classes_of(b: &RecordBatch, column: &str, unknown: Priority) -> Vec<u8> {
    b.column_by_name(column)
        .and_then(|c| row_classes(c, unknown).ok())
        .unwrap_or_else(|| vec![unknown.index() as u8; b.num_rows()])
}

/// `b` as one batch per class of `column`, lowest class first.
fn split_by_class(b: RecordBatch, column: &str, unknown: Priority) -> Vec<RecordBatch> {
    if b.num_rows() == 0 {
        return Vec::new();
    }
    let classes = classes_of(&b, column, unknown);
    let present = classes.iter().fold(0u32, |m, c| m | (1 << c));
    if present.count_ones() <= 1 {
        return vec![b];
    }
    let classes = UInt8Array::from(classes);
    let mut out = Vec::with_capacity(present.count_ones() as usize);
    for k in 0..CLASSES as u8 {
        if present & (1 << k) == 0 {
            continue;
        }
        let mask: BooleanArray = classes.iter().map(|c| Some(c == Some(k))).collect();
        match filter_record_batch(&b, &mask) {
            Ok(part) => out.push(part),
            // Filtering a batch by a mask of its own length does not fail; if it ever did,
            // the rows would still go on (whole, unsplit) rather than be lost.
            Err(_) => return vec![b],
        }
    }
    out
}

/// The class of the first row of `b` (after [`split_by_class`], the class of every row).
fn class_of_first_row(b: &RecordBatch, column: &str, unknown: Priority) -> Priority {
    if b.num_rows() == 0 {
        return unknown;
    }
    let head = b.slice(0, 1);
    Priority::rank(
        classes_of(&head, column, unknown)
            .first()
            .copied()
            .unwrap_or(unknown.index() as u8),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, Int32Array, StringArray};
    use arrow::datatypes::Int8Type;

    fn batch(levels: ArrayRef) -> RecordBatch {
        let n = levels.len() as i32;
        let v: ArrayRef = Arc::new(Int32Array::from_iter_values(0..n));
        RecordBatch::try_from_iter([("level", levels), ("v", v)]).unwrap()
    }

    fn vals(b: &RecordBatch) -> Vec<i32> {
        b.column(1)
            .as_primitive::<arrow::datatypes::Int32Type>()
            .values()
            .to_vec()
    }

    #[test]
    fn a_mixed_batch_splits_into_one_batch_per_class_in_row_order() {
        let levels: ArrayRef = Arc::new(StringArray::from(vec![
            Some("debug"),
            Some("ERROR"),
            None,
            Some("debug"),
            Some("nonsense"),
            Some("warn"),
        ]));
        let parts = split_by_class(batch(levels), "level", Priority::INFO);
        let got: Vec<(Priority, Vec<i32>)> = parts
            .iter()
            .map(|p| (class_of_first_row(p, "level", Priority::INFO), vals(p)))
            .collect();
        assert_eq!(
            got,
            vec![
                (Priority::DEBUG, vec![0, 3]),
                (Priority::INFO, vec![2, 4]),
                (Priority::WARN, vec![5]),
                (Priority::ERROR, vec![1]),
            ]
        );
    }

    #[test]
    fn integer_and_dictionary_columns_hold_classes_and_one_class_passes_whole() {
        let ints: ArrayRef = Arc::new(Int32Array::from(vec![3, 3, 3]));
        let b = batch(ints);
        let parts = split_by_class(b.clone(), "level", Priority::INFO);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0], b);
        let dict: DictionaryArray<Int8Type> = vec!["info", "debug", "info"].into_iter().collect();
        let parts = split_by_class(batch(Arc::new(dict)), "level", Priority::WARN);
        assert_eq!(
            parts.iter().map(vals).collect::<Vec<_>>(),
            [vec![1], vec![0, 2]]
        );
        // No class column: every row is `unknown`.
        let parts = split_by_class(
            batch(Arc::new(Int32Array::from(vec![1]))),
            "nope",
            Priority::ERROR,
        );
        assert_eq!(
            class_of_first_row(&parts[0], "nope", Priority::ERROR),
            Priority::ERROR
        );
    }
}
