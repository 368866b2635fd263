//! Payments never drop: an edge that blocks, a gateway call retried with exponential backoff
//! and jitter, and permanent failures dead-lettered with their reason.
//!
//! Payments are offered at 2x what the gateway can take. The edge in front of the gateway
//! uses the default `Block` policy, so the generator is slowed down (backpressure) instead of
//! anything being dropped. One call in ten fails with a transient 503 and is retried; cards
//! ending in 13 are declined, which retrying cannot fix: those go to the dead-letter path
//! and count as dead-lettered in the ledger, not as delivered.
//!
//! ```text
//! cargo run --release --example payments
//! cargo run --release --example payments -- --payments 2000
//! ```
//!
//! Prints the report, then
//! `payments: 10000 offered, 9900 charged, 100 dead-lettered (card declined, $...), 0 dropped,
//! ... calls retried; the generator asked for 8000/s and backpressure held it to .../s`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sluice::operators::resilience::SystemClock;
use sluice::prelude::*;

/// One payment.
#[derive(Debug, Clone)]
struct Payment {
    id: u64,
    card: u64,
    cents: u64,
}

/// The payment gateway: about 4,000 calls/s; one call in ten times out with a 503.
struct Gateway {
    calls: AtomicU64,
}

impl Gateway {
    fn charge(&self, p: &Payment) -> Result<(), CallError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_micros(250));
        if p.card % 100 == 13 {
            return Err(CallError::Permanent {
                message: "card declined".into(),
            });
        }
        if n % 10 == 3 {
            return Err(CallError::Retryable {
                message: "503 service unavailable".into(),
                retry_after: None,
            });
        }
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let payments: u64 = match arg("--payments") {
        Some(v) => v.parse().map_err(|e| format!("--payments {v}: {e}"))?,
        None => 10_000,
    };
    let gateway = Arc::new(Gateway {
        calls: AtomicU64::new(0),
    });
    let dead: Arc<Mutex<Vec<DeadLetter<Payment>>>> = Arc::default();

    let p = Pipeline::new("payments").batch_size(64);
    let (g, d) = (gateway.clone(), dead.clone());
    p.generator(
        "payments",
        1,
        GeneratorConfig::count(payments).with_rate(8_000.0), // 2x the gateway
        |i| Payment {
            id: i,
            card: i.wrapping_mul(7_919) % 10_000,
            cents: 100 + i % 9_900,
        },
    )
    .edge_capacity(256) // EdgePolicy::Block by default: never drops, slows the source
    .new_chain()
    .sink_with_retry(
        "gateway",
        RetryConfig {
            // 1 ms, 2 ms, 4 ms ... with full jitter, at most 6 attempts or 2 s per payment.
            backoff: Backoff::new(
                Duration::from_millis(1),
                Duration::from_millis(50),
                6,
                Duration::from_secs(2),
                42,
            ),
        },
        Arc::new(SystemClock::new()),
        move |pay: &Payment| g.charge(pay),
        move |letter| d.lock().push(letter),
    );

    let started = Instant::now();
    let report = p.run()?.wait()?;
    let took = started.elapsed().as_secs_f64();
    println!("{report}");
    let dead = dead.lock();
    let l = &report.ledger;
    let cents: u64 = dead.iter().map(|d| d.record.cents).sum();
    println!(
        "payments: {} offered, {} charged, {} dead-lettered ({}, ${:.2}, first #{}), {} dropped, {} calls retried; \
         the generator asked for 8000/s and backpressure held it to {:.0}/s",
        l.emitted,
        l.delivered,
        l.dead_lettered,
        dead.first().map_or("none", |d| d.reason.as_str()),
        cents as f64 / 100.0,
        dead.first().map_or(0, |d| d.record.id),
        l.dropped,
        gateway.calls.load(Ordering::Relaxed) - l.emitted,
        l.emitted as f64 / took,
    );
    Ok(())
}

/// The value after `name` on the command line.
fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next().and(args.next())
}
