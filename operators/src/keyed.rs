//! Keyed streams and keyed state.
//!
//! `key_by` puts a hash exchange in front of the keyed operator: each record goes to the
//! instance `partition_of(hash(key), p)`. Keyed state lives in a hash map per instance; the
//! exchange uses the hash's high bits and the map its low bits, so one instance's keys still
//! spread over the whole table.

use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::sync::Arc;

use rustc_hash::FxBuildHasher;
use sluice_engine::{EdgePolicy, Operator, Priority, Stream};

type StateMap<K, S> = std::collections::HashMap<K, S, FxBuildHasher>;

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
                state: StateMap::default(),
                key: key.clone(),
                init: init.clone(),
                f: f.clone(),
            })
    }
}

/// The keyed fold operator; see [`KeyedStream::fold`].
pub struct FoldOp<K, S, KF, I, F> {
    state: StateMap<K, S>,
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
                let s = state.entry(key(&r)).or_insert_with(init);
                f(s, r)
            })
            .collect()
    }
}
