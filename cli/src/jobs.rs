//! `sluice jobs`: the example jobs and their stories.

use crate::error::CliError;

const JOBS: &[(&str, &str)] = &[
    (
        "w1",
        "generate -> map -> filter -> key_by + running sum -> checksum sink (engine throughput)",
    ),
    (
        "telemetry",
        "log levels at 10x the sink: debug then info shed, errors always delivered",
    ),
    (
        "orders",
        "payments at 2x a flaky processor: never dropped, blocked and retried, latency upstream",
    ),
    (
        "indexing",
        "a burst of pages: high rank indexed at once, low rank deferred to disk, indexed later",
    ),
    (
        "ingest",
        "a burst at 5x the workers, buffered in Kafka (embedded or --brokers); drain, recovery",
    ),
    (
        "passthrough",
        "Kafka topic -> map -> topic on the embedded cluster (or --brokers); lost/duplicates",
    ),
    (
        "kafka-faults",
        "Kafka job while the embedded cluster fails: broker down, produce errors, latency",
    ),
    (
        "herd",
        "thundering herd: logins at 20x the database; per-client 429s, breaker, fallback",
    ),
];

/// The jobs' names.
pub fn names() -> Vec<&'static str> {
    JOBS.iter().map(|(n, _)| *n).collect()
}

/// Prints the list.
pub fn list() -> Result<(), CliError> {
    for (name, what) in JOBS {
        outln!("{name:<12} {what}");
    }
    Ok(())
}
