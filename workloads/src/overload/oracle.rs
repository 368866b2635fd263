//! The oracle baseline: what a person would write by hand for one bounded, class-aware queue,
//! measured with the same producer, sink and clocks as a Sluice run.
//!
//! Per-class `VecDeque`s under one `parking_lot::Mutex`, bounded in records. The producer
//! thread offers what the schedule made due (the same open-loop producer Sluice's source
//! uses); at the bound it evicts the oldest record of the lowest class queued, or drops the
//! incoming record when its own class is the lowest (Error and up wait instead of being
//! dropped, as under Sluice's default watermarks). The consumer thread takes up to a batch
//! (the scenario's, 256 records by default, as Sluice's) from the highest class queued and
//! hands it to the same paced sink. No ledger, no operators, no credit: the ideal a priority edge is
//! measured against.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use sluice_engine::{DropReason, Ledger, Priority, Source, SourceStatus, CLASSES};
use sluice_operators::resilience::Backoff;

use super::open_loop::OpenLoop;
use super::paced_sink::{histograms, step_histograms, step_result, ClassCounters, PacedSink, Step};
use super::result::{
    peak_rss_bytes, rss_bytes, ClassResult, DropRow, Percentiles, Sample, ScenarioResult,
};
use super::scenario::Scenario;
use super::schedule::{class_of, cumulative, Event};

struct Queues {
    lanes: [VecDeque<Event>; CLASSES],
    len: usize,
    dropped: [u64; CLASSES],
    closed: bool,
}

impl Queues {
    fn lowest(&self) -> Option<usize> {
        (0..CLASSES).find(|c| !self.lanes[*c].is_empty())
    }

    fn highest(&self) -> Option<usize> {
        (0..CLASSES).rev().find(|c| !self.lanes[*c].is_empty())
    }
}

struct Shared {
    q: Mutex<Queues>,
    data: Condvar,
    space: Condvar,
}

/// Runs the oracle baseline for scenario `s` (its capacity, schedule, mix and sink), calling
/// `progress` every 100 ms.
///
/// # Errors
/// When a thread cannot be started or panics.
pub fn run(
    s: &Scenario,
    progress: &mut dyn FnMut(&Sample),
) -> Result<ScenarioResult, Box<dyn std::error::Error>> {
    let schedule = Arc::new(s.schedule());
    let total = schedule.total();
    let cumulative = cumulative(&s.mix);
    let cap = s.capacity.max(1);
    let batch = s.batch();
    let shared = Arc::new(Shared {
        q: Mutex::new(Queues {
            lanes: std::array::from_fn(|_| VecDeque::new()),
            len: 0,
            dropped: [0; CLASSES],
            closed: false,
        }),
        data: Condvar::new(),
        space: Condvar::new(),
    });
    let emitted = Arc::new(AtomicU64::new(0));
    let consumer_done = Arc::new(AtomicBool::new(false));
    let hists = Arc::new(Mutex::new(histograms()));
    let delivered: ClassCounters = Arc::new(std::array::from_fn(|_| AtomicU64::new(0)));
    let step_hists = step_histograms();
    let base = Instant::now();
    let mut source = OpenLoop {
        epoch: base,
        end: base + s.duration,
        schedule: schedule.clone(),
        produced: 0,
        cumulative,
    };
    let producer = {
        let (shared, emitted) = (shared.clone(), emitted.clone());
        std::thread::Builder::new()
            .name("oracle-producer".into())
            .spawn(move || produce(&mut source, &shared, &emitted, cap, batch))?
    };
    let mut sink = PacedSink {
        epoch: base,
        per_record: Duration::from_secs_f64(1.0 / s.sink_capacity.max(1.0)),
        next: None,
        hists: histograms(),
        out: hists.clone(),
        delivered: delivered.clone(),
        failure_rate: 0.0,
        backoff: Backoff::new(
            Duration::from_millis(1),
            Duration::from_millis(50),
            20,
            Duration::from_secs(10),
            7,
        ),
        retries: Arc::new(AtomicU64::new(0)),
        calls: 0,
        dead: 0,
        step: s.sink_step.map(|st| {
            Step::new(
                st.at,
                Duration::from_secs_f64(1.0 / st.capacity.max(1.0)),
                &step_hists,
            )
        }),
    };
    let consumer = {
        let (shared, done) = (shared.clone(), consumer_done.clone());
        std::thread::Builder::new()
            .name("oracle-consumer".into())
            .spawn(move || {
                consume(&mut sink, &shared, batch);
                drop(sink);
                done.store(true, Ordering::Release);
            })?
    };
    let window = s.duration.as_secs_f64();
    let mut series = Vec::new();
    let mut delivered_in_window = None;
    let count = |d: &ClassCounters| -> [u64; CLASSES] {
        std::array::from_fn(|c| d[c].load(Ordering::Relaxed))
    };
    loop {
        let finished = consumer_done.load(Ordering::Acquire);
        let t = base.elapsed();
        let (dropped, queued) = {
            let q = shared.q.lock();
            (q.dropped, q.len as u64)
        };
        let got = count(&delivered);
        let in_mix = |c: &usize| s.mix.get(*c).is_some_and(|m| *m > 0.0);
        let sample = Sample {
            t_s: t.as_secs_f64(),
            offered: (schedule.due_by(t.as_secs_f64().min(window)) as u64).min(total),
            emitted: emitted.load(Ordering::Relaxed),
            delivered: (0..CLASSES)
                .filter(in_mix)
                .map(|c| (Priority::rank(c as u8), got[c]))
                .collect(),
            dropped: (0..CLASSES)
                .filter(in_mix)
                .map(|c| (Priority::rank(c as u8), dropped[c]))
                .collect(),
            queued,
            deferred: 0,
            buffered: 0,
            rss_bytes: rss_bytes().unwrap_or(0),
            capacity: cap as u64,
        };
        progress(&sample);
        series.push(sample);
        if delivered_in_window.is_none() && t.as_secs_f64() >= window {
            delivered_in_window = Some(got.iter().sum::<u64>());
        }
        if finished {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    producer
        .join()
        .map_err(|_| "the oracle's producer panicked")?;
    consumer
        .join()
        .map_err(|_| "the oracle's consumer panicked")?;
    let total_s = base.elapsed().as_secs_f64();
    let got = count(&delivered);
    let dropped = shared.q.lock().dropped;
    let delivered_total: u64 = got.iter().sum();
    let dropped_total: u64 = dropped.iter().sum();
    let produced = emitted.load(Ordering::Relaxed);
    let mut offered = [0u64; CLASSES];
    for k in 0..produced {
        offered[class_of(k, &cumulative).index()] += 1;
    }
    let hists = hists.lock();
    let mut classes = BTreeMap::new();
    for c in 0..CLASSES {
        if offered[c] == 0 {
            continue;
        }
        classes.insert(
            Priority::rank(c as u8),
            ClassResult {
                offered: offered[c],
                delivered: got[c],
                dropped: dropped[c],
                deferred: 0,
                latency_ms: hists.get(c).map(Percentiles::of).unwrap_or_default(),
            },
        );
    }
    let delivered_window = delivered_in_window.unwrap_or(delivered_total);
    Ok(ScenarioResult {
        job: s.job.clone(),
        policy: s.policy,
        profile: s.profile,
        duration_s: window,
        stopped: false,
        memory_capped: false,
        total_s,
        offered_rate: total as f64 / window,
        emitted: produced,
        delivered_rate: delivered_window as f64 / window,
        sink_capacity: s.sink_capacity,
        goodput_ratio: delivered_window as f64 / window / s.mean_sink_capacity(window),
        overload: s.overload,
        edge_capacity: cap,
        peak_rss_bytes: peak_rss_bytes(),
        recovery_s: None,
        sink_retries: 0,
        classes,
        drops: (0..CLASSES)
            .filter(|c| dropped[*c] > 0)
            .map(|c| DropRow {
                edge: "oracle".into(),
                class: Priority::rank(c as u8),
                reason: DropReason::Oldest,
                count: dropped[c],
            })
            .collect(),
        ledger: Ledger::new(produced, delivered_total, 0, dropped_total, 0, 0, 0),
        service: None,
        pipeline: s.pipeline,
        step: step_result(s, &series, &step_hists),
        series,
    })
}

/// The producer: offers what is due, evicting the oldest of the lowest class at the bound.
fn produce(source: &mut OpenLoop, shared: &Shared, emitted: &AtomicU64, cap: usize, batch: usize) {
    let mut buf = Vec::with_capacity(batch.min(1 << 16));
    loop {
        buf.clear();
        let status = source.poll_batch(&mut buf, batch);
        if !buf.is_empty() {
            let mut q = shared.q.lock();
            for e in buf.drain(..) {
                admit(&mut q, e, cap, shared);
            }
            drop(q);
            shared.data.notify_one();
            emitted.store(source.produced, Ordering::Relaxed);
        }
        match status {
            Ok(SourceStatus::More) => {}
            Ok(SourceStatus::Idle) => std::thread::sleep(Duration::from_micros(500)),
            Ok(SourceStatus::Done) | Err(_) => break,
        }
    }
    shared.q.lock().closed = true;
    shared.data.notify_all();
}

fn admit(q: &mut parking_lot::MutexGuard<'_, Queues>, e: Event, cap: usize, shared: &Shared) {
    let class = e.class.index();
    while q.len >= cap {
        match q.lowest() {
            // The incoming record is the lowest: it is the one dropped.
            Some(low) if class < low && class < Priority::ERROR.index() => {
                q.dropped[class] += 1;
                return;
            }
            Some(low) if low < Priority::ERROR.index() => {
                q.lanes[low].pop_front();
                q.len -= 1;
                q.dropped[low] += 1;
            }
            // Only Error and up queued (or incoming Error): wait for room.
            _ => shared.space.wait(q),
        }
    }
    q.lanes[class].push_back(e);
    q.len += 1;
}

/// The consumer: takes up to a batch of the highest class queued and hands it to the sink.
fn consume(sink: &mut PacedSink, shared: &Shared, batch: usize) {
    use sluice_engine::Sink;
    loop {
        let batch: Vec<Event> = {
            let mut q = shared.q.lock();
            loop {
                if let Some(top) = q.highest() {
                    let n = q.lanes[top].len().min(batch);
                    let b: Vec<Event> = q.lanes[top].drain(..n).collect();
                    q.len -= n;
                    break b;
                }
                if q.closed {
                    let _ = sink.finish();
                    return;
                }
                shared.data.wait(&mut q);
            }
        };
        shared.space.notify_one();
        let _ = sink.write(batch);
    }
}
