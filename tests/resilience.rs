//! Resilience operators inside pipelines, with a manual clock where time matters.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sluice::engine::{EdgePolicy, Priority};
use sluice::operators::resilience::{
    Admission, AdmissionExt, Backoff, BreakerConfig, CallError, Clock, DeadLetter, Guarded,
    LevelController, LimiterFactory, ManualClock, OverloadLevels, RateLimit, ResilienceExt,
    RetryConfig,
};
use sluice::prelude::*;

#[test]
fn per_client_limit_rejects_beyond_the_burst_with_a_429() {
    // Time stands still: each of 10 clients gets exactly its burst of 3.
    let clock = Arc::new(ManualClock::new());
    let p = Pipeline::new("limit");
    let (ok, rejected) = p
        .generator("requests", 1, GeneratorConfig::count(1_000), |i| {
            (i % 10, i)
        })
        .rate_limit_by(
            "per client",
            |r: &(u64, u64)| r.0,
            RateLimit::reject(1.0, 3.0),
            clock,
        )
        .split_admission("admission");
    let ok = ok.collect("ok");
    let rejected = rejected.collect("429");
    let report = p.run().unwrap().wait().unwrap();
    let ok = ok.take();
    assert_eq!(ok.len(), 30);
    for c in 0..10 {
        assert_eq!(ok.iter().filter(|r| r.0 == c).count(), 3);
    }
    let rejected = rejected.take();
    assert_eq!(rejected.len(), 970);
    assert!(rejected
        .iter()
        .all(|t| t.retry_after == Duration::from_secs(1)));
    assert!(report.ledger.balanced);
}

#[test]
fn delaying_limit_admits_everything_at_the_rate() {
    // A delaying limiter sleeps on the (manual) clock: 1,000 records at 100/s with a burst of
    // 10 take exactly (1000 - 10) / 100 = 9.9 s of clock time, and none is rejected.
    let clock = Arc::new(ManualClock::new());
    let c2: Arc<dyn Clock> = clock.clone();
    let p = Pipeline::new("delay");
    let out = p
        .generator("requests", 1, GeneratorConfig::count(1_000), |i| i)
        .rate_limit("global", RateLimit::delay(100.0, 10.0), c2)
        .collect("out");
    p.run().unwrap().wait().unwrap();
    let out = out.take();
    assert_eq!(out.len(), 1_000);
    assert!(out.iter().all(|a| matches!(a, Admission::Admitted(_))));
    let t = clock.now().as_secs_f64();
    assert!((t - 9.9).abs() < 1e-6, "clock at {t}");
}

#[test]
fn throttle_delays_to_the_rate_and_keeps_the_records_as_they_are() {
    // The same schedule as above, through `throttle`: a plain `Stream<u64>` comes out.
    let clock = Arc::new(ManualClock::new());
    let c2: Arc<dyn Clock> = clock.clone();
    let p = Pipeline::new("throttle");
    let out = p
        .generator("requests", 1, GeneratorConfig::count(1_000), |i| i)
        .throttle("global", 100.0, 10.0, c2)
        .map("same type", |x: u64| x)
        .collect("out");
    p.run().unwrap().wait().unwrap();
    assert_eq!(out.take(), (0..1_000).collect::<Vec<u64>>());
    let t = clock.now().as_secs_f64();
    assert!((t - 9.9).abs() < 1e-6, "clock at {t}");
}

#[test]
fn retries_then_dead_letters_permanent_failures() {
    // Records fail twice with a retryable error, then succeed; multiples of 7 fail for good.
    let clock = Arc::new(ManualClock::new());
    let attempts: Arc<Mutex<std::collections::HashMap<u64, u32>>> = Arc::default();
    let a2 = attempts.clone();
    let dead: Arc<Mutex<Vec<DeadLetter<u64>>>> = Arc::default();
    let d2 = dead.clone();
    let p = Pipeline::new("retry");
    p.generator("records", 1, GeneratorConfig::count(100), |i| i)
        .sink_with_retry(
            "flaky",
            RetryConfig {
                backoff: Backoff::new(
                    Duration::from_millis(10),
                    Duration::from_secs(1),
                    5,
                    Duration::from_secs(60),
                    1,
                ),
            },
            clock.clone(),
            move |r: &u64| {
                let mut a = a2.lock();
                let n = a.entry(*r).or_insert(0);
                *n += 1;
                if r.is_multiple_of(7) {
                    Err(CallError::Permanent {
                        message: "rejected".into(),
                    })
                } else if *n <= 2 {
                    Err(CallError::Retryable {
                        message: "503".into(),
                        retry_after: None,
                    })
                } else {
                    Ok(())
                }
            },
            move |d| d2.lock().push(d),
        );
    let report = p.run().unwrap().wait().unwrap();
    let permanent = (0..100).filter(|r| r % 7 == 0).count() as u64;
    assert_eq!(report.ledger.dead_lettered, permanent);
    assert_eq!(report.ledger.delivered, 100 - permanent);
    assert!(report.ledger.balanced);
    let dead = dead.lock();
    assert!(dead
        .iter()
        .all(|d| d.record % 7 == 0 && d.attempts == 1 && d.reason == "rejected"));
    // Every retryable record took exactly three attempts, and the waits used the clock.
    let a = attempts.lock();
    assert!(a.iter().filter(|(r, _)| *r % 7 != 0).all(|(_, n)| *n == 3));
    assert!(clock.now() > Duration::ZERO);
}

#[test]
fn retry_budget_exhaustion_goes_to_dead_letters() {
    let clock = Arc::new(ManualClock::new());
    let calls = Arc::new(AtomicU32::new(0));
    let c2 = calls.clone();
    let p = Pipeline::new("budget");
    p.generator("records", 1, GeneratorConfig::count(10), |i| i)
        .sink_with_retry(
            "down",
            RetryConfig {
                backoff: Backoff::new(
                    Duration::from_millis(100),
                    Duration::from_millis(100),
                    4,
                    Duration::from_secs(60),
                    9,
                ),
            },
            clock,
            move |_: &u64| {
                c2.fetch_add(1, Ordering::Relaxed);
                Err(CallError::Retryable {
                    message: "down".into(),
                    retry_after: Some(Duration::from_millis(5)),
                })
            },
            |_| {},
        );
    let report = p.run().unwrap().wait().unwrap();
    assert_eq!(report.ledger.dead_lettered, 10);
    assert_eq!(
        calls.load(Ordering::Relaxed),
        40,
        "four attempts each, then give up"
    );
}

#[test]
fn breaker_opens_fails_fast_to_the_fallback_and_limits_concurrency() {
    // The dependency fails for records 100..300. The breaker opens after the failures start
    // and the fallback answers; the clock does not move, so it stays open.
    let clock = Arc::new(ManualClock::new());
    let calls = Arc::new(AtomicU64::new(0));
    let c2 = calls.clone();
    let limiter: LimiterFactory =
        Arc::new(|| Box::new(sluice::operators::resilience::Aimd::new(4, 1, 4)));
    let p = Pipeline::new("breaker").batch_size(32);
    let (out, stats) = p
        .generator("records", 1, GeneratorConfig::count(400), |i| i)
        .call_stage(
            "dependency",
            Some(BreakerConfig {
                window: 10,
                min_calls: 10,
                failure_rate: 0.5,
                slow_call: Duration::from_secs(10),
                slow_rate: 1.0,
                open_for: Duration::from_secs(5),
                probes: 1,
            }),
            limiter,
            4,
            clock,
            move |r: &u64| {
                c2.fetch_add(1, Ordering::Relaxed);
                if (100..300).contains(r) {
                    Err(CallError::Retryable {
                        message: "unavailable".into(),
                        retry_after: None,
                    })
                } else {
                    Ok(*r)
                }
            },
            |r: &u64| r + 1_000_000,
        );
    let out = out.collect("out");
    let report = p.run().unwrap().wait().unwrap();
    let out = out.take();
    assert_eq!(out.len(), 400);
    let served = out
        .iter()
        .filter(|g| matches!(g, Guarded::Served(_)))
        .count();
    let fallback = out
        .iter()
        .filter(|g| matches!(g, Guarded::Fallback(_)))
        .count();
    let failed = out
        .iter()
        .filter(|g| matches!(g, Guarded::Failed(_)))
        .count();
    // Records before the failures are served, except that up to three of the last ones may
    // have been called after failures on the other workers opened the breaker (4 workers:
    // a CI run served 99).
    assert!((97..=100).contains(&served), "served {served}");
    assert!(out.iter().all(|g| match g {
        Guarded::Served(v) => *v < 100,
        _ => true,
    }));
    // The window of 10 holds the last successes; 5 failures make 50%: open. Up to three more
    // calls were already in flight on the other workers.
    assert!(
        (5..=8).contains(&failed),
        "failed {failed}: the breaker stopped the calls"
    );
    assert_eq!(served + fallback + failed, 400);
    assert_eq!(
        calls.load(Ordering::Relaxed) as usize,
        served + failed,
        "no call while open"
    );
    assert!(stats.breaker_opened() >= 1);
    assert!(stats.max_in_flight() <= 4);
    assert!(report.ledger.balanced);
}

#[test]
fn level_controller_switches_to_shedding_under_pressure() {
    let p = Pipeline::new("levels").batch_size(50);
    let telemetry = p
        .generator("telemetry", 1, GeneratorConfig::count(50_000), |i| i)
        .classify(|r: &u64| {
            if r.is_multiple_of(10) {
                Priority::ERROR
            } else {
                Priority::DEBUG
            }
        })
        .edge_capacity(500);
    let edge = telemetry.edge_id();
    telemetry.new_chain().for_each("slow sink", |_| {
        std::thread::sleep(Duration::from_micros(20))
    });
    let job = p.run().unwrap();
    assert_eq!(
        job.handle().edge_name(edge).unwrap(),
        "telemetry -> slow sink"
    );
    let ctl = LevelController::spawn(
        job.handle(),
        edge,
        OverloadLevels::standard(),
        vec![(
            edge,
            vec![EdgePolicy::Block, EdgePolicy::shed_by_priority()],
        )],
        Duration::from_millis(5),
    )
    .unwrap();
    let report = job.wait().unwrap();
    let levels = ctl.join().unwrap();
    assert!(!levels.changes.is_empty(), "pressure raised the level");
    assert!(report.events.iter().any(|e| e.kind == "level"));
    assert!(report
        .events
        .iter()
        .any(|e| e.kind == "policy" && e.detail.contains("shed_by_priority")));
    assert!(
        report.ledger.dropped > 0,
        "debug was shed once shedding was on"
    );
    assert_eq!(report.dropped_of_class(Priority::ERROR), 0);
    assert!(report.ledger.balanced);
}

#[test]
fn retryable_k_times_then_permanent_is_dead_lettered_after_k_plus_one_attempts() {
    // Record 5 fails retryably three times, then permanently; the others succeed at once.
    let clock = Arc::new(ManualClock::new());
    let tries: Arc<Mutex<u32>> = Arc::default();
    let t = tries.clone();
    let dead: Arc<Mutex<Vec<DeadLetter<u64>>>> = Arc::default();
    let d = dead.clone();
    let p = Pipeline::new("k-then-permanent");
    p.generator("records", 1, GeneratorConfig::count(10), |i| i)
        .sink_with_retry(
            "flaky",
            RetryConfig {
                backoff: Backoff::new(
                    Duration::from_millis(10),
                    Duration::from_secs(1),
                    10,
                    Duration::from_secs(60),
                    1,
                ),
            },
            clock,
            move |r: &u64| {
                if *r != 5 {
                    return Ok(());
                }
                let mut n = t.lock();
                *n += 1;
                if *n <= 3 {
                    Err(CallError::Retryable {
                        message: "503".into(),
                        retry_after: None,
                    })
                } else {
                    Err(CallError::Permanent {
                        message: "422 unprocessable".into(),
                    })
                }
            },
            move |letter| d.lock().push(letter),
        );
    let report = p.run().unwrap().wait().unwrap();
    let dead = dead.lock();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].record, dead[0].attempts), (5, 4));
    assert_eq!(dead[0].reason, "422 unprocessable");
    let l = &report.ledger;
    assert_eq!((l.delivered, l.dead_lettered), (9, 1));
    assert!(l.balanced);
}
