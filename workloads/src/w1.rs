//! Workload W1: generate, map, filter, keyed running sum, checksum sink.
//!
//! Record `i` is `(id = i, level = i % 4, value = i * 2654435761 wrapping)`; the map sets
//! `value = value.rotate_left(5) ^ id`; the filter keeps `value % 10 < 7`; `key_by(id % 1024)`
//! with a running wrapping sum per key, each record leaving with `value` = its key's running
//! sum; the sink counts records and xors every value into a checksum.
//!
//! Source instance `s` of `P` emits the ids with `i % P == s`. Since `id % 1024` and `id % P`
//! agree for `P` dividing 1024, each key's records come from one source instance, in id
//! order, and the checksum does not depend on `P` (for `N = 20,000,000`:
//! `records_out=13998017 checksum=9bd6acc3ae00a66f`).
//!
//! [`run_sluice`] runs W1 on Sluice; [`run_baseline`] runs the same computation on a
//! hand-written crossbeam pipeline with the same threads, batch size and buffered records, as
//! the yardstick for Sluice's overhead.

use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use cpu_time::ProcessTime;
use crossbeam_channel::{bounded, Receiver, Sender};
use rustc_hash::FxBuildHasher;
use sluice_connectors::{GeneratorConfig, PipelineExt};
use sluice_engine::{partition_of, EdgePolicy, JobError, JobReport, Pipeline, Priority, Stream};
use sluice_operators::{SinkExt, StreamExt};

/// One W1 record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Sequence number.
    pub id: u64,
    /// Log level 0..4 (unused by W1's operators; it makes the record realistic).
    pub level: u8,
    /// Payload.
    pub value: u64,
}

/// Parameters of a W1 run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Records generated.
    pub records: u64,
    /// Instances of every stage.
    pub parallelism: usize,
    /// Records each edge can buffer (per downstream instance).
    pub capacity: usize,
    /// Records per batch.
    pub batch_size: usize,
    /// Put `ShedByPriority` on both edges, with every record classified `Error` (so nothing
    /// is ever dropped and the output is unchanged): measures what the policy's checks cost
    /// on the hot path, including its slow path while edges are above the watermarks.
    pub shed_policy: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            records: 20_000_000,
            parallelism: 1,
            capacity: 8192,
            batch_size: 1024,
            shed_policy: false,
        }
    }
}

/// What a W1 run produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Records that reached the sink.
    pub records_out: u64,
    /// XOR of every value the sink saw.
    pub checksum: u64,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// CPU time (user + system) the whole process spent during the run, on every thread;
    /// `None` where the platform cannot tell.
    pub cpu: Option<Duration>,
}

impl Outcome {
    /// Records generated per second.
    pub fn rate(&self, records: u64) -> f64 {
        records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// CPU nanoseconds per record generated, if the CPU time is known.
    pub fn cpu_ns_per_record(&self, records: u64) -> Option<f64> {
        self.cpu
            .map(|c| c.as_secs_f64() * 1e9 / records.max(1) as f64)
    }
}

/// The process's CPU time now (every thread, user + system).
fn cpu_now() -> Option<ProcessTime> {
    ProcessTime::try_now().ok()
}

/// The CPU time since `start`.
fn cpu_since(start: Option<ProcessTime>) -> Option<Duration> {
    Some(cpu_now()?.duration_since(start?))
}

#[inline]
fn gen(i: u64) -> Record {
    Record {
        id: i,
        level: (i % 4) as u8,
        value: i.wrapping_mul(2_654_435_761),
    }
}

#[inline]
fn rotate(mut r: Record) -> Record {
    r.value = r.value.rotate_left(5) ^ r.id;
    r
}

#[inline]
fn keep(r: &Record) -> bool {
    r.value % 10 < 7
}

/// W1's keys: `0..KEYS`.
const KEYS: usize = 1024;

#[inline]
fn key(r: &Record) -> u64 {
    r.id % KEYS as u64
}

/// The expected output of W1 computed on one thread, for checking the others.
pub fn reference(records: u64) -> (u64, u64) {
    let mut sums = vec![0u64; 1024];
    let (mut n, mut x) = (0u64, 0u64);
    for i in 0..records {
        let r = rotate(gen(i));
        if keep(&r) {
            let k = key(&r) as usize;
            sums[k] = sums[k].wrapping_add(r.value);
            n += 1;
            x ^= sums[k];
        }
    }
    (n, x)
}

/// Runs [`reference()`] timed: W1 as one fused loop on one thread, the compute limit of one
/// core (no channel, no batch, no second thread), for comparing the pipelines against.
pub fn run_single(records: u64) -> Outcome {
    let c0 = cpu_now();
    let t0 = Instant::now();
    let (records_out, checksum) = reference(std::hint::black_box(records));
    Outcome {
        records_out,
        checksum,
        elapsed: t0.elapsed(),
        cpu: cpu_since(c0),
    }
}

/// Builds W1 on a pipeline: three chains per instance (source+map+filter, keyed sum, sink),
/// the same threads as the baseline. Returns the handle to read the sink's result from.
pub fn build(p: &Pipeline, cfg: &Config) -> sluice_operators::FoldSinkHandle<(u64, u64)> {
    let policy = if cfg.shed_policy {
        EdgePolicy::shed_by_priority()
    } else {
        EdgePolicy::Block
    };
    // Only the shedding variant classifies: a classifying edge is served by class, and plain
    // W1 measures FIFO edges.
    let class = |_: &Record| Priority::ERROR;
    let classify = |s: Stream<Record>| {
        if cfg.shed_policy {
            s.classify(class)
        } else {
            s
        }
    };
    let filtered = p
        .generator(
            "source",
            cfg.parallelism,
            GeneratorConfig::count(cfg.records),
            gen,
        )
        .map("rotate", rotate)
        .filter("keep", keep)
        .edge_capacity(cfg.capacity)
        .edge_policy(policy);
    let summed = classify(filtered)
        .key_by(key)
        .fold(
            "running sum",
            || 0u64,
            |sum, mut r: Record| {
                *sum = sum.wrapping_add(r.value);
                r.value = *sum;
                r
            },
        )
        .edge_policy(policy)
        .edge_capacity(cfg.capacity);
    classify(summed).new_chain().fold_sink(
        "checksum",
        || (0u64, 0u64),
        |acc, r: Record| {
            acc.0 += 1;
            acc.1 ^= r.value;
        },
    )
}

/// Runs W1 on Sluice.
///
/// # Errors
/// A build error or a job error, boxed.
pub fn run_sluice(cfg: &Config) -> Result<(Outcome, JobReport), Box<dyn std::error::Error>> {
    let p = Pipeline::new("w1").batch_size(cfg.batch_size);
    let sink = build(&p, cfg);
    let c0 = cpu_now();
    let t0 = Instant::now();
    let report = p
        .run()?
        .wait()
        .map_err(|e: JobError| Box::new(e) as Box<dyn std::error::Error>)?;
    let elapsed = t0.elapsed();
    let cpu = cpu_since(c0);
    let (mut n, mut x) = (0u64, 0u64);
    for (c, s) in sink.take() {
        n += c;
        x ^= s;
    }
    Ok((
        Outcome {
            records_out: n,
            checksum: x,
            elapsed,
            cpu,
        },
        report,
    ))
}

/// Runs W1 on a hand-written crossbeam pipeline, the fastest a person would write for this
/// job: per instance a source+map+filter thread, a keyed-sum thread and a sink thread, `Vec`
/// batches of `batch_size`, bounded channels holding `capacity / batch_size` batches,
/// hash-partitioned between sources and keyed threads as Sluice does. The keyed state is a
/// `Vec<u64>` indexed by the key (W1's keys are `0..1024`), updated in place in the batch:
/// no hash map, no new batch.
pub fn run_baseline(cfg: &Config) -> Outcome {
    let p = cfg.parallelism.max(1);
    let bs = cfg.batch_size.max(1);
    let slots = (cfg.capacity / bs).max(1);
    let c0 = cpu_now();
    let t0 = Instant::now();
    let mut keyed_tx: Vec<Sender<Vec<Record>>> = Vec::new();
    let mut keyed_rx: Vec<Receiver<Vec<Record>>> = Vec::new();
    for _ in 0..p {
        let (tx, rx) = bounded(slots);
        keyed_tx.push(tx);
        keyed_rx.push(rx);
    }
    let mut threads = Vec::new();
    let mut sinks = Vec::new();
    for (k, rx) in keyed_rx.into_iter().enumerate() {
        let (stx, srx) = bounded::<Vec<Record>>(slots);
        threads.push(std::thread::spawn(move || {
            let mut sums = vec![0u64; KEYS];
            for mut batch in rx {
                for r in &mut batch {
                    // `key` is `id % 1024`: always an index of `sums`.
                    let s = &mut sums[key(r) as usize % KEYS];
                    *s = s.wrapping_add(r.value);
                    r.value = *s;
                }
                if stx.send(batch).is_err() {
                    return;
                }
            }
            let _ = k;
        }));
        sinks.push(std::thread::spawn(move || {
            let (mut n, mut x) = (0u64, 0u64);
            for batch in srx {
                for r in batch {
                    n += 1;
                    x ^= r.value;
                }
            }
            (n, x)
        }));
    }
    for s in 0..p {
        let txs = keyed_tx.clone();
        let records = cfg.records;
        threads.push(std::thread::spawn(move || {
            let hasher = FxBuildHasher;
            let mut bufs: Vec<Vec<Record>> = (0..p).map(|_| Vec::with_capacity(bs)).collect();
            // Generate, map and filter in one pass, straight into the target's batch.
            let mut i = s as u64;
            while i < records {
                let r = rotate(gen(i));
                i += p as u64;
                if !keep(&r) {
                    continue;
                }
                let t = if p == 1 {
                    0
                } else {
                    partition_of(hasher.hash_one(key(&r)), p)
                };
                bufs[t].push(r);
                if bufs[t].len() >= bs {
                    let full = std::mem::replace(&mut bufs[t], Vec::with_capacity(bs));
                    if txs[t].send(full).is_err() {
                        return;
                    }
                }
            }
            for (t, b) in bufs.into_iter().enumerate() {
                if !b.is_empty() && txs[t].send(b).is_err() {
                    return;
                }
            }
        }));
    }
    drop(keyed_tx);
    for t in threads {
        let _ = t.join();
    }
    let (mut n, mut x) = (0u64, 0u64);
    for s in sinks {
        if let Ok((c, v)) = s.join() {
            n += c;
            x ^= v;
        }
    }
    Outcome {
        records_out: n,
        checksum: x,
        elapsed: t0.elapsed(),
        cpu: cpu_since(c0),
    }
}
