//! The herd job: every login ends in exactly one outcome and the database never sees more
//! calls at once than the call stage's limit.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

#[test]
fn herd_job_reports_every_outcome_and_respects_the_limit() {
    let cfg = sluice_workloads::herd::HerdConfig {
        duration: Duration::from_millis(1500),
        brownout: Some((Duration::from_millis(300), Duration::from_millis(900))),
        ..Default::default()
    };
    let (o, report) = sluice_workloads::herd::run(&cfg).unwrap();
    assert!(report.ledger.balanced);
    assert_eq!(
        o.served + o.rejected_429 + o.fallback + o.failed + o.expired,
        o.offered
    );
    assert!(o.served > 0 && o.rejected_429 > 0);
    assert!(
        o.db_max_concurrent <= o.max_concurrency,
        "{} > {}",
        o.db_max_concurrent,
        o.max_concurrency
    );
}
