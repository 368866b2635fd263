//! Keyed columnar operators: partitioning rows by the hash of key columns, and a running
//! per-key sum.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray, RecordBatch, UInt32Array};
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

/// The positions of `t` in `targets`, in order: a pass without branches (every position is
/// written, the cursor advances only on a match; one spare slot for the last write).
fn rows_of(targets: &[u32], t: u32) -> Vec<u32> {
    let mut out = vec![0u32; targets.len() + 1];
    let mut w = 0usize;
    for (i, &x) in targets.iter().enumerate() {
        out[w] = i as u32;
        w += usize::from(x == t);
    }
    out.truncate(w);
    out
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
    // One hash per row over every key column.
    let mut h = vec![0u64; b.num_rows()];
    for c in columns {
        let Some(col) = b.column_by_name(c) else {
            let e = ArrowError::InvalidArgumentError(format!("no key column `{c}`"));
            return Err(fail(b, e));
        };
        if let Err(e) = hash_column(col, &mut h) {
            return Err(fail(b, e));
        }
    }
    let targets: Vec<u32> = h.iter().map(|hv| partition_of(*hv, p) as u32).collect();
    let mut counts = vec![0usize; p];
    for t in &targets {
        counts[*t as usize] += 1;
    }
    let present = counts.iter().filter(|c| **c > 0).count();
    if present == 1 {
        // Every row to one instance: the batch moves whole.
        let target = counts.iter().position(|c| *c > 0).unwrap_or(0);
        return Ok(vec![Routed { target, batch: b }]);
    }
    let rows: Vec<Vec<u32>> = (0..p as u32).map(|t| rows_of(&targets, t)).collect();
    let mut out = Vec::with_capacity(present);
    for (target, idx) in rows.into_iter().enumerate() {
        if idx.is_empty() {
            continue;
        }
        match take_record_batch(&b, &UInt32Array::from(idx)) {
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
    fn apply(&mut self, b: &RecordBatch) -> Result<RecordBatch, ArrowError> {
        let column = |name: &str| {
            b.column_by_name(name)
                .ok_or_else(|| ArrowError::InvalidArgumentError(format!("no column `{name}`")))
        };
        let kc = column(&self.key)?;
        let vc = if self.agg == Agg::Count {
            None
        } else {
            Some(column(&self.value)?)
        };
        if kc.null_count() > 0 || vc.is_some_and(|v| v.null_count() > 0) {
            return Err(ArrowError::InvalidArgumentError(
                "a running aggregate needs key and value columns without nulls".into(),
            ));
        }
        let signed = vc.is_some_and(|v| v.data_type().is_signed_integer());
        if vc.is_some() && *self.signed.get_or_insert(signed) != signed {
            return Err(ArrowError::InvalidArgumentError(format!(
                "column `{}` changed between signed and unsigned integers",
                self.value
            )));
        }
        let keys = words(kc)?;
        let values = match vc {
            Some(v) => words(v)?,
            None => std::borrow::Cow::Borrowed(&[][..]),
        };
        let (identity, out_type) = match (self.agg, signed) {
            (Agg::Sum | Agg::Count, _) => (0, DataType::UInt64),
            (Agg::Min, true) => (i64::MAX as u64, DataType::Int64),
            (Agg::Min, false) => (u64::MAX, DataType::UInt64),
            (Agg::Max, true) => (i64::MIN as u64, DataType::Int64),
            (Agg::Max, false) => (0, DataType::UInt64),
        };
        let out = match (self.agg, signed) {
            (Agg::Sum, _) => self.fold(&keys, &values, identity, u64::wrapping_add),
            (Agg::Count, _) => self.fold(&keys, &[], identity, |s, _| s.wrapping_add(1)),
            (Agg::Min, true) => self.fold(&keys, &values, identity, |s, v| {
                ((s as i64).min(v as i64)) as u64
            }),
            (Agg::Min, false) => self.fold(&keys, &values, identity, u64::min),
            (Agg::Max, true) => self.fold(&keys, &values, identity, |s, v| {
                ((s as i64).max(v as i64)) as u64
            }),
            (Agg::Max, false) => self.fold(&keys, &values, identity, u64::max),
        };
        let out: ArrayRef = if out_type == DataType::Int64 {
            let signed: Vec<i64> = out.into_iter().map(|v| v as i64).collect();
            Arc::new(PrimitiveArray::<Int64Type>::from(signed))
        } else {
            Arc::new(PrimitiveArray::<UInt64Type>::from(out))
        };
        let schema = b.schema();
        let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
        let mut cols: Vec<ArrayRef> = b.columns().to_vec();
        let field = Arc::new(Field::new(&self.out, out_type, false));
        match fields.iter().position(|f| f.name() == &self.out) {
            Some(i) => {
                fields[i] = field;
                cols[i] = out;
            }
            None => {
                fields.push(field);
                cols.push(out);
            }
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
    }

    /// Folds each row's value (`values` empty: none is read) into its key's state with `f`,
    /// starting from `identity`; returns the state after each row.
    #[inline]
    fn fold<F: Fn(u64, u64) -> u64>(
        &mut self,
        keys: &[u64],
        values: &[u64],
        identity: u64,
        f: F,
    ) -> Vec<u64> {
        let value = |i: usize| values.get(i).copied().unwrap_or(0);
        let mut out = Vec::with_capacity(keys.len());
        // Small keys index a vector: one load and one store per row, no hashing.
        let top = keys.iter().copied().max().unwrap_or(0);
        if top < DENSE_KEYS as u64 {
            if !keys.is_empty() && top as usize >= self.dense.len() {
                self.dense.resize(top as usize + 1, identity);
            }
            let dense = &mut self.dense;
            if values.len() == keys.len() {
                out.extend(keys.iter().zip(values.iter()).map(|(k, v)| {
                    let s = &mut dense[*k as usize];
                    *s = f(*s, *v);
                    *s
                }));
            } else {
                out.extend(keys.iter().map(|k| {
                    let s = &mut dense[*k as usize];
                    *s = f(*s, 0);
                    *s
                }));
            }
            return out;
        }
        for (i, k) in keys.iter().enumerate() {
            let s = if *k < DENSE_KEYS as u64 {
                if *k as usize >= self.dense.len() {
                    self.dense.resize(*k as usize + 1, identity);
                }
                &mut self.dense[*k as usize]
            } else {
                self.sparse.entry(*k).or_insert(identity)
            };
            *s = f(*s, value(i));
            out.push(*s);
        }
        out
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
    fn a_missing_key_column_fails_the_batch_whole() {
        let e = partition(b(vec![1, 2], vec!["a", "b"]), &["nope".into()], 2).unwrap_err();
        assert_eq!(e.batch.num_rows(), 2);
        assert!(e.error.to_string().contains("nope"));
    }

    #[test]
    fn running_sums_follow_each_key() {
        let mut op = RunningSum {
            key: "k".into(),
            value: "k".into(),
            out: "sum".into(),
            agg: Agg::Sum,
            signed: None,
            dense: Vec::new(),
            sparse: Default::default(),
            dead_letter: Arc::new(|_| {}),
            dead: 0,
        };
        let out = op.apply(&b(vec![1, 2, 1, 1], vec!["a"; 4])).unwrap();
        let s = out
            .column_by_name("sum")
            .unwrap()
            .as_primitive::<UInt64Type>();
        assert_eq!(s.values().as_ref(), &[1, 2, 2, 3]);
        let out = op.apply(&b(vec![2, -1], vec!["a"; 2])).unwrap();
        let s = out
            .column_by_name("sum")
            .unwrap()
            .as_primitive::<UInt64Type>();
        assert_eq!(s.values().as_ref(), &[4, u64::MAX]);
    }

    #[test]
    fn count_min_and_max_follow_each_key_signed_or_not() {
        let op = |agg| RunningSum {
            key: "k".into(),
            value: "v".into(),
            out: "agg".into(),
            agg,
            signed: None,
            dense: Vec::new(),
            sparse: Default::default(),
            dead_letter: Arc::new(|_| {}),
            dead: 0,
        };
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
            let out = o.apply(&batch(keys(), signed())).unwrap();
            out.column_by_name("agg").unwrap().clone()
        };
        let ints = |a: ArrayRef| a.as_primitive::<Int64Type>().values().to_vec();
        let uints = |a: ArrayRef| a.as_primitive::<UInt64Type>().values().to_vec();
        assert_eq!(uints(run(Agg::Count)), vec![1, 1, 2, 1, 2]);
        assert_eq!(ints(run(Agg::Min)), vec![5, -3, 5, -9, -9]);
        assert_eq!(ints(run(Agg::Max)), vec![5, -3, 7, -9, 1]);
        let mut max = op(Agg::Max);
        let unsigned: ArrayRef = Arc::new(arrow::array::UInt64Array::from(vec![1, u64::MAX]));
        let out = max.apply(&batch(vec![3, 3], unsigned)).unwrap();
        assert_eq!(uints(out.column(2).clone()), vec![1, u64::MAX]);
        // The state compares by the first batch's signedness: a change is refused.
        assert!(max.apply(&batch(vec![3], signed().slice(0, 1))).is_err());
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
