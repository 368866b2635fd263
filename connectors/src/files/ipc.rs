//! Arrow IPC files and streams: a source that reads them and a sink that writes them.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::reader::{FileReader, StreamReader};
use arrow::ipc::writer::{FileWriter, StreamWriter};
use parking_lot::Mutex;
use sluice_engine::{Ack, InstanceInfo, Sink, SinkError, Source, SourceError, SourceStatus};

use super::tmpfile::TmpFile;
use crate::ConnectorError;

/// The two Arrow IPC formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpcFormat {
    /// The file format (`.arrow`, Feather v2): a footer indexes the batches.
    #[default]
    File,
    /// The streaming format (`.arrows`): batches one after another, readable while written.
    Stream,
}

impl IpcFormat {
    fn extension(self) -> &'static str {
        match self {
            IpcFormat::File => "arrow",
            IpcFormat::Stream => "arrows",
        }
    }
}

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>;

/// Reads Arrow IPC files or streams, one after another, a batch per poll (as written).
///
/// A file that cannot be opened, or that is damaged (a bad header, a truncated batch),
/// fails the job naming the file and the batch; the batches read before it were emitted and
/// are accounted for as usual.
pub struct IpcSource {
    format: IpcFormat,
    paths: VecDeque<PathBuf>,
    current: Option<(PathBuf, Batches, u64)>,
}

impl IpcSource {
    /// A source over `paths`, read in order.
    pub fn new(format: IpcFormat, paths: impl IntoIterator<Item = PathBuf>) -> Self {
        IpcSource {
            format,
            paths: paths.into_iter().collect(),
            current: None,
        }
    }

    fn open(&self, path: &PathBuf) -> Result<Batches, SourceError> {
        let file = File::open(path).map_err(|e| {
            SourceError::permanent(ConnectorError::io(format!("opening {}", path.display()), e))
        })?;
        let format_error = |e: ArrowError| {
            SourceError::permanent(ConnectorError::Format {
                context: format!("reading {}", path.display()),
                message: e.to_string(),
            })
        };
        Ok(match self.format {
            IpcFormat::File => {
                Box::new(FileReader::try_new(BufReader::new(file), None).map_err(format_error)?)
            }
            IpcFormat::Stream => {
                Box::new(StreamReader::try_new(BufReader::new(file), None).map_err(format_error)?)
            }
        })
    }
}

impl Source<RecordBatch> for IpcSource {
    fn poll_batch(
        &mut self,
        out: &mut Vec<RecordBatch>,
        _max: usize,
    ) -> Result<SourceStatus, SourceError> {
        loop {
            if self.current.is_none() {
                let Some(path) = self.paths.pop_front() else {
                    return Ok(SourceStatus::Done);
                };
                let batches = self.open(&path)?;
                self.current = Some((path, batches, 0));
            }
            let Some((path, batches, n)) = self.current.as_mut() else {
                continue;
            };
            match batches.next() {
                Some(Ok(b)) => {
                    *n += 1;
                    out.push(b);
                    return Ok(SourceStatus::More);
                }
                Some(Err(e)) => {
                    return Err(SourceError::permanent(ConnectorError::Format {
                        context: format!("reading batch {} of {}", *n, path.display()),
                        message: e.to_string(),
                    }))
                }
                None => self.current = None,
            }
        }
    }
}

enum IpcWriter {
    File(FileWriter<BufWriter<File>>),
    Stream(StreamWriter<BufWriter<File>>),
}

impl IpcWriter {
    fn write(&mut self, b: &RecordBatch) -> Result<(), ArrowError> {
        match self {
            IpcWriter::File(w) => w.write(b),
            IpcWriter::Stream(w) => w.write(b),
        }
    }

    /// Writes the end (footer or end-of-stream marker) and returns the file.
    fn finish(self) -> Result<File, ArrowError> {
        let buffered = match self {
            IpcWriter::File(mut w) => {
                w.finish()?;
                w.into_inner()?
            }
            IpcWriter::Stream(mut w) => {
                w.finish()?;
                w.into_inner()?
            }
        };
        buffered
            .into_inner()
            .map_err(|e| ArrowError::IoError(e.to_string(), e.into_error()))
    }
}

struct OpenIpc {
    writer: IpcWriter,
    schema: SchemaRef,
    file: TmpFile,
}

/// The files an [`IpcSink`] completed, for every instance.
#[derive(Debug, Clone, Default)]
pub struct IpcFiles {
    files: Arc<Mutex<Vec<PathBuf>>>,
}

impl IpcFiles {
    /// The files completed so far, in the order they were completed.
    pub fn closed(&self) -> Vec<PathBuf> {
        self.files.lock().clone()
    }
}

/// Where an [`IpcSink`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpcConfig {
    /// The directory of the files (created if missing).
    pub dir: PathBuf,
    /// File names are `{prefix}-{instance}-{sequence}.arrow` (`.arrows` for streams).
    pub prefix: String,
    /// File or stream format.
    pub format: IpcFormat,
}

impl IpcConfig {
    /// IPC files `{prefix}-{instance}-{sequence}.arrow` in `dir`.
    pub fn new(dir: impl Into<PathBuf>, prefix: impl Into<String>) -> Self {
        IpcConfig {
            dir: dir.into(),
            prefix: prefix.into(),
            format: IpcFormat::File,
        }
    }

    /// Checks the prefix and creates the directory.
    ///
    /// # Errors
    /// [`ConnectorError::Config`] for a prefix that is not a plain file name,
    /// [`ConnectorError::Io`] if the directory cannot be created.
    pub fn validate(&self) -> Result<(), ConnectorError> {
        let p = &self.prefix;
        if p.is_empty() || p.contains(['/', '\\']) || p == ".." {
            return Err(ConnectorError::config(format!(
                "IPC file prefix {p:?} is not a plain file name"
            )));
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| ConnectorError::io(format!("creating {}", self.dir.display()), e))
    }
}

/// Writes Arrow batches to an IPC file (or stream) per instance:
/// `{dir}/{prefix}-{instance}-{sequence}.arrow` (`.arrows` for streams), a new file when the
/// schema changes. Like the Parquet sink, a file is written under a `.tmp` name, synced
/// and renamed at the end, and its batches' acknowledgements complete only then.
pub struct IpcSink {
    cfg: IpcConfig,
    instance: usize,
    seq: u64,
    open: Option<OpenIpc>,
    files: IpcFiles,
}

impl IpcSink {
    /// A sink for one instance (check `cfg` with [`IpcConfig::validate`] first; use
    /// [`crate::files::ArrowSinkExt::ipc_sink`] to build one per instance).
    pub fn new(cfg: IpcConfig, info: &InstanceInfo, files: IpcFiles) -> Self {
        IpcSink {
            cfg,
            instance: info.instance,
            seq: 0,
            open: None,
            files,
        }
    }

    fn open_file(&mut self, schema: SchemaRef) -> Result<&mut OpenIpc, SinkError> {
        let name = format!(
            "{}-{}-{:06}.{}",
            self.cfg.prefix,
            self.instance,
            self.seq,
            self.cfg.format.extension()
        );
        self.seq += 1;
        let (tmp, file) = TmpFile::create(&self.cfg.dir, &name)?;
        let out = BufWriter::new(file);
        let writer = match self.cfg.format {
            IpcFormat::File => FileWriter::try_new(out, &schema).map(IpcWriter::File),
            IpcFormat::Stream => StreamWriter::try_new(out, &schema).map(IpcWriter::Stream),
        }
        .map_err(|e| format_error(&tmp.tmp, e))?;
        Ok(self.open.insert(OpenIpc {
            writer,
            schema,
            file: tmp,
        }))
    }

    fn close_file(&mut self) -> Result<(), SinkError> {
        let Some(OpenIpc { writer, file, .. }) = self.open.take() else {
            return Ok(());
        };
        // On any error `file` is dropped incomplete, which fails its acks.
        let done = writer.finish().map_err(|e| format_error(&file.tmp, e))?;
        file.complete(done, &self.files.files)
    }
}

fn format_error(path: &std::path::Path, e: ArrowError) -> SinkError {
    SinkError::permanent(ConnectorError::Format {
        context: format!("writing {}", path.display()),
        message: e.to_string(),
    })
}

impl Sink<RecordBatch> for IpcSink {
    fn write(&mut self, records: Vec<RecordBatch>) -> Result<(), SinkError> {
        self.write_with_acks(records, &mut Vec::new())
    }

    fn write_with_acks(
        &mut self,
        records: Vec<RecordBatch>,
        acks: &mut Vec<Ack>,
    ) -> Result<(), SinkError> {
        for b in &records {
            if self.open.as_ref().is_some_and(|f| f.schema != b.schema()) {
                self.close_file()?;
            }
            let f = match self.open.as_mut() {
                Some(f) => f,
                None => self.open_file(b.schema())?,
            };
            if let Err(e) = f.writer.write(b) {
                let e = format_error(&f.file.tmp, e);
                // Abandoned: dropping the file fails what it holds.
                self.open = None;
                return Err(e);
            }
        }
        if let Some(f) = self.open.as_mut() {
            f.file.hold(acks);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.close_file()
    }
}

/// Encodes a record batch as one Arrow IPC stream (schema, batch, end marker), for an edge's
/// defer log (`Stream::defer_to(dir, max_bytes, IpcCodec)`): deferred rows are written as
/// Arrow IPC and replayed as batches.
#[derive(Debug, Clone, Copy, Default)]
pub struct IpcCodec;

impl sluice_engine::Codec<RecordBatch> for IpcCodec {
    fn encode(&self, b: &RecordBatch, out: &mut Vec<u8>) -> Result<(), sluice_engine::CodecError> {
        let fail = |e: ArrowError| sluice_engine::CodecError::format("Arrow IPC", e);
        let mut w = StreamWriter::try_new(&mut *out, &b.schema()).map_err(fail)?;
        w.write(b).map_err(fail)?;
        w.finish().map_err(fail)
    }

    fn decode(&self, bytes: &[u8]) -> Result<RecordBatch, sluice_engine::CodecError> {
        let fail = |e: ArrowError| sluice_engine::CodecError::format("Arrow IPC", e);
        let mut r = StreamReader::try_new(bytes, None).map_err(fail)?;
        match r.next() {
            Some(b) => b.map_err(fail),
            None => Err(sluice_engine::CodecError::invalid(
                "an Arrow IPC stream without a batch",
            )),
        }
    }
}
