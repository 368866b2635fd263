//! The defer log: a bounded, append-only file of records an edge set aside under pressure,
//! replayed in the order they were deferred when the edge has spare capacity, and kept
//! across restarts of the job.
//!
//! # Format
//! `<name>.log` is a sequence of frames:
//!
//! ```text
//! +----------+----------+-----------------+---------------------+
//! | len: u32 | crc: u32 | created: u64 ns | payload (len bytes) |    little endian
//! +----------+----------+-----------------+---------------------+
//! ```
//!
//! For items counted in rows ([`crate::rows`]) the payload starts with the item's row count
//! (a u32), then the codec's bytes: the log counts pending records in rows, at open too.
//!
//! `crc` is the CRC-32 of `created` and the payload; `created` is the wall-clock time (ns
//! since the Unix epoch) the record's batch was created, so latency measured at a sink
//! includes the time a record spent deferred. `<name>.cursor` holds the byte offset of the
//! first frame not yet replayed (a u64 and its CRC-32). When everything has been replayed the
//! log is truncated to empty.
//!
//! # Durability
//! Frames are written with `write` (no `fsync`): they survive the job process being killed,
//! not the machine losing power. A replayed batch carries an [`Ack`]; the cursor moves past
//! it only once that ack completes, that is once every record of the batch has ended
//! (delivered, dropped by a policy, dead-lettered), and only over a contiguous prefix of
//! completed batches. So a process killed while replayed records sit in an edge or a sink
//! replays them again after the restart (at least once), never loses them; and the file is
//! truncated (compacted) only when everything was read *and* every replayed batch ended. A
//! cursor that cannot be written (a full disk, a path that is a directory) never costs
//! records: the failure is counted ([`DeferHealth::io_errors`]) and a restart may replay them
//! twice.
//!
//! # Recovery
//! Opening a log reads every frame and trusts nothing:
//! - a frame whose checksum fails but whose length leads to a valid frame (or to the end) is
//!   skipped by its length, one record lost and counted ([`DeferHealth::corrupt_frames`]);
//! - otherwise (the length itself is damaged) the reader resynchronizes on the next offset
//!   where a valid frame starts; the bytes in between are counted
//!   ([`DeferHealth::skipped_bytes`]);
//! - a last frame cut short with no valid frame after it is a torn tail (a crash mid-write):
//!   it is truncated and counted ([`DeferHealth::truncated_bytes`]);
//! - the cursor counts only when it names a frame boundary; a missing, damaged or stray one
//!   (past the end, inside a frame) restarts replay at the first frame
//!   ([`DeferHealth::cursor_reset`]): duplicates rather than loss.
//!
//! A length is never used to allocate before it is checked against [`MAX_FRAME`] and against
//! the bytes the file actually holds.
//!
//! # Bounds
//! The log never grows past `max_bytes`; an append that would is refused with
//! [`SpillError::Full`] and the edge's defer configuration decides (block or drop, counted).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::ack::{Ack, AckOutcome, AckToken};
use crate::codec::Codec;
use crate::rows::Rows;

const HEADER: usize = 16;

/// The largest frame payload a log accepts (one record's encoding), 16 MiB: a length field
/// above it is corrupt.
pub const MAX_FRAME: u64 = 16 << 20;

/// How far the resynchronizing reader looks at once: it starts small (damage is usually one
/// frame) and doubles up to this.
const SCAN_CHUNK: usize = 1 << 20;

/// Why the defer log refused or failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    /// Appending would grow the log past its size cap, or the disk is full.
    #[error("defer log is full ({max_bytes} bytes)")]
    Full {
        /// The cap, or the log's size when the disk filled.
        max_bytes: u64,
    },
    /// The record could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] crate::codec::CodecError),
    /// The file system failed.
    #[error("defer log I/O: {0}")]
    Io(#[from] io::Error),
}

/// Where and how an edge defers records; one log file per downstream instance.
pub struct SpillSpec<T> {
    /// Directory of the log files (created if missing).
    pub dir: PathBuf,
    /// Size cap of each log file, in bytes.
    pub max_bytes: u64,
    /// Record encoding.
    pub codec: Arc<dyn Codec<T>>,
}

impl<T> Clone for SpillSpec<T> {
    fn clone(&self) -> Self {
        SpillSpec {
            dir: self.dir.clone(),
            max_bytes: self.max_bytes,
            codec: self.codec.clone(),
        }
    }
}

/// An open defer log.
pub struct SpillLog<T> {
    data: File,
    data_path: PathBuf,
    cursor_path: PathBuf,
    read_off: u64,
    write_off: u64,
    max_bytes: u64,
    codec: Arc<dyn Codec<T>>,
    /// How items are counted; counted items carry their row count in the frame.
    rows: Rows<T>,
    pending: u64,
    /// Records found pending when the log was opened (deferred by an earlier run).
    pub restored: u64,
    /// What recovery found at open, and the I/O failures since.
    pub health: DeferHealth,
    /// Damaged regions found at open, `(start, end)`, skipped when replay reaches them.
    skips: std::collections::VecDeque<(u64, u64)>,
    buf: Vec<u8>,
    /// The persisted cursor, moved by the acks of replayed batches.
    durable: Arc<Mutex<Durable>>,
}

/// What a replayed batch's ack did: its records all ended, or some were abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    Out,
    Ended,
    Abandoned,
}

/// The persisted cursor and the replayed batches it waits for, shared with their acks.
#[derive(Debug)]
struct Durable {
    cursor_path: PathBuf,
    /// Replayed batches in read order: the offset just past each, and how it ended.
    outstanding: std::collections::VecDeque<(u64, Replay)>,
    /// Cursor writes that failed.
    io_errors: u64,
}

impl Durable {
    /// The batch ending at `end` ended; moves the cursor over the completed prefix. An
    /// abandoned batch (the job aborted) holds the cursor where it is: a restart replays it.
    fn complete(&mut self, end: u64, outcome: AckOutcome) {
        if let Some(e) = self.outstanding.iter_mut().find(|e| e.0 == end) {
            e.1 = match outcome {
                AckOutcome::Done => Replay::Ended,
                AckOutcome::Failed => Replay::Abandoned,
            };
        }
        let mut advance = None;
        while let Some(&(end, Replay::Ended)) = self.outstanding.front() {
            advance = Some(end);
            self.outstanding.pop_front();
        }
        if let Some(off) = advance {
            if write_cursor(&self.cursor_path, off).is_err() {
                self.io_errors += 1;
            }
        }
    }
}

/// What a defer log recovered and failed to, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeferHealth {
    /// Bytes of a torn tail truncated at open.
    pub truncated_bytes: u64,
    /// Bytes skipped between frames (a damaged length), at open or while replaying.
    pub skipped_bytes: u64,
    /// Frames skipped at open because their checksum failed.
    pub corrupt_frames: u64,
    /// Cursor writes and truncations that failed.
    pub io_errors: u64,
    /// The cursor was not usable at open; replay restarted at the first frame.
    pub cursor_reset: bool,
}

/// What is at an offset of the log.
enum Frame {
    /// A frame that checks out: its payload length and creation time (payload in the buffer).
    Valid { len: u64, created: u64 },
    /// A complete frame whose checksum fails, or whose length is implausible.
    Corrupt { len: Option<u64> },
    /// Fewer bytes than the frame says it has.
    Short,
}

/// Reads the frame at `off`, its payload into `payload`, never reading past `end` nor
/// allocating more than [`MAX_FRAME`].
fn frame_at(data: &File, off: u64, end: u64, payload: &mut Vec<u8>) -> io::Result<Frame> {
    if off + HEADER as u64 > end {
        return Ok(Frame::Short);
    }
    let mut header = [0u8; HEADER];
    data.read_exact_at(&mut header, off)?;
    let (len, sum, created) = parse_header(&header);
    if len > MAX_FRAME {
        return Ok(Frame::Corrupt { len: None });
    }
    if off + HEADER as u64 + len > end {
        return Ok(Frame::Short);
    }
    payload.resize(len as usize, 0);
    data.read_exact_at(payload, off + HEADER as u64)?;
    Ok(if crc(created, payload) == sum {
        Frame::Valid { len, created }
    } else {
        Frame::Corrupt { len: Some(len) }
    })
}

fn parse_header(h: &[u8; HEADER]) -> (u64, u32, u64) {
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as u64;
    let sum = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let created = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
    (len, sum, created)
}

/// The first offset after `from` (and before `end`) where a valid frame starts.
fn resync(data: &File, from: u64, end: u64, payload: &mut Vec<u8>) -> io::Result<Option<u64>> {
    let mut chunk = Vec::new();
    let mut size = 4096;
    let mut pos = from + 1;
    while pos + HEADER as u64 <= end {
        chunk.resize(size + HEADER, 0);
        size = (size * 2).min(SCAN_CHUNK);
        let n = ((end - pos) as usize).min(chunk.len());
        data.read_exact_at(&mut chunk[..n], pos)?;
        let last = n.saturating_sub(HEADER);
        for i in 0..=last {
            let h: &[u8; HEADER] = match chunk[i..i + HEADER].try_into() {
                Ok(h) => h,
                Err(_) => break,
            };
            let (len, _, _) = parse_header(h);
            let at = pos + i as u64;
            // Only plausible candidates are checked in full.
            if len <= MAX_FRAME && at + HEADER as u64 + len <= end {
                if let Frame::Valid { .. } = frame_at(data, at, end, payload)? {
                    return Ok(Some(at));
                }
            }
        }
        pos += (last + 1) as u64;
    }
    Ok(None)
}

/// What a scan of `[start, end)` found.
#[derive(Default)]
struct Scan {
    /// Offsets of valid frames, in order.
    frames: Vec<u64>,
    /// The records each valid frame holds (1, or the row count it starts with).
    records: Vec<u64>,
    /// Damaged regions `(start, end, one corrupt frame skipped by its length)`.
    skips: Vec<(u64, u64, bool)>,
    /// Where the valid data ends (a torn tail starts here).
    end: u64,
}

/// The records a frame's payload holds: 1, or (counted) the row count it starts with.
fn frame_records(counted: bool, payload: &[u8]) -> u64 {
    match payload.get(..4) {
        Some(b) if counted => u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        _ => 1,
    }
}

fn scan(
    data: &File,
    start: u64,
    end: u64,
    payload: &mut Vec<u8>,
    counted: bool,
) -> io::Result<Scan> {
    let mut out = Scan::default();
    let mut off = start;
    while off < end {
        let claimed = match frame_at(data, off, end, payload)? {
            Frame::Valid { len, .. } => {
                out.frames.push(off);
                out.records.push(frame_records(counted, payload));
                off += HEADER as u64 + len;
                continue;
            }
            Frame::Corrupt { len } => len,
            Frame::Short => None,
        };
        // The next valid frame. Skipping by the damaged frame's own length would trust it: a
        // damaged length that happens to land on a later frame would hide the ones between.
        let next = match resync(data, off, end, payload)? {
            Some(next) => next,
            None if claimed.is_some_and(|l| off + HEADER as u64 + l == end) => end,
            None => break, // a torn tail from `off`
        };
        // One frame whose length was right (its payload or header damaged), or a stretch of
        // bytes that could not be framed.
        let one_frame = claimed.is_some_and(|l| off + HEADER as u64 + l == next);
        out.skips.push((off, next, one_frame));
        off = next;
    }
    out.end = off.min(end);
    Ok(out)
}

fn wall_ns(created: Instant) -> u64 {
    let age = created.elapsed();
    SystemTime::now()
        .checked_sub(age)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64)
}

fn instant_of(wall: u64) -> Instant {
    let now_wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let age = Duration::from_nanos(now_wall.saturating_sub(wall));
    Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
}

fn crc(created: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&created.to_le_bytes());
    h.update(payload);
    h.finalize()
}

impl<T> SpillLog<T> {
    /// Opens (or creates) the log `name` in `spec.dir`, validating what an earlier run left.
    ///
    /// # Errors
    /// When the directory or files cannot be created or read.
    pub fn open(spec: &SpillSpec<T>, name: &str) -> Result<Self, SpillError> {
        Self::open_counted(spec, name, Rows::ONE)
    }

    /// Like [`SpillLog::open`], for items counted by `rows` (the edge's count: pending,
    /// restored and lost records are then rows).
    ///
    /// # Errors
    /// As [`SpillLog::open`].
    pub fn open_counted(
        spec: &SpillSpec<T>,
        name: &str,
        rows: Rows<T>,
    ) -> Result<Self, SpillError> {
        std::fs::create_dir_all(&spec.dir)?;
        let data_path = spec.dir.join(format!("{name}.log"));
        let cursor_path = spec.dir.join(format!("{name}.cursor"));
        let data = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&data_path)?;
        let len = data.metadata()?.len();
        let mut payload = Vec::new();
        let found = scan(&data, 0, len, &mut payload, rows.is_counted())?;
        let truncated_bytes = len - found.end;
        if truncated_bytes > 0 {
            data.set_len(found.end)?;
        }
        // The cursor counts only on a frame boundary (or at the end of the valid data).
        let cursor = read_cursor(&cursor_path);
        let on_boundary = |c: u64| c == found.end || found.frames.binary_search(&c).is_ok();
        let (read_off, cursor_reset) = match cursor {
            Some(c) if on_boundary(c) => (c, false),
            // No cursor and nothing to replay is a fresh log, not a reset.
            None if found.frames.is_empty() => (0, false),
            _ => (found.frames.first().copied().unwrap_or(found.end), true),
        };
        let pending: u64 = found
            .frames
            .iter()
            .zip(&found.records)
            .filter(|(&f, _)| f >= read_off)
            .map(|(_, n)| n)
            .sum();
        // Damage behind the cursor was replayed before it happened (or does not matter).
        let ahead: Vec<(u64, u64, bool)> = found
            .skips
            .iter()
            .copied()
            .filter(|&(a, _, _)| a >= read_off)
            .collect();
        let corrupt_frames = ahead.iter().filter(|s| s.2).count() as u64;
        let skipped_bytes: u64 = ahead.iter().filter(|s| !s.2).map(|s| s.1 - s.0).sum();
        let mut log = SpillLog {
            data,
            data_path,
            durable: Arc::new(Mutex::new(Durable {
                cursor_path: cursor_path.clone(),
                outstanding: std::collections::VecDeque::new(),
                io_errors: 0,
            })),
            cursor_path,
            read_off,
            write_off: found.end,
            max_bytes: spec.max_bytes,
            codec: spec.codec.clone(),
            rows,
            pending,
            restored: pending,
            health: DeferHealth {
                truncated_bytes,
                skipped_bytes,
                corrupt_frames,
                io_errors: 0,
                cursor_reset,
            },
            skips: ahead.iter().map(|&(a, b, _)| (a, b)).collect(),
            buf: Vec::new(),
        };
        if pending == 0 && log.write_off > 0 {
            // Fully replayed earlier (or nothing readable left): start afresh.
            log.data.set_len(0)?;
            log.write_off = 0;
            log.read_off = 0;
            log.skips.clear();
            write_cursor(&log.cursor_path, 0)?;
        }
        Ok(log)
    }

    /// What recovery found and what failed since.
    pub fn health(&self) -> DeferHealth {
        let mut h = self.health;
        h.io_errors += self.durable.lock().io_errors;
        h
    }

    /// Replayed batches whose records have not all ended yet (the cursor waits for them).
    pub fn replaying(&self) -> usize {
        self.durable.lock().outstanding.len()
    }

    /// Truncates the file once everything in it was read and every replayed batch ended.
    fn compact_if_done(&mut self) {
        if self.write_off == 0 || self.read_off < self.write_off {
            return;
        }
        if !self.durable.lock().outstanding.is_empty() {
            return;
        }
        if self.data.set_len(0).is_err() || write_cursor(&self.cursor_path, 0).is_err() {
            self.health.io_errors += 1;
            return;
        }
        self.read_off = 0;
        self.write_off = 0;
        self.skips.clear();
    }

    /// Records deferred and not yet replayed.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Bytes the log file occupies.
    pub fn bytes(&self) -> u64 {
        self.write_off
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.data_path
    }

    /// Appends records created at `created`. All or nothing: on error nothing was written.
    ///
    /// # Errors
    /// [`SpillError::Full`] when the records do not fit under the cap, a codec or I/O error
    /// otherwise.
    pub fn append(&mut self, records: &[T], created: Instant) -> Result<(), SpillError> {
        self.compact_if_done();
        let wall = wall_ns(created);
        self.buf.clear();
        let mut payload = Vec::new();
        let counted = self.rows.is_counted();
        for r in records {
            payload.clear();
            if counted {
                let n = u32::try_from(self.rows.of(r)).map_err(|_| {
                    SpillError::Codec(crate::CodecError::invalid(
                        "an item of more than 4,294,967,295 rows",
                    ))
                })?;
                payload.extend_from_slice(&n.to_le_bytes());
            }
            self.codec.encode(r, &mut payload)?;
            if payload.len() as u64 > MAX_FRAME {
                // It could not be read back: refused now rather than lost at replay.
                return Err(SpillError::Codec(crate::CodecError::invalid(format!(
                    "an item encodes to {} bytes, more than a defer log frame holds ({MAX_FRAME})",
                    payload.len()
                ))));
            }
            self.buf
                .extend_from_slice(&(payload.len() as u32).to_le_bytes());
            self.buf
                .extend_from_slice(&crc(wall, &payload).to_le_bytes());
            self.buf.extend_from_slice(&wall.to_le_bytes());
            self.buf.extend_from_slice(&payload);
        }
        if self.write_off + self.buf.len() as u64 > self.max_bytes {
            return Err(SpillError::Full {
                max_bytes: self.max_bytes,
            });
        }
        match self.data.write_all_at(&self.buf, self.write_off) {
            Ok(()) => {}
            // A full disk is a full log: the edge's `when_full` decides (block or drop, as
            // `defer_full`). A partial write past `write_off` is overwritten by the next
            // append, or truncated as a torn tail if the process dies first.
            Err(e) if e.kind() == io::ErrorKind::StorageFull => {
                return Err(SpillError::Full {
                    max_bytes: self.write_off,
                })
            }
            Err(e) => return Err(e.into()),
        }
        self.write_off += self.buf.len() as u64;
        self.pending += self.rows.all(records) as u64;
        Ok(())
    }

    /// Reads up to `max` records in the order they were deferred, with the creation instant
    /// of the first and the batch's [`Ack`]: the persisted cursor moves past these records
    /// only once the ack completes (the last clone dropped, as when every record ended;
    /// see the module docs). Records that fail to decode, and records lost in a frame
    /// damaged while the job ran, are counted in `bad` (the caller counts them as dropped),
    /// never silently skipped.
    ///
    /// A cursor that cannot be persisted does not fail anything: the records are handed out
    /// (the next run may replay them again) and [`DeferHealth::io_errors`] counts it.
    ///
    /// # Errors
    /// An I/O error reading the log before any record was read; nothing was consumed then.
    pub fn read_batch(
        &mut self,
        max: usize,
        bad: &mut u64,
    ) -> Result<(Vec<T>, Instant, Ack), SpillError> {
        self.compact_if_done();
        let mut out = Vec::new();
        let mut first_created = None;
        let mut payload = std::mem::take(&mut self.buf);
        let mut frames = 0u64;
        let counted = self.rows.is_counted();
        let mut taken = 0usize;
        while taken < max && self.read_off < self.write_off {
            if let Some(&(a, b)) = self.skips.front() {
                if a <= self.read_off {
                    self.read_off = self.read_off.max(b);
                    self.skips.pop_front();
                    continue;
                }
            }
            let frame = match frame_at(&self.data, self.read_off, self.write_off, &mut payload) {
                Ok(f) => f,
                Err(e) if frames == 0 => {
                    self.buf = payload;
                    return Err(SpillError::Io(e));
                }
                Err(_) => {
                    // Hand out what was read; the next call retries from here.
                    self.health.io_errors += 1;
                    break;
                }
            };
            match frame {
                Frame::Valid { len, created } => {
                    self.read_off += HEADER as u64 + len;
                    let n = frame_records(counted, &payload);
                    self.pending = self.pending.saturating_sub(n);
                    frames += 1;
                    first_created.get_or_insert(created);
                    let body = if counted {
                        payload.get(4..).unwrap_or(&[])
                    } else {
                        &payload[..]
                    };
                    match self.codec.decode(body) {
                        Ok(r) => {
                            out.push(r);
                            taken += n.max(1) as usize;
                        }
                        Err(_) => *bad += n,
                    }
                }
                // Damaged while the job ran: skip to the next valid frame (or the end).
                Frame::Corrupt { .. } | Frame::Short => {
                    let next = resync(&self.data, self.read_off, self.write_off, &mut payload)
                        .ok()
                        .flatten()
                        .unwrap_or(self.write_off);
                    self.health.skipped_bytes += next - self.read_off;
                    self.read_off = next;
                }
            }
        }
        self.buf = payload;
        if self.read_off >= self.write_off {
            // Records still counted pending were in damaged frames: lost, and counted.
            *bad += std::mem::take(&mut self.pending);
        }
        let end = self.read_off;
        self.durable
            .lock()
            .outstanding
            .push_back((end, Replay::Out));
        let durable = self.durable.clone();
        let ack = AckToken::new(move |outcome| durable.lock().complete(end, outcome));
        Ok((
            out,
            first_created.map_or_else(Instant::now, instant_of),
            ack,
        ))
    }
}

fn read_cursor(path: &Path) -> Option<u64> {
    let b = std::fs::read(path).ok()?;
    if b.len() != 12 {
        return None;
    }
    let off = u64::from_le_bytes(b[..8].try_into().ok()?);
    let sum = u32::from_le_bytes(b[8..12].try_into().ok()?);
    (crc32fast::hash(&b[..8]) == sum).then_some(off)
}

fn write_cursor(path: &Path, off: u64) -> io::Result<()> {
    let mut b = off.to_le_bytes().to_vec();
    b.extend_from_slice(&crc32fast::hash(&off.to_le_bytes()).to_le_bytes());
    // Write-then-rename so a crash never leaves a half-written cursor.
    let tmp = path.with_extension("cursor.tmp");
    std::fs::write(&tmp, &b)?;
    std::fs::rename(&tmp, path)
}
