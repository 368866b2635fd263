//! A thundering herd of logins at 20x what the user database serves, behind four levers:
//! a per-client rate limit that answers 429, a deadline on the database's queue (a user who
//! waited 500 ms has given up), adaptive concurrency (AIMD) and a circuit breaker whose
//! fallback answers while the database is in trouble.
//!
//! ```text
//! cargo run --release --example herd
//! cargo run --release --example herd -- --seconds 1
//! ```
//!
//! Prints the report, then each outcome: `herd: 96000 logins: served 1679, 429 78000,
//! fallback 4714, failed 7, expired 11600; the database saw at most 15 calls at once`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::operators::resilience::{Aimd, Guarded, LimiterFactory, SystemClock};
use sluice::prelude::*;

/// The user database: 8 connections, 5 ms a login; callers beyond 8 slow everyone down and
/// time out after 100 ms. From 30% to 60% of the run it browns out (10x slower).
struct UserDb {
    started: Instant,
    brownout: (Duration, Duration),
    inside: AtomicUsize,
    max_inside: AtomicUsize,
}

impl UserDb {
    fn login(&self, client: &u32) -> Result<u32, CallError> {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_inside.fetch_max(now, Ordering::SeqCst);
        // More callers than connections: each waits its turn and contention slows everyone.
        let load = (now as f64 / 8.0).max(1.0);
        let t = self.started.elapsed();
        let slow = if t >= self.brownout.0 && t < self.brownout.1 {
            10.0
        } else {
            1.0
        };
        let took = Duration::from_millis(5).mul_f64(load * load * slow);
        std::thread::sleep(took.min(Duration::from_millis(100)));
        self.inside.fetch_sub(1, Ordering::SeqCst);
        if took > Duration::from_millis(100) {
            return Err(CallError::Retryable {
                message: "user db timeout".into(),
                retry_after: None,
            });
        }
        Ok(*client)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: f64 = match arg("--seconds") {
        Some(v) => v.parse().map_err(|e| format!("--seconds {v}: {e}"))?,
        None => 3.0,
    };
    let rate = 32_000.0; // logins/s; the database serves about 1,600/s
    let clock = Arc::new(SystemClock::new());
    let db = Arc::new(UserDb {
        started: Instant::now(),
        brownout: (
            Duration::from_secs_f64(0.3 * seconds),
            Duration::from_secs_f64(0.6 * seconds),
        ),
        inside: AtomicUsize::new(0),
        max_inside: AtomicUsize::new(0),
    });

    let p = Pipeline::new("herd").batch_size(64);
    let (admitted, rejected) = p
        .generator(
            "logins",
            1,
            GeneratorConfig::count((rate * seconds) as u64).with_rate(rate),
            |i| (i.wrapping_mul(0x9E37_79B9) >> 7) as u32 % 2_000, // the client id
        )
        .rate_limit_by(
            "per-client limit",
            |c: &u32| *c,
            RateLimit::reject(2.0, 4.0),
            clock.clone(),
        )
        .split_admission("admission");
    let too_many = rejected.count("429");

    let limiter: LimiterFactory = Arc::new(|| Box::new(Aimd::new(8, 1, 16)));
    let d = db.clone();
    let (outcomes, stats) = admitted
        .edge_capacity(512)
        .edge_policy(EdgePolicy::Deadline(Duration::from_millis(500)))
        .new_chain()
        .call_stage(
            "user-db",
            // Open at 30% failures or 50% slow calls (over 25 ms) in the last 50; probe after 100 ms.
            Some(BreakerConfig {
                window: 50,
                min_calls: 20,
                failure_rate: 0.3,
                slow_call: Duration::from_millis(25),
                slow_rate: 0.5,
                open_for: Duration::from_millis(100),
                probes: 3,
            }),
            limiter,
            16,
            clock,
            move |client: &u32| d.login(client),
            |client: &u32| *client, // the fallback: a cached session, say
        );
    let counts: Arc<[AtomicU64; 3]> = Arc::default();
    let c = counts.clone();
    outcomes.for_each("outcomes", move |g| {
        let i = match g {
            Guarded::Served(_) => 0,
            Guarded::Fallback(_) => 1,
            Guarded::Failed(_) => 2,
        };
        c[i].fetch_add(1, Ordering::Relaxed);
    });

    let report = p.run()?.wait()?;
    println!("{report}");
    let n = |i: usize| counts[i].load(Ordering::Relaxed);
    println!(
        "herd: {} logins: served {}, 429 {}, fallback {}, failed {}, expired {}; the database saw at most {} calls at once (breaker opened {} times)",
        report.ledger.emitted,
        n(0),
        too_many.get(),
        n(1),
        n(2),
        report.dropped_for(DropReason::Expired),
        db.max_inside.load(Ordering::SeqCst),
        stats.breaker_opened()
    );
    Ok(())
}

/// The value after `name` on the command line.
fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next().and(args.next())
}
