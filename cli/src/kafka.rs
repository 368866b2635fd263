//! The Kafka commands: `run passthrough`, `run kafka-copy`, `run kafka-faults` and
//! `bench kafka`. Each runs on the embedded mock cluster unless brokers are given.

use std::path::PathBuf;

use clap::Args;

use crate::error::CliError;
use crate::output::write_json;
use crate::parse;

/// Messages librdkafka's mock cluster keeps per partition before deleting older ones.
const EMBEDDED_RETENTION: u64 = 100_000;
use sluice_workloads::kafka_faults::Fault;

/// `sluice run kafka-faults`.
#[derive(Args, Debug, Clone)]
pub struct KafkaFaultsArgs {
    /// The fault; without it, every fault one after the other.
    #[arg(long, value_enum)]
    fault: Option<Fault>,
    /// Messages in the input topic (e.g. 40k; the embedded cluster keeps at most 100k per
    /// partition, 4 partitions).
    #[arg(long, default_value = "40k", value_parser = parse::count)]
    messages: u64,
    /// The job's pace in records per second, so the fault lands mid-stream (e.g. 10k).
    #[arg(long, default_value = "10k", value_parser = parse::count)]
    rate: u64,
    /// The sink's in-flight window in messages (default: the sink's, 16k): what a lost
    /// assignment can replay.
    #[arg(long, value_parser = parse::count)]
    max_in_flight: Option<u64>,
    /// Write the outcomes as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// `sluice run kafka-copy`.
#[derive(Args, Debug, Clone)]
pub struct KafkaCopyArgs {
    /// Kafka brokers (host:port,...).
    #[arg(long)]
    brokers: String,
    /// Input topic.
    #[arg(long)]
    input: String,
    /// Output topic.
    #[arg(long)]
    output: String,
    /// Consumer group.
    #[arg(long)]
    group: String,
    /// Work per record, in microseconds (to make the job slower than its input).
    #[arg(long, default_value_t = 0)]
    delay_us: u64,
    /// End once no message arrived for this long.
    #[arg(long, default_value = "5s", value_parser = parse::duration)]
    end_when_idle: std::time::Duration,
    /// A librdkafka property for the consumer and producer, KEY=VALUE (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    props: Vec<String>,
    /// Fail if no partition is assigned within this long (an unreachable broker).
    #[arg(long, default_value = "60s", value_parser = parse::duration)]
    assign_timeout: std::time::Duration,
    /// Defer what the work cannot keep up with to an on-disk log in DIR (acknowledged to the
    /// input once written, replayed when the work catches up, and by the next run with the
    /// same DIR after a crash), instead of holding the input back.
    #[arg(long, value_name = "DIR")]
    defer_dir: Option<PathBuf>,
}

/// `sluice run passthrough`.
#[derive(Args, Debug, Clone)]
pub struct PassthroughArgs {
    /// Kafka brokers (host:port,...); omit for the embedded cluster. The topics must exist.
    #[arg(long)]
    brokers: Option<String>,
    /// Messages to produce first (e.g. 50k).
    #[arg(long, default_value = "50k", value_parser = parse::count)]
    messages: u64,
    /// Input topic.
    #[arg(long, default_value = "sluice-in")]
    input: String,
    /// Output topic.
    #[arg(long, default_value = "sluice-out")]
    output: String,
    /// Source instances in the consumer group.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    parallelism: u64,
}

/// `sluice bench kafka`.
#[derive(Args, Debug, Clone)]
pub struct KafkaBenchArgs {
    /// Kafka brokers (host:port,...); omit for the embedded cluster. The topics must exist.
    #[arg(long)]
    brokers: Option<String>,
    /// Messages in the input topic (e.g. 200k; the embedded cluster keeps at most 100k per
    /// partition).
    #[arg(long, default_value = "200k", value_parser = parse::count)]
    messages: u64,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Input topic.
    #[arg(long, default_value = "sluice-bench-in")]
    input: String,
    /// Output topic.
    #[arg(long, default_value = "sluice-bench-out")]
    output: String,
    /// Rounds of each (alternating); medians are compared.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=50))]
    rounds: u64,
    /// The Kafka source's batch size (default: the source's own, 4096).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    source_batch: Option<u64>,
    /// Write the result as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// `sluice bench kafka`.
pub fn bench(a: &KafkaBenchArgs) -> Result<(), CliError> {
    crate::output::check_writable(a.json.as_deref())?;
    use sluice_workloads::kafka_bench;
    let cfg = kafka_bench::KafkaBenchConfig {
        brokers: a.brokers.clone(),
        messages: a.messages,
        payload: a.payload,
        input: a.input.clone(),
        output: a.output.clone(),
        rounds: a.rounds as usize,
        source_batch: a.source_batch.map(|b| b as usize),
        ..kafka_bench::KafkaBenchConfig::default()
    };
    outln!(
        "kafka passthrough: {} messages of {} bytes on {}, {} rounds each",
        cfg.messages,
        cfg.payload,
        cfg.brokers.as_deref().unwrap_or("the embedded cluster"),
        cfg.rounds
    );
    let r = kafka_bench::run(&cfg, &mut |who, round, rate| {
        outln!("  round {round}: {who:<26} {:>9.0} msg/s", rate);
    });
    let r = r.map_err(|e| CliError::job("kafka benchmark", e))?;
    outln!(
        "median: sluice {:.0} msg/s, hand-written {:.0} msg/s, ratio {:.2}",
        r.sluice_median,
        r.baseline_median,
        r.ratio
    );
    write_json(a.json.as_deref(), &r)
}

/// `sluice run kafka-copy`.
pub fn copy(a: &KafkaCopyArgs) -> Result<(), CliError> {
    use sluice_workloads::kafka_copy::{run, CopyConfig, CopyError};
    let cfg = CopyConfig {
        brokers: a.brokers.clone(),
        input: a.input.clone(),
        output: a.output.clone(),
        group: a.group.clone(),
        delay: std::time::Duration::from_micros(a.delay_us),
        end_when_idle: a.end_when_idle,
        props: a.props.clone(),
        assign_timeout: a.assign_timeout,
        defer_dir: a.defer_dir.clone(),
    };
    // The partitions this member holds, whenever that changes (stderr), so a group of several
    // processes can be watched splitting and handing over partitions.
    let o =
        run(&cfg, |n| eprintln!("kafka-copy: assigned {n} partitions")).map_err(|e| match e {
            CopyError::Config(_) | CopyError::Build(_) | CopyError::SameTopic(_) => {
                CliError::Usage(e.to_string())
            }
            e => CliError::job("kafka-copy", e),
        })?;
    outln!("{}", o.report);
    outln!("kafka-copy: acked {} pauses {}", o.acked, o.pauses);
    Ok(())
}

/// `sluice run passthrough`.
pub fn passthrough(a: &PassthroughArgs) -> Result<(), CliError> {
    let partitions = sluice_workloads::passthrough::PassthroughConfig::default().partitions;
    let keeps = EMBEDDED_RETENTION * partitions as u64;
    if a.brokers.is_none() && a.messages > keeps {
        return Err(CliError::Usage(format!(
            "--messages {} is more than the embedded cluster keeps ({keeps}: 100k per partition, {partitions} partitions; it deletes older ones silently, which would read as lost): give at most {keeps}, or --brokers",
            a.messages
        )));
    }
    let cfg = sluice_workloads::passthrough::PassthroughConfig {
        brokers: a.brokers.clone(),
        messages: a.messages,
        input: a.input.clone(),
        output: a.output.clone(),
        parallelism: a.parallelism as usize,
        ..Default::default()
    };
    let (o, report) =
        sluice_workloads::passthrough::run(&cfg).map_err(|e| CliError::job("passthrough", e))?;
    outln!("{report}");
    outln!(
        "passthrough: produced {} delivered {} lost {} duplicates {} in {:.2}s ({:.0} msg/s), source paused {} times",
        o.produced, o.delivered, o.lost, o.duplicates, o.job_seconds, o.rate, o.pauses
    );
    if o.lost > 0 {
        return Err(CliError::Check(format!("{} messages lost", o.lost)));
    }
    Ok(())
}

/// `sluice run kafka-faults`.
pub fn faults(a: &KafkaFaultsArgs) -> Result<(), CliError> {
    crate::output::check_writable(a.json.as_deref())?;
    use sluice_workloads::kafka_faults::{run, FaultConfig};
    if a.messages > 400_000 {
        return Err(CliError::Usage(
            "--messages must be between 1 and 400k (the embedded cluster keeps at most 100k per partition, 4 partitions)".into(),
        ));
    }
    let faults: Vec<Fault> = match a.fault {
        Some(f) => vec![f],
        None => Fault::ALL.to_vec(),
    };
    let mut outcomes = Vec::new();
    let mut failed = false;
    for f in faults {
        let mut cfg = FaultConfig::new(f);
        cfg.messages = a.messages;
        cfg.rate = a.rate as f64;
        cfg.max_in_flight = a.max_in_flight.map(|w| w as usize);
        eprintln!(
            "kafka-faults: {} ({} messages at {} msg/s, fault at {:.1} s{})",
            f.name(),
            cfg.messages,
            a.rate,
            cfg.at.as_secs_f64(),
            cfg.hold
                .map(|h| format!(" for {:.0} s", h.as_secs_f64()))
                .unwrap_or_default()
        );
        match run(&cfg) {
            Ok(o) => {
                outln!("== {} ==", o.fault);
                for line in &o.explanation {
                    outln!("  - {line}");
                }
                failed |= o.lost > 0 || !o.ledger_balanced;
                outcomes.push(o);
            }
            Err(e) => {
                eprintln!("error: kafka-faults {} failed: {e}", f.name());
                failed = true;
            }
        }
    }
    outln!(
        "{:<15} {:>9} {:>9} {:>6} {:>6} {:>9} {:>8} {:>9} {:>8}",
        "fault",
        "produced",
        "delivered",
        "lost",
        "dups",
        "stall s",
        "retries",
        "queuefull",
        "pauses"
    );
    for o in &outcomes {
        outln!(
            "{:<15} {:>9} {:>9} {:>6} {:>6} {:>9.1} {:>8} {:>9} {:>8}",
            o.fault,
            o.produced,
            o.delivered,
            o.lost,
            o.duplicates,
            o.longest_stall_s,
            o.request_retries,
            o.queue_full,
            o.pauses
        );
    }
    write_json(a.json.as_deref(), &outcomes)?;
    if failed {
        return Err(CliError::Check(
            "a fault run lost messages or failed".into(),
        ));
    }
    Ok(())
}
