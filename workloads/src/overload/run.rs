//! One scenario in this process: build the pipeline, sample it every 100 ms, assemble the
//! result.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sluice_engine::{
    DeferConfig, EdgePolicy, JobStatus, JsonCodec, Pipeline, Priority, SampleConfig, WhenLogFull,
    CLASSES,
};
use sluice_operators::resilience::Backoff;
use sluice_operators::StreamExt;

use super::kafka_feed::KafkaRun;
use super::open_loop::OpenLoop;
use super::paced_sink::{histograms, step_histograms, step_result, ClassCounters, PacedSink, Step};
use super::result::{
    peak_rss_bytes, recovery, rss_bytes, ClassResult, DropRow, Percentiles, Sample, ScenarioResult,
};
use super::scenario::{PipelineShape, PolicyChoice, Scenario};
use super::schedule::{class_of, cumulative, Event};

/// Sink instances of the keyed pipeline.
const KEYED_SINKS: usize = 2;

fn by_class(
    values: impl Iterator<Item = (Priority, u64)>,
    mix: &[f64; CLASSES],
) -> BTreeMap<Priority, u64> {
    values
        .filter(|(c, _)| mix.get(c.index()).is_some_and(|m| *m > 0.0))
        .collect()
}

/// The Arrow pipeline's edge: events to record batches (one per producer batch, the class
/// as a rank column), split by that column, across the edge under test (counted and shed by
/// row, deferred as Arrow IPC), back to events for the paced sink. The conversions read and write the columns
/// directly (a serde round trip per row would cost the sink more than its work).
fn arrow_edge(
    stream: sluice_engine::Stream<Event>,
    s: &Scenario,
    capacity: usize,
    policy: EdgePolicy,
    defer_dir: &std::path::Path,
) -> sluice_engine::Stream<Event> {
    use sluice_operators::columnar::arrow::datatypes::{DataType, Field, Schema};
    use sluice_operators::columnar::BatchStreamExt;
    let schema = Arc::new(Schema::new(vec![
        Field::new("seq", DataType::UInt64, false),
        Field::new("class", DataType::UInt8, false),
        Field::new("intended_ns", DataType::UInt64, false),
    ]));
    let mut edge = stream
        .operator("to arrow", move |_| EventsToBatch {
            schema: schema.clone(),
        })
        .classify_by_column("by class", "class", Priority::DEFAULT)
        .edge_capacity(capacity)
        .edge_policy(policy)
        // Deferred rows go to disk as Arrow IPC and come back as batches.
        .defer_to(defer_dir, 256 << 20, sluice_connectors::files::IpcCodec);
    if let Some(o) = s.service {
        edge = edge.service_order(o);
    }
    if let Some(b) = s.budget {
        edge = edge.edge_budget(b);
    }
    edge.new_chain().flat_map("from arrow", events_of)
}

/// Each batch of events as one record batch.
struct EventsToBatch {
    schema: sluice_operators::columnar::arrow::datatypes::SchemaRef,
}

impl sluice_engine::Operator<Event, sluice_operators::columnar::arrow::array::RecordBatch>
    for EventsToBatch
{
    fn process(
        &mut self,
        e: Vec<Event>,
    ) -> Vec<sluice_operators::columnar::arrow::array::RecordBatch> {
        use sluice_operators::columnar::arrow::array::{
            ArrayRef, RecordBatch, UInt64Array, UInt8Array,
        };
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(e.iter().map(|e| e.seq))),
            Arc::new(UInt8Array::from_iter_values(
                e.iter().map(|e| e.class.index() as u8),
            )),
            Arc::new(UInt64Array::from_iter_values(
                e.iter().map(|e| e.intended_ns),
            )),
        ];
        // Three columns of equal length matching the schema: cannot fail.
        RecordBatch::try_new(self.schema.clone(), cols)
            .into_iter()
            .collect()
    }
}

/// The rows of a batch the Arrow pipeline made, as events (its own schema: the columns are
/// always there).
fn events_of(b: sluice_operators::columnar::arrow::array::RecordBatch) -> Vec<Event> {
    use sluice_operators::columnar::arrow::array::AsArray;
    use sluice_operators::columnar::arrow::datatypes::{UInt64Type, UInt8Type};
    let (Some(seq), Some(class), Some(at)) = (
        b.column(0).as_primitive_opt::<UInt64Type>(),
        b.column(1).as_primitive_opt::<UInt8Type>(),
        b.column(2).as_primitive_opt::<UInt64Type>(),
    ) else {
        return Vec::new();
    };
    (0..b.num_rows())
        .map(|i| Event {
            seq: seq.value(i),
            class: Priority::rank(class.value(i)),
            intended_ns: at.value(i),
        })
        .collect()
}

/// Runs one scenario in this process, calling `progress` with every sample (every 100 ms).
///
/// # Errors
/// When the job cannot be built or fails (including a ledger that does not balance).
pub fn run(
    s: &Scenario,
    progress: &mut dyn FnMut(&Sample),
) -> Result<ScenarioResult, Box<dyn std::error::Error>> {
    if s.policy == PolicyChoice::Oracle {
        if s.kafka.is_some() {
            return Err("the oracle baseline runs in-process only, not fed through Kafka".into());
        }
        return super::oracle::run(s, progress);
    }
    let schedule = Arc::new(s.schedule());
    let total = schedule.total();
    let cumulative = cumulative(&s.mix);
    // A deferring edge's log: in the given directory it outlives the run (a stopped run's
    // deferred records are replayed by the next one); otherwise in a temporary directory
    // removed when the run ends.
    let temp = tempfile::tempdir()?;
    let defer_dir = match &s.defer_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => temp.path().to_path_buf(),
    };
    let p = Pipeline::new(format!("{}-{}", s.job, s.policy.name())).batch_size(s.batch());
    // Latency is measured from `base`. The in-process producer's schedule starts there; a
    // Kafka feed's starts once the consumer group holds its partitions (`epoch`).
    let base = Instant::now();
    let (capacity, policy) = match s.policy {
        PolicyChoice::Unbounded => (usize::MAX / 4, EdgePolicy::Block),
        PolicyChoice::Block => (s.capacity, EdgePolicy::Block),
        PolicyChoice::DropNewest => (s.capacity, EdgePolicy::DropNewest),
        PolicyChoice::DropOldest => (s.capacity, EdgePolicy::DropOldest),
        PolicyChoice::Shed => (s.capacity, EdgePolicy::shed_by_priority()),
        PolicyChoice::Sample => (
            s.capacity,
            EdgePolicy::Sample(SampleConfig {
                keep_one_in: 10,
                below: Priority::WARN,
            }),
        ),
        // Records that waited more than half the time a full queue takes to drain.
        PolicyChoice::Deadline => (
            s.capacity,
            EdgePolicy::Deadline(Duration::from_secs_f64(
                s.capacity as f64 / s.sink_capacity.max(1.0) / 2.0,
            )),
        ),
        PolicyChoice::Defer => (
            s.capacity,
            EdgePolicy::Defer(DeferConfig {
                below: Priority::WARN,
                when_full: WhenLogFull::Drop,
            }),
        ),
        PolicyChoice::Oracle => return Err("the oracle is not a Sluice policy".into()),
    };
    let hists = Arc::new(Mutex::new(histograms()));
    let h2 = hists.clone();
    let delivered: ClassCounters = Arc::new(std::array::from_fn(|_| AtomicU64::new(0)));
    let d2 = delivered.clone();
    let retries = Arc::new(AtomicU64::new(0));
    let r2 = retries.clone();
    let workers = match s.pipeline {
        PipelineShape::Edge | PipelineShape::Arrow => {
            s.kafka.as_ref().map_or(1, |k| k.workers.max(1))
        }
        PipelineShape::Keyed => KEYED_SINKS,
    };

    let per_record = Duration::from_secs_f64(workers as f64 / s.sink_capacity.max(1.0));
    let failure_rate = s.sink_failure_rate;
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    let mut kafka = match &s.kafka {
        Some(feed) => Some(KafkaRun::connect(feed)?),
        None => None,
    };
    let stream = match (&s.kafka, &kafka) {
        (Some(feed), Some(k)) => k.source(&p, feed, nonce)?,
        _ => {
            let sched = schedule.clone();
            let end = base + s.duration;
            p.source("producer", 1, move |_| OpenLoop {
                epoch: base,
                end,
                schedule: sched.clone(),
                produced: 0,
                cumulative,
            })
        }
    };
    let step_hists = step_histograms();
    let so = step_hists.clone();
    let step = s.sink_step.map(|st| {
        (
            st.at,
            Duration::from_secs_f64(workers as f64 / st.capacity.max(1.0)),
        )
    });
    let class = |e: &Event| e.class;
    let order = |st: sluice_engine::Stream<Event>| match s.service {
        Some(o) => st.service_order(o),
        None => st,
    };
    let tail = if s.pipeline == PipelineShape::Arrow {
        arrow_edge(stream, s, capacity, policy, &defer_dir)
    } else {
        let mut first = stream
            .edge_capacity(capacity)
            .edge_policy(policy)
            .classify(class)
            .defer_to(&defer_dir, 256 << 20, JsonCodec::<Event>::new());
        if let Some(o) = s.service {
            first = first.service_order(o);
        }
        if let Some(b) = s.budget {
            first = first.edge_budget(b);
        }
        match s.pipeline {
            PipelineShape::Keyed => {
                let parsed = first
                    .new_chain()
                    .map("parse", |e: Event| e)
                    .edge_capacity(capacity)
                    .classify(class);
                let enriched = order(parsed)
                    .new_chain()
                    .map("enrich", |e: Event| e)
                    .edge_capacity(capacity)
                    .classify(class);
                order(enriched).partition_by(KEYED_SINKS, |e: &Event| {
                    e.seq.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                })
            }
            _ => first.new_chain(),
        }
    };
    tail.sink("sink", move |_| PacedSink {
        epoch: base,
        per_record,
        next: None,
        hists: histograms(),
        out: h2.clone(),
        delivered: d2.clone(),
        failure_rate,
        backoff: Backoff::new(
            Duration::from_millis(1),
            Duration::from_millis(50),
            20,
            Duration::from_secs(10),
            7,
        ),
        retries: r2.clone(),
        calls: 0,
        dead: 0,
        step: step.map(|(at, per)| Step::new(at, per, &so)),
    });
    let mut job = Some(p.run()?);
    // A Kafka feed: once the group holds its partitions, the producer starts the schedule.
    if let (Some(feed), Some(k)) = (&s.kafka, kafka.as_mut()) {
        let offset_ns = base.elapsed().as_nanos() as u64;
        if let Err(e) = k.start(feed, schedule.clone(), cumulative, offset_ns, nonce) {
            if let Some(j) = job.take() {
                let _ = j.stop(Duration::from_secs(5));
            }
            return Err(e);
        }
    }
    let epoch = Instant::now()
        - if s.kafka.is_some() {
            Duration::ZERO
        } else {
            base.elapsed()
        };
    let mut stopping = false;
    let mut stop_at: Option<Instant> = None;
    let mut series = Vec::new();
    let mut delivered_in_window = None;
    let mut aborted = None;
    let mut memory_capped = false;
    let window = s.duration.as_secs_f64();
    while let Some(j) = job.as_ref() {
        let finished = j.is_finished();
        let t = epoch.elapsed();
        let r = j.report();
        let produced = kafka.as_ref().and_then(KafkaRun::produced);
        let offered = match produced {
            Some(n) => n,
            None => (schedule.due_by(t.as_secs_f64().min(window)) as u64).min(total),
        };
        let sample = Sample {
            t_s: t.as_secs_f64(),
            offered,
            emitted: produced.unwrap_or(r.source_emitted),
            delivered: by_class(
                Priority::all().map(|c| {
                    (
                        c,
                        delivered
                            .get(c.index())
                            .map_or(0, |d| d.load(Ordering::Relaxed)),
                    )
                }),
                &s.mix,
            ),
            dropped: by_class(Priority::all().map(|c| (c, r.dropped_of_class(c))), &s.mix),
            queued: r.edges.iter().map(|e| e.queued).sum(),
            deferred: r.ledger.deferred_pending,
            buffered: produced.map_or(0, |n| n.saturating_sub(r.source_emitted)),
            rss_bytes: rss_bytes().unwrap_or(0),
            capacity: r.edges.first().map_or(0, |e| e.capacity as u64),
        };
        let ended = sample.delivered_total() + sample.dropped_total() + r.ledger.dead_lettered;
        let sample_rss = sample.rss_bytes;
        progress(&sample);
        series.push(sample);
        if finished {
            break;
        }
        // A job asked to stop gets 10 s to drain; then it is stopped (aborted if it must).
        if stop_at.is_some_and(|at| at.elapsed() > Duration::from_secs(10)) {
            break;
        }
        if let (Some(k), Some(made)) = (&kafka, produced) {
            // A Kafka feed never ends by itself: stop once every produced record ended (or
            // the drain took too long).
            let done = k.producer_done();
            if !stopping && done && (ended >= made || t > s.duration + Duration::from_secs(120)) {
                j.request_stop();
                stopping = true;
                stop_at = Some(Instant::now());
            }
        }
        // A queue without a bound grows until the kernel kills the process: stop it at the
        // cap and say so (what was queued counts as in flight).
        if sample_rss > s.max_rss_bytes {
            memory_capped = true;
            delivered_in_window.get_or_insert(r.ledger.delivered);
            if let Some(j) = job.take() {
                aborted = Some(j.stop(Duration::ZERO)?);
            }
            break;
        }
        if delivered_in_window.is_none() && t >= s.duration {
            delivered_in_window = Some(r.ledger.delivered);
            // The producer ends with the window and the edge drains (a deferring edge replays
            // its log). Draining an unbounded backlog would take `overload` times the window:
            // that run is aborted, and its report counts what was still queued as in flight.
            if s.policy == PolicyChoice::Unbounded && s.kafka.is_none() {
                if let Some(j) = job.take() {
                    aborted = Some(j.stop(Duration::ZERO)?);
                }
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let report = match (aborted, job) {
        (Some(r), _) => r,
        (None, Some(j)) if stopping => j.stop(Duration::from_secs(10))?,
        (None, Some(j)) => j.wait()?,
        (None, None) => return Err("the job disappeared".into()),
    };
    let total = match kafka.as_mut() {
        Some(k) => k.finish()?,
        None => total,
    };
    // Stopped from outside (a signal, a `JobHandle`): the offer ended when the stop came, so
    // rates and per-class offers cover the time the run had.
    let stopped = report.status == JobStatus::Stopped && !stopping;
    let cut = stopped || memory_capped;
    let window = match series.last() {
        Some(last) if cut => last.t_s.min(window).max(1e-3),
        _ => window,
    };
    let total = if cut && s.kafka.is_none() {
        (schedule.due_by(window) as u64).min(total)
    } else {
        total
    };
    let total_s = epoch.elapsed().as_secs_f64();
    let delivered_window = delivered_in_window.unwrap_or(report.ledger.delivered);
    let hists = hists.lock();
    let mut offered = [0u64; CLASSES];
    for k in 0..total {
        if let Some(o) = offered.get_mut(class_of(k, &cumulative).index()) {
            *o += 1;
        }
    }
    let mut classes = BTreeMap::new();
    for c in Priority::all() {
        let offered = offered.get(c.index()).copied().unwrap_or(0);
        if offered == 0 {
            continue;
        }
        let Some(h) = hists.get(c.index()) else {
            continue;
        };
        let ms = |q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        let dropped = report.dropped_of_class(c);
        classes.insert(
            c,
            ClassResult {
                offered,
                delivered: h.len(),
                dropped,
                deferred: if s.policy == PolicyChoice::Defer {
                    offered.saturating_sub(h.len() + dropped)
                } else {
                    0
                },
                latency_ms: Percentiles {
                    p50: ms(0.5),
                    p99: ms(0.99),
                    p999: ms(0.999),
                },
            },
        );
    }
    if report.status == JobStatus::Failed {
        return Err(format!("scenario ended {:?}", report.status).into());
    }
    // Recovery: from the end of the burst to the first sample whose backlog is back under a
    // tenth of the edge (or 64 records), draining after the window included. Records held
    // back at the producer when the window closed never enter, so a producer still behind
    // its schedule at the end has not recovered.
    // Within a tenth of the edge, or (fed through Kafka, whose consumer prefetches) 50 ms
    // of the sink's work.
    let threshold = if s.kafka.is_some() {
        (s.capacity as u64 / 10).max((s.sink_capacity / 20.0) as u64)
    } else {
        (s.capacity as u64 / 10).max(64)
    };
    let recovery_s = s
        .profile
        .burst_end(window)
        .and_then(|b| recovery(&series, b, threshold));
    Ok(ScenarioResult {
        job: s.job.clone(),
        policy: s.policy,
        profile: s.profile,
        duration_s: window,
        stopped,
        memory_capped,
        total_s,
        offered_rate: total as f64 / window,
        emitted: report.source_emitted,
        delivered_rate: delivered_window as f64 / window,
        sink_capacity: s.sink_capacity,
        goodput_ratio: delivered_window as f64 / window / s.mean_sink_capacity(window),
        overload: s.overload,
        edge_capacity: s.capacity,
        peak_rss_bytes: peak_rss_bytes(),
        recovery_s,
        sink_retries: retries.load(Ordering::Relaxed),
        classes,
        drops: report
            .drops
            .iter()
            .map(|d| DropRow {
                edge: d.edge.clone(),
                class: d.class,
                reason: d.reason,
                count: d.count,
            })
            .collect(),
        ledger: report.ledger,
        service: report.edges.first().map(|e| e.service),
        pipeline: s.pipeline,
        step: step_result(s, &series, &step_hists),
        series,
    })
}
