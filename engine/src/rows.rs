//! How many records an item counts as: the hook for payloads that hold many rows.
//!
//! Sluice counts records everywhere: edge credit, operator and sink counters, drops by class,
//! the ledger. For most types one item is one record. A payload such as an Arrow
//! `RecordBatch` holds many rows in one item; registering its row count with [`count_rows`]
//! makes every edge, counter and ledger entry count its rows instead, so a job moving
//! batches of rows balances its books in rows and an edge of capacity 8,192 holds 8,192
//! rows, whatever the batches' sizes.
//!
//! ```
//! /// A chunk of log lines moved as one item.
//! struct Lines(Vec<String>);
//!
//! sluice_engine::count_rows(|c: &Lines| c.0.len()).unwrap();
//! ```
//!
//! With the `arrow` feature, Arrow's `RecordBatch` counts its rows without registering.
//!
//! The count is a property of the type, registered once for the process (a type's rows do
//! not change between pipelines), before the first pipeline that carries the type is built:
//! the builder looks the count up once per operator, edge and sink as it wires them, so the
//! hot path pays one branch per batch and no lookup. Registering a type that a pipeline
//! already used, or a second, different count for a type, is an error.
//!
//! # What an item is to a policy
//! An edge's policy drops, evicts, samples, defers and classifies whole items: an item of
//! many rows is dropped or deferred whole (counted as its rows; a defer log frame carries
//! the item's row count), and a classifier gives the item one class. Split
//! payloads into single-class items before a classifying edge (the Arrow operators do: their
//! class column splits a batch into one batch per class).
//!
//! # Items larger than an edge
//! A type that registers a slice function ([`slice_rows`]; Arrow's `RecordBatch` has one) is
//! cut by the sender into slices of the edge's capacity, so an edge never holds more rows
//! than its capacity. An item that cannot be sliced is admitted alone into an empty edge
//! (its weight is clamped to the capacity), so it can never deadlock an edge.
//!
//! # Bytes
//! An edge bounded in bytes ([`Stream::edge_bytes`](crate::Stream::edge_bytes)) weighs items
//! with the type's byte size ([`count_bytes`]; `size_of::<T>()` without one; a `RecordBatch`
//! weighs its rows' share of its buffers).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::OnceLock;

use parking_lot::Mutex;

/// Why [`count_rows`], [`slice_rows`] or [`count_bytes`] refused a registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowsError {
    /// The type already has a different function of this kind.
    #[error("{ty} already has a different {what}")]
    AlreadyRegistered {
        /// The type's name.
        ty: &'static str,
        /// Which hook: "row count", "slice" or "byte size".
        what: &'static str,
    },
    /// A pipeline was already built with the type: register its hooks before building the
    /// first pipeline that carries it.
    #[error("{ty} was already used by a pipeline: register its {what} before building pipelines that carry it")]
    AlreadyUsed {
        /// The type's name.
        ty: &'static str,
        /// Which hook: "row count", "slice" or "byte size".
        what: &'static str,
    },
    /// A slice function was registered for a type without a row count.
    #[error("{ty} has no row count: register one with count_rows before its slice function")]
    NotCounted {
        /// The type's name.
        ty: &'static str,
    },
}

/// Counts an item's rows.
pub type RowsFn<T> = fn(&T) -> usize;
/// Cuts rows `offset..offset + len` out of an item (zero-copy where the type allows).
pub type SliceFn<T> = fn(&T, usize, usize) -> T;
/// Measures the bytes an item holds.
pub type BytesFn<T> = fn(&T) -> usize;

/// The registered hooks of one type.
struct Entry {
    /// A `Rows<T>` as `dyn Any`.
    hooks: Box<dyn Any + Send + Sync>,
    /// Looked up by a builder: the hooks are fixed for good.
    used: bool,
}

fn registry() -> &'static Mutex<HashMap<TypeId, Entry>> {
    static REGISTRY: OnceLock<Mutex<HashMap<TypeId, Entry>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        #[allow(unused_mut)]
        let mut m = HashMap::new();
        #[cfg(feature = "arrow")]
        {
            use arrow_array::RecordBatch;
            let hooks = Rows::<RecordBatch> {
                rows: Some(RecordBatch::num_rows),
                slice: Some(RecordBatch::slice),
                bytes: Some(batch_bytes),
            };
            m.insert(
                TypeId::of::<RecordBatch>(),
                Entry {
                    hooks: Box::new(hooks),
                    used: false,
                },
            );
        }
        Mutex::new(m)
    })
}

/// The bytes of a record batch's rows: of a slice, its own rows' share of the buffers it
/// shares with other slices (so the slices of one batch add up to about the batch).
#[cfg(feature = "arrow")]
fn batch_bytes(b: &arrow_array::RecordBatch) -> usize {
    use arrow_array::Array;
    b.columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

/// Sets one hook of `T` with `set` (which refuses a different hook already there); a type
/// that a pipeline already used may only be given the hooks it has.
fn register<T: 'static>(
    what: &'static str,
    set: impl FnOnce(&mut Rows<T>) -> Result<(), RowsError>,
) -> Result<(), RowsError> {
    let ty = std::any::type_name::<T>();
    let mut reg = registry().lock();
    let entry = reg.entry(TypeId::of::<T>()).or_insert_with(|| Entry {
        hooks: Box::new(Rows::<T>::ONE),
        used: false,
    });
    let Some(hooks) = entry.hooks.downcast_mut::<Rows<T>>() else {
        return Err(RowsError::AlreadyRegistered { ty, what });
    };
    let before = *hooks;
    set(hooks)?;
    if entry.used && !before.same(hooks) {
        *hooks = before;
        return Err(RowsError::AlreadyUsed { ty, what });
    }
    Ok(())
}

/// Sets `slot` to `f`, refusing a different function already there.
fn set_hook<F: Copy>(
    slot: &mut Option<F>,
    f: F,
    eq: fn(F, F) -> bool,
    ty: &'static str,
    what: &'static str,
) -> Result<(), RowsError> {
    match *slot {
        Some(g) if !eq(g, f) => Err(RowsError::AlreadyRegistered { ty, what }),
        _ => {
            *slot = Some(f);
            Ok(())
        }
    }
}

/// Makes every pipeline count an item of type `T` as `rows(item)` records: in edge credit,
/// operator and sink counters, drops and the ledger. See the [module docs](self).
///
/// # Errors
/// [`RowsError::AlreadyUsed`] if a pipeline was already built carrying `T` (its counters
/// count one per item), [`RowsError::AlreadyRegistered`] if `T` already has a different
/// count. Registering the same function again is fine.
pub fn count_rows<T: 'static>(rows: RowsFn<T>) -> Result<(), RowsError> {
    let ty = std::any::type_name::<T>();
    register::<T>("row count", |h| {
        set_hook(&mut h.rows, rows, std::ptr::fn_addr_eq, ty, "row count")
    })
}

/// Lets edges cut an item of `T` that is larger than their capacity into slices of rows
/// (`slice(item, offset, len)`), instead of admitting it whole into an empty edge. The type
/// needs a row count ([`count_rows`]) first. Arrow's `RecordBatch` slices without copying,
/// with no registration.
///
/// # Errors
/// [`RowsError::NotCounted`] without a row count; otherwise as [`count_rows`].
pub fn slice_rows<T: 'static>(slice: SliceFn<T>) -> Result<(), RowsError> {
    let ty = std::any::type_name::<T>();
    register::<T>("slice", |h| {
        if h.rows.is_none() {
            return Err(RowsError::NotCounted { ty });
        }
        set_hook(&mut h.slice, slice, std::ptr::fn_addr_eq, ty, "slice")
    })
}

/// Tells edges bounded in bytes ([`Stream::edge_bytes`](crate::Stream::edge_bytes)) how many
/// bytes an item of `T` holds. Without one an item weighs `size_of::<T>()`. Arrow's
/// `RecordBatch` weighs the bytes of its rows' buffers, with no registration.
///
/// # Errors
/// As [`count_rows`].
pub fn count_bytes<T: 'static>(bytes: BytesFn<T>) -> Result<(), RowsError> {
    let ty = std::any::type_name::<T>();
    register::<T>("byte size", |h| {
        set_hook(&mut h.bytes, bytes, std::ptr::fn_addr_eq, ty, "byte size")
    })
}

/// How pipelines count `T`'s items: one record each, or their rows (with the type's slice
/// and byte hooks). The builder looks it up as it wires a pipeline; a sink that reports dead
/// letters counts them with it. Looking a type up fixes its hooks: register first.
pub fn rows_of<T: 'static>() -> Rows<T> {
    let mut reg = registry().lock();
    let entry = reg.entry(TypeId::of::<T>()).or_insert_with(|| Entry {
        hooks: Box::new(Rows::<T>::ONE),
        used: false,
    });
    entry.used = true;
    entry
        .hooks
        .downcast_ref::<Rows<T>>()
        .copied()
        .unwrap_or(Rows::ONE)
}

/// How an item of `T` is counted (one record, or its rows), and how it is sliced and
/// weighed in bytes when its type says.
pub struct Rows<T> {
    rows: Option<RowsFn<T>>,
    slice: Option<SliceFn<T>>,
    bytes: Option<BytesFn<T>>,
}

impl<T> Clone for Rows<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Rows<T> {}

impl<T> std::fmt::Debug for Rows<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows")
            .field("counted", &self.rows.is_some())
            .field("sliced", &self.slice.is_some())
            .field("bytes", &self.bytes.is_some())
            .finish()
    }
}

impl<T> Default for Rows<T> {
    fn default() -> Self {
        Self::ONE
    }
}

impl<T> Rows<T> {
    /// One record per item.
    pub const ONE: Rows<T> = Rows {
        rows: None,
        slice: None,
        bytes: None,
    };

    /// Counts each item with `f`.
    pub fn counted(f: RowsFn<T>) -> Self {
        Rows {
            rows: Some(f),
            ..Self::ONE
        }
    }

    /// These hooks, with items cut into slices by `f` when they are larger than an edge.
    pub fn sliced(self, f: SliceFn<T>) -> Self {
        Rows {
            slice: Some(f),
            ..self
        }
    }

    /// These hooks, with items weighed in bytes by `f`.
    pub fn weighed(self, f: BytesFn<T>) -> Self {
        Rows {
            bytes: Some(f),
            ..self
        }
    }

    fn same(&self, other: &Self) -> bool {
        fn eq<F: Copy>(a: Option<F>, b: Option<F>, same: fn(F, F) -> bool) -> bool {
            match (a, b) {
                (None, None) => true,
                (Some(x), Some(y)) => same(x, y),
                _ => false,
            }
        }
        eq(self.rows, other.rows, std::ptr::fn_addr_eq)
            && eq(self.slice, other.slice, std::ptr::fn_addr_eq)
            && eq(self.bytes, other.bytes, std::ptr::fn_addr_eq)
    }

    /// Whether items count as more than one record.
    pub fn is_counted(&self) -> bool {
        self.rows.is_some()
    }

    /// Whether items larger than an edge can be cut into slices.
    pub fn can_slice(&self) -> bool {
        self.rows.is_some() && self.slice.is_some()
    }

    /// Records in one item.
    #[inline]
    pub fn of(&self, item: &T) -> usize {
        match self.rows {
            None => 1,
            Some(f) => f(item),
        }
    }

    /// Records in a slice of items.
    #[inline]
    pub fn all(&self, items: &[T]) -> usize {
        match self.rows {
            None => items.len(),
            Some(f) => items.iter().map(f).sum(),
        }
    }

    /// Bytes held by a slice of items: the type's byte hook, or `size_of::<T>()` each.
    pub fn bytes(&self, items: &[T]) -> usize {
        match self.bytes {
            None => items.len().saturating_mul(std::mem::size_of::<T>()),
            Some(f) => items.iter().map(f).sum(),
        }
    }

    /// Rows `offset..offset + len` of `item`, if the type can be sliced.
    pub fn slice(&self, item: &T, offset: usize, len: usize) -> Option<T> {
        self.slice.map(|f| f(item, offset, len))
    }

    /// How many of the first `items` fit in `room` records: for unit items `room` (or all);
    /// for counted ones the whole items whose records add up to at most `room`.
    pub fn fitting(&self, items: &[T], room: usize) -> usize {
        self.fit(items.iter(), room, items.len())
    }

    /// How many of the last `items` fit in `room` records.
    pub fn fitting_from_back(&self, items: &[T], room: usize) -> usize {
        self.fit(items.iter().rev(), room, items.len())
    }

    fn fit<'a>(&self, items: impl Iterator<Item = &'a T>, room: usize, len: usize) -> usize
    where
        T: 'a,
    {
        let Some(f) = self.rows else {
            return room.min(len);
        };
        let mut used = 0usize;
        for (i, r) in items.enumerate() {
            used = used.saturating_add(f(r));
            if used > room {
                return i;
            }
        }
        len
    }

    /// The fewest of the first `items` that hold at least `need` records (or all of them).
    pub fn covering(&self, items: &[T], need: usize) -> usize {
        let Some(f) = self.rows else {
            return need.min(items.len());
        };
        let mut got = 0usize;
        for (i, r) in items.iter().enumerate() {
            if got >= need {
                return i;
            }
            got = got.saturating_add(f(r));
        }
        items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Chunk(usize);
    struct Late;
    struct Twice;
    struct Uncounted;
    #[derive(Debug, PartialEq)]
    struct Cut(usize);

    #[test]
    fn slices_need_a_row_count_and_byte_sizes_default_to_the_type_size() {
        fn slice(_: &Uncounted, _: usize, _: usize) -> Uncounted {
            Uncounted
        }
        assert!(matches!(
            slice_rows(slice),
            Err(RowsError::NotCounted { .. })
        ));
        count_rows(|c: &Cut| c.0).unwrap();
        slice_rows(|_: &Cut, _, len| Cut(len)).unwrap();
        count_bytes(|c: &Cut| 3 * c.0).unwrap();
        let r = rows_of::<Cut>();
        assert!(r.can_slice());
        assert_eq!(r.slice(&Cut(10), 2, 4), Some(Cut(4)));
        assert_eq!(r.bytes(&[Cut(10), Cut(1)]), 33);
        assert!(matches!(
            count_bytes(|c: &Cut| c.0),
            Err(RowsError::AlreadyRegistered { .. })
        ));
        assert_eq!(rows_of::<[u8; 24]>().bytes(&[[0; 24], [0; 24]]), 48);
        assert!(!rows_of::<u64>().can_slice());
    }

    #[test]
    fn a_registered_type_counts_its_rows_and_others_count_one() {
        count_rows(|c: &Chunk| c.0).unwrap();
        let r = rows_of::<Chunk>();
        assert_eq!(r.all(&[Chunk(3), Chunk(0), Chunk(5)]), 8);
        assert_eq!(rows_of::<u64>().all(&[1, 2, 3]), 3);
        assert!(!rows_of::<u64>().is_counted());
        let c = [Chunk(3), Chunk(2), Chunk(4)];
        assert_eq!(
            (r.fitting(&c, 4), r.fitting(&c, 5), r.fitting(&c, 9)),
            (1, 2, 3)
        );
        assert_eq!(
            (r.fitting_from_back(&c, 4), r.fitting_from_back(&c, 6)),
            (1, 2)
        );
        assert_eq!(
            (r.covering(&c, 0), r.covering(&c, 3), r.covering(&c, 4)),
            (0, 1, 2)
        );
        assert_eq!(r.covering(&c, 100), 3);
        let one = Rows::<u8>::ONE;
        assert_eq!(
            (one.fitting(&[1, 2, 3], 2), one.covering(&[1, 2, 3], 5)),
            (2, 3)
        );
    }

    #[cfg(feature = "arrow")]
    #[test]
    fn record_batches_count_their_rows() {
        use arrow_array::{ArrayRef, Int32Array, RecordBatch};
        let col: ArrayRef = std::sync::Arc::new(Int32Array::from(vec![1, 2, 3]));
        let b = RecordBatch::try_from_iter([("x", col)]).unwrap();
        let r = rows_of::<RecordBatch>();
        assert_eq!(r.all(&[b.clone(), b.slice(0, 1)]), 4);
        assert_eq!(r.slice(&b, 1, 2).map(|s| s.num_rows()), Some(2));
        // A slice weighs its own rows, not the buffer it shares.
        assert_eq!(r.bytes(&[b.slice(0, 1)]), 4);
        assert_eq!(r.bytes(std::slice::from_ref(&b)), 12);
        assert!(count_rows(RecordBatch::num_rows as fn(&RecordBatch) -> usize).is_ok());
    }

    #[test]
    fn registering_after_use_or_twice_differently_is_refused() {
        let _ = rows_of::<Late>();
        assert!(matches!(
            count_rows(|_: &Late| 2),
            Err(RowsError::AlreadyUsed { .. })
        ));
        fn two(_: &Twice) -> usize {
            2
        }
        fn three(_: &Twice) -> usize {
            3
        }
        count_rows(two).unwrap();
        count_rows(two).unwrap();
        assert!(matches!(
            count_rows(three),
            Err(RowsError::AlreadyRegistered { .. })
        ));
        assert_eq!(rows_of::<Twice>().of(&Twice), 2);
    }
}
