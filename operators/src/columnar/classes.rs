//! Classes from a class column: one batch per class, and the class of a batch.

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt8Array};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Int64Type};
use arrow::error::ArrowError;
use sluice_engine::{Priority, CLASSES};

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
pub(super) fn split_by_class(b: RecordBatch, column: &str, unknown: Priority) -> Vec<RecordBatch> {
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
pub(super) fn class_of_first_row(b: &RecordBatch, column: &str, unknown: Priority) -> Priority {
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
    use std::sync::Arc;

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
