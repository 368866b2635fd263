//! Stopping the CLI: a signal drains the job, prints its report and JSON, and exits 130
//! (SIGINT) or 143 (SIGTERM); `bench overload`'s children stop with their parent and die with
//! it.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn kill(sig: &str, pid: u32) {
    let st = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -s {sig} {pid}");
}

/// Starts `sluice args` and returns it once a progress line shows it is running.
fn started(args: &[&str]) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no progress line within 30 s");
        let line = lines.next().expect("stderr open").unwrap();
        // Plain progress: one line per sample, `[label] <elapsed>/<window>s ...`.
        if line.starts_with('[') && line.contains("delivered") {
            break;
        }
    }
    // Keep draining stderr so the child never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    child
}

#[test]
fn sigint_drains_the_job_writes_its_report_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("t.json");
    let child = started(&[
        "run",
        "telemetry",
        "--duration",
        "30s",
        "--progress",
        "plain",
        "--json",
        json.to_str().unwrap(),
    ]);
    let t0 = Instant::now();
    kill("INT", child.id());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "stopped, not run to the end"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("stopped after"), "{stdout}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["stopped"], true);
    assert_eq!(r["ledger"]["balanced"], true);
    assert!(r["duration_s"].as_f64().unwrap() < 30.0);
}

#[test]
fn sigterm_to_bench_overload_stops_its_child_and_reports_what_ran() {
    let child = started(&[
        "bench",
        "overload",
        "--policy",
        "block,shed",
        "--duration",
        "30s",
        "--progress",
        "plain",
    ]);
    // Only the parent gets the signal (as from `kill PID`); it stops the child through the
    // child's stdin.
    kill("TERM", child.id());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("block ") && l.ends_with("balanced")),
        "the stopped policy is reported: {stdout}"
    );
    assert!(
        !stdout.lines().any(|l| l.starts_with("shed ")),
        "the policies after the stop do not run: {stdout}"
    );
}

#[test]
fn bench_overload_children_die_with_a_killed_parent() {
    let child = started(&[
        "bench",
        "overload",
        "--policy",
        "block",
        "--duration",
        "60s",
        "--progress",
        "plain",
    ]);
    let parent = child.id();
    let kids = Command::new("pgrep")
        .args(["-P", &parent.to_string()])
        .output()
        .unwrap();
    let kid: u32 = String::from_utf8_lossy(&kids.stdout)
        .split_whitespace()
        .next()
        .expect("a child process")
        .parse()
        .unwrap();
    kill("KILL", parent);
    let mut child = child;
    let _ = child.wait();
    // Gone, or a zombie waiting for init to reap it: either way no longer running.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{kid}/stat"))
            .ok()
            .and_then(|s| s.rsplit(')').next().map(|r| r.trim().chars().next()))
            .flatten();
        if matches!(state, None | Some('Z') | Some('X')) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "child {kid} still running ({state:?})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
