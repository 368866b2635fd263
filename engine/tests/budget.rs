//! Edges sized in time: an edge with a budget follows its receiver's drain rate, and a zero
//! budget is refused before the job starts.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use sluice_engine::{BuildError, Pipeline, Sink, SinkError};

/// Spends `fast` per record for the first `switch_at` records, `slow` after.
struct Stepping {
    fast: Duration,
    slow: Duration,
    switch_at: u64,
    done: Arc<AtomicU64>,
}

impl Sink<u64> for Stepping {
    fn write(&mut self, records: Vec<u64>) -> Result<(), SinkError> {
        for _ in &records {
            let per = if self.done.load(Ordering::Relaxed) < self.switch_at {
                self.fast
            } else {
                self.slow
            };
            let until = Instant::now() + per;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            self.done.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

fn median(v: &mut [usize]) -> usize {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

#[test]
fn a_budgeted_edge_shrinks_when_its_receiver_slows_down() {
    // The sink takes 5 us per record (200k/s) for 50,000 records, then 25 us (40k/s): five
    // times slower. With a 5 ms budget the edge should hold about 1,000 records, then about
    // 200: whatever the exact speeds on this machine, it shrinks by about the slowdown.
    let n = 60_000u64;
    let done = Arc::new(AtomicU64::new(0));
    let p = Pipeline::new("budget").batch_size(64);
    let d = done.clone();
    p.source("source", 1, range(n))
        .edge_capacity(10_000)
        .edge_budget(Duration::from_millis(5))
        .new_chain()
        .sink("sink", move |_| Stepping {
            fast: Duration::from_micros(5),
            slow: Duration::from_micros(25),
            switch_at: 50_000,
            done: d.clone(),
        });
    let job = p.run().expect("valid graph");
    let (mut before, mut after) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !job.is_finished() && Instant::now() < deadline {
        let k = done.load(Ordering::Relaxed);
        let cap = job.report().edges[0].capacity;
        match k {
            20_000..=49_000 => before.push(cap),
            54_000..=59_000 => after.push(cap),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let report = job.wait().expect("job runs");
    assert!(report.ledger.balanced);
    assert_eq!(report.ledger.delivered, n);
    assert!(report.edges[0].drain_rate.is_some_and(|r| r > 0.0));
    let (b, a) = (median(&mut before), median(&mut after));
    assert!(
        b > 100 && b < 10_000,
        "before the step the edge held {b} (of 10,000)"
    );
    let ratio = b as f64 / a.max(1) as f64;
    eprintln!("edge capacity {b} before the step, {a} after ({ratio:.1}x)");
    assert!(
        (2.5..=10.0).contains(&ratio),
        "five times slower: {b} -> {a} records ({ratio:.1}x)"
    );
}

#[test]
fn a_zero_budget_is_refused_before_the_job_starts() {
    let p = Pipeline::new("budget");
    p.source("source", 1, range(10))
        .edge_budget(Duration::ZERO)
        .new_chain()
        .sink("sink", |_| Collect(Arc::default()));
    match p.run() {
        Err(BuildError::ZeroBudget { edge }) => assert!(edge.contains("source"), "{edge}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a zero budget was accepted"),
    }
}
