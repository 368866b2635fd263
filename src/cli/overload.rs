//! `sluice bench overload`: each policy in its own process (so peak memory is its own), side
//! by side.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use clap::Args;
use sluice::engine::Priority;
use sluice::workloads::overload::{self, PolicyChoice, Scenario, ScenarioResult};

use super::parse;

#[derive(Args, Debug, Clone)]
pub struct OverloadArgs {
    /// Policies to run, comma separated, or `all`: unbounded, block, drop-newest,
    /// drop-oldest, shed, sample, deadline, defer.
    #[arg(long, default_value = "unbounded,block,shed", value_parser = policies)]
    policy: PolicyList,
    /// How long the producer offers load (e.g. 10s, 500ms).
    #[arg(long, default_value = "5s", value_parser = parse::duration)]
    duration: Duration,
    /// Records per second the sink can process (e.g. 100k).
    #[arg(long, default_value = "100k", value_parser = parse::count)]
    sink_capacity: u64,
    /// Offered load as a multiple of the sink capacity.
    #[arg(long, default_value = "10", value_parser = parse::factor)]
    overload: f64,
    /// Edge capacity in records (e.g. 512, 4k).
    #[arg(long, default_value = "512", value_parser = parse::count)]
    capacity: u64,
    /// Write all results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run one policy in this process and print its result as JSON (used internally).
    #[arg(long, hide = true)]
    child: bool,
}

/// A comma-separated list of policies.
#[derive(Debug, Clone)]
pub struct PolicyList(Vec<PolicyChoice>);

fn policies(s: &str) -> Result<PolicyList, String> {
    if s == "all" {
        return Ok(PolicyList(PolicyChoice::ALL.to_vec()));
    }
    s.split(',')
        .map(|p| {
            PolicyChoice::parse(p.trim()).ok_or_else(|| {
                let names: Vec<&str> = PolicyChoice::ALL.iter().map(|p| p.name()).collect();
                format!("unknown policy `{p}`: use {} or all", names.join(", "))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(PolicyList)
}

fn scenario(a: &OverloadArgs, policy: PolicyChoice) -> Scenario {
    Scenario {
        policy,
        duration: a.duration,
        sink_capacity: a.sink_capacity as f64,
        overload: a.overload,
        capacity: a.capacity as usize,
        ..Scenario::default()
    }
}

pub fn run(a: &OverloadArgs) -> ExitCode {
    if a.child {
        let Some(&policy) = a.policy.0.first() else {
            eprintln!("error: --child needs one --policy");
            return ExitCode::from(2);
        };
        return match overload::run(&scenario(a, policy)) {
            Ok(r) => match serde_json::to_string(&r) {
                Ok(j) => {
                    outln!("{j}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            },
            Err(e) => {
                eprintln!("error: scenario {} failed: {e}", policy.name());
                ExitCode::from(1)
            }
        };
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot find the sluice executable to run scenarios: {e}");
            return ExitCode::from(1);
        }
    };
    outln!(
        "overload: producer at {}x a sink of {} rec/s for {:.1}s, edge capacity {}, class mix debug 70% info 20% warn 8% error 2%",
        a.overload,
        a.sink_capacity,
        a.duration.as_secs_f64(),
        a.capacity
    );
    let mut results = Vec::new();
    for &policy in &a.policy.0 {
        let out = Command::new(&exe)
            .args([
                "bench",
                "overload",
                "--child",
                "--policy",
                policy.name(),
                "--duration",
                &format!("{}ms", a.duration.as_millis()),
                "--sink-capacity",
                &a.sink_capacity.to_string(),
                "--overload",
                &a.overload.to_string(),
                "--capacity",
                &a.capacity.to_string(),
            ])
            .output();
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                eprintln!("error: cannot run scenario {}: {e}", policy.name());
                return ExitCode::from(1);
            }
        };
        if !out.status.success() {
            eprintln!(
                "error: scenario {} failed: {}",
                policy.name(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return ExitCode::from(1);
        }
        match serde_json::from_slice::<ScenarioResult>(&out.stdout) {
            Ok(r) => {
                print_row(&r, results.is_empty());
                results.push(r);
            }
            Err(e) => {
                eprintln!("error: scenario {} printed no result: {e}", policy.name());
                return ExitCode::from(1);
            }
        }
    }
    if let Some(path) = &a.json {
        let json = match serde_json::to_string_pretty(&results) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        };
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

fn class(r: &ScenarioResult, c: Priority) -> Option<&overload::ClassResult> {
    r.classes.iter().find(|x| x.class == c.name())
}

fn print_row(r: &ScenarioResult, header: bool) {
    let classes = [
        Priority::DEBUG,
        Priority::INFO,
        Priority::WARN,
        Priority::ERROR,
    ];
    if header {
        outln!();
        outln!(
            "{:<12} {:>10} {:>8} {:>26} {:>34} {:>9} {:>9}",
            "policy",
            "delivered/s",
            "goodput",
            "dropped % (dbg/inf/wrn/err)",
            "p99 latency ms (dbg/inf/wrn/err)",
            "peak RSS",
            "ledger"
        );
    }
    let dropped: Vec<String> = classes
        .iter()
        .map(|c| {
            class(r, *c).map_or("-".into(), |x| {
                format!("{:.0}", 100.0 * x.dropped as f64 / x.offered.max(1) as f64)
            })
        })
        .collect();
    let p99: Vec<String> = classes
        .iter()
        .map(|c| {
            class(r, *c).map_or("-".into(), |x| {
                if x.delivered == 0 {
                    "-".into()
                } else {
                    format!("{:.1}", x.latency_ms.p99)
                }
            })
        })
        .collect();
    outln!(
        "{:<12} {:>10.0} {:>7.1}% {:>26} {:>34} {:>8.0}M {:>9}",
        r.policy,
        r.delivered_rate,
        100.0 * r.goodput_ratio,
        dropped.join("/"),
        p99.join("/"),
        r.peak_rss_bytes.unwrap_or(0) as f64 / 1e6,
        if r.ledger.balanced {
            "balanced"
        } else {
            "UNBALANCED"
        }
    );
}
