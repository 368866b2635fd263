//! Kafka connectors (feature `kafka`): a source that pauses under backpressure and commits
//! only what reached an end, a sink whose delivery reports are the acknowledgement, and the
//! embedded mock cluster used when no brokers are given.
//!
//! Scale-out is Kafka's: several Sluice processes (or several source instances) in one
//! consumer group share the partitions.

pub mod codec;
mod config;
mod embedded;
mod sink;
mod source;

pub use config::{KafkaConfig, KafkaConfigError, REFUSED_PROPERTIES};
pub use embedded::EmbeddedKafka;
pub use sink::{
    ClassOf, ClassRoutes, DeadLetterFn, Encoder, KafkaSink, KafkaSinkConfig, KafkaSinkStats,
    OnExpired,
};
pub use source::{committed_offsets, Decoder, KafkaSource, KafkaSourceConfig, KafkaSourceStats};

use std::sync::Arc;

use sluice_engine::{Pipeline, Prioritized, SinkHandle, Stream};

/// Kafka sources on a [`Pipeline`].
pub trait KafkaPipelineExt {
    /// A Kafka source with `parallelism` instances in one consumer group; each record is
    /// decoded from the message payload. Instances that fail to connect fail the job.
    fn kafka_source<T: Send + 'static>(
        &self,
        name: &str,
        parallelism: usize,
        cfg: KafkaSourceConfig,
        decode: Decoder<T>,
        stats: Arc<KafkaSourceStats>,
    ) -> Stream<T>;
}

impl KafkaPipelineExt for Pipeline {
    fn kafka_source<T: Send + 'static>(
        &self,
        name: &str,
        parallelism: usize,
        cfg: KafkaSourceConfig,
        decode: Decoder<T>,
        stats: Arc<KafkaSourceStats>,
    ) -> Stream<T> {
        self.source(name, parallelism, move |_| {
            KafkaSourceOrError(
                KafkaSource::start(cfg.clone(), decode.clone(), stats.clone()).map_err(Some),
            )
        })
    }
}

/// A source that failed to start reports its error on its first poll, which fails the job
/// with the source named and the [`ConnectorError`](crate::ConnectorError) as the cause.
struct KafkaSourceOrError<T>(Result<KafkaSource<T>, Option<crate::ConnectorError>>);

impl<T: Send + 'static> sluice_engine::Source<T> for KafkaSourceOrError<T> {
    fn poll_batch(
        &mut self,
        out: &mut Vec<T>,
        max: usize,
    ) -> Result<sluice_engine::SourceStatus, sluice_engine::SourceError> {
        match &mut self.0 {
            Ok(s) => s.poll_batch(out, max),
            Err(e) => Err(start_failed(e.take())),
        }
    }
    fn take_ack(&mut self) -> Option<sluice_engine::Ack> {
        match &mut self.0 {
            Ok(s) => s.take_ack(),
            Err(_) => None,
        }
    }
}

/// Kafka sinks on a [`Stream`].
pub trait KafkaStreamExt<T: Send + 'static> {
    /// Ends the stream in a Kafka topic.
    fn kafka_sink(
        self,
        name: &str,
        cfg: KafkaSinkConfig,
        encode: Encoder<T>,
        stats: Arc<KafkaSinkStats>,
    ) -> SinkHandle;

    /// Ends the stream in Kafka topics chosen by each record's priority class (see
    /// [`ClassRoutes`]); classes without a route go to `cfg.topic`.
    fn kafka_sink_by_class(
        self,
        name: &str,
        cfg: KafkaSinkConfig,
        routes: ClassRoutes,
        encode: Encoder<T>,
        stats: Arc<KafkaSinkStats>,
    ) -> SinkHandle
    where
        T: Prioritized;
}

impl<T: Send + 'static> KafkaStreamExt<T> for Stream<T> {
    fn kafka_sink(
        self,
        name: &str,
        cfg: KafkaSinkConfig,
        encode: Encoder<T>,
        stats: Arc<KafkaSinkStats>,
    ) -> SinkHandle {
        self.sink(name, move |_| {
            KafkaSinkOrError(
                KafkaSink::new(cfg.clone(), encode.clone(), None, stats.clone()).map_err(Some),
            )
        })
    }

    fn kafka_sink_by_class(
        self,
        name: &str,
        cfg: KafkaSinkConfig,
        routes: ClassRoutes,
        encode: Encoder<T>,
        stats: Arc<KafkaSinkStats>,
    ) -> SinkHandle
    where
        T: Prioritized,
    {
        let class_of: ClassOf<T> = Arc::new(|r: &T| r.priority());
        self.sink(name, move |_| {
            KafkaSinkOrError(
                KafkaSink::new(cfg.clone(), encode.clone(), None, stats.clone())
                    .map(|s| s.with_routes(class_of.clone(), &routes))
                    .map_err(Some),
            )
        })
    }
}

/// The error of a client that could not start, once; later calls say so without it.
fn start_failed<E: From<sluice_engine::BoxError>>(e: Option<crate::ConnectorError>) -> E {
    match e {
        Some(e) => E::from(Box::new(e)),
        None => E::from("the Kafka client did not start".into()),
    }
}

/// A sink that failed to start fails its first write (or its finish) with the cause.
struct KafkaSinkOrError<T>(Result<KafkaSink<T>, Option<crate::ConnectorError>>);

impl<T: Send + 'static> sluice_engine::Sink<T> for KafkaSinkOrError<T> {
    fn write(&mut self, records: Vec<T>) -> Result<(), sluice_engine::SinkError> {
        match &mut self.0 {
            Ok(s) => s.write(records),
            Err(e) => Err(start_failed(e.take())),
        }
    }
    fn write_with_acks(
        &mut self,
        records: Vec<T>,
        acks: &mut Vec<sluice_engine::Ack>,
    ) -> Result<(), sluice_engine::SinkError> {
        match &mut self.0 {
            Ok(s) => s.write_with_acks(records, acks),
            Err(e) => Err(start_failed(e.take())),
        }
    }
    fn take_dead_lettered(&mut self) -> u64 {
        match &mut self.0 {
            Ok(s) => s.take_dead_lettered(),
            Err(_) => 0,
        }
    }
    fn finish(&mut self) -> Result<(), sluice_engine::SinkError> {
        match &mut self.0 {
            Ok(s) => s.finish(),
            Err(e) => Err(start_failed(e.take())),
        }
    }
}
