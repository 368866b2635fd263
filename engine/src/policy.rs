//! Overload policies: what an edge does when its sender is short of credit.
//!
//! The policy is a parameter of each edge port, consulted only on the slow path (when the
//! credit a batch needs is not available), so a policy that is configured but never
//! triggered costs nothing per record.

use serde::{Deserialize, Serialize};

/// What an edge does when the receiver has not granted enough credit for a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EdgePolicy {
    /// The sender waits until credit returns; the time waited is counted as backpressure.
    /// Nothing is dropped: slowness propagates upstream to the source.
    #[default]
    Block,
}

impl std::fmt::Display for EdgePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EdgePolicy::Block => f.write_str("block"),
        }
    }
}
