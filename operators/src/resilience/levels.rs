//! Overload levels with hysteresis: normal -> shed-low -> shed-mid -> degrade.
//!
//! A pressure signal in `0..=1` (queue fill, share of time starved of credit, memory use) is
//! fed periodically. Level `i` is entered when the signal reaches `enter[i]` and left (one
//! level down) only when it falls below `exit[i]`, with `exit[i] < enter[i]`: between the two
//! the level holds, so a signal hovering near a threshold does not flap.

use std::time::Duration;

use sluice_engine::{EdgeId, EdgePolicy, JobHandle, UnknownEdge};

/// A level change, for events and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelChange {
    /// Level before.
    pub from: usize,
    /// Level after.
    pub to: usize,
    /// The signal that caused it.
    pub signal: f64,
}

/// The level state machine.
#[derive(Debug, Clone)]
pub struct OverloadLevels {
    names: Vec<String>,
    enter: Vec<f64>,
    exit: Vec<f64>,
    level: usize,
    /// Every change so far.
    pub changes: Vec<LevelChange>,
}

impl OverloadLevels {
    /// The default ladder: shed-low at 0.6 (back below 0.4), shed-mid at 0.8 (below 0.6),
    /// degrade at 0.95 (below 0.8).
    pub fn standard() -> Self {
        Self::new(
            &["normal", "shed-low", "shed-mid", "degrade"],
            &[0.6, 0.8, 0.95],
            &[0.4, 0.6, 0.8],
        )
    }

    /// Levels `names[0..]`; `enter[i]` / `exit[i]` are the thresholds of level `i + 1`.
    /// Exit thresholds above their enter threshold are lowered to it.
    pub fn new(names: &[&str], enter: &[f64], exit: &[f64]) -> Self {
        let n = names
            .len()
            .saturating_sub(1)
            .min(enter.len())
            .min(exit.len());
        OverloadLevels {
            names: names.iter().map(|s| s.to_string()).collect(),
            enter: enter[..n].to_vec(),
            exit: exit[..n]
                .iter()
                .zip(enter)
                .map(|(x, e)| x.min(*e))
                .collect(),
            level: 0,
            changes: Vec::new(),
        }
    }

    /// The current level.
    pub fn level(&self) -> usize {
        self.level
    }

    /// The current level's name.
    pub fn name(&self) -> &str {
        self.names.get(self.level).map_or("", String::as_str)
    }

    /// Feeds a signal; returns the change, if any. Climbs as many levels as the signal
    /// crosses; descends one level per update (recovery is gradual).
    pub fn update(&mut self, signal: f64) -> Option<LevelChange> {
        let from = self.level;
        while self.level < self.enter.len() && signal >= self.enter[self.level] {
            self.level += 1;
        }
        if self.level == from && self.level > 0 && signal < self.exit[self.level - 1] {
            self.level -= 1;
        }
        (self.level != from).then(|| {
            let c = LevelChange {
                from,
                to: self.level,
                signal,
            };
            self.changes.push(c.clone());
            c
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_only_across_the_hysteresis_band() {
        let mut l = OverloadLevels::standard();
        // Hovering around the shed-low enter threshold, inside the band: one change only.
        for s in [0.3, 0.59, 0.61, 0.5, 0.59, 0.45, 0.58, 0.41] {
            l.update(s);
        }
        assert_eq!(l.changes.len(), 1);
        assert_eq!(l.name(), "shed-low");
        // Below the exit threshold: back to normal.
        assert!(l.update(0.39).is_some());
        assert_eq!(l.level(), 0);
        // A spike climbs straight to degrade; recovery steps down one level per update and
        // only below each exit threshold.
        assert_eq!(l.update(0.99).map(|c| c.to), Some(3));
        assert_eq!(l.update(0.85), None, "0.85 is above degrade's exit (0.8)");
        assert_eq!(l.update(0.7).map(|c| c.to), Some(2));
        assert_eq!(l.update(0.65), None, "0.65 is above shed-mid's exit (0.6)");
        assert_eq!(l.update(0.1).map(|c| c.to), Some(1));
        assert_eq!(l.update(0.1).map(|c| c.to), Some(0));
        assert_eq!(l.changes.len(), 6);
    }
}

/// Switches edge policies as a job's pressure moves through overload levels.
///
/// Every `interval` it reads the fill of `signal_edge` (0..1), feeds it to the
/// [`OverloadLevels`], and on a level change sets each listed edge to the policy for the new
/// level and records the change as an event in the job's report.
#[derive(Debug)]
pub struct LevelController {
    thread: Option<std::thread::JoinHandle<OverloadLevels>>,
}

impl LevelController {
    /// Starts the controller; it ends by itself when the job finishes.
    ///
    /// # Errors
    /// [`UnknownEdge`] when an edge id is not one of this job's (checked before it starts).
    pub fn spawn(
        job: JobHandle,
        signal_edge: EdgeId,
        mut levels: OverloadLevels,
        policies: Vec<(EdgeId, Vec<EdgePolicy>)>,
        interval: Duration,
    ) -> Result<Self, UnknownEdge> {
        job.edge_fill(signal_edge)?;
        for (edge, _) in &policies {
            job.edge_fill(*edge)?;
        }
        let thread = std::thread::Builder::new()
            .name("sluice-levels".into())
            .spawn(move || {
                while !job.is_finished() {
                    // The ids were checked above; a job's edges never change.
                    let Ok(fill) = job.edge_fill(signal_edge) else {
                        break;
                    };
                    if let Some(c) = levels.update(fill) {
                        job.record_event(
                            "level",
                            format!("{} -> {} (fill {:.2})", c.from, levels.name(), c.signal),
                        );
                        for (edge, per_level) in &policies {
                            if let Some(p) = per_level.get(c.to).or(per_level.last()) {
                                let _ = job.set_edge_policy(*edge, *p);
                            }
                        }
                    }
                    std::thread::sleep(interval);
                }
                levels
            })
            .ok();
        Ok(LevelController { thread })
    }

    /// Waits for the controller to end (after the job) and returns its level history.
    pub fn join(mut self) -> Option<OverloadLevels> {
        self.thread.take().and_then(|t| t.join().ok())
    }
}
