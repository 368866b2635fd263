//! Arrow record batches in Kafka messages: payloads decoded straight into batches (Arrow IPC
//! streams, or JSON lines with a schema) and batches encoded back, one message per batch.
//!
//! A message that does not decode (not an IPC stream, another schema, a line that does not
//! fit) goes to the source's dead-letter path with the reason, and its line number for
//! JSON lines, like any malformed message. Each decoded message is one item of the stream,
//! counted as its rows in edges and the ledger.
//!
//! # Which decoder
//! `json_lines` pays for building a batch per message: about 0.37 us per row for a message
//! of 1,000 lines, but 2.3 us for a message of one line, where decoding a typed row with
//! serde (`codec::json`) takes 0.3 us (this machine, 200,000 messages of three string
//! fields). For topics of one object per message, decode typed rows and convert a whole
//! polled batch with `to_batches`; for producers that batch lines into messages (Vector,
//! Fluent Bit, or Sluice's own `json_lines_encoder`), decode with `json_lines`. One-row
//! batches can be joined with `sluice_operators::columnar::BatchStreamExt::concat_batches`.
//!
//! ```
//! use std::sync::Arc;
//! use sluice_connectors::files::arrow::array::{ArrayRef, Int64Array, RecordBatch};
//! use sluice_connectors::kafka::batches;
//! use sluice_connectors::kafka::codec::Incoming;
//!
//! let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
//! let batch = RecordBatch::try_from_iter([("id", ids)]).unwrap();
//! let (_, payload) = batches::arrow_ipc_encoder()(&batch).unwrap();
//! let back = batches::arrow_ipc(Some(batch.schema()))(&Incoming::new(&payload)).unwrap();
//! assert_eq!(back, batch);
//!
//! let decode = batches::json_lines(batch.schema());
//! let rows = decode(&Incoming::new(b"{\"id\": 1}\n{\"id\": 2}\n")).unwrap();
//! assert_eq!(rows.num_rows(), 2);
//! let bad = decode(&Incoming::new(b"{\"id\": 1}\n{\"id\": \"x\"}\n")).unwrap_err();
//! assert!(bad.to_string().contains("line 2"), "{bad}");
//! ```

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamDecoder;
use arrow::ipc::writer::StreamWriter;
use arrow::json::reader::Decoder as JsonDecoder;
use arrow::json::{LineDelimitedWriter, ReaderBuilder};
use parking_lot::Mutex;
use sluice_engine::CodecError;

use super::codec::{payload, Decoder};
use super::sink::TryEncoder;
use crate::files::json::decode_lines;

/// Each payload is an Arrow IPC stream (a schema, then batches); its batches become one
/// batch. With `schema`, a stream of another schema is malformed. The decoder reads lengths
/// from the payload but never allocates by them beyond the payload's own size class (Arrow's
/// stream decoder caps what it reserves ahead).
pub fn arrow_ipc(schema: Option<SchemaRef>) -> Decoder<RecordBatch> {
    payload(move |b| decode_ipc(b, schema.as_ref()).map_err(|e| CodecError::format("Arrow IPC", e)))
}

fn decode_ipc(b: &[u8], want: Option<&SchemaRef>) -> Result<RecordBatch, ArrowError> {
    let mut dec = StreamDecoder::new();
    let mut buf = Buffer::from(b);
    let mut batches = Vec::new();
    while !buf.is_empty() {
        let before = buf.len();
        if let Some(batch) = dec.decode(&mut buf)? {
            batches.push(batch);
        } else if buf.len() == before {
            break;
        }
    }
    dec.finish()?;
    let got = dec
        .schema()
        .ok_or_else(|| ArrowError::IpcError("the stream has no schema".into()))?;
    if let Some(want) = want {
        if got.fields() != want.fields() {
            return Err(ArrowError::SchemaError(format!(
                "the stream's schema {got} is not the expected {want}"
            )));
        }
    }
    match batches.len() {
        1 => Ok(batches.remove(0)),
        _ => concat_batches(&got, &batches),
    }
}

/// Each payload is JSON lines (one object per line; blank lines skipped), decoded into one
/// batch of `schema`. A message with a line that does not fit is malformed as a whole (its
/// reason names the first such line, from 1): the dead-letter topic then holds the message
/// as it was produced.
///
/// Decoders are kept between messages (a few, for the source instances that share this
/// function): building one costs more than decoding a short message.
pub fn json_lines(schema: SchemaRef) -> Decoder<RecordBatch> {
    let pool: Arc<Mutex<Vec<JsonDecoder>>> = Arc::default();
    payload(move |b| {
        let taken = pool.lock().pop();
        let mut d = match taken {
            Some(d) => d,
            None => ReaderBuilder::new(schema.clone())
                .with_batch_size(JSON_BATCH)
                .build_decoder()
                .map_err(|e| CodecError::format("JSON lines", e))?,
        };
        match decode_all(&mut d, &schema, b) {
            Ok(batch) => {
                // Only a decoder that ended cleanly is used again.
                let mut p = pool.lock();
                if p.len() < POOL {
                    p.push(d);
                }
                Ok(batch)
            }
            Err(e) => Err(first_bad_line(&schema, b).unwrap_or_else(|| {
                CodecError::invalid(format!("JSON lines do not fit the schema: {e}"))
            })),
        }
    })
}

/// Rows a JSON decoder buffers before it is flushed.
const JSON_BATCH: usize = 8192;
/// Decoders kept between messages.
const POOL: usize = 8;

/// Decodes the whole of `b` with `d` into one batch (several flushes joined).
fn decode_all(
    d: &mut JsonDecoder,
    schema: &SchemaRef,
    b: &[u8],
) -> Result<RecordBatch, ArrowError> {
    let mut parts = Vec::new();
    let mut rest = b;
    while !rest.is_empty() {
        let used = d.decode(rest)?;
        rest = &rest[used..];
        if used == 0 || !rest.is_empty() {
            // The decoder is full: take what it holds.
            match d.flush()? {
                Some(p) => parts.push(p),
                None if used == 0 => {
                    return Err(ArrowError::JsonError("the decoder made no progress".into()))
                }
                None => {}
            }
        }
    }
    if d.has_partial_record() {
        return Err(ArrowError::JsonError(
            "the message ends inside an object".into(),
        ));
    }
    if let Some(p) = d.flush()? {
        parts.push(p);
    }
    match parts.len() {
        0 => Ok(RecordBatch::new_empty(schema.clone())),
        1 => Ok(parts.remove(0)),
        _ => concat_batches(schema, &parts),
    }
}

/// The first line of `b` that does not decode alone, as an error naming its number.
fn first_bad_line(schema: &SchemaRef, b: &[u8]) -> Option<CodecError> {
    b.split(|c| *c == b'\n').enumerate().find_map(|(i, l)| {
        if l.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        decode_lines(schema, &[l])
            .err()
            .map(|e| CodecError::invalid(format!("line {}: {e}", i + 1)))
    })
}

/// One message per batch: an Arrow IPC stream of the batch with its schema. No key.
pub fn arrow_ipc_encoder() -> TryEncoder<RecordBatch> {
    Arc::new(|b: &RecordBatch| {
        let mut out = Vec::new();
        let mut w = StreamWriter::try_new(&mut out, &b.schema()).map_err(|e| e.to_string())?;
        w.write(b).map_err(|e| e.to_string())?;
        w.finish().map_err(|e| e.to_string())?;
        drop(w);
        Ok((None, out))
    })
}

/// One message per batch: its rows as JSON lines. No key. A column type JSON cannot
/// express refuses the batch (dead-lettered by the sink).
pub fn json_lines_encoder() -> TryEncoder<RecordBatch> {
    Arc::new(|b: &RecordBatch| {
        let mut out = Vec::new();
        let mut w = LineDelimitedWriter::new(&mut out);
        w.write(b).map_err(|e| e.to_string())?;
        w.finish().map_err(|e| e.to_string())?;
        drop(w);
        Ok((None, out))
    })
}
