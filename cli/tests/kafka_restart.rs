//! Kill -9 of a Kafka job mid-stream, then a restart in the same group: nothing lost, and
//! duplicates bounded by the job's in-flight window. Needs a real broker
//! (`SLUICE_KAFKA_BROKERS`, started by `scripts/broker start`); CI requires it.

#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::ClientConfig;
use sluice_testkit::{broker_from_env, count_payloads, create_topic, produce, run_id};

/// Reads `t` back with a fresh group: what of `m0`..`m{n-1}` arrived, and how often.
fn read_back(brokers: &str, t: &str, n: u64) -> sluice_testkit::ReadBack {
    let group = format!("count-{t}-{}", run_id());
    count_payloads(brokers, t, &group, "m", n, Duration::from_secs(60)).unwrap()
}

/// A `sluice run kafka-copy` member copying `tin` to `tout` in `group`, with `delay_us` of
/// work per record, ending once idle for `idle`; output discarded.
fn kafka_copy(
    brokers: &str,
    (tin, tout, group): (&str, &str, &str),
    delay_us: &str,
    idle: &str,
) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
    c.args([
        "run",
        "kafka-copy",
        "--brokers",
        brokers,
        "--input",
        tin,
        "--output",
        tout,
        "--group",
        group,
        "--delay-us",
        delay_us,
        "--end-when-idle",
        idle,
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    c
}

#[test]
fn kill_9_mid_stream_then_restart_loses_nothing() {
    let Some(brokers) = broker_from_env() else {
        return;
    };
    let run = std::process::id();
    let (tin, tout, group) = (
        format!("k9-in-{run}"),
        format!("k9-out-{run}"),
        format!("k9-{run}"),
    );
    create_topic(&tin, 2).unwrap();
    create_topic(&tout, 2).unwrap();
    let n = 20_000u64;
    produce(&brokers, &tin, n, |i| {
        (format!("m{i}"), format!("m{i}").into_bytes())
    })
    .unwrap();

    let job = |delay: &str| {
        kafka_copy(&brokers, (&tin, &tout, &group), delay, "4s")
            .spawn()
            .unwrap()
    };
    // A slow first run (about 1k records/s), killed with SIGKILL once part of the output exists.
    let mut first = job("1000");
    // Progress is read from the group's committed offsets (no group join needed).
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &group)
        .create()
        .unwrap();
    let committed = || -> u64 {
        sluice::connectors::kafka::committed_offsets(&probe, &[&tin])
            .iter()
            .map(|(_, _, o)| (*o).max(0) as u64)
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut before_kill;
    loop {
        before_kill = committed();
        if before_kill >= 2_000 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    first.kill().unwrap(); // SIGKILL
    let _ = first.wait();

    // Restart in the same group: it resumes from the committed offsets.
    let second = job("0").wait().unwrap();
    assert!(second.success());

    let seen = read_back(&brokers, &tout, n);
    let (lost, dups) = (seen.lost(), seen.duplicates());
    eprintln!("kill -9 after {before_kill} of {n} were committed: lost {lost}, duplicates {dups}");
    assert!(
        before_kill >= 2_000 && before_kill < n,
        "the kill landed mid-stream"
    );
    assert_eq!(lost, 0, "nothing lost across kill -9");
    // In flight at the kill: at most 2 batches of 256 prefetched, 512 on the edge, one batch
    // in the sink, plus what 200 ms of auto-commit interval let through (~1k).
    assert!(
        dups <= 3_000,
        "duplicates {dups} exceed the in-flight window"
    );
}

/// Two members of one group on librdkafka's mock cluster, hosted by this test process and
/// reached by the two job processes over TCP on loopback. Runs when no real broker is
/// configured (the `_broker` variant runs then; CI has one), so one of the two always runs.
#[test]
fn two_processes_split_the_partitions_and_hand_over_on_kill_mock() {
    if std::env::var("SLUICE_KAFKA_BROKERS").is_ok_and(|b| !b.is_empty()) {
        eprintln!("skipped: the _broker variant runs against SLUICE_KAFKA_BROKERS");
        return;
    }
    let kafka = sluice::connectors::kafka::EmbeddedKafka::start(1).unwrap();
    // The mock cluster refuses every OffsetCommit while a rebalance is pending (from b's
    // JoinGroup until a's next heartbeat, ~3 s: "Group rebalance in progress" in a's
    // `debug=cgrp` log), so b starts a's old partitions from a's last commit before b joined:
    // duplicates are that window (~2.5k at 1k/s) plus a's in-flight window at the kill.
    split_and_hand_over(
        &kafka.brokers(),
        &|t, n| kafka.create_topic(t, n).unwrap(),
        9_000,
    );
}

/// The same against the real broker (Tansu).
#[test]
fn two_processes_split_the_partitions_and_hand_over_on_kill_broker() {
    let Some(brokers) = broker_from_env() else {
        return;
    };
    split_and_hand_over(&brokers, &|t, n| create_topic(t, n as u32).unwrap(), 6_000);
}

/// A slow member `a` takes all four partitions; `b` joins and they split 2/2 (the busy `a` is
/// revoked and must rejoin: until a member's idle clock ignored time spent without partitions,
/// `a` ended itself as "idle" while waiting to rejoin); `a` is killed with SIGKILL and `b`
/// takes over its partitions and finishes the topic. Nothing is lost.
fn split_and_hand_over(brokers: &str, create: &dyn Fn(&str, i32), max_dups: u64) {
    use std::io::{BufRead, BufReader};
    use std::sync::{Arc, Mutex};

    let brokers = brokers.to_string();
    let run = std::process::id();
    let (tin, tout, group) = (
        format!("split-in-{run}"),
        format!("split-out-{run}"),
        format!("split-{run}"),
    );
    create(&tin, 4);
    create(&tout, 4);
    let n = 24_000u64;
    produce(&brokers, &tin, n, |i| {
        (format!("m{i}"), format!("m{i}").into_bytes())
    })
    .unwrap();

    // A member: slow (about 1k records/s), its "assigned N partitions" lines collected.
    let member = |name: &'static str, log: Arc<Mutex<Vec<(Instant, String, u64)>>>| {
        // Idle for 15 s: long enough that b, done with its own partitions, waits for a's.
        let mut child = kafka_copy(&brokers, (&tin, &tout, &group), "1000", "15s")
            // The rebalance timeout: a member killed without leaving holds up the next
            // rebalance this long on Tansu (60 s by default, longer than the test waits).
            .args(["--set", "max.poll.interval.ms=20000"])
            // How soon a killed member is evicted.
            .args(["--set", "session.timeout.ms=6000"])
            // e.g. SLUICE_TEST_KAFKA_SET=debug=cgrp with SLUICE_KAFKA_LOG=1 and --no-capture.
            .args(
                std::env::var("SLUICE_TEST_KAFKA_SET")
                    .ok()
                    .map(|kv| vec!["--set".to_string(), kv])
                    .unwrap_or_default(),
            )
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                // Shown when the test fails (or with --nocapture).
                eprintln!("{name}: {line}");
                if let Some(k) = line
                    .strip_prefix("kafka-copy: assigned ")
                    .and_then(|r| r.split(' ').next())
                    .and_then(|k| k.parse::<u64>().ok())
                {
                    log.lock()
                        .unwrap()
                        .push((Instant::now(), name.to_string(), k));
                }
            }
        });
        child
    };
    let log = Arc::new(Mutex::new(Vec::new()));
    let holds = |who: &str, k: u64| {
        log.lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(_, n, _)| n == who)
            .is_some_and(|(_, _, x)| *x == k)
    };
    let wait_for = |what: &dyn Fn() -> bool, secs: u64| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !what() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        what()
    };
    let mut a = member("a", log.clone());
    assert!(wait_for(&|| holds("a", 4), 60), "a joins and holds all 4");
    let b = member("b", log.clone());
    // The group rebalances: two partitions each.
    assert!(
        wait_for(&|| holds("a", 2) && holds("b", 2), 60),
        "the members split the partitions 2/2: {:?}",
        log.lock().unwrap()
    );
    // Both work for a while, then a is killed with SIGKILL: b takes over its partitions
    // (after the session timeout) and finishes the topic.
    std::thread::sleep(Duration::from_secs(2));
    a.kill().unwrap();
    let _ = a.wait();
    assert!(
        wait_for(&|| holds("b", 4), 60),
        "b takes over a's partitions: {:?}",
        log.lock().unwrap()
    );
    let mut b = b;
    let status = b.wait().unwrap();
    assert!(status.success());

    let seen = read_back(&brokers, &tout, n);
    let (lost, dups) = (seen.lost(), seen.duplicates());
    eprintln!("two members, one killed: lost {lost}, duplicates {dups}");
    assert_eq!(lost, 0, "nothing lost across the split and the handover");
    // What a held at the kill (its in-flight window, ~3k) plus what each rebalance let
    // through before its revoke committed.
    assert!(dups <= max_dups, "duplicates {dups} > {max_dups}");
}
