//! JSON lines to Arrow: a source that decodes files of JSON objects, one per line, into
//! record batches of a given schema, and dead-letters the lines that do not fit.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::json::ReaderBuilder;
use sluice_engine::{Source, SourceError, SourceStatus};

use crate::ConnectorError;

/// Longest line read; a longer one is rejected (and skipped) without being held in memory.
pub const MAX_LINE: usize = 16 << 20;

/// One line that did not decode, as written to the rejects file (one JSON object per line).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RejectedLine {
    /// The file it came from.
    pub file: String,
    /// Its line number, from 1.
    pub line: u64,
    /// Why it did not decode.
    pub reason: String,
    /// The line (cut at 4 KiB).
    pub text: String,
}

/// Decodes JSON lines files into record batches of `schema`, a batch of up to the
/// pipeline's batch size per poll, in file and line order. Blank lines are skipped. A line
/// that is not a JSON object of the schema (bad JSON, a missing non-nullable field, a value
/// of the wrong type, longer than [`MAX_LINE`]) goes to the rejects file with its file, line
/// number and reason, and counts as dead-lettered once the rejects file is synced; the
/// lines around it still make their batch.
pub struct JsonLinesSource {
    schema: SchemaRef,
    paths: VecDeque<PathBuf>,
    current: Option<(PathBuf, BufReader<File>, u64)>,
    rejects_path: PathBuf,
    rejects: Option<BufWriter<File>>,
    /// Rejected lines written since the last sync.
    unsynced: u64,
    /// Rejected lines durable and not yet reported.
    durable: u64,
}

impl JsonLinesSource {
    /// A source over `paths`, read in order; rejected lines go to `rejects` (appended).
    pub fn new(
        schema: SchemaRef,
        paths: impl IntoIterator<Item = PathBuf>,
        rejects: impl Into<PathBuf>,
    ) -> Self {
        JsonLinesSource {
            schema,
            paths: paths.into_iter().collect(),
            current: None,
            rejects_path: rejects.into(),
            rejects: None,
            unsynced: 0,
            durable: 0,
        }
    }

    fn reject(
        &mut self,
        file: &str,
        line: u64,
        reason: String,
        text: &[u8],
    ) -> Result<(), SourceError> {
        if self.rejects.is_none() {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.rejects_path)
                .map_err(|e| self.rejects_error(e))?;
            self.rejects = Some(BufWriter::new(f));
        }
        let cut = &text[..text.len().min(4096)];
        let r = RejectedLine {
            file: file.to_string(),
            line,
            reason,
            text: String::from_utf8_lossy(cut).into_owned(),
        };
        let mut json = serde_json::to_vec(&r).map_err(|e| {
            SourceError::permanent(ConnectorError::Format {
                context: "encoding a rejected line".into(),
                message: e.to_string(),
            })
        })?;
        json.push(b'\n');
        if let Some(w) = self.rejects.as_mut() {
            w.write_all(&json)
                .map_err(|e| rejects_io(&self.rejects_path, e))?;
        }
        self.unsynced += 1;
        Ok(())
    }

    fn rejects_error(&self, e: std::io::Error) -> SourceError {
        rejects_io(&self.rejects_path, e)
    }

    /// Makes the rejected lines durable; only then they count as dead-lettered.
    fn sync_rejects(&mut self) -> Result<(), SourceError> {
        if self.unsynced == 0 {
            return Ok(());
        }
        if let Some(w) = self.rejects.as_mut() {
            w.flush()
                .and_then(|()| w.get_ref().sync_data())
                .map_err(|e| rejects_io(&self.rejects_path, e))?;
        }
        self.durable += std::mem::take(&mut self.unsynced);
        Ok(())
    }

    /// Decodes `lines` (each with its number) into one batch; rejects the ones that fail.
    fn decode(
        &mut self,
        file: &str,
        lines: &[(u64, Vec<u8>)],
    ) -> Result<Option<RecordBatch>, SourceError> {
        if lines.is_empty() {
            return Ok(None);
        }
        let all: Vec<&[u8]> = lines.iter().map(|(_, l)| l.as_slice()).collect();
        if let Ok(b) = decode_lines(&self.schema, &all) {
            return Ok(b);
        }
        // Some line does not fit: one by one, to name it; the good ones still make a batch.
        let mut good = Vec::with_capacity(lines.len());
        for (n, l) in lines {
            match decode_lines(&self.schema, &[l.as_slice()]) {
                Ok(Some(b)) => good.push(b),
                Ok(None) => {}
                Err(e) => self.reject(file, *n, e.to_string(), l)?,
            }
        }
        if good.is_empty() {
            return Ok(None);
        }
        concat_batches(&self.schema, &good).map(Some).map_err(|e| {
            SourceError::permanent(ConnectorError::Format {
                context: format!("joining the decoded lines of {file}"),
                message: e.to_string(),
            })
        })
    }
}

fn rejects_io(path: &std::path::Path, e: std::io::Error) -> SourceError {
    SourceError::retryable(ConnectorError::io(
        format!("writing rejected lines to {}", path.display()),
        e,
    ))
}

/// Decodes JSON objects, one per item, into one batch (`None` for no rows).
pub(crate) fn decode_lines(
    schema: &SchemaRef,
    lines: &[&[u8]],
) -> Result<Option<RecordBatch>, ArrowError> {
    let mut d = ReaderBuilder::new(schema.clone())
        .with_batch_size(lines.len().max(1))
        .build_decoder()?;
    for &l in lines {
        let used = d.decode(l)?;
        if used != l.len() {
            return Err(ArrowError::JsonError(
                "trailing bytes after the object".into(),
            ));
        }
        if d.has_partial_record() {
            return Err(ArrowError::JsonError(
                "the line ends inside an object".into(),
            ));
        }
    }
    d.flush()
}

/// Reads one line of at most `limit` bytes into `buf` (without the newline). Returns
/// `None` at end of file, `Some(false)` for a line too long (skipped to its end).
fn read_line(
    r: &mut BufReader<File>,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let n = r.by_ref().take(limit as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Ok(Some(true));
    }
    if buf.len() > limit {
        // Too long: skip the rest of the line without keeping it.
        let mut sink = Vec::new();
        loop {
            sink.clear();
            let m = r.by_ref().take(64 << 10).read_until(b'\n', &mut sink)?;
            if m == 0 || sink.last() == Some(&b'\n') {
                break;
            }
        }
        buf.truncate(4096);
        return Ok(Some(false));
    }
    // The last line, without a newline.
    Ok(Some(true))
}

impl Source<RecordBatch> for JsonLinesSource {
    fn poll_batch(
        &mut self,
        out: &mut Vec<RecordBatch>,
        max: usize,
    ) -> Result<SourceStatus, SourceError> {
        loop {
            if self.current.is_none() {
                let Some(path) = self.paths.pop_front() else {
                    self.sync_rejects()?;
                    return Ok(SourceStatus::Done);
                };
                let f = File::open(&path).map_err(|e| {
                    SourceError::permanent(ConnectorError::io(
                        format!("opening {}", path.display()),
                        e,
                    ))
                })?;
                self.current = Some((path, BufReader::new(f), 0));
            }
            let Some((path, reader, line_no)) = self.current.as_mut() else {
                continue;
            };
            let file = path.display().to_string();
            let mut lines: Vec<(u64, Vec<u8>)> = Vec::new();
            let mut too_long = Vec::new();
            let mut buf = Vec::new();
            let mut ended = false;
            while lines.len() < max.max(1) {
                let read = read_line(reader, &mut buf, MAX_LINE).map_err(|e| {
                    SourceError::retryable(ConnectorError::io(format!("reading {file}"), e))
                })?;
                match read {
                    None => {
                        ended = true;
                        break;
                    }
                    Some(fits) => {
                        *line_no += 1;
                        if !fits {
                            too_long.push((*line_no, std::mem::take(&mut buf)));
                        } else if !buf.iter().all(u8::is_ascii_whitespace) {
                            lines.push((*line_no, std::mem::take(&mut buf)));
                        }
                    }
                }
            }
            for (n, text) in too_long {
                self.reject(
                    &file,
                    n,
                    format!("line longer than {MAX_LINE} bytes"),
                    &text,
                )?;
            }
            let batch = self.decode(&file, &lines)?;
            self.sync_rejects()?;
            if ended {
                self.current = None;
            }
            if let Some(b) = batch {
                out.push(b);
            }
            // One chunk per poll (even if every line of it was rejected), so a file of
            // rejects cannot keep the source from being stopped.
            if !lines.is_empty() || !ended {
                return Ok(SourceStatus::More);
            }
        }
    }

    fn take_dead_lettered(&mut self) -> u64 {
        std::mem::take(&mut self.durable)
    }
}
