//! The overload scenario harness: a queue without a bound is stopped at the memory cap, and
//! says so.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use sluice_workloads::overload::{self, PolicyChoice, Scenario};

#[test]
fn an_unbounded_queue_is_aborted_at_the_memory_cap_and_the_result_says_so() {
    let now = overload::rss_bytes().unwrap();
    let s = Scenario {
        policy: PolicyChoice::Unbounded,
        duration: Duration::from_secs(20),
        // 10x a sink of 100k/s queues ~900k records a second: 100 MB more is a second or two.
        max_rss_bytes: now + (100 << 20),
        ..Scenario::default()
    };
    let r = overload::run(&s, &mut |_| {}).unwrap();
    assert!(r.memory_capped);
    assert!(r.duration_s < 20.0, "cut short: {}", r.duration_s);
    assert!(r.ledger.balanced);
    assert!(
        r.ledger.in_flight > 0,
        "what was queued counts as in flight"
    );
}
