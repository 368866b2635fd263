//! `sluice bench overload` (each policy in its own process, so peak memory is its own, side
//! by side) and the scenario jobs built on the same open-loop harness: `run telemetry`,
//! `run orders`, `run indexing`.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::Args;
use sluice::engine::{Priority, ServiceOrder, Shares, CLASSES};
use sluice_workloads::overload::{
    self, KafkaFeed, PipelineShape, PolicyChoice, Profile, Scenario, ScenarioJob, ScenarioResult,
    SinkStep,
};

use sluice::engine::shutdown::received_signal;

use crate::error::CliError;
use crate::output::{check_writable, write_json};
use crate::parse;
use crate::plot;
use crate::progress::{human, Progress, ProgressMode};

/// Where results go besides the table.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Write the report as JSON to this file (schema in the README).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw offered vs delivered rate, backlog, drops and latency per class to this file
    /// (.svg or .png).
    #[arg(long, value_parser = plot::plot_path)]
    plot: Option<PathBuf>,
    /// Live progress on stderr: auto (a status line on a terminal, plain lines otherwise),
    /// plain, off.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
}

#[derive(Args, Debug, Clone)]
pub struct OverloadArgs {
    /// Policies to run, comma separated, or `all`: unbounded, block, drop-newest,
    /// drop-oldest, shed, sample, deadline, defer.
    #[arg(long, default_value = "unbounded,block,shed", value_parser = policies)]
    policy: PolicyList,
    /// Load profile: steady (0.8x capacity), step (0.5x then N x), burst (0.5x with N x from
    /// 20% to 40% of the run; measures recovery), sustained (N x throughout).
    #[arg(long, value_enum, default_value_t = Profile::Sustained)]
    profile: Profile,
    /// How long the producer offers load (e.g. 10s, 500ms).
    #[arg(long, default_value = "5s", value_parser = parse::duration)]
    duration: Duration,
    /// Records per second the sink can process (e.g. 100k).
    #[arg(long, default_value = "100k", value_parser = parse::count)]
    sink_capacity: u64,
    /// Offered load as a multiple of the sink capacity (N).
    #[arg(long, default_value = "10", value_parser = parse::factor)]
    overload: f64,
    /// Edge capacity in records (e.g. 512, 4k); a comma-separated list sweeps the sizes
    /// (e.g. 512,10k,100k: every policy at every size).
    #[arg(long, default_value = "512", value_parser = capacities)]
    capacity: Capacities,
    /// The order in which the edges serve queued records: fifo, priority (the highest class
    /// queued first), weighted (shares per class: debug 1, info 2, warn 4, error 8). Default:
    /// priority, since the benchmark's edges classify their records.
    #[arg(long, value_parser = service)]
    service: Option<ServiceOrder>,
    /// The pipeline: edge (producer -> the edge under test -> sink) or keyed (three edges:
    /// the edge under test, then a second edge and a keyed exchange into 2 sink instances).
    #[arg(long, value_enum, default_value = "edge")]
    pipeline: PipelineShape,
    /// Size the edge under test in time (e.g. 5ms): its capacity follows this much of the
    /// sink's measured drain rate, up to --capacity.
    #[arg(long, value_parser = parse::duration)]
    budget: Option<Duration>,
    /// Records per batch: the most the producer emits and the sink takes at once (e.g. 5k;
    /// default 256). Batches up to half the edge show how shedding admits a burst.
    #[arg(long, value_parser = parse::capacity)]
    batch: Option<u64>,
    /// Change the sink's capacity during the run, AT:RATE (e.g. 2.5s:20k): the report gives
    /// latency per class and the edge's capacity before and after.
    #[arg(long, value_parser = sink_step)]
    sink_step: Option<SinkStep>,
    /// Class mix in percent, e.g. debug=70,info=20,warn=8,error=2.
    #[arg(long, default_value = "debug=70,info=20,warn=8,error=2", value_parser = mix)]
    mix: Mix,
    /// Abort a run once the process's resident memory passes this many bytes (e.g. 2G, 512M;
    /// the `unbounded` policy grows without limit) and report that it hit the cap.
    #[arg(long, default_value = "2G", value_parser = parse::count)]
    max_rss: u64,
    /// Keep the defer policy's log in this directory, where a rerun finds and replays what a
    /// stopped run left (default: a temporary directory, removed at the end).
    #[arg(long)]
    defer_dir: Option<PathBuf>,
    #[command(flatten)]
    out: OutputArgs,
    /// Run one policy in this process and print its result as JSON (used internally).
    #[arg(long, hide = true)]
    child: bool,
}

/// Arguments of the scenario jobs; each job has its own defaults.
#[derive(Args, Debug, Clone)]
pub struct ScenarioJobArgs {
    /// How long load is offered (e.g. 5s).
    #[arg(long, value_parser = parse::duration)]
    duration: Option<Duration>,
    /// Records per second the sink can process (e.g. 50k).
    #[arg(long, value_parser = parse::count)]
    sink_capacity: Option<u64>,
    /// Offered load in the overloaded part, as a multiple of the sink capacity.
    #[arg(long, value_parser = parse::factor)]
    overload: Option<f64>,
    /// Edge capacity in records.
    #[arg(long, value_parser = parse::capacity)]
    capacity: Option<u64>,
    /// Feed the job through a Kafka topic on these brokers (host:port,...). The topic
    /// (`sluice-<job>` unless --topic) must exist with --partitions partitions. `ingest`
    /// always goes through Kafka: an embedded cluster unless --brokers is given.
    #[arg(long)]
    brokers: Option<String>,
    /// The topic, with --brokers.
    #[arg(long)]
    topic: Option<String>,
    /// Partitions of the topic (the job starts once its group holds them all).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..=256))]
    partitions: i32,
    /// Consumer group members reading the topic, each with its share of the sink capacity.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    workers: Option<u64>,
    /// Keep the defer policy's log (`run indexing`) in this directory, where a rerun finds and
    /// replays what a stopped run left (default: a temporary directory, removed at the end).
    #[arg(long)]
    defer_dir: Option<PathBuf>,
    #[command(flatten)]
    out: OutputArgs,
}

/// One or more edge capacities.
#[derive(Debug, Clone)]
pub struct Capacities(Vec<u64>);

fn capacities(s: &str) -> Result<Capacities, String> {
    let v = s
        .split(',')
        .map(|c| parse::capacity(c.trim()))
        .collect::<Result<Vec<u64>, String>>()?;
    if v.contains(&0) {
        return Err("an edge capacity must be at least 1 record".into());
    }
    Ok(Capacities(v))
}

fn sink_step(s: &str) -> Result<SinkStep, String> {
    let Some((at, rate)) = s.split_once(':') else {
        return Err(format!(
            "`{s}` is not a step: write AT:RATE, e.g. 2.5s:20k (the sink does 20k records/s from 2.5 s on)"
        ));
    };
    let at = parse::duration(at)?;
    let capacity = parse::count(rate)?;
    if capacity == 0 {
        return Err("a sink step needs a rate above 0".into());
    }
    Ok(SinkStep {
        at,
        capacity: capacity as f64,
    })
}

fn service(s: &str) -> Result<ServiceOrder, String> {
    match s.trim() {
        "fifo" => Ok(ServiceOrder::Fifo),
        "priority" => Ok(ServiceOrder::Priority),
        "weighted" => Ok(ServiceOrder::Weighted(Shares::default())),
        other => Err(format!(
            "unknown service order `{other}`: use fifo, priority or weighted"
        )),
    }
}

fn service_name(o: ServiceOrder) -> &'static str {
    o.name()
}

/// A comma-separated list of policies.
#[derive(Debug, Clone)]
pub struct PolicyList(Vec<PolicyChoice>);

fn policies(s: &str) -> Result<PolicyList, String> {
    if s == "all" {
        return Ok(PolicyList(PolicyChoice::ALL.to_vec()));
    }
    s.split(',')
        .map(|p| {
            PolicyChoice::parse(p.trim()).ok_or_else(|| {
                let names: Vec<&str> = PolicyChoice::ALL.iter().map(|p| p.name()).collect();
                format!("unknown policy `{p}`: use {} or all", names.join(", "))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(PolicyList)
}

/// Share of each class, by rank.
#[derive(Debug, Clone)]
pub struct Mix([f64; CLASSES], String);

fn mix(s: &str) -> Result<Mix, String> {
    let mut m = [0.0; CLASSES];
    for part in s.split(',') {
        let (name, pct) = part.split_once('=').ok_or_else(|| {
            format!("`{part}`: write each class as name=percent, e.g. debug=70,error=30")
        })?;
        let class = Priority::all()
            .find(|c| c.name() == name.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = Priority::all().map(|c| c.name()).collect();
                format!("unknown class `{name}`: use {}", names.join(", "))
            })?;
        let pct: f64 = pct
            .trim()
            .parse()
            .ok()
            .filter(|p: &f64| p.is_finite() && (0.0..=100.0).contains(p))
            .ok_or_else(|| format!("`{pct}`: a class's share must be a percentage, 0 to 100"))?;
        if let Some(slot) = m.get_mut(class.index()) {
            *slot = pct;
        }
    }
    if m.iter().sum::<f64>() <= 0.0 {
        return Err("the class mix must offer something: give a class a share above 0".into());
    }
    Ok(Mix(m, s.to_string()))
}

fn scenario(a: &OverloadArgs, policy: PolicyChoice, capacity: u64) -> Scenario {
    Scenario {
        policy,
        profile: a.profile,
        duration: a.duration,
        sink_capacity: a.sink_capacity as f64,
        overload: a.overload,
        capacity: capacity as usize,
        service: a.service,
        pipeline: a.pipeline,
        budget: a.budget,
        sink_step: a.sink_step,
        batch: a.batch.map(|b| b as usize),
        mix: a.mix.0,
        max_rss_bytes: a.max_rss,
        defer_dir: a.defer_dir.clone(),
        ..Scenario::default()
    }
}

/// Prefix of the progress lines a child prints on stderr.
const SAMPLE: &str = "sluice-sample ";

/// `sluice bench overload`: each policy in a child process, side by side.
pub fn bench(a: &OverloadArgs) -> Result<(), CliError> {
    if a.child {
        return run_child(a);
    }
    for &capacity in &a.capacity.0 {
        for &policy in &a.policy.0 {
            check_scenario(&scenario(a, policy, capacity))?;
        }
    }
    check_writable(a.out.json.as_deref())?;
    check_writable(a.out.plot.as_deref())?;
    let exe = std::env::current_exe().map_err(|e| {
        CliError::job(
            "overload",
            format!("cannot find the sluice executable to run scenarios: {e}"),
        )
    })?;
    let sizes: Vec<String> = a.capacity.0.iter().map(u64::to_string).collect();
    outln!(
        "overload: {} profile, producer at up to {}x a sink of {} rec/s for {:.1}s, edge capacity {}, class mix {}, {} pipeline, {} service",
        a.profile.name(),
        a.overload,
        a.sink_capacity,
        a.duration.as_secs_f64(),
        sizes.join(", "),
        a.mix.1,
        a.pipeline.name(),
        a.service.map_or("priority", service_name),
    );
    let mut results = Vec::new();
    'sweep: for &capacity in &a.capacity.0 {
        for &policy in &a.policy.0 {
            if received_signal().is_some() {
                // Stopped: the runs not yet made are skipped; what ran is reported.
                break 'sweep;
            }
            let r = run_in_child(&exe, a, policy, capacity)
                .map_err(|e| CliError::job(format!("overload ({})", policy.name()), e))?;
            print_row(&r, results.is_empty());
            results.push(r);
        }
    }
    for r in results.iter().filter(|r| r.memory_capped) {
        outln!(
            "{:<12} aborted at the memory cap ({:.0} MB, --max-rss): without it the process would have exhausted memory",
            r.policy,
            a.max_rss as f64 / 1e6
        );
    }
    if let Some(st) = a.sink_step {
        outln!();
        outln!(
            "the sink steps from {} to {} rec/s at {:.1}s{}:",
            a.sink_capacity,
            st.capacity,
            st.at.as_secs_f64(),
            a.budget.map_or(String::new(), |b| format!(
                ", edge budget {} ms",
                b.as_secs_f64() * 1e3
            ))
        );
        outln!(
            "{:<12} {:>7} {:>22} {:>24} {:>24}",
            "policy",
            "edge",
            "edge cap before/after",
            "p99 ms before (wrn/err)",
            "p99 ms after (wrn/err)"
        );
        for r in &results {
            let Some(step) = &r.step else { continue };
            let p99 = |side: &std::collections::BTreeMap<Priority, overload::Percentiles>| {
                [Priority::WARN, Priority::ERROR]
                    .iter()
                    .map(|c| side.get(c).map_or("-".into(), |p| format!("{:.1}", p.p99)))
                    .collect::<Vec<String>>()
                    .join("/")
            };
            outln!(
                "{:<12} {:>7} {:>22} {:>24} {:>24}",
                r.policy,
                r.edge_capacity,
                format!("{}/{}", step.edge_capacity[0], step.edge_capacity[1]),
                p99(&step.before),
                p99(&step.after)
            );
        }
    }
    if a.profile == Profile::Burst {
        outln!();
        for r in &results {
            outln!(
                "{:<12} recovery after the burst: {}",
                r.policy,
                r.recovery_s
                    .map_or("not within the run".to_string(), |s| format!("{s:.1}s"))
            );
        }
    }
    save(&a.out, &results, true)
}

fn run_child(a: &OverloadArgs) -> Result<(), CliError> {
    let Some(&policy) = a.policy.0.first() else {
        return Err(CliError::Usage("--child needs one --policy".into()));
    };
    exit_with_parent();
    let mut progress = |s: &overload::Sample| {
        if let Ok(j) = serde_json::to_string(s) {
            eprintln!("{SAMPLE}{j}");
        }
    };
    let capacity = a.capacity.0.first().copied().unwrap_or(512);
    let r = overload::run(&scenario(a, policy, capacity), &mut progress)
        .map_err(|e| CliError::job(format!("overload ({})", policy.name()), e))?;
    outln!("{}", serde_json::to_string(&r)?);
    Ok(())
}

/// Runs one policy in a child process, relaying its samples to the progress display.
fn run_in_child(
    exe: &std::path::Path,
    a: &OverloadArgs,
    policy: PolicyChoice,
    capacity: u64,
) -> Result<ScenarioResult, String> {
    let mut child = Command::new(exe)
        .args([
            "bench",
            "overload",
            "--child",
            "--progress",
            "off",
            "--policy",
            policy.name(),
            "--profile",
            a.profile.name(),
            "--duration",
            &format!("{}ms", a.duration.as_millis()),
            "--sink-capacity",
            &a.sink_capacity.to_string(),
            "--overload",
            &a.overload.to_string(),
            "--capacity",
            &capacity.to_string(),
            "--pipeline",
            a.pipeline.name(),
            "--mix",
            &a.mix.1,
            "--max-rss",
            &a.max_rss.to_string(),
        ])
        .args(
            a.defer_dir
                .iter()
                .flat_map(|d| [std::ffi::OsStr::new("--defer-dir"), d.as_os_str()]),
        )
        .args(
            a.service
                .iter()
                .flat_map(|o| ["--service", service_name(*o)]),
        )
        .args(
            a.budget
                .iter()
                .flat_map(|b| ["--budget".to_string(), format!("{}us", b.as_micros())]),
        )
        .args(
            a.batch
                .iter()
                .flat_map(|b| ["--batch".to_string(), b.to_string()]),
        )
        .args(a.sink_step.iter().flat_map(|st| {
            [
                "--sink-step".to_string(),
                format!("{}ms:{}", st.at.as_millis(), st.capacity as u64),
            ]
        }))
        // The child stops (drains and reports) when this end closes: on a signal here, or
        // when this process dies.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    // The result arrives on stdout at the end; read it on its own thread so a large result
    // never blocks the child while this thread reads progress from stderr.
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut s) = stdout {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let mut progress = Progress::new(
        a.out.progress,
        policy.name(),
        a.duration.as_secs_f64(),
        capacity,
    );
    let mut errors = String::new();
    if let Some(stderr) = child.stderr.take() {
        let mut stdin = child.stdin.take();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if stdin.is_some() && received_signal().is_some() {
                // Stopped (Ctrl-C reaches the child too; `kill PID` only this process):
                // closing its stdin stops the child's job the same way, once.
                stdin = None;
            }
            match line.strip_prefix(SAMPLE) {
                Some(j) => {
                    if let Ok(s) = serde_json::from_str(j) {
                        progress.update(&s);
                    }
                }
                None => {
                    errors.push_str(&line);
                    errors.push('\n');
                }
            }
        }
    }
    progress.finish();
    let status = child.wait().map_err(|e| e.to_string())?;
    let stdout = reader.join().map_err(|_| "the reader thread panicked")?;
    // A stopped child exits 130/143 after printing its result: the result is what counts.
    match serde_json::from_slice(&stdout) {
        Ok(r) => Ok(r),
        Err(_) if !status.success() => {
            let why: Vec<&str> = errors
                .lines()
                .map(|l| l.strip_prefix("error: ").unwrap_or(l))
                .filter(|l| !l.starts_with("sluice: "))
                .collect();
            Err(format!("{} ({status})", why.join("; ")))
        }
        Err(e) => Err(format!("printed no result: {e}")),
    }
}

/// What each scenario job tells, in words, from its result.
trait Story {
    fn story(self, r: &ScenarioResult) -> Vec<String>;
}

impl Story for ScenarioJob {
    fn story(self, r: &ScenarioResult) -> Vec<String> {
        let c = |class: Priority| r.classes.get(&class).cloned().unwrap_or_default();
        let pct = |a: u64, b: u64| 100.0 * a as f64 / b.max(1) as f64;
        match self {
            ScenarioJob::Telemetry => {
                let (d, i, w, e) = (
                    c(Priority::DEBUG),
                    c(Priority::INFO),
                    c(Priority::WARN),
                    c(Priority::ERROR),
                );
                vec![format!(
                    "shed under pressure: debug {:.1}%, info {:.1}%, warn {:.1}%, error {:.1}% ({} of {} errors delivered, p99 {:.1} ms)",
                    pct(d.dropped, d.offered),
                    pct(i.dropped, i.offered),
                    pct(w.dropped, w.offered),
                    pct(e.dropped, e.offered),
                    e.delivered,
                    e.offered,
                    e.latency_ms.p99
                )]
            }
            ScenarioJob::Orders => {
                let o = c(Priority::CRITICAL);
                vec![
                    format!(
                        "payments: dropped {}, dead-lettered {}, {} transient failures retried with backoff",
                        r.ledger.dropped, r.ledger.dead_lettered, r.sink_retries
                    ),
                    format!(
                        "latency moved upstream: p50 {:.0} ms, p99 {:.0} ms; {} of {} offered were still held back at the producer when the window closed (a real client keeps them: nothing was accepted and lost)",
                        o.latency_ms.p50,
                        o.latency_ms.p99,
                        o.offered.saturating_sub(r.emitted),
                        o.offered
                    ),
                ]
            }
            ScenarioJob::Indexing => {
                let peak = r.series.iter().map(|s| s.deferred).max().unwrap_or(0);
                let hi = c(Priority::ERROR);
                let lo = c(Priority::DEBUG);
                vec![
                    format!(
                        "high rank (error) p99 {:.1} ms; low rank (debug) p50 {:.0} ms, p99 {:.0} ms: deferred, then indexed",
                        hi.latency_ms.p99, lo.latency_ms.p50, lo.latency_ms.p99
                    ),
                    format!(
                        "deferred to disk at the peak: {peak}; left deferred at the end: {}; dropped: {}; backlog drained {}",
                        r.ledger.deferred_pending,
                        r.ledger.dropped,
                        r.recovery_s.map_or("not within the window".into(), |s| format!("{s:.1}s after the burst"))
                    ),
                ]
            }
            ScenarioJob::Ingest => {
                let (peak_t, peak) = r
                    .series
                    .iter()
                    .map(|s| (s.t_s, s.buffered))
                    .fold((0.0, 0), |a, b| if b.1 > a.1 { b } else { a });
                let info = c(Priority::INFO);
                vec![format!(
                    "buffered in Kafka at the peak: {peak} records at {peak_t:.1}s; drained {}; produced {}, processed {}, lost {}",
                    r.recovery_s
                        .map_or("not within the run".into(), |s| format!("{s:.1}s after the burst")),
                    info.offered,
                    info.delivered,
                    info.offered.saturating_sub(info.delivered + info.dropped)
                )]
            }
        }
    }
}

/// Runs a scenario job in this process.
pub fn run_job(job: ScenarioJob, a: &ScenarioJobArgs) -> Result<(), CliError> {
    let mut s = job.preset();
    if let Some(d) = a.duration {
        s.duration = d;
    }
    if let Some(c) = a.sink_capacity {
        s.sink_capacity = c as f64;
    }
    if let Some(o) = a.overload {
        s.overload = o;
    }
    if let Some(c) = a.capacity {
        s.capacity = c as usize;
    }
    if let Some(d) = &a.defer_dir {
        s.defer_dir = Some(d.clone());
    }
    if a.brokers.is_some() || s.kafka.is_some() {
        let preset = s.kafka.take();
        s.kafka = Some(KafkaFeed {
            brokers: a.brokers.clone(),
            topic: a
                .topic
                .clone()
                .or(preset.as_ref().map(|k| k.topic.clone()))
                .unwrap_or_else(|| format!("sluice-{}", s.job)),
            partitions: a.partitions,
            workers: a
                .workers
                .map(|w| w as usize)
                .or(preset.as_ref().map(|k| k.workers))
                .unwrap_or(1),
        });
    } else if a.topic.is_some() || a.workers.is_some() {
        return Err(CliError::Usage(
            "--topic and --workers feed the job through Kafka: give --brokers too".into(),
        ));
    }
    check_scenario(&s)?;
    check_writable(a.out.json.as_deref())?;
    check_writable(a.out.plot.as_deref())?;
    outln!(
        "{}: {} policy, {} profile, up to {}x a sink of {} rec/s for {:.1}s, edge capacity {}{}",
        s.job,
        s.policy.name(),
        s.profile.name(),
        s.overload,
        s.sink_capacity,
        s.duration.as_secs_f64(),
        s.capacity,
        s.kafka.as_ref().map_or(String::new(), |k| format!(
            ", fed through Kafka topic `{}` ({}, {} workers)",
            k.topic,
            k.brokers.as_deref().unwrap_or("embedded cluster"),
            k.workers
        ))
    );
    let mut progress = Progress::new(
        a.out.progress,
        &s.job,
        s.duration.as_secs_f64(),
        s.capacity as u64,
    );
    let result = overload::run(&s, &mut |x| progress.update(x));
    progress.finish();
    let r = result.map_err(|e| CliError::job(s.job.clone(), e))?;
    print_detail(&r);
    for line in job.story(&r) {
        outln!("{line}");
    }
    save(&a.out, std::slice::from_ref(&r), false)
}

/// The most records one scenario may offer: the harness accounts for each one.
const MAX_OFFERED: u64 = 2_000_000_000;
/// The fastest sink a scenario can pace, records per second.
const MAX_SINK_CAPACITY: f64 = 100_000_000.0;

/// Refuses, before anything runs, a scenario that cannot work.
/// The largest batch a scenario accepts.
const MAX_BATCH: usize = 1_000_000;

fn check_scenario(s: &Scenario) -> Result<(), CliError> {
    if s.batch.is_some_and(|b| b > MAX_BATCH) {
        return Err(CliError::Usage(format!(
            "--batch {} is more than a batch can usefully be: at most {MAX_BATCH} records",
            s.batch.unwrap_or(0)
        )));
    }
    if s.sink_capacity > MAX_SINK_CAPACITY {
        return Err(CliError::Usage(format!(
            "--sink-capacity {} is beyond what a paced sink can do here: at most 100M records/s",
            s.sink_capacity
        )));
    }
    let offered = s.schedule().total();
    if offered > MAX_OFFERED {
        return Err(CliError::Usage(format!(
            "this scenario offers {offered} records ({}x a sink of {} records/s for {:.1} s); at most {MAX_OFFERED}: lower --overload, --sink-capacity or --duration",
            s.overload,
            s.sink_capacity,
            s.duration.as_secs_f64()
        )));
    }
    Ok(())
}

/// Writes the JSON report and the plot, if asked.
fn save(out: &OutputArgs, results: &[ScenarioResult], list: bool) -> Result<(), CliError> {
    match (list, results) {
        (false, [one]) => write_json(out.json.as_deref(), one)?,
        _ => write_json(out.json.as_deref(), results)?,
    }
    if let Some(path) = &out.plot {
        plot::write(path, results).map_err(CliError::Plot)?;
        outln!("plot written to {}", path.display());
    }
    Ok(())
}

/// Renders saved scenario results (`sluice report`).
pub fn render(results: &[ScenarioResult]) {
    if let [one] = results {
        outln!(
            "{}: {} policy, {} profile, up to {}x a sink of {} rec/s for {:.1}s, edge capacity {}",
            one.job,
            one.policy,
            one.profile,
            one.overload,
            one.sink_capacity,
            one.duration_s,
            one.edge_capacity
        );
        print_detail(one);
        return;
    }
    for (i, r) in results.iter().enumerate() {
        print_row(r, i == 0);
    }
}

fn print_detail(r: &ScenarioResult) {
    outln!();
    if r.stopped {
        outln!(
            "stopped after {:.1} s (a signal): the figures cover the time it ran",
            r.duration_s
        );
    }
    outln!(
        "{:<10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9}",
        "class",
        "offered",
        "delivered",
        "dropped",
        "deferred",
        "p50 ms",
        "p99 ms",
        "p99.9 ms"
    );
    for (name, c) in &r.classes {
        let ms = |v: f64| {
            if c.delivered == 0 {
                "-".to_string()
            } else if v < 1.0 {
                format!("{v:.2}")
            } else {
                format!("{v:.1}")
            }
        };
        outln!(
            "{:<10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9}",
            name,
            c.offered,
            c.delivered,
            c.dropped,
            c.deferred,
            ms(c.latency_ms.p50),
            ms(c.latency_ms.p99),
            ms(c.latency_ms.p999)
        );
    }
    outln!();
    outln!(
        "offered {}/s, delivered {}/s in the window (goodput {:.1}% of capacity), peak RSS {}, recovery {}",
        human(r.offered_rate),
        human(r.delivered_rate),
        100.0 * r.goodput_ratio,
        r.peak_rss_bytes
            .map_or("n/a".into(), |b| format!("{:.0} MB", b as f64 / 1e6)),
        r.recovery_s.map_or("n/a".into(), |s| format!("{s:.1}s"))
    );
    let l = &r.ledger;
    outln!(
        "ledger: emitted {} = delivered {} + dropped {} + deferred {} + dead-lettered {} + in flight {}: {}",
        l.emitted,
        l.delivered,
        l.dropped,
        l.deferred_pending,
        l.dead_lettered,
        l.in_flight,
        if l.balanced { "balanced" } else { "UNBALANCED" }
    );
}

fn print_row(r: &ScenarioResult, header: bool) {
    let classes = [
        Priority::DEBUG,
        Priority::INFO,
        Priority::WARN,
        Priority::ERROR,
    ];
    if header {
        outln!();
        outln!(
            "{:<12} {:>7} {:>10} {:>8} {:>26} {:>34} {:>9} {:>9}",
            "policy",
            "edge",
            "delivered/s",
            "goodput",
            "dropped % (dbg/inf/wrn/err)",
            "p99 latency ms (dbg/inf/wrn/err)",
            "peak RSS",
            "ledger"
        );
    }
    let dropped: Vec<String> = classes
        .iter()
        .map(|c| {
            r.classes.get(c).map_or("-".into(), |x| {
                format!("{:.0}", 100.0 * x.dropped as f64 / x.offered.max(1) as f64)
            })
        })
        .collect();
    let p99: Vec<String> = classes
        .iter()
        .map(|c| {
            r.classes.get(c).map_or("-".into(), |x| {
                if x.delivered == 0 {
                    "-".into()
                } else {
                    format!("{:.1}", x.latency_ms.p99)
                }
            })
        })
        .collect();
    outln!(
        "{:<12} {:>7} {:>10.0} {:>7.1}% {:>26} {:>34} {:>8.0}M {:>9}",
        r.policy,
        r.edge_capacity,
        r.delivered_rate,
        100.0 * r.goodput_ratio,
        dropped.join("/"),
        p99.join("/"),
        r.peak_rss_bytes.unwrap_or(0) as f64 / 1e6,
        if r.ledger.balanced {
            "balanced"
        } else {
            "UNBALANCED"
        }
    );
}

/// A child ends with its parent: when its stdin closes (the parent was stopped by a signal,
/// or died) its job stops and reports; when its parent is gone (killed, even with SIGKILL)
/// it exits, instead of running on under init.
fn exit_with_parent() {
    let _ = std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            // Also any job that starts after this: the stop may arrive before it does.
            loop {
                sluice::engine::shutdown::stop_all_jobs(crate::STOP_DEADLINE);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
    let parent = std::os::unix::process::parent_id();
    let _ = std::thread::Builder::new()
        .name("parent-watch".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            if std::os::unix::process::parent_id() != parent {
                eprintln!("sluice: the parent process is gone; exiting");
                std::process::exit(1);
            }
        });
}
