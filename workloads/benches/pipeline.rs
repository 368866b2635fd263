//! W1 on Sluice against a hand-written crossbeam pipeline, in the same run.
//!
//! ```text
//! cargo bench --bench pipeline
//! ```
//!
//! Both run the same computation with the same threads (source+map+filter, keyed sum, sink
//! per instance), batch size (1024) and buffered records (8192 per edge). After criterion's
//! own measurements, an interleaved run (alternating the two, median of 7 each) prints the
//! throughput ratio `sluice / baseline` (target >= 1.0) and the CPU time per record of each
//! (user + system of every thread; target: Sluice within 1.2x).

use std::time::Duration;

use criterion::{Criterion, Throughput};
use sluice_workloads::stats::median;
use sluice_workloads::w1;

const RECORDS: u64 = 4_000_000;

fn configs() -> Vec<w1::Config> {
    [1usize, 2]
        .into_iter()
        .map(|p| w1::Config {
            records: RECORDS,
            parallelism: p,
            ..w1::Config::default()
        })
        .collect()
}

fn bench_w1(c: &mut Criterion) {
    let mut g = c.benchmark_group("w1");
    g.throughput(Throughput::Elements(RECORDS));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(4));
    for cfg in configs() {
        g.bench_function(format!("sluice/p{}", cfg.parallelism), |b| {
            b.iter(|| {
                w1::run_sluice(&cfg)
                    .map(|(o, _)| o.checksum)
                    .unwrap_or_default()
            })
        });
        g.bench_function(format!("crossbeam/p{}", cfg.parallelism), |b| {
            b.iter(|| w1::run_baseline(&cfg).checksum)
        });
    }
    g.finish();
}

fn ratio() {
    for cfg in configs() {
        let (mut s, mut b) = (Vec::new(), Vec::new());
        let (mut sc, mut bc) = (Vec::new(), Vec::new());
        for _ in 0..7 {
            if let Ok((o, _)) = w1::run_sluice(&cfg) {
                s.push(o.rate(cfg.records));
                sc.extend(o.cpu_ns_per_record(cfg.records));
            }
            let o = w1::run_baseline(&cfg);
            b.push(o.rate(cfg.records));
            bc.extend(o.cpu_ns_per_record(cfg.records));
        }
        if s.is_empty() {
            println!("w1 p{}: sluice failed to run", cfg.parallelism);
            continue;
        }
        let (ms, mb) = (median(&s), median(&b));
        println!(
            "w1 p{}: sluice {:.1} M rec/s, crossbeam {:.1} M rec/s, ratio {:.3}",
            cfg.parallelism,
            ms / 1e6,
            mb / 1e6,
            ms / mb
        );
        if !sc.is_empty() && !bc.is_empty() {
            let (msc, mbc) = (median(&sc), median(&bc));
            println!(
                "w1 p{}: CPU per record sluice {msc:.2} ns, crossbeam {mbc:.2} ns, ratio {:.3}",
                cfg.parallelism,
                msc / mbc
            );
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_w1(&mut c);
    c.final_summary();
    ratio();
}
