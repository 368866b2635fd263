//! Codecs: how records become bytes where they leave memory (the defer log, later Kafka).

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A record could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("codec error: {0}")]
pub struct CodecError(pub String);

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
        serde_json::to_writer(out, record).map_err(|e| CodecError(e.to_string()))
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| CodecError(e.to_string()))
    }
}
