//! W1: generate -> map -> filter -> key_by + running sum -> checksum sink, on Sluice.
//!
//! ```text
//! cargo run --release --example w1_pipeline -- --records 20000000 --parallelism 2
//! cargo run --release --example w1_pipeline -- --baseline     # also run the crossbeam baseline
//! ```
//!
//! Prints `records_out=.. checksum=.. seconds=.. rate=..` (rate in records generated per
//! second). For 20,000,000 records the output is `records_out=13998017
//! checksum=9bd6acc3ae00a66f` at any parallelism that divides 1024. `--report` prints the
//! job report (stages, edges, latency, ledger); `--baseline` runs the hand-written crossbeam
//! pipeline with the same threads and buffers and prints the ratio.

use clap::Parser;
use sluice::workloads::w1;

#[derive(Parser, Debug)]
#[command(about = "Workload W1 on Sluice")]
struct Args {
    /// Records to generate.
    #[arg(long, default_value_t = 20_000_000)]
    records: u64,
    /// Instances of every stage.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    parallelism: u64,
    /// Records each edge buffers (per downstream instance).
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..))]
    capacity: u64,
    /// Also run the hand-written crossbeam baseline and print the ratio.
    #[arg(long)]
    baseline: bool,
    /// Print the full job report.
    #[arg(long)]
    report: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let cfg = w1::Config {
        records: args.records,
        parallelism: args.parallelism as usize,
        capacity: args.capacity as usize,
        ..w1::Config::default()
    };
    let (out, report) = match w1::run_sluice(&cfg) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("w1 failed: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "records_out={} checksum={:016x} seconds={:.3} rate={:.1}M/s",
        out.records_out,
        out.checksum,
        out.elapsed.as_secs_f64(),
        out.rate(cfg.records) / 1e6
    );
    if args.report {
        println!("\n{report}");
    }
    if args.baseline {
        let base = w1::run_baseline(&cfg);
        println!(
            "baseline records_out={} checksum={:016x} seconds={:.3} rate={:.1}M/s",
            base.records_out,
            base.checksum,
            base.elapsed.as_secs_f64(),
            base.rate(cfg.records) / 1e6
        );
        println!(
            "sluice/baseline throughput ratio = {:.3}",
            base.elapsed.as_secs_f64() / out.elapsed.as_secs_f64()
        );
    }
    std::process::ExitCode::SUCCESS
}
