//! The embedded default: librdkafka's in-process mock cluster, used when a job runs without
//! `--brokers`. It speaks the Kafka protocol on a loopback port, supports consumer groups and
//! commits, and keeps a bounded log per partition (about 100,000 messages or 5 MB; older
//! ones are deleted silently), so demos that use it must not produce far ahead of consuming.

use crate::ConnectorError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

/// An in-process Kafka cluster.
pub struct EmbeddedKafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl std::fmt::Debug for EmbeddedKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedKafka")
            .field("brokers", &self.brokers())
            .finish()
    }
}

impl EmbeddedKafka {
    /// Starts a cluster of `brokers` brokers.
    ///
    /// # Errors
    /// When librdkafka cannot start it.
    pub fn start(brokers: i32) -> Result<Self, ConnectorError> {
        let cluster = MockCluster::new(brokers)
            .map_err(|e| ConnectorError::kafka("cannot start the embedded Kafka cluster", e))?;
        Ok(EmbeddedKafka { cluster })
    }

    /// `bootstrap.servers` for clients.
    pub fn brokers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Creates a topic (the mock cluster also auto-creates topics on first use).
    ///
    /// # Errors
    /// When the cluster refuses.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), ConnectorError> {
        self.cluster
            .create_topic(topic, partitions, 1)
            .map_err(|e| ConnectorError::kafka(format!("cannot create topic {topic}"), e))
    }

    /// The underlying mock cluster, for fault injection in tests.
    pub fn cluster(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.cluster
    }
}
