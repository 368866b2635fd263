//! The scenario jobs fed through a real broker (`--brokers`): Tansu, started by
//! `scripts/broker start` (`SLUICE_KAFKA_BROKERS`); CI requires it.

#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

#[test]
fn orders_through_a_real_broker_deliver_every_payment() {
    let Some(b) = sluice_testkit::broker_from_env() else {
        return;
    };
    let t = format!("sluice-orders-{}", std::process::id());
    sluice_testkit::create_topic(&t, 2).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("orders.json");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "run",
            "orders",
            "--brokers",
            &b,
            "--topic",
            &t,
            "--partitions",
            "2",
            "--duration",
            "1500ms",
            "--sink-capacity",
            "4k",
            "--progress",
            "off",
            "--json",
            json.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let c = &v["classes"]["critical"];
    // Kafka buffered what the processor could not take yet: every payment produced arrived,
    // none dropped or dead-lettered.
    assert!(c["offered"].as_u64().unwrap() > 0);
    assert_eq!(c["delivered"], c["offered"], "{c}");
    assert_eq!(v["ledger"]["dropped"], 0);
    assert_eq!(v["ledger"]["dead_lettered"], 0);
    assert_eq!(v["ledger"]["balanced"], true);
    assert!(v["sink_retries"].as_u64().unwrap() > 0);
}
