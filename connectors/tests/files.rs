//! Files of Arrow batches: IPC and Parquet round trips, JSON lines with rejected lines,
//! acknowledgements that wait for complete files, and a damaged file that fails the job
//! naming it.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sluice_connectors::files::arrow::array::{
    ArrayRef, AsArray, Int64Array, RecordBatch, StringArray,
};
use sluice_connectors::files::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use sluice_connectors::files::{
    ArrowFilesExt, ArrowSinkExt, IpcConfig, IpcFormat, ParquetConfig, RejectedLine,
};
use sluice_connectors::PipelineExt;
use sluice_engine::{
    Ack, AckOutcome, AckToken, JobError, Pipeline, Source, SourceError, SourceStatus,
};
use sluice_operators::columnar::{BatchStreamExt, RowStreamExt};
use sluice_operators::SinkExt;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Log {
    id: i64,
    level: String,
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("level", DataType::Utf8, false),
    ]))
}

fn log(id: i64) -> Log {
    Log {
        id,
        level: ["debug", "info", "warn", "error"][(id % 4) as usize].into(),
    }
}

fn batch(from: i64, n: i64) -> RecordBatch {
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(from..from + n));
    let levels: ArrayRef = Arc::new(StringArray::from_iter_values(
        (from..from + n).map(|i| log(i).level),
    ));
    RecordBatch::try_from_iter([("id", ids), ("level", levels)]).unwrap()
}

#[test]
fn typed_rows_through_ipc_files_and_streams_come_back_equal() {
    for format in [IpcFormat::File, IpcFormat::Stream] {
        let dir = tempfile::tempdir().unwrap();
        let p = Pipeline::new("to-ipc").batch_size(100);
        let batches = p.iter_source("logs", 1, |_| (0..1000).map(log)).to_batches(
            "to arrow",
            schema(),
            |f| panic!("{:?} does not fit", f.record),
        );
        let mut cfg = IpcConfig::new(dir.path(), "logs");
        cfg.format = format;
        let files = batches.ipc_sink("ipc", cfg).unwrap();
        let l = p.run().unwrap().wait().unwrap().ledger;
        assert_eq!((l.emitted, l.delivered), (1000, 1000), "{format:?}");
        let paths = files.closed();
        assert_eq!(paths.len(), 1);

        let p = Pipeline::new("from-ipc");
        let out = p
            .ipc_source("ipc", 1, format, paths)
            .to_rows::<Log, _>("to rows", |f| panic!("{f:?}"))
            .collect("out");
        let l = p.run().unwrap().wait().unwrap().ledger;
        assert_eq!(out.take(), (0..1000).map(log).collect::<Vec<_>>());
        assert_eq!((l.emitted, l.delivered), (1000, 1000));
    }
}

#[test]
fn json_lines_that_do_not_fit_are_rejected_with_their_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let mut text = String::new();
    for i in 0..500i64 {
        match i % 50 {
            7 => text.push_str("{\"id\": 7, \"level\": \n"), // cut short
            8 => text.push_str("{\"id\": \"eight\", \"level\": \"info\"}\n"), // wrong type
            9 => text.push_str("{\"id\": 9}\n"),             // missing field
            10 => text.push('\n'),                           // blank: skipped
            _ => text.push_str(&serde_json::to_string(&log(i)).unwrap()),
        }
        if i % 50 > 10 || i % 50 < 7 {
            text.push('\n');
        }
    }
    std::fs::write(&input, text).unwrap();
    let rejects = dir.path().join("rejects.jsonl");
    let p = Pipeline::new("jsonl").batch_size(64);
    let out = p
        .json_lines_source("logs", 1, schema(), vec![input], rejects.clone())
        .to_rows::<Log, _>("to rows", |f| panic!("{f:?}"))
        .collect("out");
    let r = p.run().unwrap().wait().unwrap();
    let want: Vec<Log> = (0..500)
        .filter(|i| !(7..=10).contains(&(i % 50)))
        .map(log)
        .collect();
    assert_eq!(out.take(), want);
    let l = r.ledger;
    assert!(l.balanced, "{}", l.explain());
    assert_eq!((l.delivered, l.dead_lettered), (want.len() as u64, 30));
    let rejected: Vec<RejectedLine> = std::fs::read_to_string(&rejects)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rejected.len(), 30);
    // Line numbers count from 1: id i is on line i + 1.
    let lines: Vec<u64> = rejected.iter().map(|r| r.line).collect();
    let want_lines: Vec<u64> = (0..500u64)
        .filter(|i| (7..=9).contains(&(i % 50)))
        .map(|i| i + 1)
        .collect();
    assert_eq!(lines, want_lines);
    assert!(rejected
        .iter()
        .all(|r| !r.reason.is_empty() && r.file.ends_with("in.jsonl")));
    assert!(rejected[2].text.contains("\"id\": 9"));
}

#[test]
fn a_line_longer_than_the_limit_is_rejected_without_being_held() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let long = format!(
        "{{\"id\": 1, \"level\": \"{}\"}}",
        "x".repeat(sluice_connectors::files::MAX_LINE)
    );
    std::fs::write(
        &input,
        format!(
            "{}\n{long}\n{}\n",
            serde_json::to_string(&log(0)).unwrap(),
            serde_json::to_string(&log(2)).unwrap()
        ),
    )
    .unwrap();
    let rejects = dir.path().join("rejects.jsonl");
    let p = Pipeline::new("long");
    p.json_lines_source("logs", 1, schema(), vec![input], rejects.clone())
        .count("rows");
    let l = p.run().unwrap().wait().unwrap().ledger;
    assert_eq!((l.delivered, l.dead_lettered), (2, 1));
    let r: RejectedLine =
        serde_json::from_str(std::fs::read_to_string(&rejects).unwrap().trim()).unwrap();
    assert_eq!(r.line, 2);
    assert!(r.reason.contains("longer than"), "{}", r.reason);
    assert!(r.text.len() <= 4096);
}

/// Emits batches of 100 rows, each with an ack that records how it ended.
struct Acked {
    next: i64,
    end: i64,
    outcomes: Arc<Mutex<Vec<AckOutcome>>>,
    ack: Option<Ack>,
}

impl Source<RecordBatch> for Acked {
    fn poll_batch(
        &mut self,
        out: &mut Vec<RecordBatch>,
        _max: usize,
    ) -> Result<SourceStatus, SourceError> {
        if self.next >= self.end {
            return Ok(SourceStatus::Done);
        }
        out.push(batch(self.next, 100));
        self.next += 100;
        let o = self.outcomes.clone();
        self.ack = Some(AckToken::new(move |outcome| o.lock().push(outcome)));
        Ok(SourceStatus::More)
    }
    fn take_ack(&mut self) -> Option<Ack> {
        self.ack.take()
    }
}

fn read_parquet(path: &PathBuf) -> Vec<RecordBatch> {
    let f = std::fs::File::open(path).unwrap();
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn parquet_files_roll_read_back_equal_and_acks_wait_for_complete_files() {
    let dir = tempfile::tempdir().unwrap();
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let o2 = outcomes.clone();
    // Seen from the sink's thread: how many acks had completed when each file closed.
    let p = Pipeline::new("parquet");
    let mut cfg = ParquetConfig::new(dir.path().join("out"), "logs");
    cfg.row_group_rows = 250;
    cfg.roll_bytes = 4 << 10;
    let files = p
        .source("acked", 1, move |_| Acked {
            next: 0,
            end: 5000,
            outcomes: o2.clone(),
            ack: None,
        })
        .parquet_sink("parquet", cfg)
        .unwrap();
    let l = p.run().unwrap().wait().unwrap().ledger;
    assert_eq!((l.emitted, l.delivered), (5000, 5000));
    let paths = files.closed();
    assert!(paths.len() > 1, "rolled by size: {paths:?}");
    let mut ids = Vec::new();
    for path in &paths {
        assert!(path.extension().is_some_and(|e| e == "parquet"));
        for b in read_parquet(path) {
            assert_eq!(b.schema(), batch(0, 1).schema());
            ids.extend(
                b.column(0)
                    .as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .copied(),
            );
            let levels = b.column(1).as_string::<i32>();
            let first = b.column(0).as_primitive::<Int64Type>().value(0);
            assert_eq!(levels.value(0), log(first).level);
        }
    }
    assert_eq!(ids, (0..5000).collect::<Vec<_>>());
    // No file is left half-written, and every ack completed, as done.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "tmp"))
        .collect();
    assert!(leftovers.is_empty());
    let o = outcomes.lock();
    assert_eq!(o.len(), 50);
    assert!(o.iter().all(|x| *x == AckOutcome::Done));
}

#[test]
fn a_parquet_file_left_open_by_a_failing_job_fails_its_acks() {
    let dir = tempfile::tempdir().unwrap();
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let o2 = outcomes.clone();
    let p = Pipeline::new("parquet-fails");
    let files = p
        .source("acked", 1, move |_| Acked {
            next: 0,
            end: 1000,
            outcomes: o2.clone(),
            ack: None,
        })
        .map_batches(
            "breaks at 500",
            |b| {
                let id = b.column(0).as_primitive::<Int64Type>().value(0);
                assert!(id != 500, "broken");
                Ok(b.clone())
            },
            |_| {},
        )
        .parquet_sink("parquet", ParquetConfig::new(dir.path(), "logs"))
        .unwrap();
    let err = p.run().unwrap().wait().unwrap_err();
    assert!(matches!(err, JobError::Panicked { .. }), "{err}");
    assert!(
        files.closed().is_empty(),
        "the one file was never completed"
    );
    let o = outcomes.lock();
    assert!(!o.is_empty());
    assert!(o.iter().all(|x| *x == AckOutcome::Failed), "{o:?}");
}

#[test]
fn a_damaged_ipc_file_fails_the_job_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::new("write");
    let files = p
        .iter_source("batches", 1, |_| (0..10).map(|i| batch(i * 100, 100)))
        .ipc_sink("ipc", IpcConfig::new(dir.path(), "b"))
        .unwrap();
    p.run().unwrap().wait().unwrap();
    let path = files.closed()[0].clone();
    let bytes = std::fs::read(&path).unwrap();
    // Keep the head, cut the rest (the footer and most batches).
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let p = Pipeline::new("read");
    p.ipc_source("ipc", 1, IpcFormat::File, vec![path.clone()])
        .count("rows");
    let err = p.run().unwrap().wait().unwrap_err();
    let JobError::SourceFailed { .. } = &err else {
        panic!("unexpected {err}");
    };
    assert!(err.to_string().contains("b-0-000000.arrow"), "{err}");
    assert!(err.report().ledger.balanced);
}
