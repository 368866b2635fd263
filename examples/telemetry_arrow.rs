//! Telemetry as Arrow: JSON log lines from Kafka, decoded into Arrow record batches,
//! shed by row on their `level` column in front of a slow stage, written to Parquet files;
//! then the files are read back and their rows counted per level, next to the job's ledger.
//!
//! Each mixed batch is split into one batch per level (the filter kernel), so under pressure
//! the edge drops exactly the debug rows first, then info, and never warn or error: those
//! block, and the backpressure reaches the Kafka source, which pauses its partitions. A
//! Parquet file's records are acknowledged (and their offsets committed) only once the file
//! is complete on disk. Malformed lines go to a dead-letter topic with the reason.
//!
//! Runs on librdkafka's in-process mock cluster unless `--brokers` is given (the topics
//! `logs` and `logs-dead` must then exist, e.g. `scripts/broker start logs:4 logs-dead:1`).
//!
//! ```text
//! cargo run --release --example telemetry_arrow
//! cargo run --release --example telemetry_arrow -- --logs 20000 --out /tmp/logs-parquet
//! ```
//!
//! Prints the report, then `telemetry_arrow: 100000 logs, 1000 malformed (dead-lettered);
//! parquet files ...: debug ..., info ..., warn ..., error ... rows; shed debug ..%, info ..%,
//! warn 0%, error 0%; ledger delivered ... = rows in the files; balanced`.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::arrow::array::{AsArray, RecordBatch};
use sluice::arrow::datatypes::{DataType, Field, Schema};
use sluice::connectors::kafka::codec::json;
use sluice::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sluice::prelude::*;

/// A log line as it arrives (and as a row of the batches: field names are column names).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Log {
    level: String,
    service: String,
    msg: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let logs: u64 = match arg("--logs") {
        Some(v) => v.parse().map_err(|e| format!("--logs {v}: {e}"))?,
        None => 100_000,
    };
    let tmp = tempfile::tempdir()?;
    let out = arg("--out").map_or_else(|| tmp.path().join("parquet"), PathBuf::from);
    let embedded = match arg("--brokers") {
        Some(_) => None,
        None => Some(EmbeddedKafka::start(1)?),
    };
    let brokers = arg("--brokers")
        .unwrap_or_else(|| embedded.as_ref().map(|e| e.brokers()).unwrap_or_default());
    if let Some(e) = &embedded {
        e.create_topic("logs", 4)?;
    }

    // Fill the topic: 70% debug, 20% info, 8% warn, 2% error; 1 line in 100 is not JSON.
    let fill = Pipeline::new("write-logs");
    fill.generator("lines", 1, GeneratorConfig::count(logs), |i| {
        match level(i) {
            Some(level) => {
                format!(
                    r#"{{"level":"{level}","service":"svc-{}","msg":"event {i}"}}"#,
                    i % 7
                )
            }
            None => format!("{{broken line {i}"),
        }
    })
    .kafka_sink(
        "logs",
        KafkaSinkConfig::new(KafkaConfig::new(&brokers, "")?, "logs"),
        Arc::new(|l: &String| (None, l.clone().into_bytes())),
        Arc::new(KafkaSinkStats::default()),
    );
    fill.run()?.wait()?;

    // The job.
    let schema = Arc::new(Schema::new(vec![
        Field::new("level", DataType::Utf8, false),
        Field::new("service", DataType::Utf8, false),
        Field::new("msg", DataType::Utf8, false),
    ]));
    let mut cfg = KafkaSourceConfig::new(KafkaConfig::new(&brokers, "telemetry-arrow")?, &["logs"]);
    cfg.dead_letter_topic = Some("logs-dead".into()); // malformed lines, with a `sluice-error` header
    cfg.end_when_idle = Some(Duration::from_secs(2)); // a demo ends when the topic is drained
    let source = Arc::new(KafkaSourceStats::default());
    let p = Pipeline::new("telemetry-arrow");
    let written = p
        .kafka_source("logs", 1, cfg, json::<Log>(), source.clone())
        // Rows to Arrow: one record batch per polled batch of messages.
        .to_batches("to arrow", schema, |f| {
            eprintln!("row does not fit: {}", f.error)
        })
        // One batch per level; the edge after it sheds by level, in rows.
        .classify_by_column("by level", "level", Priority::INFO)
        .edge_capacity(4096)
        .edge_policy(EdgePolicy::ShedByPriority(
            Watermarks::default().with(Priority::WARN, None),
        ))
        .new_chain()
        .map_batches(
            "enrich",
            |b: &RecordBatch| {
                // A slow stage: ~5 us per row (~200k rows/s).
                let until = Instant::now() + Duration::from_micros(5 * b.num_rows() as u64);
                while Instant::now() < until {}
                Ok(b.clone())
            },
            |f| eprintln!("enrich failed: {}", f.error),
        );
    let mut parquet = ParquetConfig::new(&out, "logs");
    parquet.roll_bytes = 256 << 10;
    let files = written.parquet_sink("parquet", parquet)?;
    let report = p.run()?.wait()?;
    println!("{report}");

    // Read the files back: rows per level.
    let mut in_files = [0u64; 4];
    for path in files.closed() {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path)?)?.build()?;
        for b in reader {
            let b = b?;
            let levels = b
                .column_by_name("level")
                .ok_or("a file without a level column")?
                .as_string::<i32>();
            for l in levels.iter().flatten() {
                if let Some(k) = ["debug", "info", "warn", "error"]
                    .iter()
                    .position(|x| *x == l)
                {
                    in_files[k] += 1;
                }
            }
        }
    }
    let offered = |c: Priority| {
        (0..logs)
            .filter(|&i| level(i).and_then(Priority::parse) == Some(c))
            .count() as u64
    };
    let shed = |c: Priority| 100.0 * report.dropped_of_class(c) as f64 / offered(c).max(1) as f64;
    let total: u64 = in_files.iter().sum();
    println!(
        "telemetry_arrow: {logs} logs, {} malformed (dead-lettered); parquet files {}: debug {}, info {}, warn {}, error {} rows; shed debug {:.0}%, info {:.0}%, warn {:.0}%, error {:.0}%; ledger delivered {} {} rows in the files; {}",
        source.dead_lettered.load(Ordering::Relaxed),
        files.closed().len(),
        in_files[0],
        in_files[1],
        in_files[2],
        in_files[3],
        shed(Priority::DEBUG),
        shed(Priority::INFO),
        shed(Priority::WARN),
        shed(Priority::ERROR),
        report.ledger.delivered,
        if report.ledger.delivered == total { "=" } else { "!=" },
        if report.ledger.balanced { "balanced" } else { "UNBALANCED" }
    );
    Ok(())
}

/// Line `i`'s level: 70% debug, 20% info, 8% warn, 2% error; none for the 1 line in 100
/// that is not JSON.
fn level(i: u64) -> Option<&'static str> {
    match i % 100 {
        99 => None,
        0..=69 => Some("debug"),
        70..=89 => Some("info"),
        90..=97 => Some("warn"),
        _ => Some("error"),
    }
}

/// The value after `name` on the command line.
fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next().and(args.next())
}
