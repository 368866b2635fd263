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
//! `crc` is the CRC-32 of `created` and the payload; `created` is the wall-clock time (ns
//! since the Unix epoch) the record's batch was created, so latency measured at a sink
//! includes the time a record spent deferred. `<name>.cursor` holds the byte offset of the
//! first frame not yet replayed (a u64 and its CRC-32). When everything has been replayed the
//! log is truncated to empty.
//!
//! # Durability
//! Frames are written with `write` (no `fsync`): they survive the job process being killed,
//! not the machine losing power. The cursor is written after each replayed batch, so a crash
//! between the two replays that batch again (at least once). On open, a torn or corrupt tail
//! (a crash mid-write) is truncated and its size reported.
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

use crate::codec::Codec;

const HEADER: usize = 16;

/// Why the defer log refused or failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    /// Appending would grow the log past its size cap.
    #[error("defer log is full ({max_bytes} bytes)")]
    Full {
        /// The cap.
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
    pending: u64,
    /// Records found pending when the log was opened (deferred by an earlier run).
    pub restored: u64,
    /// Bytes of torn or corrupt tail truncated when the log was opened.
    pub truncated_bytes: u64,
    buf: Vec<u8>,
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
        let mut read_off = read_cursor(&cursor_path).unwrap_or(0).min(len);
        // Validate frames from the cursor; truncate at the first torn or corrupt one.
        let mut off = read_off;
        let mut pending = 0u64;
        let mut header = [0u8; HEADER];
        let mut payload = Vec::new();
        while off + HEADER as u64 <= len {
            data.read_exact_at(&mut header, off)?;
            let n = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
            let sum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            let created = u64::from_le_bytes([
                header[8], header[9], header[10], header[11], header[12], header[13], header[14],
                header[15],
            ]);
            if off + HEADER as u64 + n > len {
                break;
            }
            payload.resize(n as usize, 0);
            data.read_exact_at(&mut payload, off + HEADER as u64)?;
            if crc(created, &payload) != sum {
                break;
            }
            off += HEADER as u64 + n;
            pending += 1;
        }
        let truncated_bytes = len - off;
        if truncated_bytes > 0 {
            data.set_len(off)?;
        }
        if pending == 0 && off > 0 {
            // Fully replayed earlier: start afresh.
            data.set_len(0)?;
            off = 0;
            read_off = 0;
            write_cursor(&cursor_path, 0)?;
        }
        Ok(SpillLog {
            data,
            data_path,
            cursor_path,
            read_off,
            write_off: off,
            max_bytes: spec.max_bytes,
            codec: spec.codec.clone(),
            pending,
            restored: pending,
            truncated_bytes,
            buf: Vec::new(),
        })
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
        let wall = wall_ns(created);
        self.buf.clear();
        let mut payload = Vec::new();
        for r in records {
            payload.clear();
            self.codec.encode(r, &mut payload)?;
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
        self.data.write_all_at(&self.buf, self.write_off)?;
        self.write_off += self.buf.len() as u64;
        self.pending += records.len() as u64;
        Ok(())
    }

    /// Reads up to `max` records in the order they were deferred, with the creation instant
    /// of the first, and advances the persisted cursor. Records that fail to decode are
    /// returned as errors in `bad` (counted by the caller), never silently skipped.
    ///
    /// # Errors
    /// I/O errors; a frame that fails its checksum here (the file changed under us) ends the
    /// batch and is reported as an I/O error.
    pub fn read_batch(
        &mut self,
        max: usize,
        bad: &mut u64,
    ) -> Result<(Vec<T>, Instant), SpillError> {
        let mut out = Vec::new();
        let mut first_created = None;
        let mut header = [0u8; HEADER];
        let mut payload = Vec::new();
        while out.len() < max && self.read_off + (HEADER as u64) <= self.write_off {
            self.data.read_exact_at(&mut header, self.read_off)?;
            let n = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
            let sum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            let created = u64::from_le_bytes([
                header[8], header[9], header[10], header[11], header[12], header[13], header[14],
                header[15],
            ]);
            payload.resize(n as usize, 0);
            self.data
                .read_exact_at(&mut payload, self.read_off + HEADER as u64)?;
            if crc(created, &payload) != sum {
                return Err(SpillError::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "corrupt frame at offset {} of {}",
                        self.read_off,
                        self.data_path.display()
                    ),
                )));
            }
            self.read_off += HEADER as u64 + n;
            self.pending -= 1;
            first_created.get_or_insert(created);
            match self.codec.decode(&payload) {
                Ok(r) => out.push(r),
                Err(_) => *bad += 1,
            }
        }
        if self.read_off >= self.write_off {
            self.data.set_len(0)?;
            self.read_off = 0;
            self.write_off = 0;
        }
        write_cursor(&self.cursor_path, self.read_off)?;
        Ok((out, first_created.map_or_else(Instant::now, instant_of)))
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
