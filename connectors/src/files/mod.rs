//! Files of Arrow record batches (feature `arrow`): Arrow IPC files and streams in and out,
//! Parquet out, and JSON lines in, decoded into batches of a schema.
//!
//! - [`ArrowFilesExt::ipc_source`] reads IPC files or streams;
//!   [`ArrowFilesExt::json_lines_source`] decodes JSON lines files, sending lines that do not
//!   fit the schema to a rejects file with their line number and reason (counted as
//!   dead-lettered).
//! - [`ArrowSinkExt::parquet_sink`] writes Parquet files (row groups, snappy, rolled by size
//!   or age); [`ArrowSinkExt::ipc_sink`] writes IPC files or streams. Both write a file under
//!   a `.tmp` name, sync it and rename it when it is complete; the acknowledgements of its
//!   batches complete only then, so an acknowledging source (Kafka) commits only what is in
//!   a complete file.
//!
//! Records are rows: a batch counts as its rows on edges and in the ledger.
//!
//! ```
//! use std::sync::Arc;
//! use sluice_connectors::files::{ArrowFilesExt, ArrowSinkExt, IpcConfig, IpcFormat, ParquetConfig};
//! use sluice_connectors::files::arrow::datatypes::{DataType, Field, Schema};
//! use sluice_engine::Pipeline;
//!
//! let dir = tempfile::tempdir()?;
//! let input = dir.path().join("logs.jsonl");
//! std::fs::write(&input, "{\"id\": 1, \"level\": \"info\"}\nnot json\n{\"id\": 3, \"level\": \"error\"}\n")?;
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("id", DataType::Int64, false),
//!     Field::new("level", DataType::Utf8, false),
//! ]));
//!
//! let p = Pipeline::new("jsonl-to-parquet");
//! let files = p
//!     .json_lines_source("logs", 1, schema, vec![input], dir.path().join("rejects.jsonl"))
//!     .parquet_sink("parquet", ParquetConfig::new(dir.path().join("out"), "logs"))?;
//! let report = p.run()?.wait()?;
//! assert_eq!((report.ledger.delivered, report.ledger.dead_lettered), (2, 1));
//! assert_eq!(files.closed().len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod ipc;
pub(crate) mod json;
mod parquet_sink;
mod tmpfile;

pub use ::arrow;
pub use ::parquet;
pub use ipc::{IpcCodec, IpcConfig, IpcFiles, IpcFormat, IpcSink, IpcSource};
pub use json::{JsonLinesSource, RejectedLine, MAX_LINE};
pub use parquet_sink::{ParquetCompression, ParquetConfig, ParquetFiles, ParquetSink};

use std::path::PathBuf;

use ::arrow::array::RecordBatch;
use ::arrow::datatypes::SchemaRef;
use sluice_engine::{Pipeline, Stream};

use crate::ConnectorError;

/// The paths instance `i` of `p` reads: every `p`-th, from the `i`-th.
fn share(paths: &[PathBuf], i: usize, p: usize) -> Vec<PathBuf> {
    paths
        .iter()
        .enumerate()
        .filter(|(k, _)| k % p.max(1) == i)
        .map(|(_, path)| path.clone())
        .collect()
}

/// File sources of Arrow batches on a [`Pipeline`].
pub trait ArrowFilesExt {
    /// Reads Arrow IPC files (or streams) in order; with `parallelism` p, instance i reads
    /// every p-th file from the i-th.
    fn ipc_source(
        &self,
        name: &str,
        parallelism: usize,
        format: IpcFormat,
        paths: Vec<PathBuf>,
    ) -> Stream<RecordBatch>;

    /// Decodes JSON lines files into batches of `schema` (see [`JsonLinesSource`]); rejected
    /// lines are appended to `rejects` (with several instances, to `rejects` suffixed with
    /// `.{instance}`).
    fn json_lines_source(
        &self,
        name: &str,
        parallelism: usize,
        schema: SchemaRef,
        paths: Vec<PathBuf>,
        rejects: PathBuf,
    ) -> Stream<RecordBatch>;
}

impl ArrowFilesExt for Pipeline {
    fn ipc_source(
        &self,
        name: &str,
        parallelism: usize,
        format: IpcFormat,
        paths: Vec<PathBuf>,
    ) -> Stream<RecordBatch> {
        self.source(name, parallelism, move |info| {
            IpcSource::new(format, share(&paths, info.instance, info.parallelism))
        })
    }

    fn json_lines_source(
        &self,
        name: &str,
        parallelism: usize,
        schema: SchemaRef,
        paths: Vec<PathBuf>,
        rejects: PathBuf,
    ) -> Stream<RecordBatch> {
        self.source(name, parallelism, move |info| {
            let rejects = if info.parallelism > 1 {
                let mut r = rejects.clone().into_os_string();
                r.push(format!(".{}", info.instance));
                PathBuf::from(r)
            } else {
                rejects.clone()
            };
            JsonLinesSource::new(
                schema.clone(),
                share(&paths, info.instance, info.parallelism),
                rejects,
            )
        })
    }
}

/// File sinks of Arrow batches on a `Stream<RecordBatch>`.
pub trait ArrowSinkExt {
    /// Writes Parquet files (see [`ParquetSink`]); the handle lists the completed files.
    ///
    /// # Errors
    /// Invalid settings or a directory that cannot be created, before anything runs.
    fn parquet_sink(self, name: &str, cfg: ParquetConfig) -> Result<ParquetFiles, ConnectorError>;

    /// Writes Arrow IPC files or streams (see [`IpcSink`]); the handle lists the completed
    /// files.
    ///
    /// # Errors
    /// As [`ArrowSinkExt::parquet_sink`].
    fn ipc_sink(self, name: &str, cfg: IpcConfig) -> Result<IpcFiles, ConnectorError>;
}

impl ArrowSinkExt for Stream<RecordBatch> {
    fn parquet_sink(self, name: &str, cfg: ParquetConfig) -> Result<ParquetFiles, ConnectorError> {
        cfg.validate()?;
        let files = ParquetFiles::default();
        let handle = files.clone();
        self.sink(name, move |info| {
            ParquetSink::new(cfg.clone(), info, files.clone())
        });
        Ok(handle)
    }

    fn ipc_sink(self, name: &str, cfg: IpcConfig) -> Result<IpcFiles, ConnectorError> {
        cfg.validate()?;
        let files = IpcFiles::default();
        let handle = files.clone();
        self.sink(name, move |info| {
            IpcSink::new(cfg.clone(), info, files.clone())
        });
        Ok(handle)
    }
}
