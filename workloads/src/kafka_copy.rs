//! One member of a copying consumer group: a Kafka topic -> (optional work) -> topic, at
//! least once. Several processes running it with one group share the input's partitions; the
//! kill -9 and split/handover tests run it as a child process (`sluice run kafka-copy`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_connectors::kafka::{
    codec, KafkaConfig, KafkaConfigError, KafkaPipelineExt, KafkaSinkConfig, KafkaSinkStats,
    KafkaSourceConfig, KafkaSourceStats, KafkaStreamExt,
};
use sluice_engine::{
    BuildError, DeferConfig, EdgePolicy, JobError, JobReport, JsonCodec, Pipeline, Priority,
    WhenLogFull,
};
use sluice_operators::StreamExt;

/// What to copy, and how.
#[derive(Debug, Clone)]
pub struct CopyConfig {
    /// Brokers (`host:port,...`).
    pub brokers: String,
    /// The topic read.
    pub input: String,
    /// The topic written.
    pub output: String,
    /// The consumer group.
    pub group: String,
    /// Work per record (to make the job slower than its input).
    pub delay: Duration,
    /// The job ends once no message arrived for this long.
    pub end_when_idle: Duration,
    /// librdkafka properties for the consumer and the producer, `KEY=VALUE`.
    pub props: Vec<String>,
    /// The job fails if this member holds no partition by then (an unreachable broker, a
    /// topic that does not exist).
    pub assign_timeout: Duration,
    /// Defer what the work cannot keep up with to a log in this directory (the edge before
    /// the work defers every record under pressure); `None`: the edge blocks.
    pub defer_dir: Option<std::path::PathBuf>,
}

/// How a copy ended.
#[derive(Debug)]
pub struct CopyOutcome {
    /// The job's report.
    pub report: JobReport,
    /// Messages whose offsets were acknowledged (stored for commit).
    pub acked: u64,
    /// Times the source paused its partitions under backpressure.
    pub pauses: u64,
}

/// Why a copy did not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The brokers, group or a property are invalid (a usage error).
    #[error(transparent)]
    Config(#[from] KafkaConfigError),
    /// The pipeline could not be built.
    #[error("cannot build the copy job: {0}")]
    Build(#[from] BuildError),
    /// The job failed while running.
    #[error("the copy job failed: {0}")]
    Job(#[from] JobError),
    /// Copying a topic onto itself would copy its own output forever.
    #[error("--input and --output are both `{0}`: a topic copied onto itself grows forever")]
    SameTopic(String),
    /// The member never got a partition.
    #[error("no partition of `{topic}` was assigned within {} s: is a broker reachable at {brokers}, and does the topic exist?", .waited.as_secs())]
    NotAssigned {
        /// The input topic.
        topic: String,
        /// The brokers.
        brokers: String,
        /// How long it waited.
        waited: Duration,
    },
}

/// Runs the copy until the input has been idle for `end_when_idle`, calling `on_assigned`
/// whenever the number of partitions this member holds changes (from a watcher thread, every
/// 50 ms), so a group of several processes can be watched splitting and handing over.
///
/// # Errors
/// [`CopyError`]: a bad configuration before anything runs, or a failed job.
pub fn run(
    cfg: &CopyConfig,
    on_assigned: impl Fn(u64) + Send + 'static,
) -> Result<CopyOutcome, CopyError> {
    if cfg.input == cfg.output {
        return Err(CopyError::SameTopic(cfg.input.clone()));
    }
    let kafka =
        KafkaConfig::new(&cfg.brokers, &cfg.group)?.set("auto.commit.interval.ms", "200")?;
    let kafka = cfg.props.iter().try_fold(kafka, |k, p| k.set_pair(p))?;
    kafka.validate()?;
    // A small in-flight window: what a crash can replay is bounded by it.
    let mut scfg = KafkaSourceConfig::new(kafka.clone(), &[&cfg.input]);
    scfg.batch_size = 256;
    scfg.prefetch_batches = 2;
    scfg.resume_below = 0;
    scfg.end_when_idle = Some(cfg.end_when_idle);
    let stats = Arc::new(KafkaSourceStats::default());
    let delay = cfg.delay;
    let p = Pipeline::new("kafka-copy").batch_size(256);
    let input = p.kafka_source("input", 1, scfg, codec::raw(), stats.clone());
    let work = move |b: Vec<u8>| {
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        b
    };
    let output = match &cfg.defer_dir {
        // Deferring: the work sits behind the edge, so the edge is where pressure shows; a
        // record written to the log is acknowledged (its offset may be committed), and the
        // log replays it to the work later, or in the next run with the same directory.
        Some(dir) => input
            .edge_capacity(512)
            .edge_policy(EdgePolicy::Defer(DeferConfig {
                below: Priority::WARN,
                when_full: WhenLogFull::Block,
            }))
            .classify(|_: &Vec<u8>| Priority::DEBUG)
            .defer_to(dir, 1 << 30, JsonCodec::<Vec<u8>>::new())
            .new_chain()
            .map("work", work),
        None => input.map("work", work),
    };
    output.kafka_sink(
        "output",
        KafkaSinkConfig::new(kafka, &cfg.output),
        Arc::new(|b: &Vec<u8>| (Some(b.clone()), b.clone())),
        Arc::new(KafkaSinkStats::default()),
    );
    let job = p.run()?;
    let done = Arc::new(AtomicBool::new(false));
    let unassigned = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stats, done, unassigned) = (stats.clone(), done.clone(), unassigned.clone());
        let (handle, timeout) = (job.handle(), cfg.assign_timeout);
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let mut last = u64::MAX;
            while !done.load(Ordering::Relaxed) {
                let now = stats.assigned.load(Ordering::Relaxed);
                if now != last {
                    on_assigned(now);
                    last = now;
                }
                let never = stats.rebalances.load(Ordering::Relaxed) == 0;
                if never && started.elapsed() > timeout && !unassigned.swap(true, Ordering::Relaxed)
                {
                    handle.stop_within(Duration::from_secs(5));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let result = job.wait();
    done.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    if unassigned.load(Ordering::Relaxed) {
        return Err(CopyError::NotAssigned {
            topic: cfg.input.clone(),
            brokers: cfg.brokers.clone(),
            waited: cfg.assign_timeout,
        });
    }
    Ok(CopyOutcome {
        report: result?,
        acked: stats.acked.load(Ordering::Relaxed),
        pauses: stats.pauses.load(Ordering::Relaxed),
    })
}
