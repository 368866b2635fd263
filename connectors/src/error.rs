//! The connectors' one error type.

/// A connector could not be set up or failed talking to the outside.
///
/// Constructors return it; at run time a source or sink wraps it in the engine's
/// `SourceError` / `SinkError` (keeping it as the source), so the job fails naming the
/// connector and the cause survives to the caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// A Kafka client call failed (creating a client, subscribing, a cluster operation).
    #[cfg(feature = "kafka")]
    #[error("{context}: {source}")]
    Kafka {
        /// What was being done.
        context: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The Kafka configuration is invalid.
    #[cfg(feature = "kafka")]
    #[error(transparent)]
    KafkaConfig(#[from] crate::kafka::KafkaConfigError),
    /// A connector's settings are invalid; the message says what to change.
    #[error("{0}")]
    Config(String),
    /// Data is not in the format a connector reads or writes (a damaged file, a batch the
    /// format cannot hold).
    #[error("{context}: {message}")]
    Format {
        /// What was being read or written.
        context: String,
        /// What is wrong.
        message: String,
    },
    /// An I/O operation failed (a file, a thread that could not be started).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl ConnectorError {
    /// A Kafka client error while doing `context`.
    #[cfg(feature = "kafka")]
    pub fn kafka(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        ConnectorError::Kafka {
            context: context.into(),
            source,
        }
    }

    /// Invalid settings, with what to change.
    pub fn config(message: impl Into<String>) -> Self {
        ConnectorError::Config(message.into())
    }

    /// An I/O error while doing `context`.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ConnectorError::Io {
            context: context.into(),
            source,
        }
    }
}
