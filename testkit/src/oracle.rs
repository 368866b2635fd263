//! The verifying oracle: what a job delivered, checked record by record against what it was
//! given, and reconciled with what its ledger says.
//!
//! A test gives each record a [`Tag`]: the *stream* it belongs to (a source instance, a Kafka
//! partition: whatever keeps its own order) and its *sequence number* in that stream. The
//! test tells the [`Oracle`] which sequences each stream offered ([`Oracle::expect`]) and
//! shows it every record a sink received, in the order received ([`Oracle::observe`]). The
//! [`Verdict`] then says, per stream and in total:
//!
//! ```text
//! lost          offered and never received
//! duplicates    received more than once (each extra copy counts one)
//! out_of_order  received for the first time after a later sequence of the same stream
//!               (a replayed duplicate is not out of order: it is a duplicate)
//! unexpected    received but never offered (a corrupted or invented record)
//! ```
//!
//! and [`Verdict::reconcile`] checks it against the ledger's numbers ([`Books`]): the sinks
//! counted as delivered exactly what the oracle received, and every record the oracle missed
//! is one the ledger counts as not delivered (dropped, filtered, deferred, dead-lettered, in
//! flight at an abort). "Nothing silently lost" is that reconciliation passing with the
//! ledger balanced.
//!
//! ```
//! use sluice_testkit::{Books, Oracle, Tag};
//!
//! let mut o = Oracle::new();
//! o.expect(0, 4); // stream 0 offered sequences 0..4
//! for seq in [0, 2, 1, 2] {
//!     o.observe(Tag::new(0, seq));
//! }
//! let v = o.verdict();
//! assert_eq!((v.total.lost, v.total.duplicates, v.total.out_of_order), (1, 1, 1));
//! // The job's ledger: 4 delivered (one twice), 1 dropped by a policy.
//! v.reconcile(Books { delivered: 4, not_delivered: 1 }).unwrap();
//! ```

use std::collections::BTreeMap;
use std::fmt;

/// Bits of a packed tag ([`Tag::pack`]) that hold the sequence number.
const SEQ_BITS: u32 = 40;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// Where a record came from: its stream and its sequence number in that stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag {
    /// The stream (a source instance, a partition): order is checked within it.
    pub stream: u64,
    /// The record's position in its stream, from 0.
    pub seq: u64,
}

impl Tag {
    /// A tag.
    pub fn new(stream: u64, seq: u64) -> Self {
        Tag { stream, seq }
    }

    /// The tag in one `u64` (stream in the high 24 bits, sequence in the low 40), for
    /// pipelines of plain integers. `None` when either does not fit.
    pub fn pack(self) -> Option<u64> {
        (self.stream < (1 << (64 - SEQ_BITS)) && self.seq <= SEQ_MASK)
            .then_some((self.stream << SEQ_BITS) | self.seq)
    }

    /// The tag of a packed `u64` ([`Tag::pack`]).
    pub fn unpack(v: u64) -> Self {
        Tag {
            stream: v >> SEQ_BITS,
            seq: v & SEQ_MASK,
        }
    }

    /// Reads a tag written with its `Display` form, `s{stream}/{seq}`, at the start of
    /// `text` (what follows a space is ignored, so a payload may carry more).
    pub fn parse(text: &str) -> Option<Self> {
        let head = text.split(' ').next()?;
        let (s, q) = head.strip_prefix('s')?.split_once('/')?;
        Some(Tag {
            stream: s.parse().ok()?,
            seq: q.parse().ok()?,
        })
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}/{}", self.stream, self.seq)
    }
}

/// One stream's record: how often each offered sequence was received.
#[derive(Debug, Clone, Default)]
struct StreamCheck {
    /// Times received, per offered sequence (index = sequence).
    received: Vec<u32>,
    /// The highest sequence received so far.
    highest: Option<u64>,
    out_of_order: u64,
    unexpected: u64,
}

/// Checks what sinks received against what sources offered; see the [module](self) docs.
#[derive(Debug, Clone, Default)]
pub struct Oracle {
    streams: BTreeMap<u64, StreamCheck>,
}

impl Oracle {
    /// An oracle that expects nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stream `stream` offered sequences `0..n` (called again, the larger `n` holds).
    pub fn expect(&mut self, stream: u64, n: u64) {
        let s = self.streams.entry(stream).or_default();
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if s.received.len() < n {
            s.received.resize(n, 0);
        }
    }

    /// A sink received the record tagged `tag` (call in the order received).
    pub fn observe(&mut self, tag: Tag) {
        let s = self.streams.entry(tag.stream).or_default();
        let slot = usize::try_from(tag.seq)
            .ok()
            .and_then(|i| s.received.get_mut(i));
        let Some(count) = slot else {
            s.unexpected += 1;
            return;
        };
        *count = count.saturating_add(1);
        if *count == 1 {
            if s.highest.is_some_and(|h| h > tag.seq) {
                s.out_of_order += 1;
            }
            s.highest = Some(s.highest.map_or(tag.seq, |h| h.max(tag.seq)));
        }
    }

    /// [`Oracle::observe`] for each tag.
    pub fn observe_all(&mut self, tags: impl IntoIterator<Item = Tag>) {
        for t in tags {
            self.observe(t);
        }
    }

    /// What was lost, duplicated and reordered, per stream and in total.
    pub fn verdict(&self) -> Verdict {
        let mut v = Verdict::default();
        for (&id, s) in &self.streams {
            let sv = StreamVerdict {
                expected: s.received.len() as u64,
                delivered: s.received.iter().filter(|&&c| c > 0).count() as u64,
                lost: s.received.iter().filter(|&&c| c == 0).count() as u64,
                duplicates: s
                    .received
                    .iter()
                    .map(|&c| u64::from(c.saturating_sub(1)))
                    .sum(),
                out_of_order: s.out_of_order,
                unexpected: s.unexpected,
            };
            v.total.add(&sv);
            v.streams.insert(id, sv);
        }
        v
    }
}

/// The oracle's findings for one stream, or summed over all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamVerdict {
    /// Sequences offered.
    pub expected: u64,
    /// Distinct offered sequences received.
    pub delivered: u64,
    /// Offered and never received.
    pub lost: u64,
    /// Copies received beyond the first.
    pub duplicates: u64,
    /// First receptions that came after a later sequence of the same stream.
    pub out_of_order: u64,
    /// Records received that were never offered.
    pub unexpected: u64,
}

impl StreamVerdict {
    fn add(&mut self, o: &StreamVerdict) {
        self.expected += o.expected;
        self.delivered += o.delivered;
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.out_of_order += o.out_of_order;
        self.unexpected += o.unexpected;
    }

    /// Every record received, duplicates and unexpected ones included: what sinks counted.
    pub fn received(&self) -> u64 {
        self.delivered + self.duplicates + self.unexpected
    }
}

impl fmt::Display for StreamVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} delivered, lost {}, duplicates {}, out of order {}, unexpected {}",
            self.delivered,
            self.expected,
            self.lost,
            self.duplicates,
            self.out_of_order,
            self.unexpected
        )
    }
}

/// The oracle's findings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Per stream.
    pub streams: BTreeMap<u64, StreamVerdict>,
    /// Summed over the streams.
    pub total: StreamVerdict,
}

/// The ledger's side of a reconciliation, from a job's report (or summed over the runs of a
/// restarted job): `delivered` is the ledger's `delivered`; `not_delivered` is everything
/// else it accounts for (`filtered + dropped + deferred_pending + dead_lettered +
/// in_flight`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Books {
    /// Records the sinks counted as delivered.
    pub delivered: u64,
    /// Records the ledger accounts for otherwise.
    pub not_delivered: u64,
}

/// Where the oracle and the ledger disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The oracle's totals.
    pub oracle: StreamVerdict,
    /// The ledger's numbers.
    pub books: Books,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the oracle received {} records ({}) but the ledger says delivered {}; \
             the oracle misses {} but the ledger accounts for {} not delivered",
            self.oracle.received(),
            self.oracle,
            self.books.delivered,
            self.oracle.lost,
            self.books.not_delivered
        )
    }
}

impl std::error::Error for Mismatch {}

impl Verdict {
    /// Checks the oracle against the ledger: sinks counted exactly what was received, no
    /// record was received that was never offered, and the records never received are
    /// exactly those the ledger accounts for as not delivered.
    ///
    /// # Errors
    /// [`Mismatch`] with both sides' numbers.
    pub fn reconcile(&self, books: Books) -> Result<(), Mismatch> {
        let t = self.total;
        if t.received() == books.delivered && t.unexpected == 0 && t.lost == books.not_delivered {
            Ok(())
        } else {
            Err(Mismatch { oracle: t, books })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_loss_duplicates_and_reordering_per_stream() {
        let mut o = Oracle::new();
        o.expect(1, 5);
        o.expect(2, 3);
        // Stream 1: 3 arrives before 2 (one out of order); a replay of 0..2 (duplicates,
        // not reordering); 4 never arrives.
        o.observe_all([0, 1, 3, 2, 0, 1].map(|s| Tag::new(1, s)));
        // Stream 2: in order, plus a sequence it never offered.
        o.observe_all([0, 1, 2, 9].map(|s| Tag::new(2, s)));
        o.observe(Tag::new(7, 0)); // a stream never announced
        let v = o.verdict();
        let s1 = v.streams[&1];
        assert_eq!(
            (s1.delivered, s1.lost, s1.duplicates, s1.out_of_order),
            (4, 1, 2, 1)
        );
        let s2 = v.streams[&2];
        assert_eq!((s2.lost, s2.unexpected, s2.out_of_order), (0, 1, 0));
        assert_eq!(v.total.unexpected, 2);
        assert_eq!(v.total.received(), 11);
    }

    #[test]
    fn reconciles_only_when_both_sides_agree() {
        let mut o = Oracle::new();
        o.expect(0, 10);
        o.observe_all((0..8).map(|s| Tag::new(0, s)));
        o.observe(Tag::new(0, 3));
        let v = o.verdict();
        assert!(v
            .reconcile(Books {
                delivered: 9,
                not_delivered: 2
            })
            .is_ok());
        // Loss the ledger does not account for.
        let e = v
            .reconcile(Books {
                delivered: 9,
                not_delivered: 1,
            })
            .unwrap_err();
        assert!(e.to_string().contains("misses 2"), "{e}");
        // A sink that counted a record nobody received.
        assert!(v
            .reconcile(Books {
                delivered: 10,
                not_delivered: 2
            })
            .is_err());
    }

    #[test]
    fn tags_round_trip_through_integers_and_text() {
        let t = Tag::new(3, 123_456);
        assert_eq!(t.pack().map(Tag::unpack), Some(t));
        assert_eq!(Tag::new(1 << 24, 0).pack(), None);
        assert_eq!(Tag::new(0, 1 << 40).pack(), None);
        assert_eq!(Tag::parse(&t.to_string()), Some(t));
        assert_eq!(Tag::parse("s3/123456 with a body"), Some(t));
        assert_eq!(Tag::parse("3/123456"), None);
        assert_eq!(Tag::parse("s3/x"), None);
    }
}
