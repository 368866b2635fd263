//! # sluice-connectors
//!
//! Sources and sinks that connect Sluice to the outside: in-process iterators, a paced
//! generator (the benchmark and demo workhorse), and, behind features, files of Arrow
//! batches (`arrow`: Arrow IPC, Parquet, JSON lines) and Kafka (`kafka`).

#![warn(missing_docs)]

mod error;
#[cfg(feature = "arrow")]
pub mod files;
mod generator;
mod iter;
#[cfg(feature = "kafka")]
pub mod kafka;

pub use error::ConnectorError;
pub use generator::{Generator, GeneratorConfig};
pub use iter::IterSource;

use sluice_engine::{InstanceInfo, Pipeline, Stream};

/// Source constructors on a [`Pipeline`].
pub trait PipelineExt {
    /// A source per instance from an iterator; `f` receives the instance's
    /// [`InstanceInfo`] so instances can split the work.
    fn iter_source<T, I, F>(&self, name: &str, parallelism: usize, f: F) -> Stream<T>
    where
        T: Send + 'static,
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
        F: Fn(&InstanceInfo) -> I + 'static;

    /// A generator: record `i` is `f(i)`; instance `s` of `p` produces the indices with
    /// `i % p == s`, so each instance's records are in index order. See
    /// [`GeneratorConfig`] for the count and the target rate.
    fn generator<T, F>(
        &self,
        name: &str,
        parallelism: usize,
        config: GeneratorConfig,
        f: F,
    ) -> Stream<T>
    where
        T: Send + 'static,
        F: Fn(u64) -> T + Send + Sync + 'static;
}

impl PipelineExt for Pipeline {
    fn iter_source<T, I, F>(&self, name: &str, parallelism: usize, f: F) -> Stream<T>
    where
        T: Send + 'static,
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
        F: Fn(&InstanceInfo) -> I + 'static,
    {
        self.source(name, parallelism, move |info| {
            IterSource::new(f(info).into_iter())
        })
    }

    fn generator<T, F>(
        &self,
        name: &str,
        parallelism: usize,
        config: GeneratorConfig,
        f: F,
    ) -> Stream<T>
    where
        T: Send + 'static,
        F: Fn(u64) -> T + Send + Sync + 'static,
    {
        let f = std::sync::Arc::new(f);
        self.source(name, parallelism, move |info| {
            Generator::new(config, info.instance, info.parallelism, f.clone())
        })
    }
}
