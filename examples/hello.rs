//! Hello, Sluice: the README's pipeline. Two generator instances emit `(key, value)` pairs;
//! a filter runs chained in the generators' threads; `key_by` hash-partitions the pairs into
//! a running sum per key; a counting sink ends the stream. The report shows every stage's
//! busy/idle/backpressured time, every edge, the sink's latency and the ledger.
//!
//! ```text
//! cargo run --release --example hello
//! cargo run --release --example hello -- --records 100000
//! ```
//!
//! Prints the report, then one line:
//! `hello: 700000 of 1000000 records delivered, 300000 filtered, ledger balanced`.

use sluice::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let records: u64 = match arg("--records") {
        Some(v) => v.parse().map_err(|e| format!("--records {v}: {e}"))?,
        None => 1_000_000,
    };

    let p = Pipeline::new("hello");
    let out = p
        .generator("events", 2, GeneratorConfig::count(records), |i| {
            (i % 1024, i)
        })
        .filter("sampled", |(_, v)| v % 10 < 7) // chained into the source thread
        .key_by(|(k, _)| *k) // a hash exchange: one key, one instance
        .fold(
            "per-key sum",
            || 0u64,
            |sum, (k, v)| {
                *sum += v;
                (k, *sum)
            },
        )
        .count("sink");

    // `run` validates the graph and starts one thread per chain instance; `wait` returns the
    // report once every record has ended somewhere.
    let report = p.run()?.wait()?;
    println!("{report}");
    let l = &report.ledger;
    println!(
        "hello: {} of {} records delivered, {} filtered, ledger {}",
        out.get(),
        l.emitted,
        l.filtered,
        if l.balanced { "balanced" } else { "UNBALANCED" }
    );
    Ok(())
}

/// The value after `name` on the command line.
fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next().and(args.next())
}
