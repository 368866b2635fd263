//! The `sluice` command line: run the example jobs, benchmark, render reports.
//!
//! One module per command; each returns `Result<(), CliError>` and `main` maps the error to
//! the exit code: 0 success, 1 a job failed, 2 invalid arguments or configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[macro_use]
mod output;
mod error;
mod herd;
mod jobs;
#[cfg(feature = "kafka")]
mod kafka;
mod parse;
mod plot;
mod progress;
mod report;
mod scenario;
mod w1;

use error::CliError;

/// How long a stopped job may drain before it is aborted.
pub(crate) const STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

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
    W1(w1::W1Args),
    /// Log records with levels at up to 10x the sink: Debug then Info are shed, Error never.
    Telemetry(scenario::ScenarioJobArgs),
    /// Payments at 2x the processor, which fails now and then: never dropped, blocked and
    /// retried; latency moves upstream.
    Orders(scenario::ScenarioJobArgs),
    /// A burst of pages to index: high rank indexed at once, low rank deferred to disk and
    /// indexed when the burst has passed.
    Indexing(scenario::ScenarioJobArgs),
    /// A burst far above the workers' capacity, buffered in Kafka; the workers pull at their
    /// own pace. Shows the backlog grow and drain, and the recovery time.
    Ingest(scenario::ScenarioJobArgs),
    /// A burst of logins at 20x the user database, behind a per-client rate limit, adaptive
    /// concurrency, a circuit breaker and a fallback.
    Herd(herd::HerdArgs),
    /// Kafka topic -> map -> topic, then reads the output back: lost and duplicated counts.
    /// Runs on an embedded Kafka cluster unless --brokers is given.
    #[cfg(feature = "kafka")]
    Passthrough(kafka::PassthroughArgs),
    /// Copies a Kafka topic to another (a consumer group member; run several to share the
    /// partitions). Ends when the input has been idle for --end-when-idle.
    #[cfg(feature = "kafka")]
    KafkaCopy(kafka::KafkaCopyArgs),
    /// A paced Kafka topic -> topic job on the embedded cluster while it misbehaves (broker
    /// down 10 s, failing produce requests, added latency, a tiny producer queue): lost and
    /// duplicated counts, and what happened, in words.
    #[cfg(feature = "kafka")]
    KafkaFaults(kafka::KafkaFaultsArgs),
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// An open-loop producer at N x the sink's capacity through each overload policy, side by
    /// side: goodput, drops by class, latency by class, peak memory, the ledger.
    Overload(Box<scenario::OverloadArgs>),
    /// Kafka passthrough (topic -> map -> topic, at least once) on Sluice against a
    /// hand-written rdkafka consume -> produce loop, same cluster, same run.
    #[cfg(feature = "kafka")]
    Kafka(kafka::KafkaBenchArgs),
    /// W1 on Sluice against a hand-written crossbeam pipeline, in the same run.
    Pipeline(w1::BenchArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            if e.kind() == clap::error::ErrorKind::InvalidSubcommand {
                eprintln!(
                    "available jobs: {} (see `sluice jobs`)",
                    jobs::names().join(", ")
                );
            }
            return ExitCode::from(code);
        }
    };
    // SIGINT/SIGTERM: jobs drain within this deadline and report; a second signal exits.
    if let Err(e) = sluice::engine::shutdown::stop_on_signals(STOP_DEADLINE) {
        eprintln!("warning: cannot handle SIGINT/SIGTERM: {e}");
    }
    let result = run(cli.command);
    if let Some(sig) = sluice::engine::shutdown::received_signal() {
        if let Err(e) = &result {
            eprintln!("error: {e}");
        }
        // 130 for SIGINT, 143 for SIGTERM, after whatever the stopped jobs reported.
        return ExitCode::from((128 + sig).clamp(0, 255) as u8);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(command: Command) -> Result<(), CliError> {
    use sluice_workloads::overload::ScenarioJob;
    match command {
        Command::Jobs => jobs::list(),
        Command::Run { job } => match job {
            Job::W1(a) => w1::run(&a),
            Job::Herd(a) => herd::run(&a),
            Job::Telemetry(a) => scenario::run_job(ScenarioJob::Telemetry, &a),
            Job::Orders(a) => scenario::run_job(ScenarioJob::Orders, &a),
            Job::Indexing(a) => scenario::run_job(ScenarioJob::Indexing, &a),
            Job::Ingest(a) => scenario::run_job(ScenarioJob::Ingest, &a),
            #[cfg(feature = "kafka")]
            Job::Passthrough(a) => kafka::passthrough(&a),
            #[cfg(feature = "kafka")]
            Job::KafkaCopy(a) => kafka::copy(&a),
            #[cfg(feature = "kafka")]
            Job::KafkaFaults(a) => kafka::faults(&a),
        },
        Command::Bench { bench } => match bench {
            Bench::Overload(a) => scenario::bench(&a),
            #[cfg(feature = "kafka")]
            Bench::Kafka(a) => kafka::bench(&a),
            Bench::Pipeline(a) => w1::bench(&a),
        },
        Command::Report { file } => report::render(&file),
    }
}
