//! The `sluice` binary: jobs run to completion, bad arguments exit 2 with a useful message.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

fn sluice(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("sluice runs")
}

#[test]
fn run_w1_prints_result_and_writes_json() {
    let dir = std::env::temp_dir().join(format!("sluice-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let json = dir.join("w1.json");
    let out = sluice(&[
        "run",
        "w1",
        "--records",
        "200000",
        "--parallelism",
        "2",
        "--json",
        json.to_str().expect("utf8 path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (n, x) = sluice::workloads::w1::reference(200_000);
    assert!(
        stdout.contains(&format!("records_out={n} checksum={x:016x}")),
        "{stdout}"
    );
    assert!(stdout.contains("[balanced]"), "{stdout}");

    let rendered = sluice(&["report", json.to_str().expect("utf8 path")]);
    assert!(rendered.status.success());
    assert!(String::from_utf8_lossy(&rendered.stdout).contains("job w1: Completed"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    let out = sluice(&["run", "w1", "--parallelism", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--parallelism") && err.contains("1..=64"),
        "{err}"
    );

    let out = sluice(&["run", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("w1"),
        "lists valid jobs"
    );

    let out = sluice(&["report", "/nonexistent/report.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn jobs_lists_w1() {
    let out = sluice(&["jobs"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("w1"));
}

#[test]
fn bench_overload_runs_each_policy_and_balances() {
    let dir = std::env::temp_dir().join(format!("sluice-overload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let json = dir.join("overload.json");
    let out = sluice(&[
        "bench",
        "overload",
        "--policy",
        "block,shed,drop-oldest",
        "--duration",
        "400ms",
        "--sink-capacity",
        "20k",
        "--json",
        json.to_str().expect("utf8 path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&json).expect("results written");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let runs = v.as_array().expect("one result per policy");
    assert_eq!(runs.len(), 3);
    for r in runs {
        assert_eq!(r["ledger"]["balanced"], true, "{r}");
        assert!(r["peak_rss_bytes"].as_u64().unwrap_or(0) > 0);
        assert!(r["classes"].as_array().is_some_and(|c| !c.is_empty()));
    }
    // Shedding never drops errors; blocking never drops anything.
    let shed = &runs[1];
    let err = shed["classes"]
        .as_array()
        .and_then(|c| c.iter().find(|x| x["class"] == "error"))
        .expect("error class");
    assert_eq!(err["dropped"], 0);
    assert_eq!(runs[0]["ledger"]["dropped"], 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_overload_rejects_bad_values() {
    let out = sluice(&["bench", "overload", "--duration", "ten"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("250ms"));
    let out = sluice(&["bench", "overload", "--policy", "yolo"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("drop-newest"));
}

#[test]
fn passthrough_on_the_embedded_cluster_loses_nothing() {
    // One source instance: with two, a member joining late triggers a rebalance and the
    // records in flight at the revoke are read again (at least once: duplicates, never loss).
    let out = sluice(&[
        "run",
        "passthrough",
        "--messages",
        "5k",
        "--parallelism",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("produced 5000 delivered 5000 lost 0 duplicates 0"),
        "{stdout}"
    );
    assert!(stdout.contains("[balanced]"));
    assert!(!stdout.contains("stuck tasks"));
}
