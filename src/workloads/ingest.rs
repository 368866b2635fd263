//! Ingest: "provision for average". A burst far above the workers' capacity is buffered in a
//! Kafka topic; the workers (one consumer group) pull at their own pace, and the report shows
//! the topic's backlog grow during the burst, drain after it, and how long recovery took.
//!
//! The producer is open loop (the burst profile of the overload harness): each message
//! carries its intended send time, so latency includes the time it waited in Kafka. Runs on
//! the embedded mock cluster unless brokers are given (the topic must then exist).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use sluice_connectors::kafka::{
    EmbeddedKafka, KafkaConfig, KafkaPipelineExt, KafkaSourceConfig, KafkaSourceStats,
};
use sluice_engine::{JobStatus, Pipeline, Priority};
use sluice_operators::StreamExt;

use super::overload::{
    histograms, peak_rss_bytes, recovery, ClassCounters, ClassResult, Event, PacedSink,
    Percentiles, Profile, Sample, ScenarioResult, Schedule,
};

/// Parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestConfig {
    /// Brokers; none: an embedded mock cluster.
    pub brokers: Option<String>,
    /// The topic that buffers the burst.
    pub topic: String,
    /// Partitions (embedded cluster only; a real broker's topic must exist).
    pub partitions: i32,
    /// How long the producer offers load.
    pub duration: Duration,
    /// Records per second all workers together process.
    pub capacity: f64,
    /// The burst, as a multiple of the capacity (the rest of the window offers 0.5x).
    pub overload: f64,
    /// Workers (consumer group members).
    pub workers: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            brokers: None,
            topic: "sluice-ingest".into(),
            partitions: 4,
            duration: Duration::from_secs(5),
            capacity: 20_000.0,
            overload: 5.0,
            workers: 2,
        }
    }
}

fn err(e: impl std::fmt::Display) -> Box<dyn std::error::Error> {
    e.to_string().into()
}

/// 24 bytes: the run's nonce, the sequence number and the intended send time, little endian.
fn encode(nonce: u64, seq: u64, intended_ns: u64) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[..8].copy_from_slice(&nonce.to_le_bytes());
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    b[16..].copy_from_slice(&intended_ns.to_le_bytes());
    b
}

/// `(nonce, event)`; messages of another shape are malformed (dead-lettered by the source).
fn decode(b: &[u8]) -> Result<(u64, Event), String> {
    if b.len() != 24 {
        return Err(format!("expected 24 bytes, got {}", b.len()));
    }
    let word = |i: usize| {
        let mut w = [0u8; 8];
        if let Some(s) = b.get(i..i + 8) {
            w.copy_from_slice(s);
        }
        u64::from_le_bytes(w)
    };
    Ok((
        word(0),
        Event {
            seq: word(8),
            class: Priority::INFO,
            intended_ns: word(16),
        },
    ))
}

/// Runs the ingest job, calling `progress` with every sample (every 100 ms).
///
/// # Errors
/// When a client cannot be created, the group never assigns partitions, or the job fails.
pub fn run(
    cfg: &IngestConfig,
    progress: &mut dyn FnMut(&Sample),
) -> Result<ScenarioResult, Box<dyn std::error::Error>> {
    let embedded = match &cfg.brokers {
        Some(_) => None,
        None => {
            let k = EmbeddedKafka::start(1).map_err(err)?;
            k.create_topic(&cfg.topic, cfg.partitions).map_err(err)?;
            Some(k)
        }
    };
    let brokers = match (&cfg.brokers, &embedded) {
        (Some(b), _) => b.clone(),
        (None, Some(k)) => k.brokers(),
        (None, None) => return Err("no brokers".into()),
    };
    // Messages of earlier runs on a shared topic are read once (the group's committed offsets
    // move past them) and filtered out by this nonce.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    // Latency is measured from `base`; the schedule starts once the group has its partitions.
    let base = Instant::now();
    let stats = Arc::new(KafkaSourceStats::default());
    let mut scfg = KafkaSourceConfig::new(
        KafkaConfig::new(&brokers, "sluice-ingest")?.set("auto.offset.reset", "earliest")?,
        &[&cfg.topic],
    );
    scfg.batch_size = 256;
    let hists = Arc::new(Mutex::new(histograms()));
    let delivered: ClassCounters = Arc::new(std::array::from_fn(|_| AtomicU64::new(0)));
    let per_worker = cfg.capacity / cfg.workers.max(1) as f64;
    let p = Pipeline::new("ingest");
    let (h2, d2) = (hists.clone(), delivered.clone());
    p.kafka_source(
        "topic",
        cfg.workers.max(1),
        scfg,
        Arc::new(decode),
        stats.clone(),
    )
    .filter("this-run", move |(n, _): &(u64, Event)| *n == nonce)
    .map("event", |(_, e): (u64, Event)| e)
    .sink("workers", move |_| {
        PacedSink::new(base, per_worker, h2.clone(), d2.clone())
    });
    let mut job = Some(p.run()?);
    // Wait for the group to assign every partition (a first join takes a few seconds on a
    // real broker).
    let join_deadline = Instant::now() + Duration::from_secs(30);
    while stats.assigned.load(Ordering::Relaxed) < cfg.partitions.max(1) as u64 {
        if Instant::now() > join_deadline {
            if let Some(j) = job.take() {
                let _ = j.stop(Duration::from_secs(5));
            }
            return Err(format!(
                "the consumer group got {} of {} partitions of `{}` within 30 s{}",
                stats.assigned.load(Ordering::Relaxed),
                cfg.partitions,
                cfg.topic,
                stats
                    .error
                    .lock()
                    .as_ref()
                    .map_or(String::new(), |e| format!(": {e}"))
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let schedule = Arc::new(Schedule::new(
        Profile::Burst,
        cfg.duration,
        cfg.capacity,
        cfg.overload,
    ));
    let total = schedule.total();
    let produced = Arc::new(AtomicU64::new(0));
    let producer_failed = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let offset_ns = epoch.duration_since(base).as_nanos() as u64;
    let producer = {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "1000000")
            .create()
            .map_err(err)?;
        let (schedule, produced, failed, topic) = (
            schedule.clone(),
            produced.clone(),
            producer_failed.clone(),
            cfg.topic.clone(),
        );
        std::thread::Builder::new()
            .name("ingest-producer".into())
            .spawn(move || {
                let mut k = 0u64;
                while k < total {
                    let due =
                        (schedule.due_by(epoch.elapsed().as_secs_f64()) as u64 + 1).min(total);
                    while k < due {
                        let payload =
                            encode(nonce, k, offset_ns + (schedule.time_of(k) * 1e9) as u64);
                        let key = k.to_le_bytes();
                        let mut rec = BaseRecord::to(&topic).key(&key[..]).payload(&payload[..]);
                        let mut tries = 0;
                        loop {
                            match producer.send(rec) {
                                Ok(()) => break,
                                Err((_, r)) if tries < 10_000 => {
                                    tries += 1;
                                    rec = r;
                                    producer.poll(Duration::from_millis(1));
                                }
                                Err(_) => {
                                    failed.store(true, Ordering::Relaxed);
                                    return;
                                }
                            }
                        }
                        k += 1;
                        produced.store(k, Ordering::Relaxed);
                    }
                    producer.poll(Duration::ZERO);
                    std::thread::sleep(Duration::from_millis(1));
                }
                if producer.flush(Duration::from_secs(30)).is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
            })?
    };

    let window = cfg.duration.as_secs_f64();
    let drain_deadline = cfg.duration + Duration::from_secs(120);
    let mut series = Vec::new();
    let mut delivered_in_window = None;
    let delivered_now = || -> u64 { delivered.iter().map(|d| d.load(Ordering::Relaxed)).sum() };
    let mut stopping = false;
    while let Some(j) = job.as_ref() {
        let finished = j.is_finished();
        let t = epoch.elapsed();
        let r = j.report();
        let made = produced.load(Ordering::Relaxed);
        let done = delivered_now();
        let sample = Sample {
            t_s: t.as_secs_f64(),
            offered: made,
            emitted: made,
            delivered: BTreeMap::from([("info".to_string(), done)]),
            dropped: BTreeMap::from([("info".to_string(), r.ledger.dropped)]),
            queued: r.edges.first().map_or(0, |e| e.queued),
            deferred: 0,
            buffered: made.saturating_sub(r.source_emitted),
        };
        progress(&sample);
        series.push(sample);
        if finished {
            break;
        }
        if delivered_in_window.is_none() && t >= cfg.duration {
            delivered_in_window = Some(done);
        }
        let producer_done = made >= total || producer_failed.load(Ordering::Relaxed);
        if !stopping && producer_done && (done >= made || t > drain_deadline) {
            // Everything produced was processed (or the drain took too long): stop the group.
            j.request_stop();
            stopping = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = producer.join();
    let report = match job {
        Some(j) => j.stop(Duration::from_secs(10))?,
        None => return Err("the job disappeared".into()),
    };
    if producer_failed.load(Ordering::Relaxed) {
        return Err("the producer could not write the burst to Kafka".into());
    }
    if report.status == JobStatus::Failed {
        return Err(format!("ingest ended {:?}", report.status).into());
    }
    let made = produced.load(Ordering::Relaxed);
    let hists = hists.lock();
    let latency = hists
        .get(Priority::INFO.index())
        .map(Percentiles::of)
        .unwrap_or_default();
    let delivered_total = delivered_now();
    let delivered_window = delivered_in_window.unwrap_or(delivered_total);
    let mut classes = BTreeMap::new();
    classes.insert(
        "info".to_string(),
        ClassResult {
            offered: made,
            delivered: delivered_total,
            dropped: report.ledger.dropped,
            deferred: 0,
            latency_ms: latency,
        },
    );
    Ok(ScenarioResult {
        job: "ingest".into(),
        policy: "kafka-buffer".into(),
        profile: Profile::Burst.name().into(),
        duration_s: window,
        total_s: epoch.elapsed().as_secs_f64(),
        offered_rate: made as f64 / window,
        emitted: made,
        delivered_rate: delivered_window as f64 / window,
        sink_capacity: cfg.capacity,
        goodput_ratio: delivered_window as f64 / window / cfg.capacity,
        overload: cfg.overload,
        edge_capacity: 0,
        peak_rss_bytes: peak_rss_bytes(),
        recovery_s: Profile::Burst
            .burst_end(window)
            .and_then(|b| recovery(&series, b, (cfg.capacity as u64 / 20).max(256))),
        sink_retries: 0,
        classes,
        drops: Vec::new(),
        ledger: report.ledger,
        series,
    })
}
