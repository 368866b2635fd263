//! `sluice run w1` and `sluice bench pipeline`: the engine-throughput workload, alone or
//! against its hand-written baseline in the same run.

use std::path::PathBuf;

use clap::Args;
use sluice_workloads::stats::median;
use sluice_workloads::w1;

use crate::error::CliError;
use crate::output::write_json;

/// W1's size and shape.
#[derive(Args, Debug, Clone)]
pub struct W1Args {
    /// Records to generate.
    #[arg(long, default_value_t = 20_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    records: u64,
    /// Instances of every stage.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    parallelism: u64,
    /// Records each edge buffers, per downstream instance.
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    capacity: u64,
    /// Write the job report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// `sluice bench pipeline`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    #[command(flatten)]
    w1: W1Args,
    /// Rounds of each (alternating); the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
    rounds: u64,
    /// Also run W1 with ShedByPriority on its edges (nothing shed: every record is an
    /// error) and report its cost against Block.
    #[arg(long)]
    shed: bool,
    /// Also run W1 in columnar form (Arrow record batches) at batch sizes of 1k, 8k and 64k
    /// rows, without and with rayon, and compare each with the row form.
    #[arg(long)]
    columnar: bool,
}

/// The columnar variants `--columnar` runs: rows per batch, rayon, and fused (the map,
/// filter and key in one pass instead of a kernel per operator). Rayon splits only batches
/// of at least 32,768 rows, so it is not run at 1k.
const COLUMNAR: [(usize, bool, bool); 8] = [
    (1024, false, false),
    (8192, false, false),
    (65_536, false, false),
    (8192, true, false),
    (65_536, true, false),
    (1024, false, true),
    (8192, false, true),
    (65_536, false, true),
];

/// A columnar variant's label.
fn variant(rayon: bool, fused: bool) -> &'static str {
    match (rayon, fused) {
        (true, _) => " +rayon",
        (false, true) => " fused",
        (false, false) => "",
    }
}

impl W1Args {
    fn config(&self) -> w1::Config {
        w1::Config {
            records: self.records,
            parallelism: self.parallelism as usize,
            capacity: self.capacity as usize,
            ..w1::Config::default()
        }
    }
}

/// `sluice run w1`.
pub fn run(a: &W1Args) -> Result<(), CliError> {
    crate::output::check_writable(a.json.as_deref())?;
    let cfg = a.config();
    let (out, report) = w1::run_sluice(&cfg).map_err(|e| CliError::job("w1", e))?;
    outln!("{report}");
    outln!(
        "records_out={} checksum={:016x} seconds={:.3} rate={:.1}M/s",
        out.records_out,
        out.checksum,
        out.elapsed.as_secs_f64(),
        out.rate(cfg.records) / 1e6
    );
    write_json(a.json.as_deref(), &report)
}

/// `sluice bench pipeline`.
pub fn bench(a: &BenchArgs) -> Result<(), CliError> {
    let cfg = a.w1.config();
    let shed_cfg = w1::Config {
        shed_policy: true,
        ..cfg
    };
    let (mut s, mut b, mut sh) = (Vec::new(), Vec::new(), Vec::new());
    // CPU nanoseconds per record (user + system, every thread of the process).
    let (mut sc, mut bc) = (Vec::new(), Vec::new());
    // The single-threaded fused loop, for scale.
    let mut one = Vec::new();
    // Columnar rates per variant of COLUMNAR.
    let mut col: Vec<Vec<f64>> = vec![Vec::new(); COLUMNAR.len()];
    // Their CPU nanoseconds per record.
    let mut colc: Vec<Vec<f64>> = vec![Vec::new(); COLUMNAR.len()];
    let cpu = |o: &w1::Outcome| {
        o.cpu_ns_per_record(cfg.records)
            .map_or_else(|| "    ? ns".to_string(), |c| format!("{c:>5.1} ns"))
    };
    for round in 0..a.rounds {
        let (out, _) = w1::run_sluice(&cfg).map_err(|e| CliError::job("w1", e))?;
        let base = w1::run_baseline(&cfg);
        let single = w1::run_single(cfg.records);
        if (out.records_out, out.checksum) != (base.records_out, base.checksum)
            || (single.records_out, single.checksum) != (base.records_out, base.checksum)
        {
            return Err(CliError::Check(
                "sluice, the baseline and the single loop disagree on W1's result".into(),
            ));
        }
        let shed_rate = if a.shed {
            let (o, r) = w1::run_sluice(&shed_cfg).map_err(|e| CliError::job("w1 (shed)", e))?;
            if (o.records_out, o.checksum) != (out.records_out, out.checksum)
                || r.ledger.dropped != 0
            {
                return Err(CliError::Check(
                    "W1 with the shed policy changed the result".into(),
                ));
            }
            Some(o.rate(cfg.records))
        } else {
            None
        };
        outln!(
            "round {}: sluice {:>6.1} M rec/s {} CPU/rec   crossbeam {:>6.1} M rec/s {} CPU/rec   one loop {:>6.1} M rec/s{}",
            round + 1,
            out.rate(cfg.records) / 1e6,
            cpu(&out),
            base.rate(cfg.records) / 1e6,
            cpu(&base),
            single.rate(cfg.records) / 1e6,
            shed_rate.map_or(String::new(), |r| format!(
                "   sluice+shed {:>6.1} M rec/s",
                r / 1e6
            ))
        );
        if a.columnar {
            let mut line = String::new();
            for (k, &(rows, rayon, fused)) in COLUMNAR.iter().enumerate() {
                let c = sluice_workloads::w1_columnar::ColumnarConfig {
                    base: w1::Config {
                        batch_size: rows,
                        ..cfg
                    },
                    rayon,
                    fused,
                };
                let (o, _) = sluice_workloads::w1_columnar::run(&c)
                    .map_err(|e| CliError::job("w1 (columnar)", e))?;
                if (o.records_out, o.checksum) != (out.records_out, out.checksum) {
                    return Err(CliError::Check(
                        "columnar W1 and the row form disagree on W1's result".into(),
                    ));
                }
                col[k].push(o.rate(cfg.records));
                colc[k].extend(o.cpu_ns_per_record(cfg.records));
                line.push_str(&format!(
                    " {}k{}:{:.1}",
                    rows / 1024,
                    variant(rayon, fused).trim(),
                    o.rate(cfg.records) / 1e6
                ));
            }
            outln!("  columnar M rec/s:{line}");
        }
        s.push(out.rate(cfg.records));
        b.push(base.rate(cfg.records));
        one.push(single.rate(cfg.records));
        sc.extend(out.cpu_ns_per_record(cfg.records));
        bc.extend(base.cpu_ns_per_record(cfg.records));
        sh.extend(shed_rate);
    }
    let (ms, mb) = (median(&s), median(&b));
    outln!(
        "median: sluice {:.1} M rec/s, crossbeam {:.1} M rec/s, ratio {:.3} (p={}, capacity={}, records={})",
        ms / 1e6,
        mb / 1e6,
        ms / mb,
        cfg.parallelism,
        cfg.capacity,
        cfg.records
    );
    outln!(
        "median: one thread, one fused loop (the compute limit of a core) {:.1} M rec/s",
        median(&one) / 1e6
    );
    if !sc.is_empty() && sc.len() == bc.len() {
        let (msc, mbc) = (median(&sc), median(&bc));
        outln!(
            "median CPU per record (user + system, all threads): sluice {:.2} ns, crossbeam {:.2} ns, ratio {:.3}",
            msc,
            mbc,
            msc / mbc
        );
    }
    if a.columnar {
        outln!("columnar W1 (Arrow record batches) against the row form (batches of 1024 records), medians:");
        let row_cpu = (!sc.is_empty()).then(|| median(&sc));
        for (k, &(rows, rayon, fused)) in COLUMNAR.iter().enumerate() {
            let m = median(&col[k]);
            // CPU per record next to the row form's: the work, whatever the threads' overlap.
            let cpu = match (colc[k].is_empty(), row_cpu) {
                (false, Some(r)) => {
                    let c = median(&colc[k]);
                    format!("   {c:>5.2} ns CPU/rec ({:.2}x the row form's)", c / r)
                }
                _ => String::new(),
            };
            outln!(
                "  {:>6} rows per batch{:<7} {:>6.1} M rec/s   {:.2}x the row form{}",
                rows,
                variant(rayon, fused),
                m / 1e6,
                m / ms,
                cpu
            );
        }
    }
    if a.shed {
        let msh = median(&sh);
        outln!(
            "median: sluice with ShedByPriority (nothing shed) {:.1} M rec/s, {:+.1}% against Block",
            msh / 1e6,
            100.0 * (msh / ms - 1.0)
        );
    }
    Ok(())
}
