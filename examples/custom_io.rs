//! Your own connectors: a `Source` that reads a file line by line and a `Sink` that appends to
//! a file whose writes fail now and then. The sink retries transient failures with backoff and
//! jitter; a source or sink that cannot go on returns a typed error, and the job fails naming
//! it (no panic), with the cause kept.
//!
//! ```text
//! cargo run --release --example custom_io
//! cargo run --release --example custom_io -- --lines 1000
//! ```
//!
//! Prints `custom_io: read 100000 lines, wrote 100000 to .../out.txt, 8 transient write
//! failures retried`, then the error of a second job whose input does not exist:
//! `custom_io: source `lines` failed (permanent): cannot open .../missing.txt: No such file ...`.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice::prelude::*;

/// Reads a file, `max` lines a poll; opens it on the first poll, on the source's thread.
struct Lines {
    path: PathBuf,
    reader: Option<BufReader<File>>,
}

impl Source<String> for Lines {
    fn poll_batch(
        &mut self,
        out: &mut Vec<String>,
        max: usize,
    ) -> Result<SourceStatus, SourceError> {
        let reader = match &mut self.reader {
            Some(r) => r,
            None => {
                let f = File::open(&self.path).map_err(|e| {
                    SourceError::permanent(format!("cannot open {}: {e}", self.path.display()))
                })?;
                self.reader.insert(BufReader::new(f))
            }
        };
        for _ in 0..max {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) => return Ok(SourceStatus::Done),
                Ok(_) => out.push(line.trim_end().to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                    return Ok(SourceStatus::More)
                }
                Err(e) => return Err(SourceError::permanent(e)),
            }
        }
        Ok(SourceStatus::More)
    }
}

/// Appends batches to a file (opened on the first write); one write in 50 fails with
/// "device busy" and is retried.
struct FlakyFile {
    path: PathBuf,
    file: Option<File>,
    calls: u64,
    retried: Arc<AtomicU64>,
    backoff: Backoff,
}

impl Sink<String> for FlakyFile {
    fn write(&mut self, records: Vec<String>) -> Result<(), SinkError> {
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                let f = File::create(&self.path).map_err(|e| {
                    SinkError::permanent(format!("cannot create {}: {e}", self.path.display()))
                })?;
                self.file.insert(f)
            }
        };
        let buf: String = records.iter().map(|r| format!("{r}\n")).collect();
        let mut attempt = 0;
        loop {
            self.calls += 1;
            let res = if self.calls % 50 == 7 {
                Err(std::io::Error::other("device busy"))
            } else {
                file.write_all(buf.as_bytes())
            };
            match res {
                Ok(()) => return Ok(()),
                Err(e) => {
                    attempt += 1;
                    self.retried.fetch_add(1, Ordering::Relaxed);
                    match self.backoff.next(attempt, Duration::ZERO, None) {
                        RetryDecision::RetryAfter(d) => std::thread::sleep(d),
                        // Out of attempts: the job fails naming this sink, the error kept.
                        RetryDecision::GiveUp => return Err(SinkError::retryable(e)),
                    }
                }
            }
        }
    }
}

/// Reads `input`, upper-cases each line, appends it to `output`.
fn copy(input: &Path, output: &Path) -> Result<(JobReport, u64), Box<dyn std::error::Error>> {
    let retried = Arc::new(AtomicU64::new(0));
    let r = retried.clone();
    let (input, output) = (input.to_path_buf(), output.to_path_buf());
    let p = Pipeline::new("custom-io").batch_size(256);
    p.source("lines", 1, move |_| Lines {
        path: input.clone(),
        reader: None,
    })
    .map("upper", |l: String| l.to_uppercase())
    .new_chain()
    .sink("file", move |_| FlakyFile {
        path: output.clone(),
        file: None,
        calls: 0,
        retried: r.clone(),
        backoff: Backoff::new(
            Duration::from_millis(1),
            Duration::from_millis(20),
            5,
            Duration::from_secs(1),
            7,
        ),
    });
    let report = p.run()?.wait()?;
    Ok((report, retried.load(Ordering::Relaxed)))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lines: u64 = match arg("--lines") {
        Some(v) => v.parse().map_err(|e| format!("--lines {v}: {e}"))?,
        None => 100_000,
    };
    let dir = std::env::temp_dir().join(format!("sluice-custom-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("in.txt");
    let text: String = (0..lines).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&input, text)?;

    let (report, retried) = copy(&input, &dir.join("out.txt"))?;
    let written = std::fs::read_to_string(dir.join("out.txt"))?
        .lines()
        .count();
    println!(
        "custom_io: read {} lines, wrote {written} to {}, {retried} transient write failures retried",
        report.ledger.emitted,
        dir.join("out.txt").display()
    );

    match copy(&dir.join("missing.txt"), &dir.join("out2.txt")) {
        Ok(_) => return Err("a job without its input file should fail".into()),
        Err(e) => println!("custom_io: {e}"),
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// The value after `name` on the command line.
fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next().and(args.next())
}
