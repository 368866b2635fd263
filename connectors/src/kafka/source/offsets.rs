//! The offset tracker: per partition, the offset ranges handed to the graph and not yet
//! ended. The offset that may be stored (and so committed) is the start of the oldest range
//! still outstanding, or of any range whose ack failed or that was handed back: never past a
//! record that has not ended. Everything else in the source exists to feed it.

use std::collections::{BTreeMap, HashMap};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use sluice_engine::AckOutcome;

use super::KafkaSourceStats;

/// Offset ranges of one batch, per (topic, partition).
pub(super) type Ranges = Vec<(String, i32, i64, i64)>;

pub(super) struct AckMsg {
    pub ranges: Ranges,
    pub outcome: AckOutcome,
    pub records: u64,
}

/// A batch for the graph, with the offset ranges it covers.
pub(super) struct Ready<T> {
    pub records: Vec<T>,
    pub ranges: Ranges,
}

#[derive(Debug, Default)]
pub(super) struct Tracker {
    /// (topic, partition) -> outstanding ranges start -> end (inclusive).
    pub outstanding: HashMap<(String, i32), BTreeMap<i64, i64>>,
    /// (topic, partition) -> one past the highest offset polled.
    pub next: HashMap<(String, i32), i64>,
    /// Ranges whose ack failed: never stored past.
    failed: HashMap<(String, i32), i64>,
}

impl Tracker {
    pub fn polled(&mut self, tp: (String, i32), first: i64, last: i64) {
        self.outstanding
            .entry(tp.clone())
            .or_default()
            .insert(first, last);
        let n = self.next.entry(tp).or_insert(last + 1);
        *n = (*n).max(last + 1);
    }

    pub fn ack(&mut self, m: &AckMsg) {
        for (t, p, first, _) in &m.ranges {
            let tp = (t.clone(), *p);
            if m.outcome == AckOutcome::Failed {
                let f = self.failed.entry(tp).or_insert(*first);
                *f = (*f).min(*first);
            } else if let Some(o) = self.outstanding.get_mut(&tp) {
                o.remove(first);
            }
        }
    }

    /// The offset to store for a partition: the oldest outstanding (or failed) offset, or one
    /// past everything polled.
    pub fn committable(&self, tp: &(String, i32)) -> Option<i64> {
        let next = *self.next.get(tp)?;
        let oldest = self
            .outstanding
            .get(tp)
            .and_then(|o| o.keys().next().copied())
            .unwrap_or(next);
        Some(match self.failed.get(tp) {
            Some(f) => oldest.min(*f),
            None => oldest,
        })
    }

    /// A range handed back unprocessed (taken out of the prefetch on a revoke): it is no
    /// longer waited for, and the stored offset never passes it.
    pub fn returned(&mut self, t: &str, p: i32, first: i64) {
        let tp = (t.to_string(), p);
        if let Some(o) = self.outstanding.get_mut(&tp) {
            o.remove(&first);
        }
        let f = self.failed.entry(tp).or_insert(first);
        *f = (*f).min(first);
    }

    pub fn forget(&mut self, tp: &(String, i32)) {
        self.outstanding.remove(tp);
        self.next.remove(tp);
        self.failed.remove(tp);
    }
}

pub(super) fn store_all<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tracker: &Tracker,
    only: Option<&[(String, i32)]>,
    stats: &KafkaSourceStats,
) {
    // `store_offsets` stores exactly the offsets given: the next offset to consume.
    // (`store_offset` stores `offset + 1`, librdkafka's legacy convention: using it here
    // committed one past what was processed.)
    let mut tpl = TopicPartitionList::new();
    for tp in tracker.next.keys() {
        if only.is_some_and(|o| !o.contains(tp)) {
            continue;
        }
        if let Some(off) = tracker.committable(tp) {
            let _ = tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(off));
        }
    }
    if tpl.count() > 0 {
        let mut done = stats.done_below.lock();
        for e in tpl.elements() {
            if let Offset::Offset(off) = e.offset() {
                let d = done
                    .entry((e.topic().to_string(), e.partition()))
                    .or_insert(0);
                *d = (*d).max(off);
            }
        }
    }
    if tpl.count() > 0 {
        // Storing offsets of a partition no longer assigned fails harmlessly.
        let _ = consumer.store_offsets(&tpl);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    fn tp(p: i32) -> (String, i32) {
        ("t".to_string(), p)
    }

    fn ack(t: &mut Tracker, p: i32, first: i64, outcome: AckOutcome) {
        t.ack(&AckMsg {
            ranges: vec![("t".to_string(), p, first, first)],
            outcome,
            records: 1,
        });
    }

    #[test]
    fn stores_up_to_the_oldest_range_not_yet_ended() {
        let mut t = Tracker::default();
        assert_eq!(
            t.committable(&tp(0)),
            None,
            "nothing polled: nothing to store"
        );
        t.polled(tp(0), 0, 9);
        t.polled(tp(0), 10, 19);
        t.polled(tp(0), 20, 29);
        assert_eq!(t.committable(&tp(0)), Some(0));
        // Out of order: the middle range ends first; the first still holds the offset back.
        ack(&mut t, 0, 10, AckOutcome::Done);
        assert_eq!(t.committable(&tp(0)), Some(0));
        ack(&mut t, 0, 0, AckOutcome::Done);
        assert_eq!(t.committable(&tp(0)), Some(20));
        ack(&mut t, 0, 20, AckOutcome::Done);
        assert_eq!(
            t.committable(&tp(0)),
            Some(30),
            "all ended: one past the last"
        );
    }

    #[test]
    fn a_failed_ack_is_never_stored_past() {
        let mut t = Tracker::default();
        t.polled(tp(0), 0, 9);
        t.polled(tp(0), 10, 19);
        ack(&mut t, 0, 10, AckOutcome::Failed);
        ack(&mut t, 0, 0, AckOutcome::Done);
        assert_eq!(
            t.committable(&tp(0)),
            Some(10),
            "10.. is replayed after a restart"
        );
        t.polled(tp(0), 20, 29);
        ack(&mut t, 0, 20, AckOutcome::Done);
        assert_eq!(t.committable(&tp(0)), Some(10));
    }

    #[test]
    fn a_range_handed_back_on_a_revoke_is_not_waited_for_nor_passed() {
        let mut t = Tracker::default();
        t.polled(tp(0), 0, 9);
        t.polled(tp(0), 10, 19);
        t.returned("t", 0, 10);
        ack(&mut t, 0, 0, AckOutcome::Done);
        assert_eq!(
            t.committable(&tp(0)),
            Some(10),
            "the next owner reads 10.. again"
        );
        assert!(t.outstanding[&tp(0)].is_empty(), "nothing left to wait for");
    }

    #[test]
    fn partitions_are_independent_and_forgotten_on_revoke() {
        let mut t = Tracker::default();
        t.polled(tp(0), 0, 9);
        t.polled(tp(1), 100, 109);
        ack(&mut t, 1, 100, AckOutcome::Done);
        assert_eq!(t.committable(&tp(0)), Some(0));
        assert_eq!(t.committable(&tp(1)), Some(110));
        t.forget(&tp(1));
        assert_eq!(t.committable(&tp(1)), None);
        assert_eq!(t.committable(&tp(0)), Some(0));
    }

    proptest! {
        /// Batches of one partition polled in order, acked in any order, some failed: the
        /// stored offset never passes a record that has not ended (or whose ack failed), and
        /// once everything ended well it is one past the last record.
        #[test]
        fn never_stores_past_a_record_that_has_not_ended(
            sizes in proptest::collection::vec(1i64..50, 1..40),
            order in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
            failures in proptest::collection::vec(any::<bool>(), 40),
        ) {
            let mut t = Tracker::default();
            let mut ranges = Vec::new();
            let mut next = 0;
            for s in &sizes {
                t.polled(tp(0), next, next + s - 1);
                ranges.push(next);
                next += s;
            }
            // The model: which range starts ended, and whether well.
            let mut ended: Vec<Option<bool>> = vec![None; ranges.len()];
            let mut pending: Vec<usize> = (0..ranges.len()).collect();
            for (k, pick) in order.iter().enumerate() {
                if pending.is_empty() {
                    break;
                }
                let r = pending.remove(pick.index(pending.len()));
                let failed = failures[k % failures.len()] && k % 3 == 0;
                ack(&mut t, 0, ranges[r], if failed { AckOutcome::Failed } else { AckOutcome::Done });
                ended[r] = Some(!failed);
                let stored = t.committable(&tp(0)).unwrap();
                // The first range that did not end well bounds what may be stored.
                let bound = ended
                    .iter()
                    .position(|e| *e != Some(true))
                    .map_or(next, |i| ranges[i]);
                prop_assert_eq!(stored, bound);
            }
            if pending.is_empty() && ended.iter().all(|e| *e == Some(true)) {
                prop_assert_eq!(t.committable(&tp(0)), Some(next));
            }
        }
    }
}
