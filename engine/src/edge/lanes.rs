//! Per-class lanes: the queue of a port whose service order is by class.
//!
//! A port with [`ServiceOrder::Priority`] or [`ServiceOrder::Weighted`] keeps two queues: its
//! arrival queue (batches as sent, the same `VecDeque` a FIFO port uses) and one lane per
//! class. Senders only ever push to the arrival queue, so sending costs what it costs on a
//! FIFO edge. Batches move to the lanes, classified and split by class, only when the order
//! matters: when the receiver takes a batch while two or more are queued, or when a policy
//! needs the queued records by class. A receiver that keeps up (zero or one batch queued)
//! never classifies anything.
//!
//! # Invariants
//! - Every record is in exactly one place: the arrival queue or the lane of its class.
//! - Within a lane, records keep the order in which their port accepted them; the arrival
//!   queue is newer than every lane (sorting moves its oldest entries first).
//! - `records[c]` is the number of records in lane `c` (rows, for items counted in rows).
//! - Splitting a batch keeps its weight: the parts' weights add up to the whole's, so the
//!   port's `available + in_flight == capacity` is untouched by sorting. A part's weight never
//!   exceeds its length (but for the one credit a batch of items without rows holds, which
//!   goes to its highest class), and shrinking an entry sets its weight to `min(weight, len)`. A
//!   clamped batch (more records than the capacity, weight = capacity) gives its weight to
//!   its lowest classes, taken last; its other parts weigh 0, so an edge holds at most one
//!   batch's overshoot beyond its capacity, as a FIFO edge does.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::batch::Batch;
use crate::policy::{ServiceOrder, Shares};
use crate::priority::{Priority, CLASSES};
use crate::rows::Rows;

/// A queued batch: its records, the credit it holds, and its records per class once known.
/// (The arrival queue of every port and the lanes of a class-served one hold these.)
pub(super) struct Entry<T> {
    pub batch: Batch<T>,
    pub weight: usize,
    /// Records per class, computed the first time a policy needs it.
    pub classes: Option<[u32; CLASSES]>,
}

/// Virtual time one record of share 1 costs under weighted service.
const VT_UNIT: u64 = 1 << 20;

pub(super) struct Lanes<T> {
    /// How items are counted (`records` and merging are in records, or rows).
    rows: Rows<T>,
    lanes: [VecDeque<Entry<T>>; CLASSES],
    pub records: [usize; CLASSES],
    /// `None`: strict priority.
    shares: Option<Shares>,
    /// Weighted service: each lane's virtual finish time, and the start tag of the last
    /// service (a lane that becomes busy starts there, so idle time earns no credit).
    vt: [u64; CLASSES],
    vnow: u64,
    /// Entries are merged into the lane's last one while the total stays within this many
    /// records (the receiver's batch): a lane of small parts would otherwise hold one
    /// allocation per part (an edge of 100,000 records in 3-record parts: 40 MB instead of
    /// 16). 1: never.
    merge: usize,
}

impl<T> Lanes<T> {
    /// Lanes for a by-class order; `None` for `Fifo`.
    pub fn for_order(order: ServiceOrder, rows: Rows<T>) -> Option<Self> {
        let shares = match order {
            ServiceOrder::Fifo => return None,
            ServiceOrder::Priority => None,
            ServiceOrder::Weighted(s) => Some(s),
        };
        Some(Lanes {
            rows,
            lanes: std::array::from_fn(|_| VecDeque::new()),
            records: [0; CLASSES],
            shares,
            vt: [0; CLASSES],
            vnow: 0,
            merge: 1,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.records.iter().all(|n| *n == 0) && self.lanes.iter().all(VecDeque::is_empty)
    }

    /// Every queued entry, lane by lane.
    pub fn entries(&self) -> impl Iterator<Item = &Entry<T>> {
        self.lanes.iter().flatten()
    }

    /// Sets the most records a merged entry holds.
    pub fn merge_to(&mut self, max: usize) {
        self.merge = max.max(1);
    }

    fn push(&mut self, class: usize, mut e: Entry<T>) {
        let lane = &mut self.lanes[class];
        let n = self.rows.all(&e.batch.records);
        self.records[class] += n;
        if let Some(back) = lane.back_mut() {
            let back_n = self.rows.all(&back.batch.records);
            if back_n + n <= self.merge {
                back.batch.records.append(&mut e.batch.records);
                back.weight += e.weight;
                back.batch.created = back.batch.created.min(e.batch.created);
                for a in e.batch.acks.drain(..) {
                    if !back
                        .batch
                        .acks
                        .iter()
                        .any(|b| std::sync::Arc::ptr_eq(&a, b))
                    {
                        back.batch.acks.push(a);
                    }
                }
                if let Some(c) = &mut back.classes {
                    c[class] = u32::try_from(back_n + n).unwrap_or(u32::MAX);
                }
                return;
            }
        } else {
            // A lane that becomes busy starts at the current virtual time.
            self.vt[class] = self.vt[class].max(self.vnow);
        }
        lane.push_back(e);
    }

    /// Moves every entry of the arrival queue to the lanes, oldest first, splitting mixed
    /// batches by class. `classify` returns one class per record.
    pub fn sort_in(
        &mut self,
        queue: &mut VecDeque<Entry<T>>,
        classify: &dyn Fn(&[T]) -> Vec<Priority>,
    ) {
        while let Some(e) = queue.pop_front() {
            let classes = classify(&e.batch.records);
            let first = classes.first().map_or(Priority::DEFAULT, |c| *c);
            if classes.iter().all(|c| *c == first) {
                self.push(first.index(), e);
                continue;
            }
            let mut counts = [0usize; CLASSES];
            for c in &classes {
                counts[c.index()] += 1;
            }
            let Entry { batch, weight, .. } = e;
            let Batch {
                records,
                created,
                acks,
            } = batch;
            let mut parts: [Vec<T>; CLASSES] =
                std::array::from_fn(|k| Vec::with_capacity(counts[k]));
            for (r, c) in records.into_iter().zip(&classes) {
                parts[c.index()].push(r);
            }
            // A clamped batch (more records than the capacity) holds the whole capacity; its
            // weight goes to the lowest classes first, which are taken last, so the credit
            // stays reserved while most of the batch waits.
            let mut left = weight;
            let mut split: Vec<(usize, Vec<T>, usize, usize)> = Vec::new();
            for (k, records) in parts.into_iter().enumerate() {
                if records.is_empty() {
                    continue;
                }
                let n = self.rows.all(&records);
                let w = n.min(left);
                left -= w;
                split.push((k, records, n, w));
            }
            // Credit the parts do not account for by their records (a batch of items without
            // rows still holds one credit): to the highest class, taken first.
            if let Some(last) = split.last_mut() {
                last.3 += left;
            }
            for (k, records, n, w) in split {
                let mut classes = [0u32; CLASSES];
                classes[k] = u32::try_from(n).unwrap_or(u32::MAX);
                self.push(
                    k,
                    Entry {
                        batch: Batch {
                            records,
                            created,
                            acks: acks.clone(),
                        },
                        weight: w,
                        classes: Some(classes),
                    },
                );
            }
        }
    }

    /// The lane the receiver is served from next.
    pub fn next_lane(&self) -> Option<usize> {
        let busy = |c: &usize| !self.lanes[*c].is_empty();
        match &self.shares {
            None => (0..CLASSES).rev().find(busy),
            Some(s) => (0..CLASSES)
                .rev()
                .filter(busy)
                .filter(|c| s.share[*c] > 0)
                .min_by_key(|c| self.vt[*c])
                .or_else(|| (0..CLASSES).rev().find(busy)),
        }
    }

    /// The highest class queued.
    pub fn top(&self) -> Option<usize> {
        (0..CLASSES).rev().find(|c| !self.lanes[*c].is_empty())
    }

    /// Takes the front of the next lane, merged with the entries behind it in the same lane
    /// while the total stays within `max` records. Returns the batch and its weight.
    pub fn pop(&mut self, max: usize) -> Option<(Batch<T>, usize)> {
        let lane = self.next_lane()?;
        let q = &mut self.lanes[lane];
        let first = q.pop_front()?;
        let mut batch = first.batch;
        let mut weight = first.weight;
        let mut n = self.rows.all(&batch.records);
        while let Some(next) = q.front() {
            let m = self.rows.all(&next.batch.records);
            if n + m > max {
                break;
            }
            let Some(mut e) = q.pop_front() else { break };
            n += m;
            weight += e.weight;
            if e.batch.created < batch.created {
                batch.created = e.batch.created;
            }
            batch.records.append(&mut e.batch.records);
            crate::ack::merge_acks(&mut batch.acks, &e.batch.acks);
        }
        self.records[lane] -= n;
        if let Some(s) = &self.shares {
            let cost = (n as u64 * VT_UNIT).checked_div(u64::from(s.share[lane]));
            if let Some(cost) = cost {
                self.vnow = self.vt[lane];
                self.vt[lane] = self.vt[lane].saturating_add(cost);
            }
        }
        Some((batch, weight))
    }

    /// Removes up to `n` of the oldest records of lane `class` (of counted records: the
    /// fewest whole items that hold `n`, or all). Returns them and the credit they held.
    pub fn evict_front(&mut self, class: usize, n: usize, out: &mut Vec<T>) -> usize {
        let mut freed = 0;
        let mut left = n;
        let mut removed = 0usize;
        let rows = self.rows;
        let q = &mut self.lanes[class];
        while left > 0 {
            let Some(front) = q.front_mut() else { break };
            let take = rows.covering(&front.batch.records, left);
            let before = out.len();
            out.extend(front.batch.records.drain(..take));
            let took = rows.all(&out[before..]);
            left = left.saturating_sub(took);
            removed += took;
            let new_w = front.weight.min(rows.all(&front.batch.records));
            freed += front.weight - new_w;
            front.weight = new_w;
            if let Some(c) = &mut front.classes {
                c[class] = c[class].saturating_sub(u32::try_from(took).unwrap_or(u32::MAX));
            }
            if front.batch.is_empty() {
                q.pop_front();
            }
        }
        self.records[class] -= removed;
        freed
    }

    /// The lowest class queued.
    pub fn bottom(&self) -> Option<usize> {
        (0..CLASSES).find(|c| !self.lanes[*c].is_empty())
    }

    /// Removes, from the front of every lane, the entries created more than `d` before
    /// `now`. Calls `dropped` with each one's records and class; returns the credit freed.
    pub fn expire(
        &mut self,
        now: Instant,
        d: Duration,
        dropped: &mut dyn FnMut(Vec<T>, Priority),
    ) -> usize {
        let mut freed = 0;
        for (class, q) in self.lanes.iter_mut().enumerate() {
            while q
                .front()
                .is_some_and(|e| now.saturating_duration_since(e.batch.created) > d)
            {
                let Some(e) = q.pop_front() else { break };
                freed += e.weight;
                self.records[class] -= self.rows.all(&e.batch.records);
                dropped(e.batch.records, Priority::rank(class as u8));
            }
        }
        freed
    }
}
