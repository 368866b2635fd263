//! Kafka under faults, on the embedded mock cluster: a paced topic -> map -> topic job runs
//! while the cluster misbehaves (its broker down, produce requests failing, added latency)
//! or with a tiny producer queue. The job is stopped once every input offset has ended (the
//! source's end-to-end progress), the output is read back and counted, and the outcome says
//! in words what happened, with the numbers.
//!
//! ```text
//!   produce N ─► [in] ─► kafka source ─► pace (rate limit) ─► kafka sink ─► [out] ─► read back
//!                          ▲                                       ▲
//!                          └──── faults injected on the cluster ───┘  (at `at`, for `hold`)
//! ```

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde::{Deserialize, Serialize};
use sluice_connectors::kafka::{
    EmbeddedKafka, KafkaConfig, KafkaPipelineExt, KafkaSinkConfig, KafkaSinkStats,
    KafkaSourceConfig, KafkaSourceStats, KafkaStreamExt,
};
use sluice_engine::Pipeline;
use sluice_operators::resilience::{Admission, RateLimit, ResilienceExt, SystemClock};
use sluice_operators::StreamExt;

use sluice_testkit::{count_payloads, produce, run_id, tagged};

/// A fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// The cluster's only broker goes down, then comes back.
    BrokerDown,
    /// A run of produce requests fails with retriable errors.
    ProduceErrors,
    /// Every request to the broker takes longer.
    Latency,
    /// The sink's local producer queue holds only a few messages, for the whole run.
    TinyQueue,
}

/// Produce requests failed by [`Fault::ProduceErrors`].
const INJECTED_PRODUCE_ERRORS: usize = 30;
/// Added round trip of [`Fault::Latency`].
const ADDED_RTT: Duration = Duration::from_millis(300);
/// The producer queue of [`Fault::TinyQueue`].
const TINY_QUEUE: usize = 64;

impl Fault {
    /// Every fault, in the order `all` runs them.
    pub const ALL: [Fault; 4] = [
        Fault::BrokerDown,
        Fault::ProduceErrors,
        Fault::Latency,
        Fault::TinyQueue,
    ];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Fault::BrokerDown => "broker-down",
            Fault::ProduceErrors => "produce-errors",
            Fault::Latency => "latency",
            Fault::TinyQueue => "tiny-queue",
        }
    }

    /// Parses a CLI name.
    pub fn parse(s: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == s)
    }

    /// How long the fault lasts by default (none: it is not healed by the harness).
    pub fn default_hold(self) -> Option<Duration> {
        match self {
            Fault::BrokerDown => Some(Duration::from_secs(10)),
            Fault::Latency => Some(Duration::from_secs(4)),
            Fault::ProduceErrors | Fault::TinyQueue => None,
        }
    }
}

/// Parameters of a fault run.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    /// What goes wrong.
    pub fault: Fault,
    /// Messages produced to the input topic before the job starts.
    pub messages: u64,
    /// The job's pace, records per second (so the fault lands mid-stream).
    pub rate: f64,
    /// When the fault starts, after the first message reached the output (joining the group
    /// takes a few seconds on the mock cluster).
    pub at: Duration,
    /// How long it lasts (for faults that heal).
    pub hold: Option<Duration>,
    /// Partitions of the topics.
    pub partitions: i32,
    /// The sink's in-flight window (none: the sink's default; `tiny-queue` sets its own).
    pub max_in_flight: Option<usize>,
}

impl FaultConfig {
    /// 40,000 messages at 10,000 per second over 4 partitions, the fault 1.5 s after output
    /// started, lasting its default.
    pub fn new(fault: Fault) -> Self {
        FaultConfig {
            fault,
            messages: 40_000,
            rate: 10_000.0,
            at: Duration::from_millis(1500),
            hold: fault.default_hold(),
            partitions: 4,
            max_in_flight: None,
        }
    }
}

/// One observation of the running job, every 100 ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultSample {
    /// Seconds since the job started.
    pub t_s: f64,
    /// Messages the broker acknowledged to the sink so far.
    pub delivered: u64,
    /// Messages in the producer's queue, not yet acknowledged.
    pub in_flight: u64,
    /// The source's partitions are paused.
    pub paused: bool,
    /// Partitions assigned to the source.
    pub assigned: u64,
    /// Client errors the consumer reported so far.
    pub consumer_errors: u64,
}

/// What a fault run measured, and what it means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultOutcome {
    /// The fault's name.
    pub fault: Fault,
    /// When the fault was injected, seconds after the job started.
    pub fault_at_s: Option<f64>,
    /// When it was healed.
    pub healed_at_s: Option<f64>,
    /// Messages produced to the input topic.
    pub produced: u64,
    /// Distinct input messages found in the output topic.
    pub delivered: u64,
    /// Input messages missing from the output.
    pub lost: u64,
    /// Extra copies in the output.
    pub duplicates: u64,
    /// Records the job dead-lettered (ledger).
    pub dead_lettered: u64,
    /// The job's ledger balanced.
    pub ledger_balanced: bool,
    /// Seconds from the job's start until every input offset had ended.
    pub job_s: f64,
    /// Output rate before the fault (msg/s).
    pub rate_before: f64,
    /// Output rate while the fault lasted (msg/s; for faults that heal).
    pub rate_during: Option<f64>,
    /// Longest time without a delivery report while the job ran.
    pub longest_stall_s: f64,
    /// From the heal until output moved again.
    pub resumed_after_s: Option<f64>,
    /// Times the source paused its partitions.
    pub pauses: u64,
    /// Assignments the source received (1: it kept its first).
    pub assignments: u64,
    /// Client errors the consumer reported.
    pub consumer_errors: u64,
    /// The last of them.
    pub last_consumer_error: Option<String>,
    /// Times the producer's local queue was full (backpressure).
    pub queue_full: u64,
    /// Produce request errors librdkafka saw.
    pub request_errors: u64,
    /// Produce requests librdkafka retried.
    pub request_retries: u64,
    /// Messages that failed for good in the sink.
    pub failed: u64,
    /// Most messages in the producer's queue at once.
    pub peak_in_flight: u64,
    /// The longest a batch waited for its delivery reports (s).
    pub max_ack_s: f64,
    /// Prefetched records the source took back on a revoke (re-read, not duplicated).
    pub returned: u64,
    /// Every 100 ms.
    pub series: Vec<FaultSample>,
    /// What happened, in sentences.
    pub explanation: Vec<String>,
}

type BoxError = Box<dyn std::error::Error>;

fn err(e: impl std::fmt::Display) -> BoxError {
    e.to_string().into()
}

/// Runs the passthrough job under one fault.
///
/// # Errors
/// When the cluster or a client cannot be created, or the job fails.
pub fn run(cfg: &FaultConfig) -> Result<FaultOutcome, BoxError> {
    let kafka = EmbeddedKafka::start(1).map_err(err)?;
    let brokers = kafka.brokers();
    let run_id = run_id();
    let (tin, tout) = (
        format!("faults-in-{run_id}"),
        format!("faults-out-{run_id}"),
    );
    kafka.create_topic(&tin, cfg.partitions).map_err(err)?;
    kafka.create_topic(&tout, cfg.partitions).map_err(err)?;

    // The input, produced before the job (and before any fault).
    produce(&brokers, &tin, cfg.messages, |i| tagged(&run_id, i)).map_err(err)?;

    let src_stats = Arc::new(KafkaSourceStats::default());
    let sink_stats = Arc::new(KafkaSinkStats::default());
    // No end-when-idle: a broker that is down looks like a quiet topic. The harness stops the
    // job once every input offset has ended.
    let scfg = KafkaSourceConfig::new(
        KafkaConfig::new(&brokers, format!("faults-{run_id}"))?
            .set("auto.commit.interval.ms", "200")?,
        &[&tin],
    );
    let mut sink_cfg = KafkaSinkConfig::new(
        KafkaConfig::new(&brokers, "")?.set("statistics.interval.ms", "200")?,
        &tout,
    );
    if let Some(w) = cfg.max_in_flight {
        sink_cfg.max_in_flight = w;
    }
    if cfg.fault == Fault::TinyQueue {
        sink_cfg.max_in_flight = TINY_QUEUE;
    }
    let p = Pipeline::new(format!("kafka-faults-{}", cfg.fault.name()));
    p.kafka_source(
        "input",
        1,
        scfg,
        sluice_connectors::kafka::codec::utf8(),
        src_stats.clone(),
    )
    .rate_limit(
        "pace",
        RateLimit::delay(cfg.rate, (cfg.rate / 20.0).max(1.0)),
        Arc::new(SystemClock::new()),
    )
    // A delaying limiter admits everything; `Rejected` cannot occur (it would count as
    // filtered in the ledger if it did).
    .flat_map("admitted", |a: Admission<String>| match a {
        Admission::Admitted(s) => Some(s),
        Admission::Rejected(_) => None,
    })
    .kafka_sink(
        "output",
        sink_cfg,
        Arc::new(|s: &String| (Some(s.clone().into_bytes()), s.clone().into_bytes())),
        sink_stats.clone(),
    );

    let job = p.run()?;
    let t0 = Instant::now();
    let cluster = kafka.cluster();
    let mut fault_at: Option<f64> = None;
    let mut healed_at: Option<f64> = None;
    let mut series: Vec<FaultSample> = Vec::new();
    let mut done_at: Option<f64> = None;
    let give_up = Duration::from_secs(60) + cfg.at + cfg.hold.unwrap_or_default();
    let mut next_sample = Duration::ZERO;
    let mut flowing: Option<Duration> = None;
    loop {
        let now = t0.elapsed();
        if flowing.is_none() && sink_stats.acked.load(Ordering::Relaxed) > 0 {
            flowing = Some(now);
        }
        if let (None, Some(f)) = (fault_at, flowing) {
            if now >= f + cfg.at {
                inject(cluster, cfg.fault)?;
                fault_at = Some(now.as_secs_f64());
            }
        }
        if let (Some(a), None, Some(hold)) = (fault_at, healed_at, cfg.hold) {
            if now.as_secs_f64() >= a + hold.as_secs_f64() {
                heal(cluster, cfg.fault)?;
                healed_at = Some(now.as_secs_f64());
            }
        }
        if now >= next_sample {
            series.push(FaultSample {
                t_s: now.as_secs_f64(),
                delivered: sink_stats.acked.load(Ordering::Relaxed),
                in_flight: sink_stats.in_flight.load(Ordering::Relaxed),
                paused: src_stats.paused.load(Ordering::Relaxed),
                assigned: src_stats.assigned.load(Ordering::Relaxed),
                consumer_errors: src_stats.errors.load(Ordering::Relaxed),
            });
            next_sample += Duration::from_millis(100);
        }
        let ended: i64 = src_stats
            .done_below
            .lock()
            .iter()
            .filter(|((t, _), _)| *t == tin)
            .map(|(_, o)| *o)
            .sum();
        let healed_or_permanent = healed_at.is_some() || cfg.hold.is_none();
        if ended as u64 >= cfg.messages && fault_at.is_some() && healed_or_permanent {
            done_at = Some(now.as_secs_f64());
            break;
        }
        if now >= give_up || job.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if fault_at.is_some() && healed_at.is_none() && cfg.hold.is_some() {
        heal(cluster, cfg.fault)?;
    }
    job.request_stop();
    let report = job.wait()?;
    if fault_at.is_none() {
        return Err(format!(
            "output never started within {:.0} s: the source polled {}, was assigned {} \
             partitions, the sink acknowledged {} (consumer error: {:?})",
            give_up.as_secs_f64(),
            src_stats.polled.load(Ordering::Relaxed),
            src_stats.assigned.load(Ordering::Relaxed),
            sink_stats.acked.load(Ordering::Relaxed),
            src_stats.error.lock()
        )
        .into());
    }
    let job_s = done_at.unwrap_or_else(|| t0.elapsed().as_secs_f64());

    let seen = count_payloads(
        &brokers,
        &tout,
        &format!("faults-reader-{run_id}"),
        &format!("{run_id}-"),
        cfg.messages,
        Duration::from_secs(30),
    )
    .map_err(err)?;
    let mut o = FaultOutcome {
        fault: cfg.fault,
        fault_at_s: fault_at,
        healed_at_s: healed_at,
        produced: cfg.messages,
        delivered: seen.delivered(),
        lost: seen.lost(),
        duplicates: seen.duplicates(),
        dead_lettered: report.ledger.dead_lettered,
        ledger_balanced: report.ledger.balanced,
        job_s,
        rate_before: 0.0,
        rate_during: None,
        longest_stall_s: 0.0,
        resumed_after_s: None,
        pauses: src_stats.pauses.load(Ordering::Relaxed),
        assignments: src_stats.rebalances.load(Ordering::Relaxed),
        consumer_errors: src_stats.errors.load(Ordering::Relaxed),
        last_consumer_error: src_stats.error.lock().clone(),
        queue_full: sink_stats.queue_full.load(Ordering::Relaxed),
        request_errors: sink_stats.request_errors.load(Ordering::Relaxed),
        request_retries: sink_stats.request_retries.load(Ordering::Relaxed),
        failed: sink_stats.failed.load(Ordering::Relaxed),
        peak_in_flight: series.iter().map(|s| s.in_flight).max().unwrap_or(0),
        max_ack_s: sink_stats.max_ack_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        returned: src_stats.returned.load(Ordering::Relaxed),
        series,
        explanation: Vec::new(),
    };
    analyse(&mut o, cfg);
    Ok(o)
}

fn inject(
    cluster: &MockCluster<'static, DefaultProducerContext>,
    fault: Fault,
) -> Result<(), BoxError> {
    match fault {
        Fault::BrokerDown => cluster.broker_down(1).map_err(err),
        Fault::ProduceErrors => {
            let kinds = [
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            ];
            let errors: Vec<RDKafkaRespErr> = (0..INJECTED_PRODUCE_ERRORS)
                .map(|i| kinds[i % kinds.len()])
                .collect();
            cluster.request_errors(RDKafkaApiKey::Produce, &errors);
            Ok(())
        }
        Fault::Latency => cluster.broker_round_trip_time(1, ADDED_RTT).map_err(err),
        // Configured on the sink from the start.
        Fault::TinyQueue => Ok(()),
    }
}

fn heal(
    cluster: &MockCluster<'static, DefaultProducerContext>,
    fault: Fault,
) -> Result<(), BoxError> {
    match fault {
        Fault::BrokerDown => cluster.broker_up(1).map_err(err),
        Fault::Latency => cluster
            .broker_round_trip_time(1, Duration::ZERO)
            .map_err(err),
        Fault::ProduceErrors | Fault::TinyQueue => Ok(()),
    }
}

fn times(n: u64) -> String {
    if n == 1 {
        "once".to_string()
    } else {
        format!("{n} times")
    }
}

/// Delivered count at time `t` (the last sample at or before it).
fn delivered_at(series: &[FaultSample], t: f64) -> Option<(f64, u64)> {
    series
        .iter()
        .take_while(|s| s.t_s <= t)
        .last()
        .map(|s| (s.t_s, s.delivered))
}

fn rate_between(series: &[FaultSample], from: f64, to: f64) -> Option<f64> {
    let (t1, d1) = delivered_at(series, from)?;
    let (t2, d2) = delivered_at(series, to)?;
    (t2 > t1).then(|| (d2.saturating_sub(d1)) as f64 / (t2 - t1))
}

/// Derives rates, stalls and recovery from the series, and writes the explanation.
fn analyse(o: &mut FaultOutcome, cfg: &FaultConfig) {
    let s = &o.series;
    let fault_at = o.fault_at_s.unwrap_or(0.0);
    // The rate before the fault: from the first delivery to the fault.
    let first = s
        .iter()
        .find(|x| x.delivered > 0)
        .map(|x| x.t_s)
        .unwrap_or(0.0);
    o.rate_before = rate_between(s, first, fault_at).unwrap_or(0.0);
    if let (Some(a), Some(h)) = (o.fault_at_s, o.healed_at_s) {
        o.rate_during = rate_between(s, a, h);
    }
    // Longest stall: from the first delivery to the end.
    let mut last_move: Option<f64> = None;
    let mut prev = 0u64;
    for x in s.iter().filter(|x| x.t_s <= o.job_s) {
        if x.delivered > prev {
            if let Some(m) = last_move {
                o.longest_stall_s = o.longest_stall_s.max(x.t_s - m);
            }
            last_move = Some(x.t_s);
            prev = x.delivered;
        }
    }
    if let Some(h) = o.healed_at_s {
        let at_heal = delivered_at(s, h).map(|(_, d)| d).unwrap_or(0);
        o.resumed_after_s = s
            .iter()
            .find(|x| x.t_s > h && x.delivered > at_heal)
            .map(|x| x.t_s - h);
    }

    let mut e = Vec::new();
    let pace = format!("paced at {:.0} msg/s", cfg.rate);
    match cfg.fault {
        Fault::BrokerDown => {
            e.push(format!(
                "The cluster's only broker went down at {:.1} s and came back at {:.1} s; the job \
                 was delivering {:.0} msg/s before ({pace}).",
                fault_at,
                o.healed_at_s.unwrap_or(f64::NAN),
                o.rate_before
            ));
            e.push(format!(
                "Output stopped for {:.1} s (the longest gap between delivery reports). The \
                 producer held up to {} messages in its queue meanwhile; message.timeout.ms (30 s) \
                 outlasted the outage, so {} expired.",
                o.longest_stall_s, o.peak_in_flight, o.failed
            ));
        }
        Fault::ProduceErrors => {
            e.push(format!(
                "From {:.1} s the next {INJECTED_PRODUCE_ERRORS} produce requests failed with \
                 retriable errors (NOT_LEADER_FOR_PARTITION, REQUEST_TIMED_OUT, \
                 NOT_ENOUGH_REPLICAS); the job was delivering {:.0} msg/s before ({pace}).",
                fault_at, o.rate_before
            ));
            e.push(format!(
                "librdkafka retried the failed requests itself: the slowest batch waited {:.1} s \
                 for its delivery reports and output paused for up to {:.1} s; {} messages \
                 failed for good. The idempotent producer keeps a retried batch from being \
                 written twice.",
                o.max_ack_s, o.longest_stall_s, o.failed
            ));
        }
        Fault::Latency => {
            e.push(format!(
                "From {:.1} s to {:.1} s every request to the broker took {} ms longer.",
                fault_at,
                o.healed_at_s.unwrap_or(f64::NAN),
                ADDED_RTT.as_millis()
            ));
            e.push(format!(
                "Output went from {:.0} msg/s before to {:.0} msg/s during ({pace}); the producer \
                 held up to {} messages in flight.",
                o.rate_before,
                o.rate_during.unwrap_or(f64::NAN),
                o.peak_in_flight
            ));
        }
        Fault::TinyQueue => {
            e.push(format!(
                "The sink's producer queue held at most {TINY_QUEUE} messages \
                 (queue.buffering.max.messages) for the whole run ({pace})."
            ));
            e.push(format!(
                "It was full {}; each time the sink served delivery reports and tried again, \
                 so a full queue slowed the job instead of dropping: {} failed. Output ran at \
                 {:.0} msg/s.",
                times(o.queue_full),
                o.failed,
                o.delivered as f64 / o.job_s.max(1e-9)
            ));
        }
    }
    if o.request_retries > 0 || o.request_errors > 0 {
        e.push(format!(
            "librdkafka's statistics counted {} request errors and {} request retries.",
            o.request_errors, o.request_retries
        ));
    }
    if o.queue_full > 0 && cfg.fault != Fault::TinyQueue {
        e.push(format!(
            "The producer's queue filled {}: backpressure reached the source.",
            times(o.queue_full)
        ));
    }
    if o.pauses > 0 {
        e.push(format!(
            "The source paused its partitions {} while the graph refused its batches, and \
             stayed in its group.",
            times(o.pauses)
        ));
    }
    if o.consumer_errors > 0 {
        e.push(format!(
            "The consumer reported {} client errors (last: {}); librdkafka reconnects by itself.",
            o.consumer_errors,
            o.last_consumer_error.as_deref().unwrap_or("-")
        ));
    }
    if o.returned > 0 {
        e.push(format!(
            "When the group took the partitions away, the source handed back {} prefetched \
             records the graph had not seen yet: they were re-read from the committed offsets \
             instead of being delivered twice.",
            o.returned
        ));
    }
    e.push(if o.assignments <= 1 {
        "The source kept its partitions throughout (one assignment).".to_string()
    } else {
        format!(
            "The source was assigned its partitions {} times; each reassignment replays what \
             was delivered but not yet committed (the duplicates).",
            o.assignments
        )
    });
    if let Some(r) = o.resumed_after_s {
        e.push(format!(
            "Output moved again {r:.1} s after the fault was healed."
        ));
    }
    e.push(format!(
        "Every input offset had ended {:.1} s after the start. Produced {}, found in the output \
         {} ({} duplicates), lost {}{}.",
        o.job_s,
        o.produced,
        o.delivered,
        o.duplicates,
        o.lost,
        if o.ledger_balanced {
            "; the ledger balanced"
        } else {
            "; the ledger did NOT balance"
        }
    ));
    o.explanation = e;
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}
