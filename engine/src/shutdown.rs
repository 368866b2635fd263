//! Stopping every job of a process: from code ([`stop_all_jobs`]), or on SIGINT / SIGTERM
//! ([`stop_on_signals`], feature `signals`, opt-in).
//!
//! # The signal contract
//! The first SIGINT or SIGTERM asks every running job to stop: sources stop at their next
//! batch boundary, the graphs drain (a Kafka source commits what was delivered) and each
//! `wait` returns its report with status `Stopped`; a job that has not drained within the
//! deadline is aborted and its report counts what was in flight. A second signal exits the
//! process at once, after printing on stderr what each job still held. A program tells the
//! two endings apart with [`received_signal`] and exits `128 + signal` (130 for SIGINT, 143
//! for SIGTERM), as shells expect.
//!
//! ```no_run
//! # #[cfg(feature = "signals")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//!
//! sluice_engine::shutdown::stop_on_signals(Duration::from_secs(10))?;
//! // ... build and run a pipeline; `job.wait()` returns once it stopped or completed ...
//! if let Some(sig) = sluice_engine::shutdown::received_signal() {
//!     std::process::exit(128 + sig);
//! }
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "signals"))]
//! # fn main() {}
//! ```

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use crate::runtime::control;

/// The first stop signal received, 0 for none.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Asks every job of this process that is still running to stop and drain within
/// `deadline` (then abort). Returns each job's name and the records it held on its edges
/// when asked.
pub fn stop_all_jobs(deadline: Duration) -> Vec<(String, u64)> {
    control::stop_all(deadline)
}

/// The signal that asked this process to stop (`SIGINT` = 2, `SIGTERM` = 15), if any.
pub fn received_signal() -> Option<i32> {
    match RECEIVED.load(Ordering::Relaxed) {
        0 => None,
        s => Some(s),
    }
}

/// Installs the [signal contract](self) for this process: the first SIGINT or SIGTERM
/// stops every running job within `deadline`, a second exits at once. Call it once, early.
///
/// # Errors
/// When the handlers cannot be installed or the thread that serves them cannot start.
#[cfg(feature = "signals")]
pub fn stop_on_signals(deadline: Duration) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;

    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("sluice-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let first = RECEIVED
                    .compare_exchange(0, sig, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok();
                if first {
                    let jobs = stop_all_jobs(deadline);
                    let what = match jobs.len() {
                        0 => String::new(),
                        n => format!(" {n} job(s)"),
                    };
                    eprintln!(
                        "sluice: {} received: stopping{what}, draining within {:.0} s; send it again to exit at once",
                        name(sig),
                        deadline.as_secs_f64()
                    );
                } else {
                    let jobs = control::live_jobs(|_| {});
                    let held: Vec<String> =
                        jobs.iter().map(|(n, q)| format!("{n}: {q} records on its edges")).collect();
                    eprintln!(
                        "sluice: {} again: exiting at once; in flight: {}",
                        name(sig),
                        if held.is_empty() { "nothing".to_string() } else { held.join(", ") }
                    );
                    std::process::exit(128 + sig);
                }
            }
        })?;
    Ok(())
}

#[cfg(feature = "signals")]
fn name(sig: i32) -> &'static str {
    match sig {
        signal_hook::consts::SIGINT => "SIGINT",
        signal_hook::consts::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}
