//! `sluice run herd`: the thundering herd behind rate limits, adaptive concurrency, a
//! circuit breaker and a fallback.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use sluice_workloads::herd::{run as run_herd, HerdConfig};

use crate::error::CliError;
use crate::output::write_json;
use crate::parse;

/// `sluice run herd`.
#[derive(Args, Debug, Clone)]
pub struct HerdArgs {
    /// How long the burst lasts (e.g. 3s).
    #[arg(long, default_value = "3s", value_parser = parse::duration)]
    duration: Duration,
    /// Logins offered per second (the database serves about 1.6k/s).
    #[arg(long, default_value = "32k", value_parser = parse::count)]
    rate: u64,
    /// Write the job report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs the herd and prints each outcome.
pub fn run(a: &HerdArgs) -> Result<(), CliError> {
    crate::output::check_writable(a.json.as_deref())?;
    let cfg = HerdConfig {
        rate: a.rate as f64,
        duration: a.duration,
        ..Default::default()
    };
    let (o, report) = run_herd(&cfg).map_err(|e| CliError::job("herd", e))?;
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
    write_json(a.json.as_deref(), &report)
}
