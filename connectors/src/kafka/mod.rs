//! Kafka connectors (feature `kafka`): a source that pauses under backpressure and commits
//! only what reached an end, a sink whose delivery reports are the acknowledgement, and the
//! embedded mock cluster used when no brokers are given.
//!
//! Scale-out is Kafka's: several Sluice processes (or several source instances) in one
//! consumer group share the partitions.
//!
//! # Example: JSON logs in, routed by class
//!
//! [`KafkaPipelineExt::kafka_source`] reads a topic as a consumer group and decodes each
//! message ([`codec`]); [`codec::json_with_priority`] gives every record a class from a JSON
//! field ([`codec::Classed`]); [`KafkaStreamExt::kafka_sink_by_class`] writes each record to a
//! topic chosen by its class. Malformed messages go to the source's dead-letter topic with the
//! reason in a `sluice-error` header.
//!
//! ```
//! use std::sync::atomic::Ordering;
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use sluice_connectors::kafka::codec::{json_with_priority, Classed, PriorityFrom};
//! use sluice_connectors::kafka::{
//!     ClassRoutes, EmbeddedKafka, KafkaConfig, KafkaPipelineExt, KafkaSinkConfig,
//!     KafkaSinkStats, KafkaSourceConfig, KafkaSourceStats, KafkaStreamExt,
//! };
//! use sluice_connectors::PipelineExt;
//! use sluice_engine::{EdgePolicy, Pipeline, Priority};
//!
//! #[derive(serde::Deserialize)]
//! struct Log { level: String, msg: String }
//!
//! let kafka = EmbeddedKafka::start(1)?; // or your brokers: "host:9092,..."
//! let brokers = kafka.brokers();
//! kafka.create_topic("logs", 2)?;
//!
//! // Some input: 100 lines, one in ten an error, one not JSON at all.
//! let fill = Pipeline::new("fill");
//! fill.iter_source("lines", 1, |_| 0..100u64)
//!     .kafka_sink(
//!         "logs",
//!         KafkaSinkConfig::new(KafkaConfig::new(&brokers, "")?, "logs"),
//!         Arc::new(|i: &u64| {
//!             let level = if i % 10 == 0 { "error" } else { "info" };
//!             let line = if *i == 99 { "{oops".to_string() } else {
//!                 format!(r#"{{"level":"{level}","msg":"event {i}"}}"#)
//!             };
//!             (None, line.into_bytes())
//!         }),
//!         Arc::new(KafkaSinkStats::default()),
//!     );
//! fill.run()?.wait()?;
//!
//! let mut cfg = KafkaSourceConfig::new(KafkaConfig::new(&brokers, "log-router")?, &["logs"]);
//! cfg.dead_letter_topic = Some("logs-dead".into());
//! cfg.end_when_idle = Some(Duration::from_secs(1)); // a finite demo; a service omits it
//! let source = Arc::new(KafkaSourceStats::default());
//! let routed = Arc::new(KafkaSinkStats::default());
//! let p = Pipeline::new("router");
//! p.kafka_source("logs", 1, cfg, json_with_priority::<Log>(PriorityFrom::Field("level".into()), Priority::INFO), source.clone())
//!     .prioritized()
//!     .edge_policy(EdgePolicy::shed_by_priority())
//!     .new_chain()
//!     .kafka_sink_by_class(
//!         "route",
//!         KafkaSinkConfig::new(KafkaConfig::new(&brokers, "")?, "bulk"),
//!         ClassRoutes::new().at_or_above(Priority::WARN, "alerts"),
//!         Arc::new(|r: &Classed<Log>| (None, r.value.msg.clone().into_bytes())),
//!         routed.clone(),
//!     );
//! let job = p.run()?;
//! // The group has joined once the source holds partitions (the first join takes a few
//! // seconds on a real broker; milliseconds on the embedded one).
//! while source.assigned.load(Ordering::Relaxed) == 0 && !job.is_finished() {
//!     std::thread::sleep(Duration::from_millis(10));
//! }
//! let report = job.wait()?;
//! assert!(report.ledger.balanced);
//! assert_eq!(source.dead_lettered.load(Ordering::Relaxed), 1);
//! assert_eq!(routed.routed.lock().get("alerts").copied(), Some(10));
//! assert_eq!(routed.routed.lock().get("bulk").copied(), Some(89));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The consumer's defaults
//!
//! | what | default | why |
//! | --- | --- | --- |
//! | start offset | `auto.offset.reset=earliest`: a new group reads a topic from its start | nothing already in the topic is skipped |
//! | commits | `enable.auto.offset.store=false` and auto commit every second: an offset is stored only once every record up to it ended (delivered, shed, dead-lettered) | at least once: a crash replays what had not ended, never skips it |
//! | session | `session.timeout.ms=10000`, `max.poll.interval.ms=60000`; the poller keeps polling while paused | a paused, backpressured member stays in its group |
//! | batches | 4,096 records, 8 prefetched; pause after the graph refused batches for 500 ms | see [`KafkaSourceConfig`] |
//!
//! Any librdkafka property can be set with [`KafkaConfig::set`]; properties that load code or
//! run commands are refused ([`REFUSED_PROPERTIES`]).
//!
//! **Has my group joined?** [`KafkaSourceStats::assigned`] counts the partitions the
//! source's instances hold and [`KafkaSourceStats::rebalances`] the assignments received:
//! wait until `assigned` is the topic's partition count before offering load that must be
//! read from the start of a measurement.

#[cfg(feature = "arrow")]
pub mod batches;
pub mod codec;
mod config;
mod embedded;
mod sink;
mod source;

pub use config::{KafkaConfig, KafkaConfigError, REFUSED_PROPERTIES};
pub use embedded::EmbeddedKafka;
pub use sink::{
    ClassOf, ClassRoutes, DeadLetterFn, Encoder, KafkaSink, KafkaSinkConfig, KafkaSinkStats,
    OnExpired, TryEncoder, MAX_MESSAGE_ROWS,
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
    fn take_dead_lettered(&mut self) -> u64 {
        match &mut self.0 {
            Ok(s) => s.take_dead_lettered(),
            Err(_) => 0,
        }
    }
    fn close(&mut self) {
        if let Ok(s) = &mut self.0 {
            s.close();
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

    /// Ends the stream in a Kafka topic, with an encoder that may refuse a record (it is
    /// dead-lettered and counted, never produced half-encoded): for instance
    /// `batches::arrow_ipc_encoder` (feature `arrow`), one message per record batch.
    fn kafka_sink_with(
        self,
        name: &str,
        cfg: KafkaSinkConfig,
        encode: TryEncoder<T>,
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
        let encode: TryEncoder<T> = Arc::new(move |r: &T| Ok(encode(r)));
        self.kafka_sink_with(name, cfg, encode, stats)
    }

    fn kafka_sink_with(
        self,
        name: &str,
        cfg: KafkaSinkConfig,
        encode: TryEncoder<T>,
        stats: Arc<KafkaSinkStats>,
    ) -> SinkHandle {
        self.sink(name, move |_| {
            KafkaSinkOrError(
                KafkaSink::with_try_encoder(cfg.clone(), encode.clone(), None, stats.clone())
                    .map_err(Some),
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
