//! The defer log on its own: order, bounds, a torn tail after a crash, a damaged cursor.

#![allow(clippy::unwrap_used, missing_docs)]

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use sluice_engine::edge::{SpillError, SpillLog, SpillSpec};
use sluice_engine::JsonCodec;

fn spec(dir: &std::path::Path, max: u64) -> SpillSpec<u64> {
    SpillSpec {
        dir: dir.to_path_buf(),
        max_bytes: max,
        codec: Arc::new(JsonCodec::<u64>::new()),
    }
}

#[test]
fn appends_and_replays_in_order_then_compacts() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = SpillLog::open(&spec(dir.path(), 1 << 20), "a").unwrap();
    log.append(&[1, 2, 3], Instant::now()).unwrap();
    log.append(&[4, 5], Instant::now()).unwrap();
    assert_eq!(log.pending(), 5);
    let mut bad = 0;
    let (b, _, ack1) = log.read_batch(4, &mut bad).unwrap();
    assert_eq!(b, vec![1, 2, 3, 4]);
    let (b, _, ack2) = log.read_batch(4, &mut bad).unwrap();
    assert_eq!(b, vec![5]);
    assert_eq!(log.pending(), 0);
    // Everything was read but not yet delivered: the file stays until the acks complete.
    log.append(&[6], Instant::now()).unwrap();
    assert!(log.bytes() > 0);
    let (b, _, ack3) = log.read_batch(4, &mut bad).unwrap();
    assert_eq!(b, vec![6]);
    assert_eq!(log.replaying(), 3);
    drop((ack1, ack2, ack3));
    assert_eq!(log.replaying(), 0);
    log.append(&[7], Instant::now()).unwrap();
    assert_eq!(
        (log.pending(), log.bytes(), bad),
        (1, 17, 0),
        "the file was truncated before the append"
    );
}

#[test]
fn the_cursor_moves_only_over_replayed_batches_that_ended() {
    // Three batches replayed; the second ends first, then the first: the cursor moves over
    // both; the third never ends (the process is killed): a reopen replays exactly it.
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = SpillLog::open(&spec(dir.path(), 1 << 20), "acked").unwrap();
        log.append(&(0..9).collect::<Vec<u64>>(), Instant::now())
            .unwrap();
        let mut bad = 0;
        let (_, _, a1) = log.read_batch(3, &mut bad).unwrap();
        let (_, _, a2) = log.read_batch(3, &mut bad).unwrap();
        let (b3, _, a3) = log.read_batch(3, &mut bad).unwrap();
        assert_eq!(b3, vec![6, 7, 8]);
        drop(a2);
        drop(a1);
        std::mem::forget(a3); // killed before the last batch ended
    }
    let mut log = SpillLog::open(&spec(dir.path(), 1 << 20), "acked").unwrap();
    assert_eq!(log.restored, 3);
    assert_eq!(read_all(&mut log).0, vec![6, 7, 8]);
}

#[test]
fn an_abandoned_replay_holds_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = SpillLog::open(&spec(dir.path(), 1 << 20), "failed").unwrap();
        log.append(&(0..6).collect::<Vec<u64>>(), Instant::now())
            .unwrap();
        let mut bad = 0;
        let (_, _, a1) = log.read_batch(3, &mut bad).unwrap();
        let (_, _, a2) = log.read_batch(3, &mut bad).unwrap();
        a1.fail(); // the job aborted with these records in an edge
        drop((a1, a2));
    }
    let mut log = SpillLog::open(&spec(dir.path(), 1 << 20), "failed").unwrap();
    assert_eq!(read_all(&mut log).0, (0..6).collect::<Vec<_>>());
}

#[test]
fn cap_refuses_whole_appends() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = SpillLog::open(&spec(dir.path(), 40), "b").unwrap();
    log.append(&[7], Instant::now()).unwrap(); // 16-byte header + 1 byte
    assert!(matches!(
        log.append(&[8, 9], Instant::now()),
        Err(SpillError::Full { max_bytes: 40 })
    ));
    assert_eq!(log.pending(), 1, "nothing of a refused append was written");
}

#[test]
fn reopen_restores_pending_and_truncates_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = SpillLog::open(&spec(dir.path(), 1 << 20), "c").unwrap();
        log.append(&[10, 11, 12, 13], Instant::now()).unwrap();
        let mut bad = 0;
        let (b, _, ack) = log.read_batch(1, &mut bad).unwrap();
        assert_eq!(b, vec![10]);
        drop(ack);
    }
    // A crash mid-write leaves half a frame at the end.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("c.log"))
        .unwrap();
    f.write_all(&[5, 0, 0, 0, 1, 2]).unwrap();
    drop(f);
    let mut log = SpillLog::open(&spec(dir.path(), 1 << 20), "c").unwrap();
    assert_eq!(log.restored, 3, "the cursor remembered what was replayed");
    assert_eq!(log.health.truncated_bytes, 6);
    let mut bad = 0;
    let (b, _, _) = log.read_batch(10, &mut bad).unwrap();
    assert_eq!(b, vec![11, 12, 13]);
}

#[test]
fn damaged_cursor_replays_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = SpillLog::open(&spec(dir.path(), 1 << 20), "d").unwrap();
        log.append(&[1, 2, 3], Instant::now()).unwrap();
        let mut bad = 0;
        drop(log.read_batch(2, &mut bad).unwrap());
    }
    std::fs::write(dir.path().join("d.cursor"), b"garbage").unwrap();
    let log = SpillLog::open(&spec(dir.path(), 1 << 20), "d").unwrap();
    // At least once: without a valid cursor every frame is pending again.
    assert_eq!(log.restored, 3);
}

/// Writes records `0..n` one per frame to log `name` and returns each frame's offset.
fn write_frames(dir: &std::path::Path, name: &str, n: u64) -> Vec<u64> {
    let mut log = SpillLog::open(&spec(dir, 1 << 30), name).unwrap();
    let mut offsets = Vec::new();
    for i in 0..n {
        offsets.push(log.bytes());
        log.append(&[i], Instant::now()).unwrap();
    }
    offsets
}

fn read_all(log: &mut SpillLog<u64>) -> (Vec<u64>, u64) {
    let mut bad = 0;
    let mut out = Vec::new();
    loop {
        let (b, _, _ack) = log.read_batch(100, &mut bad).unwrap();
        if b.is_empty() && log.pending() == 0 {
            return (out, bad);
        }
        out.extend(b);
    }
}

fn patch(path: &std::path::Path, at: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

#[test]
fn a_flipped_payload_byte_costs_one_frame_not_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let offs = write_frames(dir.path(), "flip", 1000);
    // Frame 10's payload is "10": make it "1?".
    patch(&dir.path().join("flip.log"), offs[10] + 17, b"?");
    let mut log = SpillLog::open(&spec(dir.path(), 1 << 30), "flip").unwrap();
    assert_eq!((log.restored, log.health.corrupt_frames), (999, 1));
    assert_eq!(
        (log.health.skipped_bytes, log.health.truncated_bytes),
        (0, 0)
    );
    let (got, bad) = read_all(&mut log);
    let want: Vec<u64> = (0..1000).filter(|&i| i != 10).collect();
    assert_eq!((got, bad), (want, 0));
}

#[test]
fn a_damaged_length_is_neither_trusted_nor_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let offs = write_frames(dir.path(), "len", 1000);
    // An absurd length (4 GB) in frame 10, and a plausible wrong one in frame 20.
    patch(
        &dir.path().join("len.log"),
        offs[10],
        &0xFFFF_FFF0u32.to_le_bytes(),
    );
    patch(&dir.path().join("len.log"), offs[20], &7u32.to_le_bytes());
    let mut log = SpillLog::open(&spec(dir.path(), 1 << 30), "len").unwrap();
    assert_eq!(
        log.restored, 998,
        "resynchronized on the next frame each time"
    );
    assert_eq!(
        log.health.skipped_bytes,
        (offs[11] - offs[10]) + (offs[21] - offs[20]),
        "exactly the damaged frames' bytes"
    );
    let (got, _) = read_all(&mut log);
    let want: Vec<u64> = (0..1000).filter(|&i| i != 10 && i != 20).collect();
    assert_eq!(got, want);
}

#[test]
fn a_cursor_off_a_frame_boundary_replays_everything_instead_of_wiping_the_log() {
    for (name, cursor) in [("past", 1u64 << 40), ("inside", 5u64)] {
        let dir = tempfile::tempdir().unwrap();
        write_frames(dir.path(), name, 50);
        // A cursor with a valid checksum at an offset that is not a frame's start.
        let mut b = cursor.to_le_bytes().to_vec();
        b.extend_from_slice(&crc32fast::hash(&cursor.to_le_bytes()).to_le_bytes());
        std::fs::write(dir.path().join(format!("{name}.cursor")), b).unwrap();
        let mut log = SpillLog::open(&spec(dir.path(), 1 << 30), name).unwrap();
        assert!(log.health.cursor_reset, "{name}");
        assert_eq!(log.restored, 50, "{name}: at least once, never wiped");
        assert_eq!(read_all(&mut log).0, (0..50).collect::<Vec<_>>());
    }
}

#[test]
fn a_cursor_that_cannot_be_written_loses_no_record() {
    let dir = tempfile::tempdir().unwrap();
    write_frames(dir.path(), "cur", 20);
    // The cursor's path is a directory: every cursor write fails.
    std::fs::create_dir(dir.path().join("cur.cursor")).unwrap();
    let mut log = SpillLog::open(&spec(dir.path(), 1 << 30), "cur").unwrap();
    let mut bad = 0;
    let (a, _, ack) = log.read_batch(8, &mut bad).unwrap();
    assert_eq!(
        a,
        (0..8).collect::<Vec<_>>(),
        "handed out despite the cursor"
    );
    drop(ack); // delivered: the cursor write is attempted, and fails
    assert!(log.health().io_errors >= 1);
    drop(log);
    // Reopened: the cursor is unreadable, so the 8 come again (duplicates, counted as a
    // reset), and nothing is missing.
    let mut log = SpillLog::open(&spec(dir.path(), 1 << 30), "cur").unwrap();
    assert!(log.health.cursor_reset);
    assert_eq!(read_all(&mut log).0, (0..20).collect::<Vec<_>>());
}

#[test]
fn damage_while_the_job_runs_is_counted_not_spread() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = SpillLog::open(&spec(dir.path(), 1 << 30), "live").unwrap();
    let mut offs = Vec::new();
    for i in 0..100u64 {
        offs.push(log.bytes());
        log.append(&[i], Instant::now()).unwrap();
    }
    patch(&dir.path().join("live.log"), offs[50] + 17, b"?");
    patch(
        &dir.path().join("live.log"),
        offs[70],
        &0xFFFF_FFF0u32.to_le_bytes(),
    );
    let (got, bad) = read_all(&mut log);
    let want: Vec<u64> = (0..100).filter(|&i| i != 50 && i != 70).collect();
    assert_eq!(got, want, "everything after the damage still replays");
    assert_eq!(bad, 2, "the two damaged records are counted");
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any damage: what is recovered is a subsequence of what was written, in order;
        /// each damaged spot costs at most the frame it hits; nothing panics or allocates
        /// from a damaged length.
        #[test]
        fn recovers_what_decodes(
            n in 1u64..200,
            damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
            torn in 0usize..20,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let offs = write_frames(dir.path(), "p", n);
            let path = dir.path().join("p.log");
            let len = std::fs::metadata(&path).unwrap().len();
            for (at, byte) in &damage {
                patch(&path, at.index(len as usize) as u64, &[*byte]);
            }
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(len - (torn as u64).min(len - offs[offs.len() - 1])).unwrap();
            drop(f);
            let mut log = SpillLog::open(&spec(dir.path(), 1 << 30), "p").unwrap();
            let restored = log.restored;
            let (got, bad) = read_all(&mut log);
            prop_assert_eq!(bad, 0);
            prop_assert_eq!(got.len() as u64, restored);
            prop_assert!(got.windows(2).all(|w| w[0] < w[1]), "in order, no duplicates");
            prop_assert!(got.iter().all(|&r| r < n));
            let hits = damage.len() as u64 + u64::from(torn > 0);
            prop_assert!(n - got.len() as u64 <= hits, "lost {} of {n} for {hits} damages", n - got.len() as u64);
        }
    }
}

#[test]
fn a_full_disk_is_a_full_log_not_an_error() {
    // /dev/full fails every write with ENOSPC, as a full disk does.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.path().join("disk.log")).unwrap();
    let mut log = SpillLog::open(&spec(dir.path(), 1 << 20), "disk").unwrap();
    assert!(matches!(
        log.append(&[1, 2, 3], Instant::now()),
        Err(SpillError::Full { .. })
    ));
    assert_eq!(log.pending(), 0, "nothing counted as deferred");
}
