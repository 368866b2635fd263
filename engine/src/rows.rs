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
//! class column splits a batch into one batch per class). An item larger than an edge's
//! capacity is admitted alone into an empty edge (its weight is clamped to the capacity), so
//! it can never deadlock an edge.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::OnceLock;

use parking_lot::Mutex;

/// Why [`count_rows`] refused a registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowsError {
    /// The type already has a different row count.
    #[error("{ty} already has a different row count")]
    AlreadyRegistered {
        /// The type's name.
        ty: &'static str,
    },
    /// A pipeline was already built with the type counted one record per item: register
    /// its count before building the first pipeline that carries it.
    #[error("{ty} was already used by a pipeline, counted one record per item: register its row count before building pipelines that carry it")]
    AlreadyUsed {
        /// The type's name.
        ty: &'static str,
    },
}

enum Entry {
    /// Looked up by a builder without a registration: one record per item, for good.
    One,
    /// The registered `fn(&T) -> usize`, as `dyn Any`.
    Counted(Box<dyn Any + Send + Sync>),
}

fn registry() -> &'static Mutex<HashMap<TypeId, Entry>> {
    static REGISTRY: OnceLock<Mutex<HashMap<TypeId, Entry>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        #[allow(unused_mut)]
        let mut m = HashMap::new();
        #[cfg(feature = "arrow")]
        {
            let rows: fn(&arrow_array::RecordBatch) -> usize = arrow_array::RecordBatch::num_rows;
            m.insert(
                TypeId::of::<arrow_array::RecordBatch>(),
                Entry::Counted(Box::new(rows)),
            );
        }
        Mutex::new(m)
    })
}

/// Makes every pipeline count an item of type `T` as `rows(item)` records: in edge credit,
/// operator and sink counters, drops and the ledger. See the [module docs](self).
///
/// # Errors
/// [`RowsError::AlreadyUsed`] if a pipeline was already built carrying `T` (its counters
/// count one per item), [`RowsError::AlreadyRegistered`] if `T` already has a different
/// count. Registering the same function again is fine.
pub fn count_rows<T: 'static>(rows: fn(&T) -> usize) -> Result<(), RowsError> {
    let ty = std::any::type_name::<T>();
    let mut reg = registry().lock();
    match reg.get(&TypeId::of::<T>()) {
        None => {
            reg.insert(TypeId::of::<T>(), Entry::Counted(Box::new(rows)));
            Ok(())
        }
        Some(Entry::One) => Err(RowsError::AlreadyUsed { ty }),
        Some(Entry::Counted(f)) => match f.downcast_ref::<fn(&T) -> usize>() {
            Some(&g) if std::ptr::fn_addr_eq(g, rows) => Ok(()),
            _ => Err(RowsError::AlreadyRegistered { ty }),
        },
    }
}

/// How pipelines count `T`'s items: one record each, or their rows. The builder looks it up
/// as it wires a pipeline; a sink that reports dead letters counts them with it. Looking a
/// type up fixes its count: register with [`count_rows`] first.
pub fn rows_of<T: 'static>() -> Rows<T> {
    let mut reg = registry().lock();
    let entry = reg.entry(TypeId::of::<T>()).or_insert(Entry::One);
    match entry {
        Entry::One => Rows::ONE,
        Entry::Counted(f) => Rows(f.downcast_ref::<fn(&T) -> usize>().copied()),
    }
}

/// How an item of `T` is counted: one record, or its rows.
pub struct Rows<T>(Option<fn(&T) -> usize>);

impl<T> Clone for Rows<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Rows<T> {}

impl<T> std::fmt::Debug for Rows<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Rows(counted)"
        } else {
            "Rows(one)"
        })
    }
}

impl<T> Default for Rows<T> {
    fn default() -> Self {
        Self::ONE
    }
}

impl<T> Rows<T> {
    /// One record per item.
    pub const ONE: Rows<T> = Rows(None);

    /// Counts each item with `f`.
    pub fn counted(f: fn(&T) -> usize) -> Self {
        Rows(Some(f))
    }

    /// Whether items count as more than one record.
    pub fn is_counted(&self) -> bool {
        self.0.is_some()
    }

    /// Records in one item.
    #[inline]
    pub fn of(&self, item: &T) -> usize {
        match self.0 {
            None => 1,
            Some(f) => f(item),
        }
    }

    /// Records in a slice of items.
    #[inline]
    pub fn all(&self, items: &[T]) -> usize {
        match self.0 {
            None => items.len(),
            Some(f) => items.iter().map(f).sum(),
        }
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
        let Some(f) = self.0 else {
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
        let Some(f) = self.0 else {
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
        assert_eq!(rows_of::<RecordBatch>().all(&[b.clone(), b.slice(0, 1)]), 4);
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
