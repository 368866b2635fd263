//! Service order: an edge served by class hands its receiver the highest class first (or each
//! class its share), keeps every class in order, and does so across a chain of edges, a hash
//! exchange and a union. A gated sink holds the pipeline full, so the order in which the
//! queued records come out is exact.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use parking_lot::Mutex;
use sluice_engine::{
    classifier, EdgePolicy, InstanceInfo, Job, JobReport, Pipeline, Priority, ServiceOrder, Shares,
    Sink, SinkError, Source, SourceError, SourceStatus, TaskState,
};

const B: usize = 10;

/// `records` as a priority edge would serve them: highest class first, each class in order.
fn by_class(records: &[u64], class: fn(&u64) -> Priority) -> Vec<u64> {
    let mut v = records.to_vec();
    v.sort_by_key(|r| (std::cmp::Reverse(class(r)), *r));
    v
}

/// Passes every batch through a gate, then keeps it as a batch: the first one is what the
/// sink held while the queue behind it filled.
struct Batches {
    gate: Arc<Gate>,
    out: Arc<Mutex<Vec<Vec<u64>>>>,
    /// Time spent on each batch after the gate (a sink slower than the operators upstream).
    pace: Duration,
}

impl Sink<u64> for Batches {
    fn write(&mut self, records: Vec<u64>) -> Result<(), SinkError> {
        self.gate.pass();
        if !self.pace.is_zero() {
            std::thread::sleep(self.pace);
        }
        self.out.lock().push(records);
        Ok(())
    }
}

/// All records, and how many of them the first batch held.
fn flat(batches: &[Vec<u64>]) -> (Vec<u64>, usize) {
    (batches.concat(), batches.first().map_or(0, Vec::len))
}

fn edge(report: &JobReport, to: &str) -> (u64, u64) {
    report
        .edges
        .iter()
        .filter(|e| e.name.ends_with(to))
        .fold((0, 0), |(s, q), e| (s + e.sent, q + e.queued))
}

fn settle(job: &Job, gate: &Gate, done: impl Fn(&Job, &JobReport) -> bool) {
    assert!(
        wait_until(Duration::from_secs(20), || gate.is_waiting()
            && done(job, &job.report())),
        "the pipeline never filled: {:?}",
        job.report().edges
    );
}

/// One edge, everything queued behind a held batch, then drained.
fn one_edge(n: u64, service: Option<ServiceOrder>) -> (Vec<u64>, usize, JobReport) {
    one_edge_by(n, service, level)
}

fn one_edge_by(
    n: u64,
    service: Option<ServiceOrder>,
    class: fn(&u64) -> Priority,
) -> (Vec<u64>, usize, JobReport) {
    let gate = Gate::new(0);
    let out = Arc::new(Mutex::new(Vec::new()));
    let p = Pipeline::new("service").batch_size(B);
    let mut s = p
        .source("source", 1, range(n))
        .edge_capacity(n as usize)
        .classify(class);
    if let Some(o) = service {
        s = s.service_order(o);
    }
    let (g, o) = (gate.clone(), out.clone());
    s.new_chain().sink("sink", move |_| Batches {
        gate: g.clone(),
        out: o.clone(),
        pace: Duration::ZERO,
    });
    let job = p.run().expect("valid graph");
    // Everything sent: all but the batch the sink holds is queued.
    settle(&job, &gate, |_, r| edge(r, "sink").0 == n);
    gate.open();
    let report = job.wait().expect("job runs");
    let (got, held) = flat(&out.lock());
    (got, held, report)
}

#[test]
fn a_classifying_edge_serves_the_highest_class_first_each_class_in_order() {
    let n = 1000;
    let (got, held, report) = one_edge(n, None);
    assert_eq!(got.len(), n as usize);
    // The batch the sink held came first; everything queued behind it by class.
    let rest = &got[held..];
    assert_eq!(rest, by_class(rest, level).as_slice());
    let mut all = got.clone();
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>(), "nothing lost or doubled");
    let e = &report.edges[0];
    assert_eq!(e.service, ServiceOrder::Priority);
    assert!(report.ledger.balanced);
}

#[test]
fn a_fifo_edge_keeps_arrival_order_across_classes() {
    let n = 1000;
    let (got, _, report) = one_edge(n, Some(ServiceOrder::Fifo));
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    assert_eq!(report.edges[0].service, ServiceOrder::Fifo);
}

/// A quarter errors, the rest debug, and every 20th record info.
fn quarter(r: &u64) -> Priority {
    if r % 20 == 1 {
        Priority::INFO
    } else if r.is_multiple_of(4) {
        Priority::ERROR
    } else {
        Priority::DEBUG
    }
}

#[test]
fn weighted_service_gives_each_waiting_class_its_share() {
    let n = 4000;
    // Shares debug 1, error 3, info 0 (served only when neither debug nor error waits).
    let shares = Shares { share: [0; 8] }
        .with(Priority::DEBUG, 1)
        .with(Priority::ERROR, 3);
    let (got, held, report) = one_edge_by(n, Some(ServiceOrder::Weighted(shares)), quarter);
    let rest = &got[held..];
    // While debug and error both wait, they are served 1:3 (to within a batch).
    let first = &rest[..800];
    let errors = first
        .iter()
        .filter(|r| quarter(r) == Priority::ERROR)
        .count();
    let debug = first
        .iter()
        .filter(|r| quarter(r) == Priority::DEBUG)
        .count();
    assert_eq!(errors + debug, 800, "a class without a share waits");
    assert!((570..=630).contains(&errors), "errors {errors} of 800");
    // Once errors run out, debug gets everything; info comes last.
    let info_from = rest
        .iter()
        .position(|r| quarter(r) == Priority::INFO)
        .unwrap_or(0);
    assert!(rest[info_from..]
        .iter()
        .all(|r| quarter(r) == Priority::INFO));
    for c in Priority::all() {
        let of: Vec<u64> = rest.iter().copied().filter(|r| quarter(r) == c).collect();
        assert!(of.windows(2).all(|w| w[0] < w[1]), "{c} in order");
    }
    let e = &report.edges[0];
    assert_eq!(e.service, ServiceOrder::Weighted(shares));
    assert!(report.ledger.balanced);
}

/// Source -> op -> op -> sink over three classifying edges of `cap`; the position of the
/// last error among the records that were queued when the sink started.
fn chain_of_three(service: ServiceOrder) -> usize {
    let n = 2500u64;
    let cap = 1000usize;
    let gate = Gate::new(0);
    let out: Arc<Mutex<Vec<Vec<u64>>>> = Arc::default();
    let p = Pipeline::new("chain").batch_size(B);
    let s = p
        .source("source", 1, range(n))
        .edge_capacity(cap)
        .classify(level)
        .service_order(service)
        .new_chain()
        .operator("one", |_: &InstanceInfo| Identity)
        .edge_capacity(cap)
        .classify(level)
        .service_order(service)
        .new_chain()
        .operator("two", |_: &InstanceInfo| Identity)
        .edge_capacity(cap)
        .classify(level)
        .service_order(service)
        .new_chain();
    let (g, o) = (gate.clone(), out.clone());
    s.sink("sink", move |_| Batches {
        gate: g.clone(),
        out: o.clone(),
        pace: Duration::from_micros(100),
    });
    let job = p.run().expect("valid graph");
    // Everything emitted, both operators blocked on a full edge.
    settle(&job, &gate, |j, r| {
        r.source_emitted == n
            && j.task_states()
                .iter()
                .filter(|(_, s)| *s == TaskState::WaitingCredit)
                .count()
                == 2
    });
    gate.open();
    let report = job.wait().expect("job runs");
    assert!(report.ledger.balanced);
    let (got, _) = flat(&out.lock());
    assert_eq!(got.len(), n as usize);
    for c in Priority::all() {
        let of: Vec<u64> = got.iter().copied().filter(|r| level(r) == c).collect();
        assert!(of.windows(2).all(|w| w[0] < w[1]), "{c} in order");
    }
    got.iter()
        .rposition(|r| level(r) == Priority::ERROR)
        .unwrap_or(0)
}

#[test]
fn priority_survives_a_chain_of_three_edges() {
    // 2,500 records, a tenth of them errors, fill three edges of 1,000. Served by class, every
    // error leaves in the first third; served FIFO, the last one waits for nearly everything.
    let priority = chain_of_three(ServiceOrder::Priority);
    let fifo = chain_of_three(ServiceOrder::Fifo);
    assert!(priority < 2500 / 3, "last error at {priority}");
    assert!(fifo > 2500 * 9 / 10, "fifo: last error at {fifo}");
}

#[test]
fn priority_survives_a_hash_exchange_into_two_instances() {
    let n = 2000u64;
    let gate = Gate::new(0);
    let outs: Vec<Arc<Mutex<Vec<Vec<u64>>>>> = (0..2).map(|_| Arc::default()).collect();
    let p = Pipeline::new("keyed").batch_size(B);
    let s = p
        .source("source", 1, range(n))
        .edge_capacity(n as usize)
        .classify(level)
        .partition_by(2, |r: &u64| (*r / 10).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let (g, o) = (gate.clone(), outs.clone());
    s.sink("sink", move |i: &InstanceInfo| Batches {
        gate: g.clone(),
        out: o[i.instance].clone(),
        pace: Duration::ZERO,
    });
    let job = p.run().expect("valid graph");
    // Both instances hold a batch at the gate (the gate counts one waiter; the second
    // instance's batch is in its hands or queued), and everything else is queued.
    settle(&job, &gate, |_, r| edge(r, "sink").0 == n);
    gate.open();
    let report = job.wait().expect("job runs");
    assert!(report.ledger.balanced);
    let mut total = 0;
    for out in &outs {
        let (got, held) = flat(&out.lock());
        total += got.len();
        // After the batch it held, each instance served its queue by class.
        let rest = &got[held..];
        assert_eq!(rest, by_class(rest, level).as_slice());
        assert!(rest.len() > 500, "both instances got work");
    }
    assert_eq!(total, n as usize);
}

/// A source of `n` records of one kind: `base + i`.
fn offset(base: u64, n: u64) -> impl Fn(&InstanceInfo) -> Range {
    move |_| Range {
        next: base,
        step: 1,
        end: base + n,
    }
}

#[test]
fn priority_survives_a_union_of_two_sources() {
    // Source a: 2,000 debug records, blocked behind a full port of 500. Source b: 200 errors.
    // The union's receiver takes from the port with the higher class first: every error
    // before any queued debug record (round-robin would interleave them).
    let cap = 500usize;
    let class = |r: &u64| {
        if *r >= 1_000_000 {
            Priority::ERROR
        } else {
            Priority::DEBUG
        }
    };
    let gate = Gate::new(0);
    let out = Arc::new(Mutex::new(Vec::new()));
    let p = Pipeline::new("union").batch_size(B);
    let a = p
        .source("a", 1, offset(0, 2000))
        .edge_capacity(cap)
        .classify(class);
    let b = p
        .source("b", 1, offset(1_000_000, 200))
        .edge_capacity(cap)
        .classify(class);
    let (g, o) = (gate.clone(), out.clone());
    a.union(b).sink("sink", move |_| GatedCollect {
        gate: g.clone(),
        out: o.clone(),
    });
    let job = p.run().expect("valid graph");
    settle(&job, &gate, |_, r| {
        let (sent_b, _) = edge_from(r, "b ->");
        let (_, queued_a) = edge_from(r, "a ->");
        sent_b == 200 && queued_a == cap as u64
    });
    gate.open();
    let report = job.wait().expect("job runs");
    assert!(report.ledger.balanced);
    let got = out.lock().clone();
    assert_eq!(got.len(), 2200);
    let last_error = got.iter().rposition(|r| *r >= 1_000_000).unwrap_or(0);
    assert!(
        last_error < 200 + B,
        "errors wait behind debug: last at {last_error}"
    );
}

fn edge_from(report: &JobReport, from: &str) -> (u64, u64) {
    report
        .edges
        .iter()
        .filter(|e| e.name.starts_with(from))
        .fold((0, 0), |(s, q), e| (s + e.sent, q + e.queued))
}

/// Emits `0..end` in batches of `max`, sleeping `every` between batches.
struct Paced {
    next: u64,
    end: u64,
    every: Duration,
}

impl Source<u64> for Paced {
    fn poll_batch(&mut self, out: &mut Vec<u64>, max: usize) -> Result<SourceStatus, SourceError> {
        std::thread::sleep(self.every);
        let n = (max as u64).min(self.end - self.next);
        out.extend(self.next..self.next + n);
        self.next += n;
        Ok(if self.next >= self.end {
            SourceStatus::Done
        } else {
            SourceStatus::More
        })
    }
}

/// Spends `per_record` per record (spinning), then collects.
struct Busy(Duration, Arc<Mutex<Vec<u64>>>);

impl Sink<u64> for Busy {
    fn write(&mut self, records: Vec<u64>) -> Result<(), SinkError> {
        let until = Instant::now() + self.0 * records.len() as u32;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        self.1.lock().extend(records);
        Ok(())
    }
}

#[test]
fn shedding_keeps_every_warn_while_lower_classes_are_queued() {
    // A burst: source batches of half the edge (4,096 every ~0.5 ms, about 8 M/s) into a
    // sink of about 2 M/s. Warn and error are a tenth of the load, well within the sink's
    // capacity: lower classes make room for them, so no warn or error is dropped while debug
    // and info are shed.
    let cap = 8192usize;
    let n = 200_000u64;
    let class = |r: &u64| match r % 100 {
        0 => Priority::ERROR,
        1..=4 => Priority::WARN,
        5..=24 => Priority::INFO,
        _ => Priority::DEBUG,
    };
    let out = Arc::new(Mutex::new(Vec::new()));
    let p = Pipeline::new("burst").batch_size(cap / 2);
    p.source("source", 1, move |_: &InstanceInfo| Paced {
        next: 0,
        end: n,
        every: Duration::from_micros(500),
    })
    .edge_capacity(cap)
    .edge_policy(EdgePolicy::shed_by_priority())
    .classify(class)
    .new_chain()
    .sink("sink", {
        let out = out.clone();
        move |_| Busy(Duration::from_micros(1), out.clone())
    });
    let report = p.run().expect("valid graph").wait().expect("job runs");
    assert!(report.ledger.balanced);
    let got = out.lock().clone();
    let of = |c: Priority| got.iter().filter(|r| class(r) == c).count() as u64;
    assert_eq!(report.dropped_of_class(Priority::ERROR), 0);
    assert!(report.dropped_of_class(Priority::DEBUG) > 0, "overloaded");
    assert!(of(Priority::DEBUG) + of(Priority::INFO) > 0);
    assert_eq!(
        report.dropped_of_class(Priority::WARN),
        0,
        "{:?}: warn shed while {} debug and {} info were delivered",
        report.drops,
        of(Priority::DEBUG),
        of(Priority::INFO)
    );
    assert_eq!(of(Priority::WARN), n / 100 * 4);
}

#[test]
fn a_class_over_its_watermark_displaces_lower_classes_before_it_is_refused() {
    use sluice_engine::edge::{PortConfig, Receiver};
    // Capacity 100: 4 debug records, then 96 warn (above warn's 95 % watermark counting only
    // warn and up, but 4 debug records are queued), then one more warn. Each warn is admitted
    // by evicting a debug record; none is refused while debug is queued.
    let rx: Receiver<u64> = Receiver::new();
    let mut cfg = PortConfig::new(100);
    cfg.policy = EdgePolicy::shed_by_priority();
    cfg.classifier = Some(classifier(|r: &u64| {
        if *r >= 1000 {
            Priority::WARN
        } else {
            Priority::DEBUG
        }
    }));
    let tx = rx.add_port_with(cfg);
    let send = |v: Vec<u64>| tx.try_send(sluice_engine::Batch::new(v)).is_ok();
    assert!(send((0..4).collect()));
    assert!(send((1000..1096).collect()));
    assert!(send(vec![2000]));
    let s = rx.snapshot(0);
    let warn_dropped: u64 = s.drops.iter().map(|r| r[Priority::WARN.index()]).sum();
    assert_eq!(warn_dropped, 0, "warn refused while debug was queued");
    assert_eq!(s.queued_records, 100);
    assert_eq!(
        s.drops[sluice_engine::DropReason::ShedEvicted.index()][0],
        1
    );
    assert_eq!(s.available + s.in_flight_credit, s.capacity);
}

#[test]
fn a_shedding_edge_takes_a_batch_larger_than_itself_when_empty() {
    use sluice_engine::edge::{PortConfig, Receiver};
    // Capacity 9, a batch of 24 of which 12 are errors (never shed): the empty edge takes it
    // whole, clamped to its capacity, as any edge does; it must not wait for room that can
    // never exist (this deadlocked a keyed edge of 9 records fed batches of 24).
    let rx: Receiver<u64> = Receiver::new();
    let mut cfg = PortConfig::new(9);
    cfg.policy = EdgePolicy::shed_by_priority();
    cfg.classifier = Some(classifier(|r: &u64| {
        if r.is_multiple_of(2) {
            Priority::ERROR
        } else {
            Priority::DEBUG
        }
    }));
    let tx = rx.add_port_with(cfg);
    tx.try_send(sluice_engine::Batch::new((0..24).collect()))
        .expect("an empty edge takes an oversized batch");
    let s = rx.snapshot(0);
    assert_eq!(s.available, 0);
    assert_eq!(s.queued_records + s.dropped() as usize, 24);
    assert_eq!(
        s.drops
            .iter()
            .map(|r| r[Priority::ERROR.index()])
            .sum::<u64>(),
        0
    );
    let mut got = Vec::new();
    while let Ok(b) = rx.try_recv() {
        got.extend(b.records);
    }
    assert_eq!(
        got.iter().filter(|r| *r % 2 == 0).count(),
        12,
        "every error delivered"
    );
    assert_eq!(rx.snapshot(0).available, 9);
}

/// Emits `debug` records 0.., then waits for `release`, then `errors` records from 1,000,000.
struct Phased {
    next: u64,
    debug: u64,
    errors: u64,
    sent_errors: u64,
    release: Arc<std::sync::atomic::AtomicBool>,
}

impl Source<u64> for Phased {
    fn poll_batch(&mut self, out: &mut Vec<u64>, max: usize) -> Result<SourceStatus, SourceError> {
        if self.next < self.debug {
            let n = (max as u64).min(self.debug - self.next);
            out.extend(self.next..self.next + n);
            self.next += n;
            return Ok(SourceStatus::More);
        }
        if !self.release.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(SourceStatus::Idle);
        }
        let n = (max as u64).min(self.errors - self.sent_errors);
        out.extend((self.sent_errors..self.sent_errors + n).map(|e| 1_000_000 + e));
        self.sent_errors += n;
        Ok(if self.sent_errors >= self.errors {
            SourceStatus::Done
        } else {
            SourceStatus::More
        })
    }
}

#[test]
fn errors_overtake_deferred_records_being_replayed() {
    use sluice_engine::{DeferConfig, JsonCodec, WhenLogFull};
    // 4,000 debug records overflow an edge of 100 into its defer log; while the log is being
    // replayed, 50 errors arrive. They queue as errors: each is taken before the next replayed
    // batch, so hundreds of deferred records are still delivered after the last error.
    let dir = tempfile::tempdir().expect("tmp");
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let out: Arc<Mutex<Vec<u64>>> = Arc::default();
    let p = Pipeline::new("defer-priority").batch_size(B);
    let r = release.clone();
    p.source("source", 1, move |_: &InstanceInfo| Phased {
        next: 0,
        debug: 4000,
        errors: 50,
        sent_errors: 0,
        release: r.clone(),
    })
    .edge_capacity(100)
    .edge_policy(EdgePolicy::Defer(DeferConfig {
        below: Priority::WARN,
        when_full: WhenLogFull::Drop,
    }))
    .classify(|r: &u64| {
        if *r >= 1_000_000 {
            Priority::ERROR
        } else {
            Priority::DEBUG
        }
    })
    .defer_to(dir.path(), 64 << 20, JsonCodec::<u64>::new())
    .new_chain()
    .sink("sink", {
        let out = out.clone();
        move |_| SlowCollect(Duration::from_millis(1), out.clone())
    });
    let job = p.run().expect("valid graph");
    // Release the errors once the replay is under way with much of the log still to go.
    assert!(
        wait_until(Duration::from_secs(20), || {
            let e = &job.report().edges[0];
            e.deferred > 1000 && e.deferred_pending < e.deferred && e.deferred_pending > 1000
        }),
        "the log never started replaying: {:?}",
        job.report().edges
    );
    release.store(true, std::sync::atomic::Ordering::Release);
    let report = job.wait().expect("job runs");
    assert!(report.ledger.balanced);
    assert_eq!(report.ledger.delivered, 4050, "{}", report.ledger.explain());
    let got = out.lock().clone();
    let last_error = got.iter().rposition(|r| *r >= 1_000_000).unwrap_or(0);
    let debug_after = got[last_error..].iter().filter(|r| **r < 1_000_000).count();
    assert!(
        debug_after > 500,
        "only {debug_after} deferred records came after the last error"
    );
}
