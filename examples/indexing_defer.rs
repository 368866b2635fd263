//! Index what matters now, the rest later: a burst of pages at 3x the indexer's capacity;
//! high-rank pages are indexed at once, low-rank pages are deferred to a checksummed on-disk
//! log and replayed, oldest first, when the burst has passed. Nothing is dropped.
//!
//! The edge in front of the indexer has `EdgePolicy::Defer { below: WARN }`: when it is short
//! of credit, records of the classes below `WARN` (the low ranks) go to the log instead of
//! waiting; the high ranks block as usual, so they keep their place at the indexer. The log
//! lives in `--dir` (default: a fresh directory under the system's temporary directory); a
//! job stopped before it drained leaves the records there and the next run replays them.
//!
//! ```text
//! cargo run --release --example indexing_defer
//! cargo run --release --example indexing_defer -- --pages 6000
//! ```
//!
//! Prints the report, then per rank when its last page was indexed, and the peak of the log:
//! `indexing_defer: high rank 6000 pages, all indexed by 0.6 s; low rank 24000 pages,
//! deferred up to 17000 on disk, all indexed by 3.0 s; dropped 0`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sluice::prelude::*;

/// A crawled page with its rank (0 = lowest, 3 = highest) and when it was crawled.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Page {
    url: String,
    rank: u8,
    crawled_us: u64,
}

impl Prioritized for Page {
    fn priority(&self) -> Priority {
        Priority::rank(self.rank)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pages: u64 = match arg("--pages") {
        Some(v) => v.parse().map_err(|e| format!("--pages {v}: {e}"))?,
        None => 30_000,
    };
    let dir = match arg("--dir") {
        Some(d) => d.into(),
        None => std::env::temp_dir().join(format!("sluice-indexing-{}", std::process::id())),
    };
    let started = Instant::now();
    // Per rank: how long each page waited from crawl to index, in microseconds.
    let waited: Arc<Mutex<[Vec<u64>; 4]>> = Arc::default();

    let p = Pipeline::new("indexing").batch_size(128);
    let w = waited.clone();
    p.generator(
        "crawler",
        1,
        GeneratorConfig::count(pages).with_rate(15_000.0), // 3x the indexer
        move |i| Page {
            url: format!("https://example.com/{i}"),
            rank: [0, 1, 0, 3, 1, 0, 2, 0, 1, 0][(i % 10) as usize],
            crawled_us: started.elapsed().as_micros() as u64,
        },
    )
    .prioritized()
    // Small: a high-rank page waits behind at most 256 queued pages (about 60 ms).
    .edge_capacity(256)
    .edge_policy(EdgePolicy::Defer(DeferConfig {
        below: Priority::WARN,
        when_full: WhenLogFull::Block,
    }))
    .defer_to(&dir, 256 << 20, JsonCodec::<Page>::new())
    .new_chain()
    .for_each("indexer", move |page: Page| {
        std::thread::sleep(Duration::from_micros(100)); // about 5k pages/s with the wake-up
        let us = (started.elapsed().as_micros() as u64).saturating_sub(page.crawled_us);
        w.lock()[page.rank.min(3) as usize].push(us);
    });

    let job = p.run()?;
    let mut peak = 0;
    while !job.is_finished() {
        peak = peak.max(job.report().ledger.deferred_pending);
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = job.wait()?;
    println!("{report}");
    let mut w = waited.lock();
    let (mut hi, mut lo) = (std::mem::take(&mut w[2]), std::mem::take(&mut w[0]));
    hi.append(&mut w[3]);
    lo.append(&mut w[1]);
    println!(
        "indexing_defer: high rank {} pages waited p50 {} / p99 {}; low rank {} pages, deferred up to {peak} on disk, waited p50 {} / p99 {}; dropped {}",
        hi.len(),
        ms(&mut hi, 0.5),
        ms(&mut hi, 0.99),
        lo.len(),
        ms(&mut lo, 0.5),
        ms(&mut lo, 0.99),
        report.ledger.dropped
    );
    if arg("--dir").is_none() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}

/// The `q` quantile of waits in microseconds, as milliseconds.
fn ms(v: &mut [u64], q: f64) -> String {
    v.sort_unstable();
    let i = ((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1));
    v.get(i)
        .map_or("-".into(), |us| format!("{:.0} ms", *us as f64 / 1000.0))
}

/// The value after `name` on the command line.
fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next().and(args.next())
}
