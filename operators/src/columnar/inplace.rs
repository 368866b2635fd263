//! Computing in the buffers a batch alone holds, instead of allocating new columns.
//!
//! An Arrow kernel allocates a new column for its result. When the batch is the only holder
//! of a column's buffer (it came by value from the operator before, and nothing cloned it),
//! the result can be written over the input instead: the memory is already in this core's
//! cache, and nothing is allocated or freed. A buffer that anything else holds (another
//! batch, a slice of it, a tap) is never written: it is copied.

use arrow::array::{Array, ArrayRef, ArrowPrimitiveType, AsArray, PrimitiveArray};
use arrow::buffer::ScalarBuffer;

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
