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
    let (b, _) = log.read_batch(4, &mut bad).unwrap();
    assert_eq!(b, vec![1, 2, 3, 4]);
    let (b, _) = log.read_batch(4, &mut bad).unwrap();
    assert_eq!(b, vec![5]);
    assert_eq!(
        (log.pending(), log.bytes(), bad),
        (0, 0, 0),
        "empty log truncated"
    );
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
        let (b, _) = log.read_batch(1, &mut bad).unwrap();
        assert_eq!(b, vec![10]);
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
    assert_eq!(log.truncated_bytes, 6);
    let mut bad = 0;
    let (b, _) = log.read_batch(10, &mut bad).unwrap();
    assert_eq!(b, vec![11, 12, 13]);
}

#[test]
fn damaged_cursor_replays_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = SpillLog::open(&spec(dir.path(), 1 << 20), "d").unwrap();
        log.append(&[1, 2, 3], Instant::now()).unwrap();
        let mut bad = 0;
        log.read_batch(2, &mut bad).unwrap();
    }
    std::fs::write(dir.path().join("d.cursor"), b"garbage").unwrap();
    let log = SpillLog::open(&spec(dir.path(), 1 << 20), "d").unwrap();
    // At least once: without a valid cursor every frame is pending again.
    assert_eq!(log.restored, 3);
}
