//! Telemetry through Kafka: JSON log lines from a topic, malformed lines dead-lettered with
//! the reason, each record classified by its `level` field, debug and info shed under
//! pressure in front of a slow enrichment stage, warn and up to an `alerts` topic and the
//! rest to a `bulk` topic. Offsets are committed only for records that ended (delivered or
//! shed), so a crash replays, never loses.
//!
//! Runs on librdkafka's in-process mock cluster unless `--brokers` is given (the topics
//! `logs`, `logs-dead`, `alerts` and `bulk` must then exist, e.g.
//! `scripts/broker start logs:4 logs-dead:1 alerts:1 bulk:1`).
//!
//! ```text
//! cargo run --release --example telemetry_kafka
//! cargo run --release --example telemetry_kafka -- --logs 20000 --brokers 127.0.0.1:9092
//! ```
//!
//! Prints the report, then `telemetry_kafka: 100000 logs, 1000 malformed (dead-lettered);
//! shed debug ..%, info ..%, warn 0%, error 0%; to alerts ..., to bulk ...; ledger balanced`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::connectors::kafka::codec::{json_with_priority, PriorityFrom};
use sluice::connectors::kafka::ClassRoutes;
use sluice::prelude::*;

/// A log line as it arrives.
#[derive(Debug, serde::Deserialize)]
struct Log {
    level: String,
    msg: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let logs: u64 = match arg("--logs") {
        Some(v) => v.parse().map_err(|e| format!("--logs {v}: {e}"))?,
        None => 100_000,
    };
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
            Some(level) => format!(r#"{{"level":"{level}","msg":"event {i}"}}"#),
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

    // The job: read the backlog, shed debug then info in front of the slow stage, route by class.
    let mut cfg = KafkaSourceConfig::new(KafkaConfig::new(&brokers, "telemetry")?, &["logs"]);
    cfg.dead_letter_topic = Some("logs-dead".into()); // malformed lines, with a `sluice-error` header
    cfg.end_when_idle = Some(Duration::from_secs(2)); // a demo ends when the topic is drained
    let source = Arc::new(KafkaSourceStats::default());
    let routed = Arc::new(KafkaSinkStats::default());
    let p = Pipeline::new("telemetry");
    p.kafka_source(
        "logs",
        1,
        cfg,
        json_with_priority::<Log>(PriorityFrom::Field("level".into()), Priority::INFO),
        source.clone(),
    )
    .prioritized()
    .edge_capacity(4096)
    // Shed debug at 50% fill and info at 80%; warn and up never: they block, and the
    // backpressure reaches the Kafka source, which pauses its partitions.
    .edge_policy(EdgePolicy::ShedByPriority(
        Watermarks::default().with(Priority::WARN, None),
    ))
    .new_chain()
    .map("enrich", |r: Classed<Log>| {
        let until = Instant::now() + Duration::from_micros(20); // ~50k records/s
        while Instant::now() < until {}
        r
    })
    .kafka_sink_by_class(
        "route",
        KafkaSinkConfig::new(KafkaConfig::new(&brokers, "")?, "bulk"),
        ClassRoutes::new().at_or_above(Priority::WARN, "alerts"),
        // Back to JSON: a `Value`'s text form cannot fail.
        Arc::new(|r: &Classed<Log>| {
            let v = serde_json::json!({ "level": r.value.level, "msg": r.value.msg });
            (None, v.to_string().into_bytes())
        }),
        routed.clone(),
    );
    let report = p.run()?.wait()?;
    println!("{report}");

    let offered = |c: Priority| {
        (0..logs)
            .filter(|&i| level(i).and_then(Priority::parse) == Some(c))
            .count() as u64
    };
    let shed = |c: Priority| 100.0 * report.dropped_of_class(c) as f64 / offered(c).max(1) as f64;
    let to = |t: &str| routed.routed.lock().get(t).copied().unwrap_or(0);
    println!(
        "telemetry_kafka: {logs} logs, {} malformed (dead-lettered); shed debug {:.0}%, info {:.0}%, warn {:.0}%, error {:.0}%; to alerts {}, to bulk {}; ledger {}",
        source.dead_lettered.load(Ordering::Relaxed),
        shed(Priority::DEBUG),
        shed(Priority::INFO),
        shed(Priority::WARN),
        shed(Priority::ERROR),
        to("alerts"),
        to("bulk"),
        if report.ledger.balanced { "balanced" } else { "UNBALANCED" }
    );
    Ok(())
}

/// Line `i`'s level: 70% debug, 20% info, 8% warn, 2% error; none for the 1 line in 100
/// that is not JSON.
fn level(i: u64) -> Option<&'static str> {
    match (i % 1000, i % 100) {
        (_, 99) => None,
        (_, 0..=69) => Some("debug"),
        (_, 70..=89) => Some("info"),
        (_, 90..=97) => Some("warn"),
        _ => Some("error"),
    }
}

/// The value after `name` on the command line.
fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next().and(args.next())
}
