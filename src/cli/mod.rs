//! `sluice` subcommands. Exit codes: 0 success, 1 job failure, 2 usage or configuration error.

use std::path::PathBuf;

/// Like `println!`, but a closed stdout (`sluice ... | head`) ends output quietly instead of
/// panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod overload;
mod parse;
mod plot;
mod progress;
use sluice::engine::JobReport;
use sluice::workloads::w1;

/// Sluice: a stream-processing engine built around backpressure.
#[derive(Parser, Debug)]
#[command(name = "sluice", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the example jobs.
    Jobs,
    /// Run an example job.
    Run {
        #[command(subcommand)]
        job: Job,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
    /// Render a saved JSON report as a table.
    Report {
        /// A report written with `--json`.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum Job {
    /// W1: generate -> map -> filter -> keyed running sum -> checksum sink.
    W1(W1Args),
    /// Log records with levels at up to 10x the sink: Debug then Info are shed, Error never.
    Telemetry(overload::ScenarioJobArgs),
    /// Payments at 2x the processor, which fails now and then: never dropped, blocked and
    /// retried; latency moves upstream.
    Orders(overload::ScenarioJobArgs),
    /// A burst of pages to index: high rank indexed at once, low rank deferred to disk and
    /// indexed when the burst has passed.
    Indexing(overload::ScenarioJobArgs),
    /// A burst far above the workers' capacity, buffered in Kafka; the workers pull at their
    /// own pace. Shows the backlog grow and drain, and the recovery time.
    #[cfg(feature = "kafka")]
    Ingest(overload::ScenarioJobArgs),
    /// A burst of logins at 20x the user database, behind a per-client rate limit, adaptive
    /// concurrency, a circuit breaker and a fallback.
    Herd(HerdArgs),
    /// Kafka topic -> map -> topic, then reads the output back: lost and duplicated counts.
    /// Runs on an embedded Kafka cluster unless --brokers is given.
    #[cfg(feature = "kafka")]
    Passthrough(PassthroughArgs),
    /// Copies a Kafka topic to another (a consumer group member; run several to share the
    /// partitions). Ends when the input has been idle for --end-when-idle.
    #[cfg(feature = "kafka")]
    KafkaCopy(KafkaCopyArgs),
    /// A paced Kafka topic -> topic job on the embedded cluster while it misbehaves (broker
    /// down 10 s, failing produce requests, added latency, a tiny producer queue): lost and
    /// duplicated counts, and what happened, in words.
    #[cfg(feature = "kafka")]
    KafkaFaults(KafkaFaultsArgs),
}

#[cfg(feature = "kafka")]
#[derive(Args, Debug, Clone)]
struct KafkaFaultsArgs {
    /// The fault: broker-down, produce-errors, latency, tiny-queue, or all (one after the
    /// other).
    #[arg(long, default_value = "all", value_parser = ["all", "broker-down", "produce-errors", "latency", "tiny-queue"])]
    fault: String,
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

#[cfg(feature = "kafka")]
#[derive(Args, Debug, Clone)]
struct KafkaCopyArgs {
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
}

#[cfg(feature = "kafka")]
#[derive(Args, Debug, Clone)]
struct PassthroughArgs {
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

#[cfg(feature = "kafka")]
#[derive(Args, Debug, Clone)]
struct KafkaBenchArgs {
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

#[derive(Args, Debug, Clone)]
struct HerdArgs {
    /// How long the burst lasts (e.g. 3s).
    #[arg(long, default_value = "3s", value_parser = parse::duration)]
    duration: std::time::Duration,
    /// Logins offered per second (the database serves about 1.6k/s).
    #[arg(long, default_value = "32k", value_parser = parse::count)]
    rate: u64,
    /// Write the job report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// An open-loop producer at N x the sink's capacity through each overload policy, side by
    /// side: goodput, drops by class, latency by class, peak memory, the ledger.
    Overload(overload::OverloadArgs),
    /// Kafka passthrough (topic -> map -> topic, at least once) on Sluice against a
    /// hand-written rdkafka consume -> produce loop, same cluster, same run.
    #[cfg(feature = "kafka")]
    Kafka(KafkaBenchArgs),
    /// W1 on Sluice against a hand-written crossbeam pipeline, in the same run.
    Pipeline {
        #[command(flatten)]
        w1: W1Args,
        /// Rounds of each (alternating); the median is reported.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
        rounds: u64,
        /// Also run W1 with ShedByPriority on its edges (nothing shed: every record is an
        /// error) and report its cost against Block.
        #[arg(long)]
        shed: bool,
    },
}

#[derive(Args, Debug, Clone)]
struct W1Args {
    /// Records to generate.
    #[arg(long, default_value_t = 20_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    records: u64,
    /// Instances of every stage.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    parallelism: u64,
    /// Records each edge buffers, per downstream instance.
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..))]
    capacity: u64,
    /// Write the job report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl W1Args {
    fn config(&self) -> w1::Config {
        w1::Config {
            records: self.records,
            parallelism: self.parallelism as usize,
            capacity: self.capacity as usize,
            ..w1::Config::default()
        }
    }
}

const JOBS: &[(&str, &str)] = &[
    (
        "w1",
        "generate -> map -> filter -> key_by + running sum -> checksum sink (engine throughput)",
    ),
    (
        "telemetry",
        "log levels at 10x the sink: debug then info shed, errors always delivered",
    ),
    (
        "orders",
        "payments at 2x a flaky processor: never dropped, blocked and retried, latency upstream",
    ),
    (
        "indexing",
        "a burst of pages: high rank indexed at once, low rank deferred to disk, indexed later",
    ),
    (
        "ingest",
        "a burst at 5x the workers, buffered in Kafka (embedded or --brokers); drain, recovery",
    ),
    (
        "passthrough",
        "Kafka topic -> map -> topic on the embedded cluster (or --brokers); lost/duplicates",
    ),
    (
        "kafka-faults",
        "Kafka job while the embedded cluster fails: broker down, produce errors, latency",
    ),
    (
        "herd",
        "thundering herd: logins at 20x the database; per-client 429s, breaker, fallback",
    ),
];

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            if e.kind() == clap::error::ErrorKind::InvalidSubcommand {
                let names: Vec<&str> = JOBS.iter().map(|(n, _)| *n).collect();
                eprintln!("available jobs: {} (see `sluice jobs`)", names.join(", "));
            }
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Jobs => {
            for (name, what) in JOBS {
                outln!("{name:<12} {what}");
            }
            ExitCode::SUCCESS
        }
        Command::Run { job: Job::W1(a) } => run_w1(&a),
        Command::Run { job: Job::Herd(a) } => run_herd(&a),
        Command::Run {
            job: Job::Telemetry(a),
        } => overload::run_job(overload::ScenarioJob::Telemetry, &a),
        Command::Run {
            job: Job::Orders(a),
        } => overload::run_job(overload::ScenarioJob::Orders, &a),
        Command::Run {
            job: Job::Indexing(a),
        } => overload::run_job(overload::ScenarioJob::Indexing, &a),
        #[cfg(feature = "kafka")]
        Command::Run {
            job: Job::Ingest(a),
        } => overload::run_job(overload::ScenarioJob::Ingest, &a),
        #[cfg(feature = "kafka")]
        Command::Run {
            job: Job::Passthrough(a),
        } => run_passthrough(&a),
        #[cfg(feature = "kafka")]
        Command::Run {
            job: Job::KafkaCopy(a),
        } => run_kafka_copy(&a),
        #[cfg(feature = "kafka")]
        Command::Run {
            job: Job::KafkaFaults(a),
        } => run_kafka_faults(&a),
        Command::Bench {
            bench:
                Bench::Pipeline {
                    w1: a,
                    rounds,
                    shed,
                },
        } => bench_pipeline(&a, rounds, shed),
        Command::Bench {
            bench: Bench::Overload(a),
        } => overload::run(&a),
        #[cfg(feature = "kafka")]
        Command::Bench {
            bench: Bench::Kafka(a),
        } => bench_kafka(&a),
        Command::Report { file } => render(&file),
    }
}

#[cfg(feature = "kafka")]
fn bench_kafka(a: &KafkaBenchArgs) -> ExitCode {
    use sluice::workloads::kafka_bench;
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
    match r {
        Ok(r) => {
            outln!(
                "median: sluice {:.0} msg/s, hand-written {:.0} msg/s, ratio {:.2}",
                r.sluice_median,
                r.baseline_median,
                r.ratio
            );
            if let Some(path) = &a.json {
                match serde_json::to_string_pretty(&r) {
                    Ok(j) => {
                        if let Err(e) = std::fs::write(path, j) {
                            eprintln!("error: cannot write {}: {e}", path.display());
                            return ExitCode::from(2);
                        }
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(1);
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: kafka benchmark failed: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_w1(a: &W1Args) -> ExitCode {
    let cfg = a.config();
    match w1::run_sluice(&cfg) {
        Ok((out, report)) => {
            outln!("{report}");
            outln!(
                "records_out={} checksum={:016x} seconds={:.3} rate={:.1}M/s",
                out.records_out,
                out.checksum,
                out.elapsed.as_secs_f64(),
                out.rate(cfg.records) / 1e6
            );
            write_json(a.json.as_ref(), &report)
        }
        Err(e) => {
            eprintln!("error: job w1 failed: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(feature = "kafka")]
fn run_kafka_copy(a: &KafkaCopyArgs) -> ExitCode {
    use std::sync::Arc;

    use sluice::connectors::kafka::{
        KafkaConfig, KafkaPipelineExt, KafkaSinkConfig, KafkaSinkStats, KafkaSourceConfig,
        KafkaSourceStats, KafkaStreamExt,
    };
    use sluice::operators::StreamExt;

    let kafka = match KafkaConfig::new(&a.brokers, &a.group)
        .and_then(|k| k.set("auto.commit.interval.ms", "200"))
        .and_then(|k| a.props.iter().try_fold(k, |k, p| k.set_pair(p)))
    {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // A small in-flight window: what a crash can replay is bounded by it.
    let mut scfg = KafkaSourceConfig::new(kafka.clone(), &[&a.input]);
    scfg.batch_size = 256;
    scfg.prefetch_batches = 2;
    scfg.resume_below = 0;
    scfg.end_when_idle = Some(a.end_when_idle);
    let stats = Arc::new(KafkaSourceStats::default());
    let delay = std::time::Duration::from_micros(a.delay_us);
    let p = sluice::engine::Pipeline::new("kafka-copy").batch_size(256);
    p.kafka_source(
        "input",
        1,
        scfg,
        sluice_connectors::kafka::codec::raw(),
        stats.clone(),
    )
    .map("work", move |b: Vec<u8>| {
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        b
    })
    .edge_capacity(512)
    .kafka_sink(
        "output",
        KafkaSinkConfig::new(kafka, &a.output),
        Arc::new(|b: &Vec<u8>| (Some(b.clone()), b.clone())),
        Arc::new(KafkaSinkStats::default()),
    );
    let job = match p.run() {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Report the partitions this member holds whenever that changes (stderr), so a group of
    // several processes can be watched splitting and handing over partitions.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (stats, done) = (stats.clone(), done.clone());
        std::thread::spawn(move || {
            let mut last = u64::MAX;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let now = stats.assigned.load(std::sync::atomic::Ordering::Relaxed);
                if now != last {
                    eprintln!("kafka-copy: assigned {now} partitions");
                    last = now;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        })
    };
    let result = job.wait();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watcher.join();
    match result {
        Ok(r) => {
            outln!("{r}");
            outln!(
                "kafka-copy: acked {} pauses {}",
                stats.acked.load(std::sync::atomic::Ordering::Relaxed),
                stats.pauses.load(std::sync::atomic::Ordering::Relaxed)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: job kafka-copy failed: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(feature = "kafka")]
fn run_passthrough(a: &PassthroughArgs) -> ExitCode {
    let cfg = sluice::workloads::passthrough::PassthroughConfig {
        brokers: a.brokers.clone(),
        messages: a.messages,
        input: a.input.clone(),
        output: a.output.clone(),
        parallelism: a.parallelism as usize,
        ..Default::default()
    };
    match sluice::workloads::passthrough::run(&cfg) {
        Ok((o, report)) => {
            outln!("{report}");
            outln!(
                "passthrough: produced {} delivered {} lost {} duplicates {} in {:.2}s ({:.0} msg/s), source paused {} times",
                o.produced, o.delivered, o.lost, o.duplicates, o.job_seconds, o.rate, o.pauses
            );
            if o.lost > 0 {
                eprintln!("error: {} messages lost", o.lost);
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: job passthrough failed: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(feature = "kafka")]
fn run_kafka_faults(a: &KafkaFaultsArgs) -> ExitCode {
    use sluice::workloads::kafka_faults::{run, Fault, FaultConfig};
    if a.messages == 0 || a.messages > 400_000 {
        eprintln!(
            "error: --messages must be between 1 and 400k (the embedded cluster keeps at most 100k per partition, 4 partitions)"
        );
        return ExitCode::from(2);
    }
    if a.rate == 0 {
        eprintln!("error: --rate must be at least 1 record per second");
        return ExitCode::from(2);
    }
    if a.max_in_flight == Some(0) {
        eprintln!("error: --max-in-flight must be at least 1 message");
        return ExitCode::from(2);
    }
    let faults: Vec<Fault> = match Fault::parse(&a.fault) {
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
    if let Some(path) = &a.json {
        match serde_json::to_string_pretty(&outcomes) {
            Ok(j) => {
                if let Err(e) = std::fs::write(path, j) {
                    eprintln!("error: could not write {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
            Err(e) => {
                eprintln!("error: could not serialize the outcomes: {e}");
                return ExitCode::from(1);
            }
        }
    }
    if failed {
        eprintln!("error: a fault run lost messages or failed");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn run_herd(a: &HerdArgs) -> ExitCode {
    let cfg = sluice::workloads::herd::HerdConfig {
        rate: a.rate as f64,
        duration: a.duration,
        ..Default::default()
    };
    match sluice::workloads::herd::run(&cfg) {
        Ok((o, report)) => {
            outln!("{report}");
            outln!(
                "herd: {} logins offered in {:.1}s ({}/s, the database serves about {}/s)",
                o.offered,
                a.duration.as_secs_f64(),
                a.rate,
                (cfg.db_slots as f64 / cfg.db_service.as_secs_f64()) as u64
            );
            outln!(
                "  served        {:>8}   p50 {:.1} ms, p99 {:.1} ms",
                o.served,
                o.served_p50_ms,
                o.served_p99_ms
            );
            outln!(
                "  rejected 429  {:>8}   per-client limit {}/s, burst {}",
                o.rejected_429,
                cfg.per_client_rate,
                cfg.per_client_burst
            );
            outln!(
                "  fallback      {:>8}   breaker opened {} times",
                o.fallback,
                o.breaker_opened
            );
            outln!("  failed        {:>8}   database timeouts", o.failed);
            outln!(
                "  expired       {:>8}   waited over {:.1}s for the database (deadline)",
                o.expired,
                cfg.max_wait.as_secs_f64()
            );
            outln!(
                "  the database saw at most {} calls at once (limit {}; AIMD ended at {})",
                o.db_max_concurrent,
                o.max_concurrency,
                o.final_limit
            );
            write_json(a.json.as_ref(), &report)
        }
        Err(e) => {
            eprintln!("error: job herd failed: {e}");
            ExitCode::from(1)
        }
    }
}

fn bench_pipeline(a: &W1Args, rounds: u64, shed: bool) -> ExitCode {
    let cfg = a.config();
    let shed_cfg = w1::Config {
        shed_policy: true,
        ..cfg
    };
    let (mut s, mut b, mut sh) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let out = match w1::run_sluice(&cfg) {
            Ok((o, _)) => o,
            Err(e) => {
                eprintln!("error: job w1 failed: {e}");
                return ExitCode::from(1);
            }
        };
        let base = w1::run_baseline(&cfg);
        if (out.records_out, out.checksum) != (base.records_out, base.checksum) {
            eprintln!("error: sluice and the baseline disagree on W1's result");
            return ExitCode::from(1);
        }
        let shed_rate = if shed {
            match w1::run_sluice(&shed_cfg) {
                Ok((o, r))
                    if (o.records_out, o.checksum) == (out.records_out, out.checksum)
                        && r.ledger.dropped == 0 =>
                {
                    Some(o.rate(cfg.records))
                }
                Ok(_) => {
                    eprintln!("error: W1 with the shed policy changed the result");
                    return ExitCode::from(1);
                }
                Err(e) => {
                    eprintln!("error: job w1 (shed) failed: {e}");
                    return ExitCode::from(1);
                }
            }
        } else {
            None
        };
        outln!(
            "round {}: sluice {:>6.1} M rec/s   crossbeam {:>6.1} M rec/s{}",
            round + 1,
            out.rate(cfg.records) / 1e6,
            base.rate(cfg.records) / 1e6,
            shed_rate.map_or(String::new(), |r| format!(
                "   sluice+shed {:>6.1} M rec/s",
                r / 1e6
            ))
        );
        s.push(out.rate(cfg.records));
        b.push(base.rate(cfg.records));
        sh.extend(shed_rate);
    }
    let (ms, mb) = (median(s), median(b));
    outln!(
        "median: sluice {:.1} M rec/s, crossbeam {:.1} M rec/s, ratio {:.3} (p={}, capacity={}, records={})",
        ms / 1e6,
        mb / 1e6,
        ms / mb,
        cfg.parallelism,
        cfg.capacity,
        cfg.records
    );
    if shed {
        let msh = median(sh);
        outln!(
            "median: sluice with ShedByPriority (nothing shed) {:.1} M rec/s, {:+.1}% against Block",
            msh / 1e6,
            100.0 * (msh / ms - 1.0)
        );
    }
    ExitCode::SUCCESS
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn write_json(path: Option<&PathBuf>, report: &JobReport) -> ExitCode {
    let Some(path) = path else {
        return ExitCode::SUCCESS;
    };
    let json = match report.to_json() {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: could not serialize the report: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = std::fs::write(path, json) {
        eprintln!("error: could not write {}: {e}", path.display());
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

fn render(file: &PathBuf) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    use sluice::workloads::overload::ScenarioResult;
    if let Ok(r) = serde_json::from_str::<ScenarioResult>(&text) {
        overload::render(std::slice::from_ref(&r));
        return ExitCode::SUCCESS;
    }
    if let Ok(rs) = serde_json::from_str::<Vec<ScenarioResult>>(&text) {
        overload::render(&rs);
        return ExitCode::SUCCESS;
    }
    match serde_json::from_str::<JobReport>(&text) {
        Ok(r) => {
            outln!("{r}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "error: {} is not a Sluice report ({e}); write one with `sluice run w1 --json FILE` or `sluice bench overload --json FILE`",
                file.display()
            );
            ExitCode::from(2)
        }
    }
}
