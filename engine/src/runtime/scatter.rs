//! Moving the records of a batch into per-target buffers: the inner loop of the hash
//! exchange.
//!
//! The safe form, `bufs[t].push(r)` per record, checks the target's capacity and stores its
//! length through memory on every record (the compiler cannot keep `len` of a `Vec` behind a
//! slice of `Vec`s in a register), and copies each record through the stack. On W1's source
//! thread that loop cost about as much as generating, mapping and filtering together. This
//! module counts the records per target first, reserves once per target and batch, then copies
//! each record straight to its target's end with raw pointers: one load and one store per
//! word of the record. `sluice bench pipeline --parallelism 2` measures it against the safe
//! loop it replaces (see the README's W1 section).
#![allow(unsafe_code)]

use std::mem::ManuallyDrop;

/// Up to this many targets, counting takes one pass per target.
const FEW: usize = 8;

/// Moves `records[i]` to the end of `bufs[targets[i]]`, for every `i`, in order; `counts` is
/// scratch space (left holding the records moved to each target). A buffer without an
/// allocation gets room for `fresh` records more than it receives (a batch and the overshoot
/// of this input).
///
/// If `targets` does not have one entry per record, or names a target outside `bufs`, the
/// records move by the safe loop instead (with `targets` cycled and clamped): never undefined
/// behaviour, whatever the caller passes. The hash exchange always passes one valid target
/// per record.
pub(crate) fn scatter<T>(
    records: Vec<T>,
    targets: &[u32],
    bufs: &mut [Vec<T>],
    counts: &mut Vec<usize>,
    fresh: usize,
) {
    let n = bufs.len();
    counts.clear();
    counts.resize(n, 0);
    let mut valid = targets.len() == records.len() && n > 0;
    if valid && n <= FEW {
        // One vectorized pass per target (an increment in memory per record waits for the
        // previous one to the same counter).
        for (i, c) in counts.iter_mut().enumerate() {
            *c = targets.iter().filter(|&&t| t as usize == i).count();
        }
        valid = counts.iter().sum::<usize>() == targets.len();
    } else if valid {
        for &t in targets {
            match counts.get_mut(t as usize) {
                Some(c) => *c += 1,
                None => {
                    valid = false;
                    break;
                }
            }
        }
    }
    if !valid {
        scatter_safe(records, targets, bufs, counts);
        return;
    }
    for (buf, &c) in bufs.iter_mut().zip(counts.iter()) {
        if buf.capacity() == 0 {
            buf.reserve_exact(fresh.saturating_add(c));
        } else {
            buf.reserve(c);
        }
    }
    // The next free slot of each target.
    let mut ends: Vec<*mut T> = bufs
        .iter_mut()
        // SAFETY: `len <= capacity`, so `ptr + len` is within (or one past) the allocation.
        .map(|b| unsafe { b.as_mut_ptr().add(b.len()) })
        .collect();
    let mut src = ManuallyDrop::new(records);
    let from = src.as_mut_ptr();
    if let [e0, e1] = ends[..] {
        // Two targets: both cursors stay in registers, and the target selects one without
        // a branch (with the cursors in memory, each record waited for the store of the
        // previous one to the same target).
        let (mut e0, mut e1) = (e0, e1);
        for (i, &t) in targets.iter().enumerate() {
            let to_1 = usize::from(t != 0);
            let dst = if to_1 == 0 { e0 } else { e1 };
            // SAFETY: as in the general loop below, with `ends` in `e0` and `e1`.
            unsafe {
                std::ptr::copy_nonoverlapping(from.add(i), dst, 1);
                e0 = e0.add(1 - to_1);
                e1 = e1.add(to_1);
            }
        }
    } else {
        for (i, &t) in targets.iter().enumerate() {
            let end = &mut ends[t as usize];
            // SAFETY: `i < records.len()` (one target per record, checked above), so
            // `from + i` is an initialized record, read exactly once. `bufs[t]` has room for
            // `counts[t]` more records (reserved above) and this loop writes exactly
            // `counts[t]` records there, so `*end` stays within its allocation; source and
            // destination are different allocations.
            unsafe {
                std::ptr::copy_nonoverlapping(from.add(i), *end, 1);
                *end = end.add(1);
            }
        }
    }
    // SAFETY: every record of `src` was moved out above: its length becomes 0 so dropping it
    // frees the allocation without dropping the records again. Nothing between the moves and
    // here can panic, so no record is dropped twice or leaked on unwinding.
    unsafe {
        src.set_len(0);
        ManuallyDrop::drop(&mut src);
    }
    for (buf, &c) in bufs.iter_mut().zip(counts.iter()) {
        // SAFETY: the `c` slots after `len` were initialized by the loop above and are within
        // the capacity reserved for them.
        unsafe { buf.set_len(buf.len() + c) };
    }
}

/// The safe loop, for inputs `scatter` does not trust.
fn scatter_safe<T>(records: Vec<T>, targets: &[u32], bufs: &mut [Vec<T>], counts: &mut [usize]) {
    counts.iter_mut().for_each(|c| *c = 0);
    let n = bufs.len();
    if n == 0 || targets.is_empty() {
        // Nowhere to put them: keep them in the first buffer if any (never dropped here).
        if let Some(b) = bufs.first_mut() {
            if let Some(c) = counts.first_mut() {
                *c += records.len();
            }
            b.extend(records);
        }
        return;
    }
    for (i, r) in records.into_iter().enumerate() {
        let t = (targets[i % targets.len()] as usize).min(n - 1);
        bufs[t].push(r);
        counts[t] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(records: Vec<String>, targets: &[u32], n: usize) -> (Vec<Vec<String>>, Vec<usize>) {
        let mut bufs: Vec<Vec<String>> = (0..n).map(|i| vec![format!("old{i}")]).collect();
        let mut counts = Vec::new();
        scatter(records, targets, &mut bufs, &mut counts, 4);
        (bufs, counts)
    }

    #[test]
    fn records_move_to_their_targets_in_order_after_what_was_buffered() {
        let recs: Vec<String> = (0..7).map(|i| i.to_string()).collect();
        let (bufs, counts) = run(recs, &[1, 0, 1, 2, 1, 0, 2], 3);
        assert_eq!(bufs[0], ["old0", "1", "5"]);
        assert_eq!(bufs[1], ["old1", "0", "2", "4"]);
        assert_eq!(bufs[2], ["old2", "3", "6"]);
        assert_eq!(counts, [2, 3, 2]);
    }

    #[test]
    fn two_targets_keep_the_order_of_each() {
        let recs: Vec<String> = (0..9).map(|i| i.to_string()).collect();
        let (bufs, counts) = run(recs, &[1, 0, 0, 1, 1, 1, 0, 1, 0], 2);
        assert_eq!(bufs[0], ["old0", "1", "2", "6", "8"]);
        assert_eq!(bufs[1], ["old1", "0", "3", "4", "5", "7"]);
        assert_eq!(counts, [4, 5]);
    }

    #[test]
    fn untrusted_targets_take_the_safe_loop_and_lose_nothing() {
        let recs: Vec<String> = (0..4).map(|i| i.to_string()).collect();
        // A target out of range is clamped to the last buffer.
        let (bufs, counts) = run(recs.clone(), &[0, 9, 1, 0], 2);
        assert_eq!(bufs[0], ["old0", "0", "3"]);
        assert_eq!(bufs[1], ["old1", "1", "2"]);
        assert_eq!(counts, [2, 2]);
        // Fewer targets than records: cycled.
        let (bufs, counts) = run(recs, &[1], 2);
        assert_eq!(bufs[1].len(), 5);
        assert_eq!(counts, [0, 4]);
    }

    #[test]
    fn a_growing_buffer_keeps_its_records() {
        let mut bufs = vec![Vec::new(), Vec::with_capacity(1)];
        let mut counts = Vec::new();
        for round in 0..50u32 {
            let recs: Vec<Box<u32>> = (0..100).map(|i| Box::new(round * 100 + i)).collect();
            let targets: Vec<u32> = (0..100).map(|i| u32::from(i % 3 == 0)).collect();
            scatter(recs, &targets, &mut bufs, &mut counts, 0);
        }
        assert_eq!(bufs[0].len() + bufs[1].len(), 5000);
        let mut all: Vec<u32> = bufs.concat().into_iter().map(|b| *b).collect();
        all.sort_unstable();
        assert!(all.iter().copied().eq(0..5000));
    }

    proptest::proptest! {
        /// Against `push` per record, for 1 to 12 targets (both fast paths and the general
        /// one), buffers that start empty, unallocated or partly full, and records that own
        /// memory (a double drop or a leak shows as a wrong string or a crash).
        #[test]
        fn matches_a_push_per_record(
            n in 1usize..12,
            picks in proptest::collection::vec(0u32..1000, 0..300),
            start in proptest::collection::vec(0usize..5, 12),
        ) {
            let targets: Vec<u32> = picks.iter().map(|&p| p % n as u32).collect();
            let records: Vec<String> = (0..picks.len()).map(|i| format!("r{i}")).collect();
            let fresh = |t: usize| -> Vec<String> {
                (0..start[t]).map(|j| format!("old{t}.{j}")).collect()
            };
            let mut want: Vec<Vec<String>> = (0..n).map(fresh).collect();
            for (r, &t) in records.iter().zip(&targets) {
                want[t as usize].push(r.clone());
            }
            let mut got: Vec<Vec<String>> = (0..n).map(fresh).collect();
            let mut counts = Vec::new();
            scatter(records, &targets, &mut got, &mut counts, 8);
            proptest::prop_assert_eq!(&got, &want);
            for t in 0..n {
                proptest::prop_assert_eq!(counts[t], want[t].len() - start[t]);
            }
        }
    }
}
