//! The thundering herd: a burst of login requests far above what the user database can
//! serve, behind a per-client rate limit, a circuit breaker and a fallback.
//!
//! ```text
//!  logins ──► rate limit per client ──┬─(429)──────────────────────────────► rejected
//!  (20x the DB)                       └─► call stage "user-db" ───────────► outcomes
//!                                          adaptive concurrency (AIMD, <= limit)
//!                                          circuit breaker -> fallback page
//! ```
//!
//! The database serves `db_slots` logins at a time in `db_service` each; callers beyond that
//! wait inside it and give up after `db_timeout` (an error). The call stage never lets more
//! than `max_concurrency` calls in, and backs off (AIMD) when calls fail; when calls fail or
//! slow down anyway, the breaker opens and the fallback answers at once ("please retry in a
//! moment") instead of piling more work on the database.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};
use sluice_connectors::{GeneratorConfig, PipelineExt};
use sluice_engine::{DropReason, EdgePolicy, JobReport, Pipeline};
use sluice_operators::resilience::{
    AdmissionExt, Aimd, BreakerConfig, CallError, Guarded, LimiterFactory, RateLimit,
    ResilienceExt, SystemClock,
};
use sluice_operators::SinkExt;

/// A login request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Login {
    /// Sequence number.
    pub seq: u64,
    /// The client (a few clients send most requests: the herd).
    pub client: u32,
    /// When it was created.
    pub at: Instant,
}

/// Parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct HerdConfig {
    /// Logins offered per second.
    pub rate: f64,
    /// For how long.
    pub duration: Duration,
    /// Distinct clients.
    pub clients: u32,
    /// Per-client rate limit (requests/s) and burst.
    pub per_client_rate: f64,
    /// Per-client burst.
    pub per_client_burst: f64,
    /// Logins the database serves at once.
    pub db_slots: usize,
    /// Time to serve one login.
    pub db_service: Duration,
    /// A caller waiting longer than this inside the database gets an error.
    pub db_timeout: Duration,
    /// Most calls the call stage lets in at once.
    pub max_concurrency: usize,
    /// A login that waited longer than this before reaching the database is dropped (the
    /// user has given up): the `Deadline` policy on the database's input edge.
    pub max_wait: Duration,
    /// A window (from the start) during which the database is ten times slower, as in a
    /// failover or a long GC pause.
    pub brownout: Option<(Duration, Duration)>,
}

impl Default for HerdConfig {
    fn default() -> Self {
        HerdConfig {
            // The database serves 8 / 5 ms = 1,600 logins/s; offer 20x that.
            rate: 32_000.0,
            duration: Duration::from_secs(3),
            clients: 2_000,
            per_client_rate: 2.0,
            per_client_burst: 4.0,
            db_slots: 8,
            db_service: Duration::from_millis(5),
            db_timeout: Duration::from_millis(100),
            max_concurrency: 16,
            max_wait: Duration::from_millis(500),
            brownout: Some((Duration::from_millis(1000), Duration::from_millis(2000))),
        }
    }
}

/// What the herd run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HerdOutcome {
    /// Logins offered.
    pub offered: u64,
    /// Logins served by the database.
    pub served: u64,
    /// Logins refused by the per-client rate limit (429).
    pub rejected_429: u64,
    /// Logins answered by the fallback while the breaker was open.
    pub fallback: u64,
    /// Logins whose database call failed (timeout).
    pub failed: u64,
    /// Logins that waited past `max_wait` for the database and were dropped.
    pub expired: u64,
    /// p50 / p99 latency of served logins, ms.
    pub served_p50_ms: f64,
    /// p99 latency of served logins, ms.
    pub served_p99_ms: f64,
    /// Most calls inside the database at once (waiting or served).
    pub db_max_concurrent: usize,
    /// The call stage's limit on calls in flight.
    pub max_concurrency: usize,
    /// Times the breaker opened.
    pub breaker_opened: usize,
    /// The concurrency limit AIMD settled on.
    pub final_limit: usize,
}

/// The simulated user database.
struct UserDb {
    started: Instant,
    brownout: Option<(Duration, Duration)>,
    slots: usize,
    service: Duration,
    timeout: Duration,
    busy: Mutex<usize>,
    freed: Condvar,
    inside: AtomicUsize,
    max_inside: AtomicUsize,
}

impl UserDb {
    fn login(&self, _l: &Login) -> Result<u64, CallError> {
        let now_inside = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_inside.fetch_max(now_inside, Ordering::SeqCst);
        let deadline = Instant::now() + self.timeout;
        let mut busy = self.busy.lock();
        while *busy >= self.slots {
            if self.freed.wait_until(&mut busy, deadline).timed_out() {
                drop(busy);
                self.inside.fetch_sub(1, Ordering::SeqCst);
                return Err(CallError::Retryable {
                    message: "user db timeout".into(),
                    retry_after: None,
                });
            }
        }
        *busy += 1;
        drop(busy);
        // Contention: callers beyond the slots (queued inside) slow the work down
        // quadratically, as lock and buffer contention do in a real database.
        let load = (self.inside.load(Ordering::SeqCst) as f64 / self.slots as f64).max(1.0);
        let t = self.started.elapsed();
        let brown = self.brownout.is_some_and(|(a, b)| t >= a && t < b);
        let slow = if brown { 10.0 } else { 1.0 };
        std::thread::sleep(self.service.mul_f64(load * load * slow));
        *self.busy.lock() -= 1;
        self.freed.notify_one();
        self.inside.fetch_sub(1, Ordering::SeqCst);
        Ok(1)
    }
}

/// Runs the herd scenario.
///
/// # Errors
/// When the job cannot be built or fails.
pub fn run(cfg: &HerdConfig) -> Result<(HerdOutcome, JobReport), Box<dyn std::error::Error>> {
    let clock = Arc::new(SystemClock::new());
    let db = Arc::new(UserDb {
        started: Instant::now(),
        brownout: cfg.brownout,
        slots: cfg.db_slots,
        service: cfg.db_service,
        timeout: cfg.db_timeout,
        busy: Mutex::new(0),
        freed: Condvar::new(),
        inside: AtomicUsize::new(0),
        max_inside: AtomicUsize::new(0),
    });
    let total = (cfg.rate * cfg.duration.as_secs_f64()) as u64;
    let clients = cfg.clients.max(1);
    let p = Pipeline::new("herd").batch_size(64);
    // A herd: a quarter of the requests come from 1% of the clients.
    let logins = p.generator(
        "logins",
        1,
        GeneratorConfig::count(total).with_rate(cfg.rate),
        move |i| {
            let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
            let client = if h % 4 == 0 {
                (h / 4) as u32 % (clients / 100).max(1)
            } else {
                (h / 4) as u32 % clients
            };
            Login {
                seq: i,
                client,
                at: Instant::now(),
            }
        },
    );
    let (admitted, rejected) = logins
        .rate_limit_by(
            "per-client limit",
            |l: &Login| l.client,
            RateLimit::reject(cfg.per_client_rate, cfg.per_client_burst),
            clock.clone(),
        )
        .split_admission("admission");
    let rejected_count = rejected.count("429");
    let max_c = cfg.max_concurrency;
    let limiter: LimiterFactory = Arc::new(move || {
        let mut a = Aimd::new(max_c / 2, 1, max_c);
        a.slow = Some(Duration::from_millis(25));
        Box::new(a)
    });
    let db2 = db.clone();
    let (outcomes, stats) = admitted
        .edge_capacity(512)
        .edge_policy(EdgePolicy::Deadline(cfg.max_wait))
        .new_chain()
        .call_stage(
            "user-db",
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
            cfg.max_concurrency,
            clock,
            move |l: &Login| db2.login(l).map(|_| *l),
            |l: &Login| *l,
        );
    let served = Arc::new(AtomicU64::new(0));
    let fallback = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).ok(),
    ));
    let (s, fb, fl, h) = (
        served.clone(),
        fallback.clone(),
        failed.clone(),
        hist.clone(),
    );
    outcomes.for_each("outcomes", move |g| match g {
        Guarded::Served(l) => {
            s.fetch_add(1, Ordering::Relaxed);
            if let Some(h) = h.lock().as_mut() {
                h.saturating_record(l.at.elapsed().as_micros().max(1) as u64);
            }
        }
        Guarded::Fallback(_) => {
            fb.fetch_add(1, Ordering::Relaxed);
        }
        Guarded::Failed(_) => {
            fl.fetch_add(1, Ordering::Relaxed);
        }
    });
    let report = p.run()?.wait()?;
    let (p50, p99) = match hist.lock().as_ref() {
        Some(h) if !h.is_empty() => (
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
        ),
        _ => (0.0, 0.0),
    };
    Ok((
        HerdOutcome {
            offered: total,
            served: served.load(Ordering::Relaxed),
            rejected_429: rejected_count.get(),
            fallback: fallback.load(Ordering::Relaxed),
            failed: failed.load(Ordering::Relaxed),
            expired: report.dropped_for(DropReason::Expired),
            served_p50_ms: p50,
            served_p99_ms: p99,
            db_max_concurrent: db.max_inside.load(Ordering::SeqCst),
            max_concurrency: cfg.max_concurrency,
            breaker_opened: stats.breaker_opened(),
            final_limit: stats.limit(),
        },
        report,
    ))
}
