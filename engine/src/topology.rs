//! A plain description of a job's graph: stages (operator chains) and the edges between
//! them. The builder produces it, [`Topology::validate`] checks it before anything runs, and
//! reports and dashboards render it.

use serde::{Deserialize, Serialize};

use crate::error::build::BuildError;

/// How records cross an edge between two stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExchangeKind {
    /// Instance `i` to instance `i`.
    Forward,
    /// Whole batches to downstream instances in turn.
    RoundRobin,
    /// Each record to the instance its key hashes to.
    Hash,
    /// Every record to every downstream instance.
    Broadcast,
}

impl std::fmt::Display for ExchangeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExchangeKind::Forward => "forward",
            ExchangeKind::RoundRobin => "round_robin",
            ExchangeKind::Hash => "hash",
            ExchangeKind::Broadcast => "broadcast",
        })
    }
}

/// What an operator is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Produces records.
    Source,
    /// Transforms batches.
    Operator,
    /// Ends a stream.
    Sink,
    /// Routes each record to one of two branches.
    Split,
    /// Copies each record to several branches.
    Fork,
}

/// One stage: an operator chain run by `parallelism` tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyStage {
    /// The chain's name (its operators joined by `+`).
    pub name: String,
    /// Number of tasks (threads).
    pub parallelism: usize,
    /// The operators of the chain, in order.
    pub operators: Vec<String>,
    /// True when the chain starts with a source.
    pub is_source: bool,
}

/// One logical edge between two stages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyEdge {
    /// Upstream stage index.
    pub from: usize,
    /// Downstream stage index.
    pub to: usize,
    /// How records cross it.
    pub exchange: ExchangeKind,
    /// Capacity in records, per downstream instance.
    pub capacity: usize,
}

/// A job's graph.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// The stages.
    pub stages: Vec<TopologyStage>,
    /// The edges.
    pub edges: Vec<TopologyEdge>,
}

impl Topology {
    /// Checks the graph: at least one source, every parallelism and capacity positive, edges
    /// between existing stages, and no cycle.
    ///
    /// # Errors
    /// The first problem found, as a [`BuildError`].
    pub fn validate(&self) -> Result<(), BuildError> {
        if !self.stages.iter().any(|s| s.is_source) {
            return Err(BuildError::NoSource);
        }
        for s in &self.stages {
            if s.parallelism == 0 {
                return Err(BuildError::ZeroParallelism {
                    operator: s.name.clone(),
                });
            }
        }
        let n = self.stages.len();
        for e in &self.edges {
            if e.from >= n || e.to >= n {
                return Err(BuildError::UnconnectedOutput {
                    operator: format!("edge {} -> {}", e.from, e.to),
                });
            }
            if e.capacity == 0 {
                return Err(BuildError::ZeroCapacity {
                    edge: format!("{} -> {}", self.stages[e.from].name, self.stages[e.to].name),
                });
            }
        }
        if let Some(cycle) = self.find_cycle() {
            let path = cycle
                .iter()
                .map(|&s| self.stages[s].name.as_str())
                .collect::<Vec<_>>()
                .join(" -> ");
            return Err(BuildError::Cycle { path });
        }
        Ok(())
    }

    /// A cycle as a list of stages (first repeated at the end), if there is one.
    pub fn find_cycle(&self) -> Option<Vec<usize>> {
        let n = self.stages.len();
        let mut adj = vec![Vec::new(); n];
        for e in &self.edges {
            if e.from < n && e.to < n {
                adj[e.from].push(e.to);
            }
        }
        // Iterative DFS with colours: 0 new, 1 on the stack, 2 done.
        let mut colour = vec![0u8; n];
        let mut parent = vec![usize::MAX; n];
        for root in 0..n {
            if colour[root] != 0 {
                continue;
            }
            let mut stack = vec![(root, 0usize)];
            colour[root] = 1;
            while let Some(&mut (v, ref mut i)) = stack.last_mut() {
                if *i < adj[v].len() {
                    let w = adj[v][*i];
                    *i += 1;
                    match colour[w] {
                        0 => {
                            colour[w] = 1;
                            parent[w] = v;
                            stack.push((w, 0));
                        }
                        1 => {
                            let mut path = vec![w];
                            let mut x = v;
                            while x != w && x != usize::MAX {
                                path.push(x);
                                x = parent[x];
                            }
                            path.push(w);
                            path.reverse();
                            return Some(path);
                        }
                        _ => {}
                    }
                } else {
                    colour[v] = 2;
                    stack.pop();
                }
            }
        }
        None
    }
}
