//! Keyed columnar operators: partitioning rows by the hash of key columns, and a running
//! per-key sum.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, NullArray, PrimitiveArray, RecordBatch, UInt32Array};
use arrow::buffer::NullBuffer;
use arrow::compute::{cast, take_record_batch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, UInt64Type};
use arrow::error::ArrowError;
use sluice_engine::{partition_of, Stream};

use super::types::{each_batch, DeadLetterFn, FailedBatch};
use crate::{StreamExt, DENSE_KEYS};

/// A batch tagged with the instance its rows hash to (between a columnar `key_by`'s split
/// and its edge).
#[derive(Debug, Clone)]
pub struct Routed {
    /// The downstream instance.
    pub target: usize,
    /// Its rows.
    pub batch: RecordBatch,
}

fn routed_rows(r: &Routed) -> usize {
    r.batch.num_rows()
}

const MIX: u64 = 0x517c_c1b7_2722_0a95;

/// FxHash's step: one multiply per word.
#[inline]
fn mix(h: u64, x: u64) -> u64 {
    (h.rotate_left(5) ^ x).wrapping_mul(MIX)
}

/// Folds one word per row into the hashes; a null row folds `NULL`.
fn fold_words(h: &mut [u64], words: impl Iterator<Item = u64>, nulls: Option<&NullBuffer>) {
    match nulls {
        // No nulls: one multiply per row, nothing else.
        None => h
            .iter_mut()
            .zip(words)
            .for_each(|(hv, w)| *hv = mix(*hv, w)),
        Some(n) => h
            .iter_mut()
            .zip(words)
            .enumerate()
            .for_each(|(i, (hv, w))| *hv = mix(*hv, if n.is_null(i) { NULL } else { w })),
    }
}

/// What a null key folds into a row's hash.
const NULL: u64 = 0x9e37_79b9_7f4a_7c15;

/// Folds column `col` into the per-row hashes `h`.
fn hash_column(col: &ArrayRef, h: &mut [u64]) -> Result<(), ArrowError> {
    let dt = col.data_type();
    if dt.is_integer() {
        let ints: ArrayRef = if matches!(dt, DataType::UInt64 | DataType::Int64) {
            col.clone()
        } else if dt.is_signed_integer() {
            cast(col, &DataType::Int64)?
        } else {
            cast(col, &DataType::UInt64)?
        };
        let nulls = ints.logical_nulls();
        match ints.data_type() {
            DataType::Int64 => fold_words(
                h,
                ints.as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .map(|v| *v as u64),
                nulls.as_ref(),
            ),
            _ => fold_words(
                h,
                ints.as_primitive::<UInt64Type>().values().iter().copied(),
                nulls.as_ref(),
            ),
        }
        return Ok(());
    }
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..) => {
            let s = cast(col, &DataType::Utf8)?;
            let s = s.as_string::<i32>();
            for (i, hv) in h.iter_mut().enumerate() {
                let w = if s.is_null(i) {
                    NULL
                } else {
                    s.value(i).as_bytes().chunks(8).fold(0u64, |a, c| {
                        let mut b = [0u8; 8];
                        b[..c.len()].copy_from_slice(c);
                        mix(a, u64::from_le_bytes(b))
                    }) ^ s.value(i).len() as u64
                };
                *hv = mix(*hv, w);
            }
            Ok(())
        }
        DataType::Boolean => {
            let b = col.as_boolean();
            for (i, hv) in h.iter_mut().enumerate() {
                let w = if b.is_null(i) {
                    NULL
                } else {
                    u64::from(b.value(i))
                };
                *hv = mix(*hv, w);
            }
            Ok(())
        }
        other => Err(ArrowError::InvalidArgumentError(format!(
            "a key column holds integers, booleans, strings or a dictionary of them, not {other}"
        ))),
    }
}

/// The positions of the rows of `b` that go to each instance `0..p`, in order: the hash of
/// the row's `columns`, mapped onto `0..p`.
fn rows_by_instance(
    b: &RecordBatch,
    columns: &[String],
    p: usize,
) -> Result<Vec<UInt32Array>, ArrowError> {
    let column = |c: &String| {
        b.column_by_name(c)
            .ok_or_else(|| ArrowError::InvalidArgumentError(format!("no key column `{c}`")))
    };
    // One 64-bit integer column without nulls (the common key): hashed and mapped in one
    // pass, to the same instances as the general path.
    if let [c] = columns {
        let col = column(c)?;
        if col.null_count() == 0 {
            match col.data_type() {
                DataType::UInt64 => {
                    let keys = col.as_primitive::<UInt64Type>().values();
                    return Ok(split_hashed(keys.iter().map(|k| mix(0, *k)), keys.len(), p));
                }
                DataType::Int64 => {
                    let keys = col.as_primitive::<Int64Type>().values();
                    let hashes = keys.iter().map(|k| mix(0, *k as u64));
                    return Ok(split_hashed(hashes, keys.len(), p));
                }
                _ => {}
            }
        }
    }
    // One hash per row over every key column.
    let mut h = vec![0u64; b.num_rows()];
    for c in columns {
        hash_column(column(c)?, &mut h)?;
    }
    Ok(split_hashed(h.iter().copied(), h.len(), p))
}

/// The positions of `n` rows by the instance their hashes map to. Two instances take one
/// pass without branches: each position is written to both lists, and only its instance's
/// cursor moves on (one spare slot each for the last writes).
fn split_hashed(hashes: impl Iterator<Item = u64>, n: usize, p: usize) -> Vec<UInt32Array> {
    if p == 2 {
        let (mut a, mut b) = (vec![0u32; n + 1], vec![0u32; n + 1]);
        let (mut wa, mut wb) = (0usize, 0usize);
        for (i, h) in hashes.enumerate() {
            let t = partition_of(h, 2);
            if let (Some(x), Some(y)) = (a.get_mut(wa), b.get_mut(wb)) {
                *x = i as u32;
                *y = i as u32;
            }
            wa += 1 - t;
            wb += t;
        }
        a.truncate(wa);
        b.truncate(wb);
        return vec![UInt32Array::from(a), UInt32Array::from(b)];
    }
    let targets: Vec<u32> = hashes.map(|h| partition_of(h, p) as u32).collect();
    rows_per_target(&targets, p)
}

/// The positions of the rows of each instance `0..p` (more than two), in order: a counting
/// sort (one histogram pass, one scatter pass), whose cost does not grow with `p`.
fn rows_per_target(targets: &[u32], p: usize) -> Vec<UInt32Array> {
    // Four interleaved histograms: consecutive rows of one instance do not wait on each
    // other's increment.
    let mut hist = vec![0usize; 4 * p];
    let mut quads = targets.chunks_exact(4);
    for q in &mut quads {
        for (j, t) in q.iter().enumerate() {
            if let Some(h) = hist.get_mut(j * p + *t as usize) {
                *h += 1;
            }
        }
    }
    for t in quads.remainder() {
        if let Some(h) = hist.get_mut(*t as usize) {
            *h += 1;
        }
    }
    let mut start = vec![0usize; p + 1];
    for t in 0..p {
        let count: usize = (0..4).map(|j| hist[j * p + t]).sum();
        start[t + 1] = start[t] + count;
    }
    let mut next = start.clone();
    let mut idx = vec![0u32; targets.len()];
    for (i, t) in targets.iter().enumerate() {
        if let Some(w) = next.get_mut(*t as usize) {
            if let Some(slot) = idx.get_mut(*w) {
                *slot = i as u32;
            }
            *w += 1;
        }
    }
    let all = UInt32Array::from(idx);
    (0..p)
        .map(|t| all.slice(start[t], start[t + 1] - start[t]))
        .collect()
}

/// `b`'s rows split by the hash of `columns` into `p` parts, tagged with their instance.
fn partition(b: RecordBatch, columns: &[String], p: usize) -> Result<Vec<Routed>, FailedBatch> {
    let fail = |b: RecordBatch, e: ArrowError| FailedBatch {
        batch: b,
        error: Arc::new(e),
    };
    if p <= 1 || b.num_rows() == 0 {
        return Ok(vec![Routed {
            target: 0,
            batch: b,
        }]);
    }
    let rows = match rows_by_instance(&b, columns, p) {
        Ok(r) => r,
        Err(e) => return Err(fail(b, e)),
    };
    let present = rows.iter().filter(|r| !r.is_empty()).count();
    if present == 1 {
        // Every row to one instance: the batch moves whole.
        let target = rows.iter().position(|r| !r.is_empty()).unwrap_or(0);
        return Ok(vec![Routed { target, batch: b }]);
    }
    let mut out = Vec::with_capacity(present);
    for (target, idx) in rows.iter().enumerate() {
        if idx.is_empty() {
            continue;
        }
        match take_record_batch(&b, idx) {
            Ok(batch) => out.push(Routed { target, batch }),
            Err(e) => return Err(fail(b, e)),
        }
    }
    Ok(out)
}

/// Keyed operators on a stream of record batches.
pub trait KeyedBatchStreamExt: Sized {
    /// Partitions rows by the values of `columns` into `p` instances: one hash per row over
    /// the key columns (integers, booleans, strings, dictionaries), then one `take` per
    /// instance; rows with equal keys meet in one instance, in the order each upstream
    /// instance sent them. A batch without a key column goes to `dead_letter`.
    fn key_by_columns<D>(
        self,
        name: &str,
        columns: &[&str],
        p: usize,
        dead_letter: D,
    ) -> Stream<RecordBatch>
    where
        D: Fn(FailedBatch) + Send + Sync + 'static;

    /// For each row, sets column `out` (appended, or replaced if present) to the running
    /// wrapping sum of integer column `value` over the rows of its `key` seen so far by this
    /// instance, this row included. Keys are integers; below 65,536 their sums live in a
    /// vector, others in a hash map. Put it after [`KeyedBatchStreamExt::key_by_columns`]
    /// on `key`. A batch without the columns (or with nulls in them) goes to `dead_letter`.
    fn running_sum<D>(
        self,
        name: &str,
        key: &str,
        value: &str,
        out: &str,
        dead_letter: D,
    ) -> Stream<RecordBatch>
    where
        D: Fn(FailedBatch) + Send + Sync + 'static;

    /// For each row, sets column `out` to the running aggregate `agg` of integer column
    /// `value` over the rows of its `key` seen so far by this instance, this row included:
    /// [`Agg::Sum`] (wrapping, `UInt64`), [`Agg::Count`] (`UInt64`; `value` is not read),
    /// [`Agg::Min`] and [`Agg::Max`] (`Int64` for a signed `value`, `UInt64` for an
    /// unsigned one). State is kept as [`KeyedBatchStreamExt::running_sum`] keeps it. A
    /// batch without the columns, with nulls in them, or whose `value` changed signedness
    /// goes to `dead_letter`.
    fn running_agg<D>(
        self,
        name: &str,
        key: &str,
        value: &str,
        out: &str,
        agg: Agg,
        dead_letter: D,
    ) -> Stream<RecordBatch>
    where
        D: Fn(FailedBatch) + Send + Sync + 'static;
}

/// A running aggregate per key ([`KeyedBatchStreamExt::running_agg`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    /// The wrapping sum of the values.
    Sum,
    /// The number of rows.
    Count,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
}

impl KeyedBatchStreamExt for Stream<RecordBatch> {
    fn key_by_columns<D>(
        self,
        name: &str,
        columns: &[&str],
        p: usize,
        dead_letter: D,
    ) -> Stream<RecordBatch>
    where
        D: Fn(FailedBatch) + Send + Sync + 'static,
    {
        let _ = sluice_engine::count_rows(routed_rows as fn(&Routed) -> usize);
        let cols: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        let dead_letter: DeadLetterFn<FailedBatch> = Arc::new(dead_letter);
        self.operator(name, move |_| Partition {
            columns: cols.clone(),
            p,
            dead_letter: dead_letter.clone(),
            dead: 0,
        })
        .route_to(p, |r: &Routed| r.target)
        .map(&format!("{name}: batches"), |r: Routed| r.batch)
    }

    fn running_sum<D>(
        self,
        name: &str,
        key: &str,
        value: &str,
        out: &str,
        dead_letter: D,
    ) -> Stream<RecordBatch>
    where
        D: Fn(FailedBatch) + Send + Sync + 'static,
    {
        self.running_agg(name, key, value, out, Agg::Sum, dead_letter)
    }

    fn running_agg<D>(
        self,
        name: &str,
        key: &str,
        value: &str,
        out: &str,
        agg: Agg,
        dead_letter: D,
    ) -> Stream<RecordBatch>
    where
        D: Fn(FailedBatch) + Send + Sync + 'static,
    {
        let (key, value, out) = (key.to_string(), value.to_string(), out.to_string());
        let dead_letter: DeadLetterFn<FailedBatch> = Arc::new(dead_letter);
        self.operator(name, move |_| RunningSum {
            key: key.clone(),
            value: value.clone(),
            out: out.clone(),
            agg,
            signed: None,
            dense: Vec::new(),
            sparse: Default::default(),
            dead_letter: dead_letter.clone(),
            dead: 0,
        })
    }
}

/// The split half of [`KeyedBatchStreamExt::key_by_columns`] in one instance.
struct Partition {
    columns: Vec<String>,
    p: usize,
    dead_letter: DeadLetterFn<FailedBatch>,
    dead: u64,
}

impl sluice_engine::Operator<RecordBatch, Routed> for Partition {
    fn process(&mut self, input: Vec<RecordBatch>) -> Vec<Routed> {
        let mut out = Vec::with_capacity(input.len() * self.p.min(8));
        for b in input {
            match partition(b, &self.columns, self.p) {
                Ok(parts) => out.extend(parts),
                Err(f) => {
                    self.dead += f.batch.num_rows() as u64;
                    (self.dead_letter)(f);
                }
            }
        }
        out
    }

    fn take_dead_lettered(&mut self) -> u64 {
        std::mem::take(&mut self.dead)
    }
}

/// The state of [`KeyedBatchStreamExt::running_agg`] in one instance.
struct RunningSum {
    key: String,
    value: String,
    out: String,
    agg: Agg,
    /// Whether the value column is signed (fixed by the first batch: min and max compare
    /// by it).
    signed: Option<bool>,
    /// Aggregates of keys below [`DENSE_KEYS`], indexed by key (grown to the largest seen;
    /// a key not seen yet holds the aggregate's identity).
    dense: Vec<u64>,
    /// Aggregates of the other keys.
    sparse: rustc_hash::FxHashMap<u64, u64>,
    dead_letter: DeadLetterFn<FailedBatch>,
    dead: u64,
}

impl sluice_engine::Operator<RecordBatch, RecordBatch> for RunningSum {
    fn process(&mut self, input: Vec<RecordBatch>) -> Vec<RecordBatch> {
        let mut dead = 0;
        let dead_letter = self.dead_letter.clone();
        let out = each_batch(input, &mut dead, &dead_letter, |b| self.apply(b));
        self.dead += dead;
        out
    }

    fn take_dead_lettered(&mut self) -> u64 {
        std::mem::take(&mut self.dead)
    }
}

/// An integer column as `u64` words (signed values by their two's complement bits).
fn words(col: &ArrayRef) -> Result<std::borrow::Cow<'_, [u64]>, ArrowError> {
    match col.data_type() {
        DataType::UInt64 => Ok(col.as_primitive::<UInt64Type>().values().as_ref().into()),
        dt if dt.is_signed_integer() => {
            let c = cast(col, &DataType::Int64)?;
            Ok(c.as_primitive::<Int64Type>()
                .values()
                .iter()
                .map(|v| *v as u64)
                .collect::<Vec<_>>()
                .into())
        }
        dt if dt.is_integer() => {
            let c = cast(col, &DataType::UInt64)?;
            Ok(c.as_primitive::<UInt64Type>().values().to_vec().into())
        }
        other => Err(ArrowError::InvalidArgumentError(format!(
            "a running aggregate needs integer columns, not {other}"
        ))),
    }
}

impl RunningSum {
    /// The running aggregate of `b`'s rows. When `b` already has a column `out` of the
    /// output's type that nothing else holds (W1's `value`, summed into itself), the
    /// aggregates are written into its buffer: no new column is allocated or zeroed. The
    /// state is updated only once nothing can fail, and a failed batch comes back as it came.
    fn apply(&mut self, b: RecordBatch) -> Result<RecordBatch, FailedBatch> {
        let fail = |b: RecordBatch, msg: String| FailedBatch {
            batch: b,
            error: Arc::new(ArrowError::InvalidArgumentError(msg)),
        };
        let schema = b.schema();
        let Some((ki, _)) = schema.column_with_name(&self.key) else {
            let msg = format!("no column `{}`", self.key);
            return Err(fail(b, msg));
        };
        let vi = if self.agg == Agg::Count {
            None
        } else {
            match schema.column_with_name(&self.value) {
                Some((i, _)) => Some(i),
                None => {
                    let msg = format!("no column `{}`", self.value);
                    return Err(fail(b, msg));
                }
            }
        };
        let integer = |i: usize| b.column(i).data_type().is_integer();
        if !integer(ki) || vi.is_some_and(|v| !integer(v)) {
            let msg = "a running aggregate needs integer key and value columns".to_string();
            return Err(fail(b, msg));
        }
        if b.column(ki).null_count() > 0 || vi.is_some_and(|v| b.column(v).null_count() > 0) {
            let msg = "a running aggregate needs key and value columns without nulls".to_string();
            return Err(fail(b, msg));
        }
        let signed = vi.is_some_and(|v| b.column(v).data_type().is_signed_integer());
        if vi.is_some() && *self.signed.get_or_insert(signed) != signed {
            let msg = format!(
                "column `{}` changed between signed and unsigned integers",
                self.value
            );
            return Err(fail(b, msg));
        }
        let (identity, out_type) = match (self.agg, signed) {
            (Agg::Sum | Agg::Count, _) => (0, DataType::UInt64),
            (Agg::Min, true) => (i64::MAX as u64, DataType::Int64),
            (Agg::Min, false) => (u64::MAX, DataType::UInt64),
            (Agg::Max, true) => (i64::MIN as u64, DataType::Int64),
            (Agg::Max, false) => (0, DataType::UInt64),
        };
        // The output goes into the existing `out` column when it has the output's type
        // (and is not the key, which is read throughout).
        let reuse = schema
            .column_with_name(&self.out)
            .filter(|(i, f)| *i != ki && f.data_type() == &out_type)
            .map(|(i, _)| i);
        let rows = b.num_rows();
        // What is read is read before the batch is taken apart, so that a failure hands it
        // back whole: the keys, and the values when they are not in the output column.
        // (Their columns stay in the batch too; only the output column is written.)
        let key_col = b.column(ki).clone();
        let keys = match words(&key_col) {
            Ok(k) => k,
            Err(e) => return Err(fail(b, e.to_string())),
        };
        let reads_dst = reuse.is_some() && vi == reuse;
        let value_col = vi.filter(|_| !reads_dst).map(|v| b.column(v).clone());
        let values = match value_col.as_ref().map(words).transpose() {
            Ok(v) => v,
            Err(e) => return Err(fail(b, e.to_string())),
        };
        let (schema, mut cols, _) = b.into_parts();
        let mut dst: Vec<u64> = match reuse {
            Some(o) => {
                let col = std::mem::replace(&mut cols[o], Arc::new(NullArray::new(0)));
                match owned_words(col) {
                    Some(w) => w,
                    // Checked above: a value column of the output's type has no nulls.
                    None if reads_dst => {
                        let e = ArrowError::InvalidArgumentError(format!(
                            "column `{}` could not be read as integers",
                            self.value
                        ));
                        return Err(FailedBatch::lost(rows, e));
                    }
                    // Its old values are not read (nulls included): overwritten.
                    None => vec![0; rows],
                }
            }
            None => vec![0; rows],
        };
        if let Some(values) = &values {
            dst.iter_mut().zip(values.iter()).for_each(|(d, v)| *d = *v);
        }
        match (self.agg, signed) {
            (Agg::Sum, _) => self.fold(&keys, &mut dst, identity, u64::wrapping_add),
            (Agg::Count, _) => self.fold(&keys, &mut dst, identity, |s, _| s.wrapping_add(1)),
            (Agg::Min, true) => self.fold(&keys, &mut dst, identity, |s, v| {
                ((s as i64).min(v as i64)) as u64
            }),
            (Agg::Min, false) => self.fold(&keys, &mut dst, identity, u64::min),
            (Agg::Max, true) => self.fold(&keys, &mut dst, identity, |s, v| {
                ((s as i64).max(v as i64)) as u64
            }),
            (Agg::Max, false) => self.fold(&keys, &mut dst, identity, u64::max),
        }
        drop(keys);
        let out = output_array(dst, &out_type);
        let (schema, cols) = match reuse {
            // Same name, same type: the schema does not change.
            Some(o) => {
                cols[o] = out;
                (schema, cols)
            }
            // Another type, or the key column: replaced by name, or appended.
            None => {
                let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
                let field = Arc::new(Field::new(&self.out, out_type, false));
                match schema.column_with_name(&self.out) {
                    Some((i, _)) => {
                        fields[i] = field;
                        cols[i] = out;
                    }
                    None => {
                        fields.push(field);
                        cols.push(out);
                    }
                }
                (Arc::new(Schema::new(fields)), cols)
            }
        };
        // Cannot fail: the columns are the input's, and the output is of its field's type
        // and length. If it did, the rows still count as dead-lettered.
        RecordBatch::try_new(schema, cols).map_err(|e| FailedBatch::lost(rows, e))
    }

    /// Folds each row's value (the row's word in `dst`, ignored by [`Agg::Count`]) into
    /// its key's state with `f`, starting from `identity`, and writes the state after the
    /// row over it.
    #[inline]
    fn fold<F: Fn(u64, u64) -> u64>(&mut self, keys: &[u64], dst: &mut [u64], identity: u64, f: F) {
        // Small keys index a vector: one load and one store per row, no hashing.
        let top = keys.iter().copied().max().unwrap_or(0);
        if top < DENSE_KEYS as u64 {
            if !keys.is_empty() && top as usize >= self.dense.len() {
                self.dense.resize(top as usize + 1, identity);
            }
            let dense = &mut self.dense;
            for (k, d) in keys.iter().zip(dst.iter_mut()) {
                if let Some(s) = dense.get_mut(*k as usize) {
                    *s = f(*s, *d);
                    *d = *s;
                }
            }
            return;
        }
        for (k, d) in keys.iter().zip(dst.iter_mut()) {
            let s = if *k < DENSE_KEYS as u64 {
                if *k as usize >= self.dense.len() {
                    self.dense.resize(*k as usize + 1, identity);
                }
                &mut self.dense[*k as usize]
            } else {
                self.sparse.entry(*k).or_insert(identity)
            };
            *s = f(*s, *d);
            *d = *s;
        }
    }
}

/// A `UInt64` or `Int64` column without nulls as words, on its own memory when `col` is
/// its only holder (copied otherwise).
fn owned_words(col: ArrayRef) -> Option<Vec<u64>> {
    if col.data_type() == &DataType::Int64 {
        let v = super::owned_values::<Int64Type>(col)?;
        // Same size and alignment: the vector is reinterpreted, not copied.
        let b = arrow::buffer::Buffer::from_vec(v);
        return Some(
            b.into_vec::<u64>()
                .unwrap_or_else(|b| b.typed_data::<u64>().to_vec()),
        );
    }
    super::owned_values::<UInt64Type>(col)
}

/// Aggregates as a column of `ty` (`UInt64`, or `Int64` for the two's complement words of
/// signed ones), on the vector's memory.
fn output_array(words: Vec<u64>, ty: &DataType) -> ArrayRef {
    let n = words.len();
    let buffer = arrow::buffer::Buffer::from_vec(words);
    if ty == &DataType::Int64 {
        Arc::new(PrimitiveArray::<Int64Type>::new(
            arrow::buffer::ScalarBuffer::new(buffer, 0, n),
            None,
        ))
    } else {
        Arc::new(PrimitiveArray::<UInt64Type>::new(
            arrow::buffer::ScalarBuffer::new(buffer, 0, n),
            None,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};

    fn b(keys: Vec<i32>, names: Vec<&str>) -> RecordBatch {
        let k: ArrayRef = Arc::new(Int32Array::from(keys));
        let n: ArrayRef = Arc::new(StringArray::from(names));
        RecordBatch::try_from_iter([("k", k), ("name", n)]).unwrap()
    }

    #[test]
    fn equal_keys_go_to_one_part_in_order_and_every_row_goes_somewhere() {
        let keys: Vec<i32> = (0..1000).map(|i| i % 37).collect();
        let names: Vec<&str> = (0..1000).map(|i| ["a", "b", "c"][i % 3]).collect();
        let parts = partition(b(keys, names), &["k".into(), "name".into()], 4).unwrap();
        assert_eq!(
            parts.iter().map(|r| r.batch.num_rows()).sum::<usize>(),
            1000
        );
        let mut seen = std::collections::HashMap::new();
        for r in &parts {
            let k = r
                .batch
                .column(0)
                .as_primitive::<arrow::datatypes::Int32Type>();
            let n = r.batch.column(1).as_string::<i32>();
            for i in 0..r.batch.num_rows() {
                let prev = seen.insert((k.value(i), n.value(i).to_string()), r.target);
                assert!(prev.is_none_or(|t| t == r.target), "a key in two parts");
            }
        }
        assert!(parts.len() > 1, "37 x 3 keys spread over 4 instances");
    }

    #[test]
    fn one_wide_integer_key_takes_the_one_pass_path_to_the_same_instances() {
        let keys: Vec<u64> = (0..3000).map(|i| (i * 7919) % 1000).collect();
        let wide: ArrayRef = Arc::new(arrow::array::UInt64Array::from(keys.clone()));
        let narrow: ArrayRef = Arc::new(arrow::array::UInt32Array::from(
            keys.iter().map(|k| *k as u32).collect::<Vec<_>>(),
        ));
        let w = RecordBatch::try_from_iter([("k", wide)]).unwrap();
        let n = RecordBatch::try_from_iter([("k", narrow)]).unwrap();
        for p in 2..=5 {
            // UInt32 goes through the general path (cast, then hash): the same rows.
            let rows = rows_by_instance(&w, &["k".into()], p).unwrap();
            assert_eq!(rows, rows_by_instance(&n, &["k".into()], p).unwrap());
            let mut fast = vec![usize::MAX; keys.len()];
            for (t, r) in rows.iter().enumerate() {
                r.values().iter().for_each(|i| fast[*i as usize] = t);
            }
            assert!(fast.iter().all(|t| *t < p), "every row in exactly one list");
            // Each instance gets its rows, in order, by both index builders.
            let parts = partition(w.clone(), &["k".into()], p).unwrap();
            let mut seen = 0;
            for r in &parts {
                let got = r.batch.column(0).as_primitive::<UInt64Type>().values();
                let want: Vec<u64> = (0..keys.len())
                    .filter(|i| fast[*i] == r.target)
                    .map(|i| keys[i])
                    .collect();
                assert_eq!(
                    got.as_ref(),
                    want.as_slice(),
                    "p={p}, instance {}",
                    r.target
                );
                seen += got.len();
            }
            assert_eq!(seen, keys.len());
            assert_eq!(parts.len(), p, "1,000 keys reach every instance");
        }
    }

    #[test]
    fn a_missing_key_column_fails_the_batch_whole() {
        let e = partition(b(vec![1, 2], vec!["a", "b"]), &["nope".into()], 2).unwrap_err();
        assert_eq!(e.batch.num_rows(), 2);
        assert!(e.error.to_string().contains("nope"));
    }

    #[test]
    fn running_sums_follow_each_key() {
        let mut op = sum_op("k", "k", "sum", Agg::Sum);
        let out = op.apply(b(vec![1, 2, 1, 1], vec!["a"; 4])).unwrap();
        let s = out
            .column_by_name("sum")
            .unwrap()
            .as_primitive::<UInt64Type>();
        assert_eq!(s.values().as_ref(), &[1, 2, 2, 3]);
        let out = op.apply(b(vec![2, -1], vec!["a"; 2])).unwrap();
        let s = out
            .column_by_name("sum")
            .unwrap()
            .as_primitive::<UInt64Type>();
        assert_eq!(s.values().as_ref(), &[4, u64::MAX]);
    }

    #[test]
    fn count_min_and_max_follow_each_key_signed_or_not() {
        let op = |agg| sum_op("k", "v", "agg", agg);
        let batch = |keys: Vec<u64>, v: ArrayRef| {
            let k: ArrayRef = Arc::new(arrow::array::UInt64Array::from(keys));
            RecordBatch::try_from_iter([("k", k), ("v", v)]).unwrap()
        };
        // Key 1 << 40 lives in the hash map, the others in the vector.
        let big = 1u64 << 40;
        let signed = || -> ArrayRef { Arc::new(Int32Array::from(vec![5, -3, 7, -9, 1])) };
        let keys = || vec![1, 2, 1, big, big];
        let run = |agg| {
            let mut o = op(agg);
            let out = o.apply(batch(keys(), signed())).unwrap();
            out.column_by_name("agg").unwrap().clone()
        };
        let ints = |a: ArrayRef| a.as_primitive::<Int64Type>().values().to_vec();
        let uints = |a: ArrayRef| a.as_primitive::<UInt64Type>().values().to_vec();
        assert_eq!(uints(run(Agg::Count)), vec![1, 1, 2, 1, 2]);
        assert_eq!(ints(run(Agg::Min)), vec![5, -3, 5, -9, -9]);
        assert_eq!(ints(run(Agg::Max)), vec![5, -3, 7, -9, 1]);
        let mut max = op(Agg::Max);
        let unsigned: ArrayRef = Arc::new(arrow::array::UInt64Array::from(vec![1, u64::MAX]));
        let out = max.apply(batch(vec![3, 3], unsigned)).unwrap();
        assert_eq!(uints(out.column(2).clone()), vec![1, u64::MAX]);
        // The state compares by the first batch's signedness: a change is refused.
        assert!(max.apply(batch(vec![3], signed().slice(0, 1))).is_err());
    }

    fn sum_op(key: &str, value: &str, out: &str, agg: Agg) -> RunningSum {
        RunningSum {
            key: key.into(),
            value: value.into(),
            out: out.into(),
            agg,
            signed: None,
            dense: Vec::new(),
            sparse: Default::default(),
            dead_letter: Arc::new(|_| {}),
            dead: 0,
        }
    }

    fn kv(keys: Vec<u64>, values: Vec<u64>) -> RecordBatch {
        let k: ArrayRef = Arc::new(arrow::array::UInt64Array::from(keys));
        let v: ArrayRef = Arc::new(arrow::array::UInt64Array::from(values));
        RecordBatch::try_from_iter([("k", k), ("v", v)]).unwrap()
    }

    fn values_of(b: &RecordBatch, name: &str) -> (Vec<u64>, *const u8) {
        let c = b.column_by_name(name).unwrap();
        let v = c.as_primitive::<UInt64Type>().values();
        (v.to_vec(), v.inner().as_ptr())
    }

    #[test]
    fn a_sum_into_its_own_unshared_column_reuses_the_buffer() {
        let mut op = sum_op("k", "v", "v", Agg::Sum);
        let b = kv(vec![1, 2, 1, 1], vec![10, 20, 30, 40]);
        let (_, before) = values_of(&b, "v");
        let out = op.apply(b).unwrap();
        let (sums, after) = values_of(&out, "v");
        assert_eq!(sums, [10, 20, 40, 80]);
        assert_eq!(before, after, "written in place");
        assert_eq!(out.schema().fields().len(), 2);
    }

    #[test]
    fn a_shared_column_is_copied_and_left_as_it_was() {
        let mut op = sum_op("k", "v", "v", Agg::Sum);
        let b = kv(vec![1, 2, 1, 1], vec![10, 20, 30, 40]);
        let kept = b.clone();
        let out = op.apply(b).unwrap();
        assert_eq!(values_of(&out, "v").0, [10, 20, 40, 80]);
        assert_eq!(
            values_of(&kept, "v").0,
            [10, 20, 30, 40],
            "the other holder's rows"
        );
        assert_ne!(values_of(&kept, "v").1, values_of(&out, "v").1);
        // A slice shares its buffer too.
        let whole = kv(vec![1, 1, 1], vec![1, 2, 3]);
        let out = op.apply(whole.slice(1, 2)).unwrap();
        assert_eq!(values_of(&out, "v").0, [82, 85]);
        assert_eq!(values_of(&whole, "v").0, [1, 2, 3]);
    }

    #[test]
    fn an_existing_output_column_is_overwritten_with_the_aggregate() {
        let mut count = sum_op("k", "v", "v", Agg::Count);
        let out = count.apply(kv(vec![7, 7, 8], vec![5, 5, 5])).unwrap();
        assert_eq!(values_of(&out, "v").0, [1, 2, 1]);
        // Into another column than the values: its buffer is reused, the values are kept.
        let mut into_s = sum_op("k", "v", "s", Agg::Sum);
        let s: ArrayRef = Arc::new(arrow::array::UInt64Array::from(vec![0, 0, 0]));
        let k: ArrayRef = Arc::new(arrow::array::UInt64Array::from(vec![1, 1, 2]));
        let v: ArrayRef = Arc::new(arrow::array::UInt64Array::from(vec![4, 5, 6]));
        let b = RecordBatch::try_from_iter([("k", k), ("v", v), ("s", s)]).unwrap();
        let at = values_of(&b, "s").1;
        let out = into_s.apply(b).unwrap();
        assert_eq!(values_of(&out, "s"), (vec![4, 9, 6], at));
        assert_eq!(values_of(&out, "v").0, [4, 5, 6]);
        // Into the key column: it is read throughout, so it is replaced, not reused.
        let mut onto_key = sum_op("k", "v", "k", Agg::Sum);
        let e = onto_key.apply(kv(vec![1, 1], vec![2, 3])).unwrap();
        assert_eq!(values_of(&e, "k").0, [2, 5]);
        assert_eq!(e.num_columns(), 2, "the key column was replaced by name");
    }

    #[test]
    fn a_failed_batch_comes_back_as_it_came() {
        let mut op = sum_op("k", "nope", "v", Agg::Sum);
        let e = op.apply(kv(vec![1, 2], vec![3, 4])).unwrap_err();
        assert_eq!(values_of(&e.batch, "v").0, [3, 4]);
        assert!(e.error.to_string().contains("nope"));
        let mut op = sum_op("k", "v", "v", Agg::Sum);
        let floats: ArrayRef = Arc::new(arrow::array::Float64Array::from(vec![1.0]));
        let k: ArrayRef = Arc::new(arrow::array::UInt64Array::from(vec![1]));
        let b = RecordBatch::try_from_iter([("k", k), ("v", floats)]).unwrap();
        let e = op.apply(b).unwrap_err();
        assert_eq!(e.batch.num_rows(), 1);
        assert!(e.error.to_string().contains("integer"));
    }

    #[test]
    fn strings_hash_by_content() {
        let a: ArrayRef = Arc::new(StringArray::from(vec!["abcdefghij", "abcdefghij", "x"]));
        let mut h = vec![0u64; 3];
        hash_column(&a, &mut h).unwrap();
        assert_eq!(h[0], h[1]);
        assert_ne!(h[0], h[2]);
    }
}
