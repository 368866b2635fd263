//! The scenario jobs: presets of the overload harness that tell one story each
//! (`sluice run telemetry|orders|indexing|ingest`).

use std::time::Duration;

use sluice_engine::{Priority, CLASSES};

use super::scenario::{KafkaFeed, PolicyChoice, Scenario};
use super::schedule::Profile;

/// The scenario jobs: presets of the overload harness that tell one story each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScenarioJob {
    /// Log records with levels; Debug then Info are shed under pressure, Error never.
    Telemetry,
    /// Payments: never dropped; block and retry; latency moves upstream.
    Orders,
    /// High-rank pages indexed at once, low-rank deferred to disk and indexed after the burst.
    Indexing,
    /// A burst buffered in a Kafka topic; workers pull at their own pace.
    Ingest,
}

impl ScenarioJob {
    /// The job's scenario, before any command-line overrides.
    pub fn preset(self) -> Scenario {
        let mut mix = [0.0; CLASSES];
        match self {
            ScenarioJob::Telemetry => Scenario {
                job: "telemetry".into(),
                policy: PolicyChoice::Shed,
                profile: Profile::Step,
                duration: Duration::from_secs(4),
                sink_capacity: 100_000.0,
                overload: 10.0,
                capacity: 512,
                ..Scenario::default()
            },
            ScenarioJob::Orders => {
                mix[Priority::CRITICAL.index()] = 1.0;
                Scenario {
                    kafka: None,
                    job: "orders".into(),
                    policy: PolicyChoice::Block,
                    profile: Profile::Step,
                    duration: Duration::from_secs(4),
                    sink_capacity: 20_000.0,
                    overload: 2.0,
                    capacity: 512,
                    mix,
                    sink_failure_rate: 0.02,
                    ..Scenario::default()
                }
            }
            ScenarioJob::Indexing => {
                mix[Priority::DEBUG.index()] = 0.5;
                mix[Priority::INFO.index()] = 0.3;
                mix[Priority::WARN.index()] = 0.15;
                mix[Priority::ERROR.index()] = 0.05;
                Scenario {
                    kafka: None,
                    job: "indexing".into(),
                    policy: PolicyChoice::Defer,
                    profile: Profile::Burst,
                    duration: Duration::from_secs(5),
                    sink_capacity: 50_000.0,
                    overload: 3.0,
                    capacity: 1024,
                    mix,
                    sink_failure_rate: 0.0,
                    ..Scenario::default()
                }
            }
            ScenarioJob::Ingest => {
                mix[Priority::INFO.index()] = 1.0;
                Scenario {
                    job: "ingest".into(),
                    policy: PolicyChoice::Block,
                    profile: Profile::Burst,
                    duration: Duration::from_secs(5),
                    sink_capacity: 20_000.0,
                    overload: 5.0,
                    capacity: 1024,
                    mix,
                    sink_failure_rate: 0.0,
                    kafka: Some(KafkaFeed {
                        brokers: None,
                        topic: "sluice-ingest".into(),
                        partitions: 4,
                        // One member by default: two that join a few hundred ms apart can
                        // hit the rejoin stall of issue 5 (then the job waits out a session
                        // timeout before it starts).
                        workers: 1,
                    }),
                    ..Scenario::default()
                }
            }
        }
    }
}
