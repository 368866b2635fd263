//! Decoding Kafka messages into records: raw bytes, UTF-8, JSON (serde) or any function, and
//! a record's priority class from a header or a JSON field.
//!
//! A decoder that fails names the reason; the source then sends the message to the
//! dead-letter topic with that reason in a `sluice-error` header and counts it. A bad message
//! never stops the job.
//!
//! ```
//! use sluice_connectors::kafka::codec::{self, Incoming, PriorityFrom};
//! use sluice_engine::{Codec, CodecError, Prioritized, Priority};
//!
//! #[derive(serde::Deserialize)]
//! struct Log { level: String, msg: String }
//!
//! let decode = codec::json_with_priority::<Log>(PriorityFrom::Field("level".into()), Priority::INFO);
//! let rec = decode(&Incoming::new(br#"{"level":"error","msg":"disk full"}"#)).unwrap();
//! assert_eq!(rec.priority(), Priority::ERROR);
//! assert_eq!(rec.value.msg, "disk full");
//! assert!(decode(&Incoming::new(b"{not json")).is_err());
//! ```

use std::sync::Arc;

use rdkafka::message::{BorrowedHeaders, BorrowedMessage, Headers, Message};
use serde::de::DeserializeOwned;
use sluice_engine::{Codec, CodecError, Prioritized, Priority};

/// A message as a decoder sees it: payload, key, headers and where it came from.
#[derive(Clone, Copy)]
pub struct Incoming<'a> {
    /// The payload (empty for a null payload).
    pub payload: &'a [u8],
    /// The key.
    pub key: Option<&'a [u8]>,
    headers: HeaderView<'a>,
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

#[derive(Clone, Copy)]
enum HeaderView<'a> {
    None,
    Kafka(&'a BorrowedHeaders),
    Pairs(&'a [(&'a str, &'a [u8])]),
}

impl std::fmt::Debug for Incoming<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("bytes", &self.payload.len())
            .finish_non_exhaustive()
    }
}

impl<'a> Incoming<'a> {
    /// A message with only a payload (for decoders used outside a source, and tests).
    pub fn new(payload: &'a [u8]) -> Self {
        Incoming {
            payload,
            key: None,
            headers: HeaderView::None,
            topic: "",
            partition: -1,
            offset: -1,
        }
    }

    /// The same message with these headers.
    pub fn with_headers(mut self, headers: &'a [(&'a str, &'a [u8])]) -> Self {
        self.headers = HeaderView::Pairs(headers);
        self
    }

    pub(crate) fn from_message(m: &'a BorrowedMessage<'a>) -> Self {
        Incoming {
            payload: m.payload().unwrap_or_default(),
            key: m.key(),
            headers: m.headers().map_or(HeaderView::None, HeaderView::Kafka),
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
        }
    }

    /// The value of the first header named `name` (a header without a value reads as empty).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        match self.headers {
            HeaderView::None => None,
            HeaderView::Kafka(h) => h
                .iter()
                .find(|x| x.key == name)
                .map(|x| x.value.unwrap_or_default()),
            HeaderView::Pairs(p) => p.iter().find(|(k, _)| *k == name).map(|(_, v)| *v),
        }
    }
}

/// Turns a message into a record, or says why it cannot.
pub type Decoder<T> = Arc<dyn Fn(&Incoming<'_>) -> Result<T, CodecError> + Send + Sync>;

/// A decoder from a function of the payload alone.
pub fn payload<T, F>(f: F) -> Decoder<T>
where
    F: Fn(&[u8]) -> Result<T, CodecError> + Send + Sync + 'static,
{
    Arc::new(move |m: &Incoming<'_>| f(m.payload))
}

/// A decoder from a [`Codec`]: the same format the defer log uses (for instance
/// [`JsonCodec`](sluice_engine::JsonCodec)) read from message payloads.
pub fn from_codec<T: 'static>(codec: impl Codec<T> + 'static) -> Decoder<T> {
    payload(move |b| codec.decode(b))
}

/// The payload's bytes as they are.
pub fn raw() -> Decoder<Vec<u8>> {
    payload(|b| Ok(b.to_vec()))
}

/// The payload as UTF-8 text; other bytes are malformed.
pub fn utf8() -> Decoder<String> {
    payload(|b| String::from_utf8(b.to_vec()).map_err(|e| CodecError::format("UTF-8", e)))
}

/// The payload as UTF-8 text parsed with [`FromStr`](std::str::FromStr) (a number, say);
/// text that does not parse is malformed.
pub fn parse<T>() -> Decoder<T>
where
    T: std::str::FromStr + 'static,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    payload(|b| {
        std::str::from_utf8(b)
            .map_err(|e| CodecError::format("UTF-8", e))?
            .parse::<T>()
            .map_err(|e| CodecError::format(std::any::type_name::<T>(), e))
    })
}

/// The payload as JSON deserialized into `T`.
pub fn json<T: DeserializeOwned + 'static>() -> Decoder<T> {
    payload(|b| serde_json::from_slice::<T>(b).map_err(|e| CodecError::format("JSON", e)))
}

/// A record with the priority class it was decoded with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classed<T> {
    /// The record.
    pub value: T,
    /// Its class.
    pub priority: Priority,
}

impl<T> Prioritized for Classed<T> {
    fn priority(&self) -> Priority {
        self.priority
    }
}

/// Where a message's priority class is read from. The value is a class name (`debug`,
/// `info`, `warn`/`warning`, `error`, `critical`/`fatal`, case-insensitive) or a rank `0`-`7`.
/// A message without it gets the default class; a value that is not a class makes the
/// message malformed (dead-lettered with the reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriorityFrom {
    /// A message header.
    Header(String),
    /// A top-level field of a JSON payload (a string or a number).
    Field(String),
}

fn parse_class(what: &str, v: &str) -> Result<Priority, CodecError> {
    Priority::parse(v).ok_or_else(|| {
        CodecError::invalid(format!(
            "{what} = {v:?} is not a priority class (debug, info, warn, error, critical or 0-7)"
        ))
    })
}

fn class_from_header(
    m: &Incoming<'_>,
    name: &str,
    default: Priority,
) -> Result<Priority, CodecError> {
    match m.header(name) {
        None => Ok(default),
        Some(v) => {
            let v = std::str::from_utf8(v)
                .map_err(|_| CodecError::invalid(format!("header {name:?} is not UTF-8")))?;
            parse_class(&format!("header {name:?}"), v)
        }
    }
}

/// `inner`'s records, classed by a header (for a field, use [`json_with_priority`]).
pub fn with_header_priority<T: 'static>(
    inner: Decoder<T>,
    header: &str,
    default: Priority,
) -> Decoder<Classed<T>> {
    let header = header.to_string();
    Arc::new(move |m: &Incoming<'_>| {
        let priority = class_from_header(m, &header, default)?;
        Ok(Classed {
            value: inner(m)?,
            priority,
        })
    })
}

/// JSON records into `T`, classed by a header or a top-level field.
pub fn json_with_priority<T: DeserializeOwned + 'static>(
    from: PriorityFrom,
    default: Priority,
) -> Decoder<Classed<T>> {
    match from {
        PriorityFrom::Header(h) => with_header_priority(json::<T>(), &h, default),
        PriorityFrom::Field(field) => Arc::new(move |m: &Incoming<'_>| {
            // One parse: to a JSON value, read the field, then into `T`.
            let v: serde_json::Value =
                serde_json::from_slice(m.payload).map_err(|e| CodecError::format("JSON", e))?;
            let priority = match v.get(&field) {
                None | Some(serde_json::Value::Null) => default,
                Some(serde_json::Value::String(s)) => parse_class(&format!("field {field:?}"), s)?,
                Some(serde_json::Value::Number(n)) => {
                    parse_class(&format!("field {field:?}"), &n.to_string())?
                }
                Some(other) => {
                    return Err(CodecError::invalid(format!(
                        "field {field:?} = {other} is not a priority class"
                    )))
                }
            };
            let value =
                serde_json::from_value::<T>(v).map_err(|e| CodecError::format("record", e))?;
            Ok(Classed { value, priority })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Log {
        level: Option<serde_json::Value>,
        msg: String,
    }

    #[test]
    fn json_field_priority_defaults_and_refuses_unknown_classes() {
        let d = json_with_priority::<Log>(PriorityFrom::Field("level".into()), Priority::INFO);
        let ok = |b: &[u8]| d(&Incoming::new(b));
        assert_eq!(
            ok(br#"{"level":"WARNING","msg":"a"}"#).unwrap().priority,
            Priority::WARN
        );
        assert_eq!(
            ok(br#"{"level":3,"msg":"a"}"#).unwrap().priority,
            Priority::ERROR
        );
        assert_eq!(ok(br#"{"msg":"a"}"#).unwrap().priority, Priority::INFO);
        let e = ok(br#"{"level":"loud","msg":"a"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"loud\" is not a priority class"), "{e}");
        let e = ok(br#"{"level":"info"}"#).unwrap_err().to_string();
        assert!(e.contains("invalid record"), "{e}");
        assert!(ok(b"\xff")
            .unwrap_err()
            .to_string()
            .contains("invalid JSON"));
    }

    #[test]
    fn header_priority() {
        let d = with_header_priority(utf8(), "level", Priority::DEBUG);
        let h: &[(&str, &[u8])] = &[("other", b"x"), ("level", b"critical")];
        let r = d(&Incoming::new(b"hello").with_headers(h)).unwrap();
        assert_eq!(
            (r.value.as_str(), r.priority),
            ("hello", Priority::CRITICAL)
        );
        assert_eq!(d(&Incoming::new(b"x")).unwrap().priority, Priority::DEBUG);
        let bad: &[(&str, &[u8])] = &[("level", b"9")];
        assert!(d(&Incoming::new(b"x").with_headers(bad)).is_err());
        assert!(utf8()(&Incoming::new(b"\xff")).is_err());
    }

    #[test]
    fn hostile_payloads_are_errors_not_crashes() {
        let d = json_with_priority::<Log>(PriorityFrom::Field("level".into()), Priority::INFO);
        let deep = "[".repeat(100_000);
        let big = format!(r#"{{"level":"info","msg":"{}"}}"#, "x".repeat(5 << 20));
        for bad in [
            &b""[..],
            b"null",
            b"\xff\xfe",
            deep.as_bytes(),
            br#"{"level":{}}"#,
        ] {
            assert!(d(&Incoming::new(bad)).is_err());
        }
        // Large but well formed: decoded (the size cap is the broker's and librdkafka's).
        assert_eq!(
            d(&Incoming::new(big.as_bytes())).unwrap().priority,
            Priority::INFO
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_fail_cleanly(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let d = json_with_priority::<Log>(PriorityFrom::Field("level".into()), Priority::INFO);
            let _ = d(&Incoming::new(&b));
            let _ = utf8()(&Incoming::new(&b));
        }
    }
}
