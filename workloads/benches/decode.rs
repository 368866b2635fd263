//! Kafka payloads into record batches: `kafka::batches::json_lines` against decoding a typed
//! row per message with serde (what a person writes first), in the same run.
//!
//! ```text
//! cargo bench -p sluice-workloads --bench decode
//! ```
//!
//! Three string fields per row. Reported per row: serde, one row per message
//! (`codec::json`); `json_lines` with one row per message (a batch per message); and
//! `json_lines` with 1,000 rows per message (producers that batch lines into messages).

use std::sync::Arc;

use criterion::{Criterion, Throughput};
use sluice_connectors::files::arrow::datatypes::{DataType, Field, Schema};
use sluice_connectors::kafka::batches;
use sluice_connectors::kafka::codec::{self, Incoming};
use sluice_workloads::stats::median;

const ROWS: usize = 20_000;

#[derive(serde::Deserialize)]
struct Log {
    level: String,
    service: String,
    msg: String,
}

fn bench_decode(c: &mut Criterion) {
    let msgs: Vec<Vec<u8>> = (0..ROWS)
        .map(|i| {
            format!(
                r#"{{"level":"info","service":"svc-{}","msg":"event {i}"}}"#,
                i % 7
            )
            .into_bytes()
        })
        .collect();
    let joined: Vec<Vec<u8>> = msgs.chunks(1000).map(|c| c.join(&b'\n')).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("level", DataType::Utf8, false),
        Field::new("service", DataType::Utf8, false),
        Field::new("msg", DataType::Utf8, false),
    ]));
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(10);
    let typed = codec::json::<Log>();
    g.bench_function("serde typed row per message", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for m in &msgs {
                if let Ok(l) = typed(&Incoming::new(m)) {
                    n += l.level.len() + l.service.len() + l.msg.len();
                }
            }
            n
        })
    });
    let lines = batches::json_lines(schema);
    g.bench_function("json_lines, one row per message", |b| {
        b.iter(|| {
            msgs.iter()
                .filter_map(|m| lines(&Incoming::new(m)).ok())
                .map(|b| b.num_rows())
                .sum::<usize>()
        })
    });
    g.bench_function("json_lines, 1000 rows per message", |b| {
        b.iter(|| {
            joined
                .iter()
                .filter_map(|m| lines(&Incoming::new(m)).ok())
                .map(|b| b.num_rows())
                .sum::<usize>()
        })
    });
    g.finish();

    // The ratios, from alternating runs (median of 7 of each).
    let time = |f: &dyn Fn() -> usize| {
        let t = std::time::Instant::now();
        std::hint::black_box(f());
        t.elapsed().as_nanos() as f64 / ROWS as f64
    };
    let (mut s, mut one, mut many) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..7 {
        s.push(time(&|| {
            msgs.iter()
                .filter_map(|m| typed(&Incoming::new(m)).ok())
                .map(|l| l.msg.len())
                .sum()
        }));
        one.push(time(&|| {
            msgs.iter()
                .filter_map(|m| lines(&Incoming::new(m)).ok())
                .map(|b| b.num_rows())
                .sum()
        }));
        many.push(time(&|| {
            joined
                .iter()
                .filter_map(|m| lines(&Incoming::new(m)).ok())
                .map(|b| b.num_rows())
                .sum()
        }));
    }
    let (s, one, many) = (median(&s), median(&one), median(&many));
    println!(
        "per row: serde {s:.0} ns; json_lines one row per message {one:.0} ns ({:.2}x serde's time); 1000 rows per message {many:.0} ns ({:.2}x)",
        one / s,
        many / s
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_decode(&mut c);
    c.final_summary();
}
