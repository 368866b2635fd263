//! # sluice-operators
//!
//! Operators for Sluice streams, as extension traits on [`Stream`]: stateless record
//! operators ([`StreamExt::map`], [`StreamExt::filter`], [`StreamExt::flat_map`],
//! [`StreamExt::inspect`]), keyed state ([`StreamExt::key_by`] then [`KeyedStream::fold`]) and
//! in-process sinks ([`SinkExt`]).
//!
//! Each is built on the engine's generic [`Stream::operator`] / [`Stream::sink`] builders,
//! so stateless operators chain into their upstream's thread and their per-record loops are
//! monomorphized user code.
//!
//! ```
//! use sluice_engine::Pipeline;
//! use sluice_connectors::PipelineExt;
//! use sluice_operators::{SinkExt, StreamExt};
//!
//! let p = Pipeline::new("doc");
//! let out = p
//!     .iter_source("numbers", 1, |_| 0..100u64)
//!     .map("square", |x| x * x)
//!     .filter("even", |x| x % 2 == 0)
//!     .key_by(|x| x % 3)
//!     .fold("running sum", || 0u64, |sum, x| { *sum += x; *sum })
//!     .collect("out");
//! let report = p.run().unwrap().wait().unwrap();
//! assert_eq!(out.take().len(), 50);
//! assert!(report.ledger.balanced);
//! ```

#![warn(missing_docs)]

#[cfg(feature = "arrow")]
pub mod columnar;
mod keyed;
mod record;
pub mod resilience;
mod sink;

pub use keyed::{FoldOp, KeyedState, KeyedStream, DENSE_BYTES, DENSE_KEYS};
pub use record::{Filter, FlatMap, Inspect, Map};
pub use resilience::ResilienceExt;
pub use sink::{Collected, Counted, FoldSinkHandle, SinkExt};

use std::hash::Hash;
use std::sync::Arc;

use sluice_engine::Stream;

/// A record a [`StreamExt::try_map`] could not transform, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed<T, E> {
    /// The record, as it came in.
    pub record: T,
    /// What went wrong.
    pub error: E,
}

/// Record-at-a-time operators on a [`Stream`].
pub trait StreamExt<T: Send + 'static>: Sized {
    /// Transforms each record. Chains into the upstream thread.
    fn map<U, F>(self, name: &str, f: F) -> Stream<U>
    where
        U: Send + 'static,
        F: Fn(T) -> U + Send + Sync + 'static;

    /// Keeps the records for which `f` holds; the others are counted as filtered in the
    /// ledger. Chains into the upstream thread.
    fn filter<F>(self, name: &str, f: F) -> Stream<T>
    where
        F: Fn(&T) -> bool + Send + Sync + 'static;

    /// Turns each record into zero or more records. Chains into the upstream thread.
    fn flat_map<U, I, F>(self, name: &str, f: F) -> Stream<U>
    where
        U: Send + 'static,
        I: IntoIterator<Item = U>,
        F: Fn(T) -> I + Send + Sync + 'static;

    /// Calls `f` on each record and passes it on unchanged. Chains into the upstream thread.
    fn inspect<F>(self, name: &str, f: F) -> Stream<T>
    where
        F: Fn(&T) + Send + Sync + 'static;

    /// Transforms each record with a function that can fail: records it transforms go to the
    /// first stream, the others, with their error, to the second ([`Failed`]), which ends in
    /// a [`SinkExt::dead_letter`] sink so they count as dead-lettered, not delivered. Each
    /// output starts a new chain.
    ///
    /// ```
    /// use sluice_connectors::PipelineExt;
    /// use sluice_engine::Pipeline;
    /// use sluice_operators::{SinkExt, StreamExt};
    ///
    /// let p = Pipeline::new("parse");
    /// let (numbers, bad) = p
    ///     .iter_source("lines", 1, |_| ["1", "2", "x", "4"].map(String::from))
    ///     .try_map("parse", |s: &String| s.parse::<u64>());
    /// let sum = numbers.count("numbers");
    /// bad.dead_letter("bad lines", |f| eprintln!("skipped {:?}: {}", f.record, f.error));
    /// let report = p.run()?.wait()?;
    /// assert_eq!(sum.get(), 3);
    /// assert_eq!((report.ledger.delivered, report.ledger.dead_lettered), (3, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn try_map<U, E, F>(self, name: &str, f: F) -> (Stream<U>, Stream<Failed<T, E>>)
    where
        U: Send + 'static,
        E: Send + 'static,
        F: Fn(&T) -> Result<U, E> + Send + Sync + 'static;

    /// Partitions the stream by a key for a keyed stateful operator: records with equal keys
    /// meet in one instance, in the order each upstream instance sent them.
    fn key_by<K, KF>(self, key: KF) -> KeyedStream<T, K, KF>
    where
        K: Hash + Eq + Send + 'static,
        KF: Fn(&T) -> K + Send + Sync + 'static;
}

impl<T: Send + 'static> StreamExt<T> for Stream<T> {
    fn map<U, F>(self, name: &str, f: F) -> Stream<U>
    where
        U: Send + 'static,
        F: Fn(T) -> U + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.operator(name, move |_| Map { f: f.clone() })
    }

    fn filter<F>(self, name: &str, f: F) -> Stream<T>
    where
        F: Fn(&T) -> bool + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.operator(name, move |_| Filter { f: f.clone() })
    }

    fn flat_map<U, I, F>(self, name: &str, f: F) -> Stream<U>
    where
        U: Send + 'static,
        I: IntoIterator<Item = U>,
        F: Fn(T) -> I + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.operator(name, move |_| FlatMap { f: f.clone() })
    }

    fn inspect<F>(self, name: &str, f: F) -> Stream<T>
    where
        F: Fn(&T) + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.operator(name, move |_| Inspect { f: f.clone() })
    }

    fn try_map<U, E, F>(self, name: &str, f: F) -> (Stream<U>, Stream<Failed<T, E>>)
    where
        U: Send + 'static,
        E: Send + 'static,
        F: Fn(&T) -> Result<U, E> + Send + Sync + 'static,
    {
        let (ok, failed) = self
            .map(name, move |record: T| match f(&record) {
                Ok(u) => Ok(u),
                Err(error) => Err(Failed { record, error }),
            })
            .split(&format!("{name}: ok or failed"), Result::is_ok);
        (
            ok.flat_map("ok", Result::ok),
            failed.flat_map("failed", Result::err),
        )
    }

    fn key_by<K, KF>(self, key: KF) -> KeyedStream<T, K, KF>
    where
        K: Hash + Eq + Send + 'static,
        KF: Fn(&T) -> K + Send + Sync + 'static,
    {
        KeyedStream::new(self, key)
    }
}
