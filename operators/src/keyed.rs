//! Keyed streams and keyed state.
//!
//! `key_by` puts a hash exchange in front of the keyed operator: each record goes to the
//! instance `partition_of(hash(key), p)`. Keyed state lives per instance in [`KeyedState`]:
//! keys that are small non-negative integers (below [`DENSE_KEYS`]) index a vector, with no
//! hashing; every other key lives in a hash map (the exchange uses the hash's high bits and
//! the map its low bits, so one instance's keys still spread over the whole table).

use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::sync::Arc;

use rustc_hash::FxBuildHasher;
use sluice_engine::{EdgePolicy, Operator, Priority, Stream};

type StateMap<K, S> = std::collections::HashMap<K, S, FxBuildHasher>;

/// Integer keys below this index keyed state directly (a vector grown to the largest such key
/// seen), so a fold keyed by `id % 1024` costs an index, not a hash-map entry. For large
/// states the bound is lower: the vector never takes more than [`DENSE_BYTES`].
pub const DENSE_KEYS: usize = 1 << 16;

/// The most memory the dense part of one instance's keyed state may take.
pub const DENSE_BYTES: usize = 4 << 20;

/// The state of one keyed-operator instance: a vector for small integer keys, a hash map for
/// the rest. Which one holds a key depends only on the key, so each key has one state.
pub struct KeyedState<K, S> {
    dense: Vec<Option<S>>,
    map: StateMap<K, S>,
}

impl<K, S> Default for KeyedState<K, S> {
    fn default() -> Self {
        KeyedState {
            dense: Vec::new(),
            map: StateMap::default(),
        }
    }
}

/// `k` as a dense index, if it is an integer in `0..DENSE_KEYS`. The type test is resolved
/// when the operator is compiled for its key type: for other keys this is `None` for free.
#[inline]
fn dense_index<K: 'static>(k: &K) -> Option<usize> {
    let any = k as &dyn std::any::Any;
    let i = if let Some(v) = any.downcast_ref::<u64>() {
        usize::try_from(*v).ok()
    } else if let Some(v) = any.downcast_ref::<usize>() {
        Some(*v)
    } else if let Some(v) = any.downcast_ref::<u32>() {
        usize::try_from(*v).ok()
    } else if let Some(v) = any.downcast_ref::<i64>() {
        usize::try_from(*v).ok()
    } else if let Some(v) = any.downcast_ref::<i32>() {
        usize::try_from(*v).ok()
    } else if let Some(v) = any.downcast_ref::<u16>() {
        Some(usize::from(*v))
    } else {
        any.downcast_ref::<u8>().map(|v| usize::from(*v))
    };
    i.filter(|i| *i < DENSE_KEYS)
}

impl<K: Hash + Eq + 'static, S> KeyedState<K, S> {
    /// The state of `k`, created with `init` the first time.
    #[inline]
    pub fn get_or_insert_with(&mut self, k: K, init: impl FnOnce() -> S) -> &mut S {
        // Which keys are dense depends only on the key and the state's type.
        let limit = (DENSE_BYTES / std::mem::size_of::<Option<S>>().max(1)).min(DENSE_KEYS);
        match dense_index(&k).filter(|i| *i < limit) {
            Some(i) => {
                if i >= self.dense.len() {
                    self.dense.resize_with(i + 1, || None);
                }
                self.dense[i].get_or_insert_with(init)
            }
            None => self.map.entry(k).or_insert_with(init),
        }
    }

    /// Keys with state.
    pub fn len(&self) -> usize {
        self.dense.iter().filter(|s| s.is_some()).count() + self.map.len()
    }

    /// True when no key has state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A stream partitioned by key, waiting for its keyed operator.
pub struct KeyedStream<T, K, KF> {
    stream: Stream<T>,
    key: Arc<KF>,
    parallelism: Option<usize>,
    _k: PhantomData<fn() -> K>,
}

impl<T, K, KF> std::fmt::Debug for KeyedStream<T, K, KF> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedStream")
            .field("parallelism", &self.parallelism)
            .finish_non_exhaustive()
    }
}

impl<T, K, KF> KeyedStream<T, K, KF>
where
    T: Send + 'static,
    K: Hash + Eq + Send + 'static,
    KF: Fn(&T) -> K + Send + Sync + 'static,
{
    pub(crate) fn new(stream: Stream<T>, key: KF) -> Self {
        KeyedStream {
            stream,
            key: Arc::new(key),
            parallelism: None,
            _k: PhantomData,
        }
    }

    /// Runs the keyed operator with `p` instances (default: the upstream's parallelism).
    pub fn parallelism(mut self, p: usize) -> Self {
        self.parallelism = Some(p);
        self
    }

    /// Sets the capacity, in records, of the hash edge into the keyed operator.
    pub fn edge_capacity(mut self, capacity: usize) -> Self {
        self.stream = self.stream.edge_capacity(capacity);
        self
    }

    /// Sets the overload policy of the hash edge into the keyed operator.
    pub fn edge_policy(mut self, policy: EdgePolicy) -> Self {
        self.stream = self.stream.edge_policy(policy);
        self
    }

    /// Classifies records for the hash edge's policy.
    pub fn classify<F>(mut self, f: F) -> Self
    where
        F: Fn(&T) -> Priority + Send + Sync + 'static,
    {
        self.stream = self.stream.classify(f);
        self
    }

    /// A running fold per key: for each record, `f(&mut state_of_its_key, record)` produces
    /// one output record. A key's state starts as `init()`.
    pub fn fold<S, U, I, F>(self, name: &str, init: I, f: F) -> Stream<U>
    where
        S: Send + 'static,
        U: Send + 'static,
        I: Fn() -> S + Send + Sync + 'static,
        F: Fn(&mut S, T) -> U + Send + Sync + 'static,
    {
        let p = self
            .parallelism
            .unwrap_or_else(|| self.stream.parallelism_of());
        let key = self.key;
        let hk = key.clone();
        let hasher = FxBuildHasher;
        let init = Arc::new(init);
        let f = Arc::new(f);
        self.stream
            .partition_by(p, move |r| hasher.hash_one(hk(r)))
            .operator(name, move |_| FoldOp {
                state: KeyedState::default(),
                key: key.clone(),
                init: init.clone(),
                f: f.clone(),
            })
    }
}

/// The keyed fold operator; see [`KeyedStream::fold`].
pub struct FoldOp<K, S, KF, I, F> {
    state: KeyedState<K, S>,
    key: Arc<KF>,
    init: Arc<I>,
    f: Arc<F>,
}

impl<T, U, K, S, KF, I, F> Operator<T, U> for FoldOp<K, S, KF, I, F>
where
    T: Send + 'static,
    U: Send + 'static,
    K: Hash + Eq + Send + 'static,
    S: Send + 'static,
    KF: Fn(&T) -> K + Send + Sync + 'static,
    I: Fn() -> S + Send + Sync + 'static,
    F: Fn(&mut S, T) -> U + Send + Sync + 'static,
{
    fn process(&mut self, input: Vec<T>) -> Vec<U> {
        let FoldOp {
            state,
            key,
            init,
            f,
        } = self;
        let (key, init, f) = (&**key, &**init, &**f);
        input
            .into_iter()
            .map(|r| {
                let s = state.get_or_insert_with(key(&r), init);
                f(s, r)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_integer_keys_are_dense_and_every_other_key_is_hashed() {
        let mut st: KeyedState<u64, u64> = KeyedState::default();
        for k in [3u64, 3, 70_000, 3, u64::MAX] {
            *st.get_or_insert_with(k, || 0) += 1;
        }
        assert_eq!(*st.get_or_insert_with(3, || 0), 3);
        assert_eq!(*st.get_or_insert_with(70_000, || 0), 1);
        assert_eq!(*st.get_or_insert_with(u64::MAX, || 0), 1);
        assert_eq!(st.len(), 3);
        assert_eq!(st.dense.len(), 4, "dense up to the largest small key");
        assert_eq!(st.map.len(), 2, "large keys in the map");

        // Negative keys are not indices; strings are hashed.
        let mut neg: KeyedState<i64, u8> = KeyedState::default();
        neg.get_or_insert_with(-1, || 1);
        neg.get_or_insert_with(1, || 2);
        assert_eq!((neg.dense.len(), neg.map.len()), (2, 1));
        assert_eq!(*neg.get_or_insert_with(-1, || 9), 1);
        let mut s: KeyedState<String, u8> = KeyedState::default();
        s.get_or_insert_with("a".into(), || 1);
        assert!(s.dense.is_empty() && s.map.len() == 1 && !s.is_empty());

        // A large state: the dense part stays within its byte budget.
        let mut big: KeyedState<u32, [u8; 4096]> = KeyedState::default();
        big.get_or_insert_with(60_000, || [0; 4096]);
        big.get_or_insert_with(5, || [0; 4096]);
        assert!(big.dense.len() * std::mem::size_of::<Option<[u8; 4096]>>() <= DENSE_BYTES);
        assert_eq!((big.dense.len(), big.map.len()), (6, 1));
    }
}
