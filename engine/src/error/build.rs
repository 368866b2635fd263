//! Errors found while building a graph, before any thread starts.

/// The graph could not be built: a configuration or topology mistake, found before any
/// thread starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// An edge was given capacity 0; it could never accept a record.
    #[error("edge `{edge}` has capacity 0: give it at least 1 record of credit")]
    ZeroCapacity {
        /// The edge, `upstream -> downstream`.
        edge: String,
    },
    /// An edge was given a time budget of zero; it could never hold a record.
    #[error("edge `{edge}` has a budget of 0: give it at least 1 ms of its receiver's work (`edge_budget`)")]
    ZeroBudget {
        /// The edge, `upstream -> downstream`.
        edge: String,
    },
    /// An edge was bounded to 0 bytes; it could never hold a record.
    #[error(
        "edge `{edge}` is bounded to 0 bytes: give it room for at least one batch (`edge_bytes`)"
    )]
    ZeroBytes {
        /// The edge, `upstream -> downstream`.
        edge: String,
    },
    /// An edge's policy acts on priority classes but the edge has no classifier.
    #[error("edge `{edge}` uses policy {policy}, which needs record classes: call `.classify(..)` or `.prioritized()` before the edge")]
    PolicyNeedsClassifier {
        /// The edge.
        edge: String,
        /// The policy.
        policy: String,
    },
    /// A `Defer` edge has no defer log.
    #[error("edge `{edge}` uses the defer policy but has no log: call `.defer_to(dir, max_bytes, codec)` before the edge")]
    DeferNeedsLog {
        /// The edge.
        edge: String,
    },
    /// A defer log could not be opened.
    #[error("cannot open the defer log of edge `{edge}`: {message}")]
    DeferLog {
        /// The edge.
        edge: String,
        /// The I/O error.
        message: String,
    },
    /// An operator was given parallelism 0.
    #[error("operator `{operator}` has parallelism 0: use at least 1")]
    ZeroParallelism {
        /// The operator.
        operator: String,
    },
    /// The batch size is 0.
    #[error("batch size is 0: use at least 1 record per batch")]
    ZeroBatchSize,
    /// A stream's output is not consumed by any operator or sink.
    #[error("the output of `{operator}` is not connected: end it with a sink (or `discard()`)")]
    UnconnectedOutput {
        /// The operator whose output dangles.
        operator: String,
    },
    /// The graph has a cycle.
    #[error("the graph has a cycle through {path}")]
    Cycle {
        /// The stages on the cycle.
        path: String,
    },
    /// An [`EdgeId`](crate::EdgeId) was taken from a stream that no edge follows.
    #[error("{edge} was taken from a stream that no edge follows (the next operator was chained into the same thread): call `.new_chain()` after `.edge_id()`")]
    EdgeIdUnused {
        /// The id.
        edge: String,
    },
    /// An edge setting (capacity, policy, budget, byte bound, defer log, service order) was
    /// made on a stream that ends in a sink chained into the same thread: no edge follows,
    /// so it would do nothing.
    #[error("`{setting}` is set on the stream that ends in sink `{sink}`, but no edge follows it (the sink runs in the same thread): set it before the `.new_chain()` that makes the edge")]
    EdgeSettingUnused {
        /// The sink.
        sink: String,
        /// The setting, as the method that makes it (`edge_capacity`, ...).
        setting: String,
    },
    /// The graph has no source.
    #[error("the pipeline has no source")]
    NoSource,
    /// An operating system thread could not be started.
    #[error("could not start thread for `{operator}`: {message}")]
    Spawn {
        /// The operator.
        operator: String,
        /// The OS error.
        message: String,
    },
}
