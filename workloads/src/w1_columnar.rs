//! W1 in columnar form: the same records, operators and checksum as [`crate::w1`], moved as
//! Arrow record batches of `batch_size` rows and computed with Arrow kernels.
//!
//! Columns `id: u64`, `level: u8`, `value: u64`; `rotate` is a binary kernel over `value` and
//! `id`, `keep` a unary boolean kernel and the filter kernel, `key` a unary kernel
//! (`id % 1024`), then a columnar `key_by` (one hash per row, a `take` per instance), a
//! running sum per key over the primitive columns, and a sink that counts rows and XORs the
//! `value` column. With `rayon`, the per-row kernels of a batch run on rayon's pool in chunks
//! of 16,384 rows (only batches of at least 32,768 rows are split).

use std::sync::Arc;
use std::time::Instant;

use sluice_engine::{JobError, JobReport, Pipeline, Source, SourceError, SourceStatus};
use sluice_operators::columnar::arrow::array::BooleanBufferBuilder;
use sluice_operators::columnar::arrow::array::{
    ArrayRef, AsArray, BooleanArray, RecordBatch, UInt64Array, UInt8Array,
};
use sluice_operators::columnar::arrow::buffer::BooleanBuffer;
use sluice_operators::columnar::arrow::datatypes::{
    DataType, Field, Schema, SchemaRef, UInt64Type,
};
use sluice_operators::columnar::arrow::error::ArrowError;
use sluice_operators::columnar::{owned_values, BatchStreamExt, FailedBatch, KeyedBatchStreamExt};
use sluice_operators::SinkExt;

use crate::w1::{Config, Outcome};

/// Parameters of a columnar W1 run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnarConfig {
    /// Records, parallelism and edge capacity as in the row form; `batch_size` is the rows per
    /// record batch. Edges hold at least four batches.
    pub base: Config,
    /// Run the per-row kernels of large batches on rayon's pool.
    pub rayon: bool,
    /// Compute the map, the filter and the key in one pass over the columns, in place (one
    /// `map_batches_owned`), instead of one kernel per operator.
    pub fused: bool,
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::UInt64, false),
        Field::new("level", DataType::UInt8, false),
        Field::new("value", DataType::UInt64, false),
    ]))
}

/// Emits the ids `next, next + step, ...` below `end` as batches of `rows` rows.
struct Generator {
    next: u64,
    step: u64,
    end: u64,
    rows: usize,
    schema: SchemaRef,
}

impl Source<RecordBatch> for Generator {
    fn poll_batch(
        &mut self,
        out: &mut Vec<RecordBatch>,
        _max: usize,
    ) -> Result<SourceStatus, SourceError> {
        if self.next >= self.end {
            return Ok(SourceStatus::Done);
        }
        let left = (self.end - self.next).div_ceil(self.step);
        let n = (self.rows as u64).min(left) as usize;
        let (start, step) = (self.next, self.step);
        let ids: Vec<u64> = (0..n as u64).map(|k| start + k * step).collect();
        self.next = start + n as u64 * step;
        let level: UInt8Array = ids.iter().map(|i| (i % 4) as u8).collect::<Vec<_>>().into();
        let value: UInt64Array = ids
            .iter()
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect::<Vec<_>>()
            .into();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(ids)),
            Arc::new(level),
            Arc::new(value),
        ];
        let b = RecordBatch::try_new(self.schema.clone(), cols)
            .map_err(|e| SourceError::permanent(Box::new(e) as sluice_engine::BoxError))?;
        out.push(b);
        Ok(if self.next >= self.end {
            SourceStatus::Done
        } else {
            SourceStatus::More
        })
    }
}

/// Rows per rayon task.
const CHUNK: usize = 16_384;

/// `f` over the rows of `n`, in chunks on rayon's pool when `par` and `n` is large.
fn chunks<T: Send>(n: usize, par: bool, f: impl Fn(usize, usize) -> T + Send + Sync) -> Vec<T> {
    if !par || n < 2 * CHUNK {
        return vec![f(0, n)];
    }
    use rayon::prelude::*;
    (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| f(c * CHUNK, ((c + 1) * CHUNK).min(n)))
        .collect()
}

fn u64s<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a [u64], ArrowError> {
    let c = b
        .column_by_name(name)
        .ok_or_else(|| ArrowError::InvalidArgumentError(format!("no column `{name}`")))?;
    Ok(c.as_primitive_opt::<UInt64Type>()
        .ok_or_else(|| ArrowError::InvalidArgumentError(format!("`{name}` is not u64")))?
        .values()
        .as_ref())
}

/// `value = value.rotate_left(5) ^ id`.
fn rotate(b: &RecordBatch, par: bool) -> Result<RecordBatch, ArrowError> {
    let (ids, values) = (u64s(b, "id")?, u64s(b, "value")?);
    let parts = chunks(b.num_rows(), par, |from, to| {
        values[from..to]
            .iter()
            .zip(&ids[from..to])
            .map(|(v, i)| v.rotate_left(5) ^ i)
            .collect::<Vec<u64>>()
    });
    // The first chunk's vector grows to hold the others (no copy with one chunk).
    let joined = parts.into_iter().reduce(|mut a, b| {
        a.extend(b);
        a
    });
    let value: ArrayRef = Arc::new(UInt64Array::from(joined.unwrap_or_default()));
    let mut cols = b.columns().to_vec();
    cols[2] = value;
    RecordBatch::try_new(b.schema(), cols)
}

/// `value % 10 < 7`, packed 64 verdicts to a word.
fn keep(b: &RecordBatch, par: bool) -> Result<BooleanArray, ArrowError> {
    let values = u64s(b, "value")?;
    if !par || values.len() < 2 * CHUNK {
        return Ok(BooleanBuffer::collect_bool(values.len(), |i| values[i] % 10 < 7).into());
    }
    let parts = chunks(values.len(), par, |from, to| {
        BooleanBuffer::collect_bool(to - from, |i| values[from + i] % 10 < 7)
    });
    let mut all = BooleanBufferBuilder::new(values.len());
    for p in &parts {
        all.append_buffer(p);
    }
    Ok(all.finish().into())
}

/// Adds `key = id % 1024`.
fn with_key(b: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let ids = u64s(b, "id")?;
    let key: ArrayRef = Arc::new(UInt64Array::from(
        ids.iter().map(|i| i % 1024).collect::<Vec<_>>(),
    ));
    let mut fields: Vec<Arc<Field>> = b.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new("key", DataType::UInt64, false)));
    let mut cols = b.columns().to_vec();
    cols.push(key);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
}

fn keyed_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::UInt64, false),
        Field::new("value", DataType::UInt64, false),
    ]))
}

/// `rotate`, `keep` and `with_key` in one pass, as a query engine compiles an expression
/// pipeline: each row's new value, its verdict and its key are computed together and
/// written at a cursor that moves only past kept rows (no mask, no gather). The batch comes
/// by value and the pass runs in place: the keys overwrite the `id` column's buffer and the
/// values the `value` column's (the cursor never passes the row it reads), so no column is
/// allocated or zeroed, and the memory written is the memory the source just wrote. It also
/// prunes the columns nothing downstream reads, as a planner would: the output is `key` and
/// `value` only (the running sum reads both, the sink reads `value`).
fn fused(b: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, FailedBatch> {
    let u64_column = |name: &str| {
        b.schema()
            .column_with_name(name)
            .map(|(i, _)| i)
            .filter(|i| b.column(*i).data_type() == &DataType::UInt64)
            .filter(|i| b.column(*i).null_count() == 0)
    };
    let (Some(ii), Some(vi)) = (u64_column("id"), u64_column("value")) else {
        let e = ArrowError::InvalidArgumentError("no u64 columns `id` and `value`".into());
        return Err(FailedBatch {
            batch: b,
            error: Arc::new(e),
        });
    };
    let rows = b.num_rows();
    let (_, mut cols, _) = b.into_parts();
    // The higher index first: removing it cannot move the lower one.
    let (hi, lo) = (ii.max(vi), ii.min(vi));
    let (h, l) = (cols.swap_remove(hi), cols.swap_remove(lo));
    drop(cols);
    let (id_col, value_col) = if ii > vi { (h, l) } else { (l, h) };
    // Checked above: both are u64 without nulls, so both are `Some`.
    let (Some(mut keys), Some(mut values)) = (
        owned_values::<UInt64Type>(id_col),
        owned_values::<UInt64Type>(value_col),
    ) else {
        let e = ArrowError::InvalidArgumentError("`id` or `value` is not u64".into());
        return Err(FailedBatch::lost(rows, e));
    };
    let n = keys.len().min(values.len());
    let mut w = 0usize;
    for i in 0..n {
        let (id, v) = (keys[i], values[i]);
        let v = v.rotate_left(5) ^ id;
        // `w <= i`: the row at the cursor was read already.
        if let (Some(k), Some(o)) = (keys.get_mut(w), values.get_mut(w)) {
            *k = id % 1024;
            *o = v;
        }
        w += usize::from(v % 10 < 7);
    }
    keys.truncate(w);
    values.truncate(w);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from(keys)),
        Arc::new(UInt64Array::from(values)),
    ];
    RecordBatch::try_new(schema.clone(), cols).map_err(|e| FailedBatch::lost(w, e))
}

/// W1 on record batches; returns the sink's handle (rows, XOR of values per instance).
pub fn build(
    p: &Pipeline,
    cfg: &ColumnarConfig,
    failed: Arc<dyn Fn(FailedBatch) + Send + Sync>,
) -> sluice_operators::FoldSinkHandle<(u64, u64)> {
    let c = cfg.base;
    let par = cfg.rayon;
    let rows = c.batch_size.max(1);
    let capacity = c.capacity.max(4 * rows);
    let records = c.records;
    let schema = schema();
    // Each operator's dead letters go to `failed`.
    let to_failed = |f: &Arc<dyn Fn(FailedBatch) + Send + Sync>| {
        let f = f.clone();
        move |b: FailedBatch| f(b)
    };
    let source = p.source("source", c.parallelism, move |info| Generator {
        next: info.instance as u64,
        step: info.parallelism as u64,
        end: records,
        rows,
        schema: schema.clone(),
    });
    let keyed = if cfg.fused {
        let out = keyed_schema();
        source.map_batches_owned(
            "rotate, keep, key",
            move |b| fused(b, &out),
            to_failed(&failed),
        )
    } else {
        source
            .map_batches("rotate", move |b| rotate(b, par), to_failed(&failed))
            .filter_rows("keep", move |b| keep(b, par), to_failed(&failed))
            .map_batches("key", with_key, to_failed(&failed))
    };
    keyed
        .edge_capacity(capacity)
        .key_by_columns("key_by", &["key"], c.parallelism, to_failed(&failed))
        .running_sum("running sum", "key", "value", "value", to_failed(&failed))
        .edge_capacity(capacity)
        .new_chain()
        .fold_sink(
            "checksum",
            || (0u64, 0u64),
            |acc, b: RecordBatch| {
                acc.0 += b.num_rows() as u64;
                if let Some(v) = b
                    .column_by_name("value")
                    .and_then(|c| c.as_primitive_opt::<UInt64Type>())
                {
                    acc.1 = v.values().iter().fold(acc.1, |x, v| x ^ v);
                }
            },
        )
}

/// Runs W1 in columnar form.
///
/// # Errors
/// A build error or a job error, boxed; a batch that an operator failed on is an error too
/// (W1's kernels cannot fail on its own batches).
pub fn run(cfg: &ColumnarConfig) -> Result<(Outcome, JobReport), Box<dyn std::error::Error>> {
    let p = Pipeline::new("w1-columnar").batch_size(cfg.base.batch_size.max(1));
    let failures = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let f2 = failures.clone();
    let sink = build(
        &p,
        cfg,
        Arc::new(move |f: FailedBatch| f2.lock().push(f.error.to_string())),
    );
    let c0 = cpu_time::ProcessTime::try_now().ok();
    let t0 = Instant::now();
    let report = p
        .run()?
        .wait()
        .map_err(|e: JobError| Box::new(e) as Box<dyn std::error::Error>)?;
    let elapsed = t0.elapsed();
    let cpu = c0.and_then(|c| {
        cpu_time::ProcessTime::try_now()
            .ok()
            .map(|n| n.duration_since(c))
    });
    if let Some(e) = failures.lock().first() {
        return Err(format!("columnar W1: an operator failed: {e}").into());
    }
    let (mut n, mut x) = (0u64, 0u64);
    for (c, s) in sink.take() {
        n += c;
        x ^= s;
    }
    Ok((
        Outcome {
            records_out: n,
            checksum: x,
            elapsed,
            cpu,
        },
        report,
    ))
}
