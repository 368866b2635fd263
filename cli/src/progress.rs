//! Live progress of a scenario: a status line redrawn in place on a terminal, plain periodic
//! lines otherwise (CI logs, pipes). Progress goes to stderr; results go to stdout.

use std::io::{IsTerminal, Write};

use clap::ValueEnum;
use sluice::engine::Priority;
use sluice_workloads::overload::Sample;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// A status line redrawn in place when stderr is a terminal, plain lines otherwise.
    Auto,
    /// One plain line per second.
    Plain,
    /// No progress.
    Off,
}

/// Renders samples of one run.
pub struct Progress {
    label: String,
    window_s: f64,
    capacity: u64,
    terminal: bool,
    off: bool,
    prev: Option<Sample>,
    last_line: f64,
    drawn: bool,
}

impl Progress {
    /// Progress of the run `label`, whose load lasts `window_s` seconds, on an edge of
    /// `capacity` records.
    pub fn new(mode: ProgressMode, label: &str, window_s: f64, capacity: u64) -> Self {
        Progress {
            label: label.to_string(),
            window_s,
            capacity,
            terminal: mode == ProgressMode::Auto && std::io::stderr().is_terminal(),
            off: mode == ProgressMode::Off,
            prev: None,
            last_line: f64::NEG_INFINITY,
            drawn: false,
        }
    }

    /// Shows one sample (rates are over the interval since the previous one).
    pub fn update(&mut self, s: &Sample) {
        if self.off {
            return;
        }
        let prev = self.prev.take().unwrap_or_default();
        let dt = (s.t_s - prev.t_s).max(1e-3);
        if self.terminal || s.t_s - self.last_line >= 1.0 {
            let line = self.line(s, &prev, dt);
            let mut err = std::io::stderr().lock();
            let _ = if self.terminal {
                write!(err, "\r\x1b[2K{line}")
            } else {
                writeln!(err, "{line}")
            };
            let _ = err.flush();
            self.last_line = s.t_s;
            self.drawn = true;
        }
        self.prev = Some(s.clone());
    }

    fn line(&self, s: &Sample, prev: &Sample, dt: f64) -> String {
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
        let phase = if s.t_s <= self.window_s {
            format!("{:>4.1}/{:.1}s", s.t_s, self.window_s)
        } else {
            format!("drain {:>4.1}s", s.t_s - self.window_s)
        };
        let fill = if self.capacity > 0 {
            100.0 * s.queued as f64 / self.capacity as f64
        } else {
            0.0
        };
        let drops: Vec<String> = s
            .dropped
            .iter()
            .map(|(c, n)| format!("{} {}", short(*c), human(*n as f64)))
            .collect();
        let mut line = format!(
            "[{}] {phase}  offered {}/s  delivered {}/s  queue {} ({:.0}%)  dropped {}",
            self.label,
            human(rate(s.offered, prev.offered)),
            human(rate(s.delivered_total(), prev.delivered_total())),
            human(s.queued as f64),
            fill.min(999.0),
            drops.join(" "),
        );
        if s.deferred > 0 {
            line.push_str(&format!("  deferred {}", human(s.deferred as f64)));
        }
        let lag = s.offered.saturating_sub(s.emitted);
        // Held back: more than 50 ms of the current offered rate behind the schedule.
        if lag as f64 > rate(s.offered, prev.offered) * 0.05 && lag > 16 && s.t_s <= self.window_s {
            line.push_str(&format!("  held back {}", human(lag as f64)));
        }
        line
    }

    /// Ends the display (clears the status line on a terminal).
    pub fn finish(&mut self) {
        if self.terminal && self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

fn short(class: Priority) -> &'static str {
    match class {
        Priority::DEBUG => "dbg",
        Priority::INFO => "inf",
        Priority::WARN => "wrn",
        Priority::ERROR => "err",
        Priority::CRITICAL => "crit",
        c => c.name(),
    }
}

/// `1.2M`, `340k`, `12`.
pub fn human(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}
