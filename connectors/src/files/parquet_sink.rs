//! A Parquet sink: Arrow batches to Parquet files, rolled by size or age, each file
//! acknowledged only once it is closed and durable.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parking_lot::Mutex;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use sluice_engine::{Ack, InstanceInfo, Sink, SinkError};

use super::tmpfile::TmpFile;
use crate::ConnectorError;

/// Compression of a Parquet file's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParquetCompression {
    /// No compression.
    None,
    /// Snappy: fast, a moderate ratio (the common default of Parquet writers).
    #[default]
    Snappy,
}

/// Where and how a [`ParquetSink`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetConfig {
    /// The directory of the files (created if missing).
    pub dir: PathBuf,
    /// File names are `{prefix}-{instance}-{sequence}.parquet`.
    pub prefix: String,
    /// Rows per row group (at least 1).
    pub row_group_rows: usize,
    /// A file is closed once it holds this many bytes (written and buffered); at least 1.
    pub roll_bytes: u64,
    /// A file is closed once it has been open this long, checked when a batch arrives
    /// (`None`: only by size and at the end).
    pub roll_after: Option<Duration>,
    /// Page compression.
    pub compression: ParquetCompression,
}

impl ParquetConfig {
    /// Files `{prefix}-{instance}-{sequence}.parquet` in `dir`, row groups of 65,536 rows,
    /// rolled at 128 MiB, snappy.
    pub fn new(dir: impl Into<PathBuf>, prefix: impl Into<String>) -> Self {
        ParquetConfig {
            dir: dir.into(),
            prefix: prefix.into(),
            row_group_rows: 65_536,
            roll_bytes: 128 << 20,
            roll_after: None,
            compression: ParquetCompression::Snappy,
        }
    }

    /// Checks the settings and creates the directory.
    ///
    /// # Errors
    /// [`ConnectorError::Config`] for a zero row group or roll size, or a prefix that is not
    /// a plain file name; [`ConnectorError::Io`] if the directory cannot be created.
    pub fn validate(&self) -> Result<(), ConnectorError> {
        if self.row_group_rows == 0 {
            return Err(ConnectorError::config(
                "parquet row_group_rows is 0: use at least 1 row per row group",
            ));
        }
        if self.roll_bytes == 0 {
            return Err(ConnectorError::config(
                "parquet roll_bytes is 0: use at least 1 byte per file",
            ));
        }
        if self.prefix.is_empty() || self.prefix.contains(['/', '\\']) || self.prefix == ".." {
            return Err(ConnectorError::config(format!(
                "parquet prefix {:?} is not a plain file name",
                self.prefix
            )));
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| ConnectorError::io(format!("creating {}", self.dir.display()), e))
    }
}

/// What a [`ParquetSink`] has written: the files it closed, for every instance.
#[derive(Debug, Clone, Default)]
pub struct ParquetFiles {
    files: Arc<Mutex<Vec<PathBuf>>>,
}

impl ParquetFiles {
    /// The files closed so far (complete and durable), in the order they were closed.
    pub fn closed(&self) -> Vec<PathBuf> {
        self.files.lock().clone()
    }
}

/// The file being written.
struct OpenFile {
    writer: ArrowWriter<File>,
    /// Where it is written, and the acks of its batches (complete once the file is).
    file: TmpFile,
    schema: SchemaRef,
    opened: Instant,
}

/// Writes Arrow batches to Parquet files: one file at a time per instance, rolled by size
/// (`roll_bytes`) or age (`roll_after`), and when the schema of the batches changes.
///
/// A file is written under a `.tmp` name, synced, then renamed: the acknowledgements of its
/// batches complete only then, so a Kafka source commits only records that are in a
/// complete file on disk. If the job stops, the open file is completed at end of stream; a
/// crash leaves a `.tmp` file whose records were never acknowledged (and will be replayed).
pub struct ParquetSink {
    cfg: ParquetConfig,
    instance: usize,
    seq: u64,
    open: Option<OpenFile>,
    files: ParquetFiles,
}

impl ParquetSink {
    /// A sink for one instance (use [`crate::files::ArrowSinkExt::parquet_sink`] to build one per
    /// instance).
    pub fn new(cfg: ParquetConfig, info: &InstanceInfo, files: ParquetFiles) -> Self {
        ParquetSink {
            cfg,
            instance: info.instance,
            seq: 0,
            open: None,
            files,
        }
    }

    fn open_file(&mut self, schema: SchemaRef) -> Result<&mut OpenFile, SinkError> {
        let name = format!("{}-{}-{:06}", self.cfg.prefix, self.instance, self.seq);
        self.seq += 1;
        let (tmp, file) = TmpFile::create(&self.cfg.dir, &format!("{name}.parquet"))?;
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(self.cfg.row_group_rows.max(1)))
            .set_compression(match self.cfg.compression {
                ParquetCompression::None => Compression::UNCOMPRESSED,
                ParquetCompression::Snappy => Compression::SNAPPY,
            })
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .map_err(|e| SinkError::permanent(parquet_error(&tmp.tmp, e)))?;
        Ok(self.open.insert(OpenFile {
            writer,
            file: tmp,
            schema,
            opened: Instant::now(),
        }))
    }

    /// Completes the open file: footer, sync, rename; then its acks complete.
    fn close_file(&mut self) -> Result<(), SinkError> {
        let Some(OpenFile { writer, file, .. }) = self.open.take() else {
            return Ok(());
        };
        // Flushes the last row group and writes the footer. On any error `file` is
        // dropped incomplete, which fails its acks.
        let done = writer
            .into_inner()
            .map_err(|e| SinkError::permanent(parquet_error(&file.tmp, e)))?;
        file.complete(done, &self.files.files)
    }

    fn should_roll(&self) -> bool {
        self.open.as_ref().is_some_and(|f| {
            let bytes = f.writer.bytes_written() + f.writer.in_progress_size();
            bytes as u64 >= self.cfg.roll_bytes
                || self.cfg.roll_after.is_some_and(|d| f.opened.elapsed() >= d)
        })
    }
}

fn parquet_error(path: &Path, e: parquet::errors::ParquetError) -> ConnectorError {
    ConnectorError::Format {
        context: format!("writing {}", path.display()),
        message: e.to_string(),
    }
}

impl Sink<RecordBatch> for ParquetSink {
    fn write(&mut self, records: Vec<RecordBatch>) -> Result<(), SinkError> {
        self.write_with_acks(records, &mut Vec::new())
    }

    fn write_with_acks(
        &mut self,
        records: Vec<RecordBatch>,
        acks: &mut Vec<Ack>,
    ) -> Result<(), SinkError> {
        if records.is_empty() {
            return Ok(());
        }
        for b in &records {
            if self.open.as_ref().is_some_and(|f| f.schema != b.schema()) {
                self.close_file()?;
            }
            let f = match self.open.as_mut() {
                Some(f) => f,
                None => self.open_file(b.schema())?,
            };
            if let Err(e) = f.writer.write(b) {
                let e = SinkError::permanent(parquet_error(&f.file.tmp, e));
                // The file cannot be completed: dropping it fails what it holds.
                self.open = None;
                return Err(e);
            }
        }
        if let Some(f) = self.open.as_mut() {
            // Held until the file is complete (see the type's docs).
            f.file.hold(acks);
        }
        if self.should_roll() {
            self.close_file()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.close_file()
    }
}
