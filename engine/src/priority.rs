//! Priority classes: an ordered rank per record that overload policies act on, lowest first.
//!
//! A record's class comes from a classifier given to the edge (a closure) or from the record
//! itself through [`Prioritized`]. Classes are small ranks `0..CLASSES`; the named ones follow
//! log levels. Policies classify records only on their slow path (when the edge is under
//! pressure), so an edge that never fills never calls the classifier.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Number of distinct priority ranks (`0..CLASSES`); higher ranks saturate to the top one.
pub const CLASSES: usize = 8;

/// An ordered priority class: `Debug < Info < Warn < Error < Critical`, or a numeric rank.
///
/// Serialized by [name](Priority::name) (`"debug"`, `"p6"`), so a per-class map in a report
/// reads as names and, in a `BTreeMap`, in rank order; deserialized from a name or a rank.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(u8);

impl Serialize for Priority {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Priority;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "a class name (debug, info, warn, error, critical) or a rank below {CLASSES}"
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Priority, E> {
                Priority::parse(v)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Priority, E> {
                u8::try_from(v)
                    .ok()
                    .filter(|r| (*r as usize) < CLASSES)
                    .map(Priority)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
        }
        d.deserialize_any(Visit)
    }
}

impl Priority {
    /// Debug telemetry: the first to be shed.
    pub const DEBUG: Priority = Priority(0);
    /// Informational.
    pub const INFO: Priority = Priority(1);
    /// Warnings.
    pub const WARN: Priority = Priority(2);
    /// Errors: never shed by the default watermarks.
    pub const ERROR: Priority = Priority(3);
    /// Critical: never shed by the default watermarks.
    pub const CRITICAL: Priority = Priority(4);
    /// Class of records an edge cannot classify (no classifier configured).
    pub const DEFAULT: Priority = Priority::INFO;

    /// A numeric rank; ranks at or above [`CLASSES`] saturate to the highest.
    pub const fn rank(rank: u8) -> Priority {
        if (rank as usize) < CLASSES {
            Priority(rank)
        } else {
            Priority((CLASSES - 1) as u8)
        }
    }

    /// The rank as an index `0..CLASSES`.
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// The class's name: `debug`, `info`, `warn`, `error`, `critical`, or `p5`..`p7`.
    pub fn name(self) -> &'static str {
        const NAMES: [&str; CLASSES] = [
            "debug", "info", "warn", "error", "critical", "p5", "p6", "p7",
        ];
        NAMES[self.index()]
    }

    /// Every class, lowest first.
    pub fn all() -> impl Iterator<Item = Priority> {
        (0..CLASSES as u8).map(Priority)
    }

    /// Parses a class name (case-insensitive) or a numeric rank.
    pub fn parse(s: &str) -> Option<Priority> {
        let l = s.trim().to_ascii_lowercase();
        match l.as_str() {
            "debug" | "trace" => Some(Priority::DEBUG),
            "info" => Some(Priority::INFO),
            "warn" | "warning" => Some(Priority::WARN),
            "error" => Some(Priority::ERROR),
            "critical" | "fatal" => Some(Priority::CRITICAL),
            _ => l
                .strip_prefix('p')
                .unwrap_or(&l)
                .parse::<u8>()
                .ok()
                .filter(|r| (*r as usize) < CLASSES)
                .map(Priority),
        }
    }
}

impl fmt::Debug for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Records that know their own priority class.
pub trait Prioritized {
    /// This record's class.
    fn priority(&self) -> Priority;
}

/// A shared classifier, as stored on an edge: classifies a slice of records into `out` (one
/// class per record, in order). It works a batch at a time so the per-record loop is
/// monomorphized user code behind a single dynamic call per batch.
pub type Classifier<T> = Arc<dyn Fn(&[T], &mut Vec<Priority>) + Send + Sync>;

/// Wraps a per-record classifier closure as a batch [`Classifier`].
pub fn classifier<T, F>(f: F) -> Classifier<T>
where
    T: 'static,
    F: Fn(&T) -> Priority + Send + Sync + 'static,
{
    Arc::new(move |records: &[T], out: &mut Vec<Priority>| {
        out.clear();
        out.extend(records.iter().map(&f));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_by_name_and_reads_names_or_ranks() {
        assert_eq!(
            serde_json::to_string(&Priority::WARN).ok().as_deref(),
            Some("\"warn\"")
        );
        assert_eq!(
            serde_json::from_str::<Priority>("\"error\"").ok(),
            Some(Priority::ERROR)
        );
        assert_eq!(
            serde_json::from_str::<Priority>("6").ok(),
            Some(Priority::rank(6))
        );
        assert!(serde_json::from_str::<Priority>("8").is_err());
        assert!(serde_json::from_str::<Priority>("\"loud\"").is_err());
        let mut m = std::collections::BTreeMap::new();
        m.insert(Priority::ERROR, 1);
        m.insert(Priority::DEBUG, 2);
        assert_eq!(
            serde_json::to_string(&m).ok().as_deref(),
            Some(r#"{"debug":2,"error":1}"#)
        );
    }
}
