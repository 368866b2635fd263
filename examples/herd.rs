//! The thundering herd: logins at 20x what the user database serves, behind a per-client
//! rate limit (429s), adaptive concurrency (AIMD), a circuit breaker and a fallback.
//!
//! ```text
//! cargo run --release --example herd
//! ```
//!
//! Prints served / rejected-429 / fallback / failed counts, the p99 latency of served logins,
//! and the most calls the database ever saw at once (never more than the call stage's limit).
//! `sluice run herd` runs the same job with the full job report.

use sluice::workloads::herd::{run, HerdConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = HerdConfig::default();
    let (o, report) = run(&cfg)?;
    println!("{}", serde_json::to_string_pretty(&o)?);
    println!("ledger balanced: {}", report.ledger.balanced);
    Ok(())
}
