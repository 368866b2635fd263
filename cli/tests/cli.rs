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
    let (n, x) = sluice_workloads::w1::reference(200_000);
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
fn bench_pipeline_reports_rates_and_cpu_per_record_of_all_three() {
    let out = sluice(&[
        "bench",
        "pipeline",
        "--records",
        "200000",
        "--parallelism",
        "2",
        "--rounds",
        "3",
        "--shed",
        "--columnar",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("round ").count(), 3, "{stdout}");
    for want in [
        "ratio",
        "one fused loop",
        "median CPU per record (user + system, all threads): sluice ",
        "ShedByPriority (nothing shed)",
        "65536 rows per batch +rayon",
    ] {
        assert!(stdout.contains(want), "{want}: {stdout}");
    }
    // Each columnar variant reports its CPU per record against the row form's.
    let fused = stdout
        .lines()
        .find(|l| l.contains("8192 rows per batch fused"))
        .unwrap();
    assert!(
        fused.contains("ns CPU/rec (") && fused.contains("x the row form's)"),
        "{fused}"
    );
    // Each round's CPU time per record is a measured number (not `?`) for both pipelines.
    let line = stdout.lines().find(|l| l.starts_with("round 1:")).unwrap();
    assert_eq!(line.matches(" ns CPU/rec").count(), 2, "{line}");
    assert!(!line.contains('?'), "{line}");
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

/// Checks one scenario report against the schema the README documents.
fn assert_schema(r: &serde_json::Value) {
    for key in ["job", "policy", "profile"] {
        assert!(r[key].is_string(), "{key} in {r}");
    }
    for key in [
        "duration_s",
        "offered_rate",
        "delivered_rate",
        "sink_capacity",
        "goodput_ratio",
    ] {
        assert!(r[key].is_number(), "{key} in {r}");
    }
    assert!(
        r["peak_rss_bytes"].as_u64().unwrap_or(0) > 0,
        "peak_rss_bytes"
    );
    assert!(r["recovery_s"].is_null() || r["recovery_s"].is_number());
    let classes = r["classes"].as_object().expect("classes is an object");
    assert!(!classes.is_empty());
    for (name, c) in classes {
        for key in ["offered", "delivered", "dropped", "deferred"] {
            assert!(c[key].is_u64(), "{name}.{key}");
        }
        for q in ["p50", "p99", "p999"] {
            assert!(c["latency_ms"][q].is_number(), "{name}.latency_ms.{q}");
        }
    }
    for d in r["drops"].as_array().expect("drops is a list") {
        for key in ["edge", "class", "reason"] {
            assert!(d[key].is_string(), "drops[].{key}");
        }
        assert!(d["count"].is_u64());
    }
    let l = &r["ledger"];
    for key in [
        "emitted",
        "delivered",
        "dropped",
        "deferred_pending",
        "dead_lettered",
        "in_flight",
    ] {
        assert!(l[key].is_u64(), "ledger.{key}");
    }
    assert_eq!(l["balanced"], true, "{l}");
    // The per-class delivered counts add up to the ledger's.
    let delivered: u64 = classes
        .values()
        .map(|c| c["delivered"].as_u64().unwrap())
        .sum();
    assert_eq!(delivered, l["delivered"].as_u64().unwrap());
    // The time series is there and ends at or after the window.
    let series = r["series"].as_array().expect("series");
    let last = series.last().expect("samples");
    assert!(last["t_s"].as_f64().unwrap() >= r["duration_s"].as_f64().unwrap() * 0.9);
}

#[test]
fn bench_overload_runs_each_policy_and_balances() {
    let dir = std::env::temp_dir().join(format!("sluice-overload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let json = dir.join("overload.json");
    let plot = dir.join("overload.svg");
    let out = sluice(&[
        "bench",
        "overload",
        "--policy",
        "block,shed,drop-oldest",
        "--duration",
        "400ms",
        "--sink-capacity",
        "20k",
        "--progress",
        "plain",
        "--json",
        json.to_str().expect("utf8 path"),
        "--plot",
        plot.to_str().expect("utf8 path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Progress went to stderr as plain lines (not a terminal).
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[shed]") && err.contains("delivered"), "{err}");
    assert!(!err.contains('\r'), "no in-place redraw off a terminal");
    let text = std::fs::read_to_string(&json).expect("results written");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let runs = v.as_array().expect("one result per policy");
    assert_eq!(runs.len(), 3);
    for r in runs {
        assert_schema(r);
        assert_eq!(r["job"], "overload");
    }
    // Shedding never drops errors; blocking never drops anything.
    assert_eq!(runs[1]["classes"]["error"]["dropped"], 0);
    assert!(runs[1]["classes"]["debug"]["dropped"].as_u64().unwrap() > 0);
    assert_eq!(runs[0]["ledger"]["dropped"], 0);

    // The plot: valid SVG, one column per policy with its panels and series.
    let svg = std::fs::read_to_string(&plot).expect("plot written");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for text in [
        "block: offered vs delivered",
        "shed: backlog",
        "drop-oldest: dropped per class",
        "shed: latency per class",
        "time (s)",
        "records/s",
        "offered",
        "delivered",
        "sink capacity",
        "debug",
        "error",
    ] {
        assert!(svg.contains(text), "plot lacks `{text}`");
    }
    assert!(svg.matches("<polyline").count() >= 9, "line series drawn");

    // `sluice report` renders the saved results again.
    let rendered = sluice(&["report", json.to_str().expect("utf8 path")]);
    assert!(rendered.status.success());
    let table = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        table.contains("drop-oldest") && table.contains("balanced"),
        "{table}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs a scenario job briefly; returns its JSON report.
fn scenario_job(job: &str, extra: &[&str]) -> (serde_json::Value, String) {
    let dir = std::env::temp_dir().join(format!("sluice-{job}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let json = dir.join("report.json");
    let mut args = vec![
        "run",
        job,
        "--progress",
        "off",
        "--json",
        json.to_str().expect("utf8 path"),
    ];
    args.extend_from_slice(extra);
    let out = sluice(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("json");
    assert_schema(&v);
    assert_eq!(v["job"], job);
    let _ = std::fs::remove_dir_all(&dir);
    (v, String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn telemetry_sheds_debug_and_info_never_errors() {
    let (v, stdout) = scenario_job("telemetry", &["--duration", "1500ms"]);
    let c = &v["classes"];
    assert_eq!(c["error"]["dropped"], 0);
    // Errors are never dropped: they block, so under load a few may still wait at the
    // producer when the window closes (a loaded CI run: 20,214 of 20,366 delivered).
    let (d, o) = (
        c["error"]["delivered"].as_f64().unwrap(),
        c["error"]["offered"].as_f64().unwrap(),
    );
    assert!(d >= 0.95 * o, "errors delivered {d} of {o}");
    let share =
        |class: &str| c[class]["dropped"].as_f64().unwrap() / c[class]["offered"].as_f64().unwrap();
    assert!(share("debug") > 0.5, "debug is shed first: {c}");
    assert!(
        share("debug") >= share("info") && share("info") >= share("warn"),
        "{c}"
    );
    assert!(stdout.contains("shed under pressure"), "{stdout}");
}

#[test]
fn orders_never_drops_a_payment() {
    let (v, stdout) = scenario_job("orders", &["--duration", "1500ms"]);
    let l = &v["ledger"];
    assert_eq!(l["dropped"], 0);
    assert_eq!(l["dead_lettered"], 0);
    assert!(
        v["sink_retries"].as_u64().unwrap() > 0,
        "the processor failed now and then"
    );
    // Every payment the producer got in was delivered; the rest waited upstream.
    assert_eq!(l["delivered"], l["emitted"]);
    assert!(v["emitted"].as_u64().unwrap() < v["classes"]["critical"]["offered"].as_u64().unwrap());
    assert!(stdout.contains("latency moved upstream"), "{stdout}");
}

#[test]
fn indexing_defers_low_rank_and_indexes_it_after_the_burst() {
    let (v, stdout) = scenario_job("indexing", &["--duration", "2s", "--sink-capacity", "20k"]);
    let l = &v["ledger"];
    assert_eq!(l["dropped"], 0);
    assert_eq!(l["deferred_pending"], 0, "the log was replayed to the end");
    assert_eq!(l["delivered"], l["emitted"]);
    let peak = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["deferred"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(peak > 0, "low-rank pages were deferred during the burst");
    assert!(
        v["recovery_s"].is_number(),
        "the backlog drained: {}",
        v["recovery_s"]
    );
    assert!(stdout.contains("deferred to disk at the peak"), "{stdout}");
}

#[test]
fn ingest_buffers_a_burst_in_kafka_and_drains_it() {
    let (v, stdout) = scenario_job(
        "ingest",
        &[
            "--duration",
            "2s",
            "--sink-capacity",
            "10k",
            "--overload",
            "4",
        ],
    );
    let info = &v["classes"]["info"];
    assert_eq!(info["delivered"], info["offered"], "lost nothing: {info}");
    assert!(info["offered"].as_u64().unwrap() > 0);
    // The burst (0.4 s at 40k/s against 10k/s) queued up in the topic, then drained.
    let peak = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["buffered"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(peak > 2_000, "the topic buffered the burst: peak {peak}");
    assert!(v["recovery_s"].is_number(), "{}", v["recovery_s"]);
    assert!(stdout.contains("buffered in Kafka at the peak"), "{stdout}");
}

#[test]
fn scenario_arguments_are_checked() {
    let out = sluice(&["bench", "overload", "--profile", "spiky"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("burst"));
    let out = sluice(&["bench", "overload", "--mix", "debug=x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("percentage"));
    let out = sluice(&["bench", "overload", "--mix", "loud=5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown class"));
    let out = sluice(&["run", "orders", "--workers", "2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--brokers"));
    let out = sluice(&["run", "telemetry", "--plot", "out.gif"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(".svg or .png"));
}

#[cfg(feature = "kafka")]
#[test]
fn kafka_faults_arguments_are_checked() {
    for (args, what) in [
        (&["--fault", "meteor"][..], "meteor"),
        (&["--messages", "0"][..], "--messages"),
        (&["--messages", "500k"][..], "--messages"),
        (&["--rate", "0"][..], "--rate"),
        (&["--max-in-flight", "0"][..], "--max-in-flight"),
    ] {
        let mut a = vec!["run", "kafka-faults"];
        a.extend_from_slice(args);
        let out = sluice(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(what), "{args:?}: {err}");
    }
}

#[test]
fn bench_overload_sweeps_edge_sizes_next_to_the_oracle_and_steps_the_sink() {
    let dir = std::env::temp_dir().join(format!("sluice-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let json = dir.join("sweep.json");
    let out = sluice(&[
        "bench",
        "overload",
        "--policy",
        "shed,oracle",
        "--capacity",
        "512,2k",
        "--duration",
        "600ms",
        "--sink-capacity",
        "20k",
        "--overload",
        "8",
        "--budget",
        "5ms",
        "--sink-step",
        "300ms:5k",
        "--progress",
        "off",
        "--json",
        json.to_str().expect("utf8 path"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("the sink steps from 20000 to 5000"),
        "{stdout}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("written")).expect("json");
    let runs = v.as_array().expect("one result per size and policy");
    let seen: Vec<(String, u64)> = runs
        .iter()
        .map(|r| {
            (
                r["policy"].as_str().unwrap_or("").to_string(),
                r["edge_capacity"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("shed".to_string(), 512),
            ("oracle".to_string(), 512),
            ("shed".to_string(), 2000),
            ("oracle".to_string(), 2000)
        ]
    );
    for r in runs {
        assert_schema(r);
        assert_eq!(r["ledger"]["balanced"], true, "{r}");
        assert_eq!(r["classes"]["error"]["dropped"], 0);
        let step = &r["step"];
        assert_eq!(step["sink_capacity"][1], 5000.0);
        assert!(step["before"]["error"]["p99"].as_f64().is_some(), "{step}");
        assert!(step["after"]["error"]["p99"].as_f64().is_some(), "{step}");
    }
    // Sluice's edge is served by priority and sized in time: its capacity is in the series.
    assert_eq!(runs[0]["service"], "priority");
    assert!(runs[1]["service"].is_null(), "the oracle is not Sluice");
    let caps: Vec<u64> = runs[2]["series"]
        .as_array()
        .expect("series")
        .iter()
        .filter_map(|x| x["capacity"].as_u64())
        .collect();
    assert!(
        caps.iter().any(|c| *c > 0 && *c < 2000),
        "a 5 ms budget keeps the edge below its 2,000 records: {caps:?}"
    );

    // The same through three edges and a keyed exchange.
    let out = sluice(&[
        "bench",
        "overload",
        "--policy",
        "shed",
        "--pipeline",
        "keyed",
        "--duration",
        "400ms",
        "--sink-capacity",
        "20k",
        "--progress",
        "off",
        "--json",
        json.to_str().expect("utf8 path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("written")).expect("json");
    let r = &v[0];
    assert_eq!(r["pipeline"], "keyed");
    assert_eq!(r["ledger"]["balanced"], true);
    assert_eq!(r["classes"]["error"]["dropped"], 0);

    // The same edge on Arrow record batches, shed by row on their class column.
    let out = sluice(&[
        "bench",
        "overload",
        "--policy",
        "shed",
        "--pipeline",
        "arrow",
        "--duration",
        "400ms",
        "--sink-capacity",
        "20k",
        "--progress",
        "off",
        "--json",
        json.to_str().expect("utf8 path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("written")).expect("json");
    let r = &v[0];
    assert_eq!(r["pipeline"], "arrow");
    assert_eq!(r["ledger"]["balanced"], true);
    assert_eq!(r["classes"]["error"]["dropped"], 0);
    assert!(r["classes"]["debug"]["dropped"].as_u64().expect("a count") > 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_overload_rejects_bad_values() {
    for (args, what) in [
        (&["bench", "overload", "--sink-step", "2s"][..], "AT:RATE"),
        (
            &["bench", "overload", "--sink-step", "2s:0"][..],
            "at least 1",
        ),
        (
            &["bench", "overload", "--capacity", "512,0"][..],
            "at least 1",
        ),
        (
            &["bench", "overload", "--service", "fast"][..],
            "fifo, priority or weighted",
        ),
        (&["bench", "overload", "--budget", "0ms"][..], "positive"),
        (&["bench", "overload", "--pipeline", "ring"][..], "keyed"),
        (
            &["bench", "overload", "--batch", "5000000"][..],
            "at most 1000000",
        ),
    ] {
        let out = sluice(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(what), "{args:?}: {err}");
    }
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

#[test]
fn report_refuses_what_is_not_a_report_and_escapes_control_characters() {
    let out = sluice(&["report", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));

    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("w1.json");
    let out = sluice(&[
        "run",
        "w1",
        "--records",
        "1000",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let mut r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    r["job"] = serde_json::Value::String("w1\u{1b}[2J\u{7}".into());
    std::fs::write(&json, r.to_string()).unwrap();
    let out = sluice(&["report", json.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        !out.stdout.contains(&0x1b),
        "no raw escape reaches the terminal"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("w1\\u{1b}[2J\\u{7}"));
}

#[test]
fn absurd_values_and_unwritable_outputs_exit_2_before_anything_runs() {
    for args in [
        &["bench", "overload", "--overload", "1e9"][..],
        &[
            "bench",
            "overload",
            "--duration",
            "99999999999999999999999m",
        ],
        &["bench", "overload", "--capacity", "99999999999999999999999"],
        &["run", "telemetry", "--capacity", "200M"],
        &["bench", "overload", "--duration", "0.0000001us"],
        &["bench", "overload", "--mix", "debug=1e308,info=1e308"],
        &[
            "bench",
            "overload",
            "--sink-capacity",
            "50M",
            "--overload",
            "900",
        ],
        &["run", "telemetry", "--json", "/nonexistent-dir/t.json"],
        &["bench", "overload", "--plot", "/nonexistent-dir/p.svg"],
    ] {
        let t0 = std::time::Instant::now();
        let out = sluice(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "{args:?} ran"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
}

#[cfg(feature = "kafka")]
#[test]
fn kafka_inputs_that_cannot_work_are_refused_with_the_reason() {
    let copy = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "kafka-copy",
            "--brokers",
            "127.0.0.1:9",
            "--input",
            "a",
            "--group",
            "g",
        ];
        args.extend_from_slice(extra);
        sluice(&args)
    };
    for (extra, why) in [
        (&["--output", "a"][..], "copied onto itself"),
        (
            &["--output", "b", "--set", "linger.ms=banana"],
            "Invalid value",
        ),
        (
            &["--output", "b", "--set", "no.such.property=1"],
            "No such configuration property",
        ),
        (
            &["--output", "b", "--set", "sasl.kerberos.principal=x"],
            "refused",
        ),
        (
            &["--output", "b", "--set", "ssl.providers=legacy"],
            "refused",
        ),
    ] {
        let out = copy(extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(why), "{extra:?}: {err}");
    }
    // Nothing listens on port 9: the member never gets a partition and says so.
    let t0 = std::time::Instant::now();
    let out = copy(&["--output", "b", "--assign-timeout", "2s"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no partition of `a` was assigned within 2 s"),
        "{err}"
    );
    assert!(t0.elapsed() < std::time::Duration::from_secs(20));

    let out = sluice(&["run", "passthrough", "--messages", "500k"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("more than the embedded cluster keeps"));
}
