//! The offered load: a piecewise-constant rate over the window, and each record's class.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_engine::{Priority, CLASSES};

/// One event: a sequence number, a class, and when it was meant to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Sequence number.
    pub seq: u64,
    /// Priority class.
    pub class: Priority,
    /// Intended send time, nanoseconds after the scenario's start.
    pub intended_ns: u64,
}

/// The shape of the offered load over the window, as multiples of the sink's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// 0.8x capacity throughout: the control run, nothing should be lost.
    Steady,
    /// 0.5x for the first third, then `overload` x to the end.
    Step,
    /// 0.5x, a burst of `overload` x from 20% to 40% of the window, 0.5x again: the run
    /// measures how long the backlog takes to drain after the burst (`recovery_s`).
    Burst,
    /// `overload` x throughout.
    Sustained,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 4] = [
        Profile::Steady,
        Profile::Step,
        Profile::Burst,
        Profile::Sustained,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Steady => "steady",
            Profile::Step => "step",
            Profile::Burst => "burst",
            Profile::Sustained => "sustained",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.name() == s)
    }

    /// `(start, end, multiple of capacity)` segments over a window of `d` seconds.
    fn shape(self, d: f64, overload: f64) -> Vec<(f64, f64, f64)> {
        match self {
            Profile::Steady => vec![(0.0, d, 0.8)],
            Profile::Step => vec![(0.0, d / 3.0, 0.5), (d / 3.0, d, overload)],
            Profile::Burst => vec![
                (0.0, 0.2 * d, 0.5),
                (0.2 * d, 0.4 * d, overload),
                (0.4 * d, d, 0.5),
            ],
            Profile::Sustained => vec![(0.0, d, overload)],
        }
    }

    /// When the overload ends, for profiles that end one inside the window.
    pub fn burst_end(self, d: f64) -> Option<f64> {
        (self == Profile::Burst).then_some(0.4 * d)
    }
}

/// A piecewise-constant offered rate: when each record is due, and how many are due by when.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// `(start_s, end_s, records per second, records due before start)`.
    segments: Vec<(f64, f64, f64, f64)>,
    total: u64,
}

impl Schedule {
    /// The schedule of `profile` over `duration` against a sink of `capacity` records/s.
    pub fn new(profile: Profile, duration: Duration, capacity: f64, overload: f64) -> Self {
        let mut segments = Vec::new();
        let mut before = 0.0;
        for (a, b, m) in profile.shape(duration.as_secs_f64(), overload) {
            let rate = (m * capacity).max(1e-9);
            segments.push((a, b, rate, before));
            before += rate * (b - a);
        }
        Schedule {
            segments,
            total: before as u64,
        }
    }

    /// Records the window offers in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Records due by `t` seconds after the start (fractional).
    pub fn due_by(&self, t: f64) -> f64 {
        for &(a, b, rate, before) in &self.segments {
            if t < b {
                return before + (t - a).max(0.0) * rate;
            }
        }
        self.total as f64
    }

    /// When record `k` is due, in seconds after the start.
    pub fn time_of(&self, k: u64) -> f64 {
        let k = k as f64;
        for &(a, b, rate, before) in &self.segments {
            if k < before + rate * (b - a) {
                return a + (k - before) / rate;
            }
        }
        self.segments.last().map_or(0.0, |s| s.1)
    }
}

/// The cumulative shares of the class mix, for [`class_of`].
pub(crate) fn cumulative(mix: &[f64; CLASSES]) -> [f64; CLASSES] {
    let mut cumulative = [0.0; CLASSES];
    let sum: f64 = mix.iter().sum::<f64>().max(1e-12);
    let mut acc = 0.0;
    for (c, m) in cumulative.iter_mut().zip(mix) {
        acc += m / sum;
        *c = acc;
    }
    cumulative
}

pub(crate) fn class_of(seq: u64, cumulative: &[f64; CLASSES]) -> Priority {
    let u = unit(seq);
    let idx = cumulative
        .iter()
        .position(|c| u < *c)
        .unwrap_or(CLASSES - 1);
    Priority::rank(idx as u8)
}

/// A fixed hash of `x` mapped to [0, 1).
fn unit(x: u64) -> f64 {
    let h = x
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let h = (h ^ (h >> 31)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((h ^ (h >> 29)) >> 11) as f64 / (1u64 << 53) as f64
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}
