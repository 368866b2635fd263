//! The scenario jobs fed through a real broker (`--brokers`): Tansu, started by
//! `scripts/broker start` (`SLUICE_KAFKA_BROKERS`); CI requires it.

#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

fn brokers() -> Option<String> {
    match std::env::var("SLUICE_KAFKA_BROKERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            assert!(std::env::var("CI").is_err(), "CI must run the broker tests");
            eprintln!("skipped: SLUICE_KAFKA_BROKERS is not set (scripts/broker start)");
            None
        }
    }
}

fn topic(name: &str, partitions: u32) {
    let st = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/broker"))
        .args(["topic", name, &partitions.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn orders_through_a_real_broker_deliver_every_payment() {
    let Some(b) = brokers() else { return };
    let t = format!("sluice-orders-{}", std::process::id());
    topic(&t, 2);
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
