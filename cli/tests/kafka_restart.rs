//! Kill -9 of a Kafka job mid-stream, then a restart in the same group: nothing lost, and
//! duplicates bounded by the job's in-flight window. Needs a real broker
//! (`SLUICE_KAFKA_BROKERS`, started by `scripts/broker start`); CI requires it.

#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::ClientConfig;
use sluice_testkit::{
    broker_from_env, count_payloads, create_topic, produce, run_id, Oracle, StreamVerdict, Tag,
};

/// Reads `t` back with a fresh group: what of `m0`..`m{n-1}` arrived, and how often.
fn read_back(brokers: &str, t: &str, n: u64) -> sluice_testkit::ReadBack {
    let group = format!("count-{t}-{}", run_id());
    count_payloads(brokers, t, &group, "m", n, Duration::from_secs(60)).unwrap()
}

/// The verifying oracle over what was read back: `m{i}` is sequence `i` of one stream (the
/// output topic's partitions interleave, so order is not checked: observed sorted).
fn verdict(seen: &sluice_testkit::ReadBack, n: u64) -> StreamVerdict {
    let mut o = Oracle::new();
    o.expect(0, n);
    let mut counts: Vec<_> = seen.counts.iter().collect();
    counts.sort_by_key(|(p, _)| p.strip_prefix('m').and_then(|i| i.parse::<u64>().ok()));
    for (payload, &times) in counts {
        let seq = payload.strip_prefix('m').and_then(|i| i.parse().ok());
        let tag = Tag::new(if seq.is_some() { 0 } else { 1 }, seq.unwrap_or(0));
        for _ in 0..times {
            o.observe(tag);
        }
    }
    o.verdict().total
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

/// Creates this run's input and output topics (2 partitions each) and its group name, and
/// produces `n` messages `m0`..`m{n-1}` to the input.
fn copy_topics(brokers: &str, prefix: &str, n: u64) -> (String, String, String) {
    let run = std::process::id();
    let (tin, tout, group) = (
        format!("{prefix}-in-{run}"),
        format!("{prefix}-out-{run}"),
        format!("{prefix}-{run}"),
    );
    create_topic(&tin, 2).unwrap();
    create_topic(&tout, 2).unwrap();
    produce(brokers, &tin, n, |i| {
        (format!("m{i}"), format!("m{i}").into_bytes())
    })
    .unwrap();
    (tin, tout, group)
}

/// The group's committed offsets on `topic`, summed: a job's progress, read without joining.
fn committed_probe(brokers: &str, group: &str, topic: &str) -> impl Fn() -> u64 {
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let topic = topic.to_string();
    move || {
        sluice::connectors::kafka::committed_offsets(&probe, &[&topic])
            .iter()
            .map(|(_, _, o)| (*o).max(0) as u64)
            .sum()
    }
}

#[test]
fn kill_9_mid_stream_then_restart_loses_nothing() {
    let Some(brokers) = broker_from_env() else {
        return;
    };
    let n = 20_000u64;
    let (tin, tout, group) = copy_topics(&brokers, "k9", n);

    let job = |delay: &str| {
        kafka_copy(&brokers, (&tin, &tout, &group), delay, "4s")
            .spawn()
            .unwrap()
    };
    // A slow first run (about 1k records/s), killed with SIGKILL once part of the output exists.
    let mut first = job("1000");
    // Progress is read from the group's committed offsets (no group join needed).
    let committed = committed_probe(&brokers, &group, &tin);
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

    let v = verdict(&read_back(&brokers, &tout, n), n);
    let (lost, dups) = (v.lost, v.duplicates);
    eprintln!("kill -9 after {before_kill} of {n} were committed: {v}");
    assert_eq!(v.unexpected, 0, "{v}");
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

/// Kill -9 of a job that defers to disk what its work cannot keep up with, then a restart
/// with the same directory: the log's records were acknowledged to Kafka when written, so
/// after the kill they exist only in the log; the restart replays them (and any replayed
/// batch that had not ended at the kill) and resumes the topic. Nothing is lost.
#[test]
fn kill_9_of_a_deferring_job_then_restart_replays_its_log_and_loses_nothing() {
    let Some(brokers) = broker_from_env() else {
        return;
    };
    let n = 20_000u64;
    let (tin, tout, group) = copy_topics(&brokers, "k9d", n);
    let dir = tempfile::tempdir().unwrap();
    let defer_dir = dir.path().to_str().unwrap();
    let job = |delay: &str| {
        kafka_copy(&brokers, (&tin, &tout, &group), delay, "4s")
            .args(["--defer-dir", defer_dir])
            .spawn()
            .unwrap()
    };
    let log_bytes = || -> u64 {
        std::fs::read_dir(dir.path())
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    };
    // A slow first run (about 500 records/s): the source reads ahead, the edge defers what
    // the work cannot take, and the deferred offsets are committed.
    let mut first = job("2000");
    let committed = committed_probe(&brokers, &group, &tin);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut before_kill;
    loop {
        before_kill = committed();
        if before_kill >= n || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Everything is committed: the topic will not redeliver a thing, and what the work has
    // not done exists only in the log. Kill it mid-replay: once its cursor has moved.
    let cursor = || -> u64 {
        std::fs::read(dir.path().join("kafka-copy-edge0-0.cursor"))
            .ok()
            .and_then(|b| {
                b.get(..8)
                    .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            })
            .unwrap_or(0)
    };
    while cursor() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (in_log, replayed_to) = (log_bytes(), cursor());
    first.kill().unwrap(); // SIGKILL
    let _ = first.wait();

    // Restart in the same group with the same directory, at full speed.
    let t0 = Instant::now();
    let second = job("0").wait().unwrap();
    let took = t0.elapsed();
    assert!(second.success());

    let v = verdict(&read_back(&brokers, &tout, n), n);
    eprintln!(
        "deferring job killed with {before_kill} of {n} committed, its log replayed to byte \
         {replayed_to} of {in_log}; the restart finished in {:.1} s (4 s of it the idle end): {v}",
        took.as_secs_f64()
    );
    assert_eq!(before_kill, n, "the deferred records were committed");
    assert!(
        in_log > replayed_to && replayed_to > 0,
        "killed mid-replay: cursor {replayed_to} of {in_log} bytes"
    );
    assert_eq!(
        (v.lost, v.unexpected),
        (0, 0),
        "nothing lost across kill -9: {v}"
    );
    // At least once: Kafka redelivers everything past the group's committed offsets. The
    // commit is contiguous per partition, so it waits for the oldest record still in memory
    // while newer ones are already in the log; those come twice (from the topic and from
    // the log), plus the replayed batches that had not ended at the kill (the edge, 512).
    let window = n - before_kill + 1_000;
    assert!(v.duplicates <= window, "duplicates beyond {window}: {v}");
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

    let v = verdict(&read_back(&brokers, &tout, n), n);
    let (lost, dups) = (v.lost, v.duplicates);
    eprintln!("two members, one killed: {v}");
    assert_eq!(v.unexpected, 0, "{v}");
    assert_eq!(lost, 0, "nothing lost across the split and the handover");
    // What a held at the kill (its in-flight window, ~3k) plus what each rebalance let
    // through before its revoke committed.
    assert!(dups <= max_dups, "duplicates {dups} > {max_dups}");
}
