//! Codecs: how records become bytes where they leave memory. One concept for every place:
//! the defer log stores records with a [`Codec`], and the Kafka connectors decode payloads
//! and encode records with one too (`sluice_connectors::kafka::codec::from_codec`), so a
//! record type has one wire format and one error type, [`CodecError`].

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A record could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The bytes are not valid in the format (bad JSON, bad UTF-8, a truncated frame).
    #[error("invalid {format}: {source}")]
    Format {
        /// The format (`JSON`, `UTF-8`, ...).
        format: &'static str,
        /// The parser's error.
        #[source]
        source: crate::operator::BoxError,
    },
    /// The bytes parse but the value is not acceptable (a class name that is not a class,
    /// a missing field the record needs).
    #[error("{0}")]
    Invalid(String),
}

impl CodecError {
    /// The bytes are not valid `format`.
    pub fn format(format: &'static str, source: impl Into<crate::operator::BoxError>) -> Self {
        CodecError::Format {
            format,
            source: source.into(),
        }
    }

    /// The value is not acceptable, for the reason given.
    pub fn invalid(reason: impl Into<String>) -> Self {
        CodecError::Invalid(reason.into())
    }
}

/// Encodes records to bytes and back.
pub trait Codec<T>: Send + Sync {
    /// Appends the encoding of `record` to `out`.
    ///
    /// # Errors
    /// When the record cannot be represented.
    fn encode(&self, record: &T, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Decodes one record.
    ///
    /// # Errors
    /// When the bytes are not a valid encoding.
    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

/// JSON via serde: readable, portable, and slower than a binary codec.
pub struct JsonCodec<T>(PhantomData<fn() -> T>);

impl<T> JsonCodec<T> {
    /// A JSON codec.
    pub fn new() -> Self {
        JsonCodec(PhantomData)
    }
}

impl<T> Default for JsonCodec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for JsonCodec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonCodec")
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Codec<T> for JsonCodec<T> {
    fn encode(&self, record: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        serde_json::to_writer(out, record).map_err(|e| CodecError::format("JSON", e))
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| CodecError::format("JSON", e))
    }
}
