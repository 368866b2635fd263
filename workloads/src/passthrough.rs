//! Kafka passthrough: topic -> map -> topic, then reads the output back and counts what was
//! lost and duplicated. Runs on the embedded mock cluster unless brokers are given.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sluice_connectors::kafka::{
    EmbeddedKafka, KafkaConfig, KafkaPipelineExt, KafkaSinkConfig, KafkaSinkStats,
    KafkaSourceConfig, KafkaSourceStats, KafkaStreamExt,
};
use sluice_engine::{JobReport, Pipeline};
use sluice_operators::StreamExt;

use sluice_testkit::{count_payloads, produce, run_id, tagged};

/// Parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassthroughConfig {
    /// Brokers; none: an embedded mock cluster.
    pub brokers: Option<String>,
    /// Messages to produce to the input topic first.
    pub messages: u64,
    /// Partitions of the topics (embedded cluster only; a real broker's topics must exist).
    pub partitions: i32,
    /// Input and output topics.
    pub input: String,
    /// Output topic.
    pub output: String,
    /// Source instances (one consumer group).
    pub parallelism: usize,
}

impl Default for PassthroughConfig {
    fn default() -> Self {
        PassthroughConfig {
            brokers: None,
            messages: 50_000,
            partitions: 4,
            input: "sluice-in".into(),
            output: "sluice-out".into(),
            parallelism: 2,
        }
    }
}

/// What the run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassthroughOutcome {
    /// Messages produced to the input topic.
    pub produced: u64,
    /// Distinct input messages found in the output.
    pub delivered: u64,
    /// Input messages missing from the output.
    pub lost: u64,
    /// Extra copies in the output.
    pub duplicates: u64,
    /// Seconds the job took.
    pub job_seconds: f64,
    /// Messages per second through the job.
    pub rate: f64,
    /// Times the source paused its partitions.
    pub pauses: u64,
}

fn io_err(e: impl std::fmt::Display) -> Box<dyn std::error::Error> {
    e.to_string().into()
}

/// Runs the passthrough job.
///
/// # Errors
/// When a client cannot be created or the job fails.
pub fn run(
    cfg: &PassthroughConfig,
) -> Result<(PassthroughOutcome, JobReport), Box<dyn std::error::Error>> {
    let embedded = match &cfg.brokers {
        Some(_) => None,
        None => {
            let k = EmbeddedKafka::start(1).map_err(io_err)?;
            k.create_topic(&cfg.input, cfg.partitions).map_err(io_err)?;
            k.create_topic(&cfg.output, cfg.partitions)
                .map_err(io_err)?;
            Some(k)
        }
    };
    let brokers = match (&cfg.brokers, &embedded) {
        (Some(b), _) => b.clone(),
        (None, Some(k)) => k.brokers(),
        (None, None) => return Err("no brokers".into()),
    };
    // Unique ids per run, so reading back a shared topic counts only this run's messages.
    let run_id = run_id();
    produce(&brokers, &cfg.input, cfg.messages, |i| tagged(&run_id, i)).map_err(io_err)?;

    let stats = Arc::new(KafkaSourceStats::default());
    let mut scfg = KafkaSourceConfig::new(
        KafkaConfig::new(&brokers, format!("sluice-passthrough-{run_id}"))?,
        &[&cfg.input],
    );
    scfg.end_when_idle = Some(Duration::from_secs(3));
    let p = Pipeline::new("passthrough");
    p.kafka_source(
        "input",
        cfg.parallelism,
        scfg,
        sluice_connectors::kafka::codec::utf8(),
        stats.clone(),
    )
    .map("tag", |s: String| s)
    .kafka_sink(
        "output",
        KafkaSinkConfig::new(KafkaConfig::new(&brokers, "")?, &cfg.output),
        Arc::new(|s: &String| (Some(s.clone().into_bytes()), s.clone().into_bytes())),
        Arc::new(KafkaSinkStats::default()),
    );
    let t0 = Instant::now();
    let report = p.run()?.wait()?;
    let job_seconds = t0.elapsed().as_secs_f64();

    // Read the output back.
    let seen = count_payloads(
        &brokers,
        &cfg.output,
        &format!("sluice-reader-{run_id}"),
        &format!("{run_id}-"),
        cfg.messages,
        Duration::from_secs(60),
    )
    .map_err(io_err)?;
    Ok((
        PassthroughOutcome {
            produced: cfg.messages,
            delivered: seen.delivered(),
            lost: seen.lost(),
            duplicates: seen.duplicates(),
            job_seconds,
            rate: cfg.messages as f64 / job_seconds.max(1e-9),
            pauses: stats.pauses.load(Ordering::Relaxed),
        },
        report,
    ))
}
