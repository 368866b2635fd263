//! Bounded, credit-based edges.
//!
//! An edge links an upstream operator instance to a downstream one. Each downstream instance
//! owns one [`Receiver`] (its *inbox*); every logical input edge of that instance is a *port*
//! of the inbox with its own capacity, credit, policy and statistics. Upstream instances hold
//! [`Sender`]s to a port. All ports of one inbox share one lock, so a receiver with several
//! inputs (a union, an exchange from `p` upstream instances) waits on one condition variable.
//!
//! ```text
//!   upstream 0 ──Sender──┐            ┌──────────── inbox (one per downstream instance) ───┐
//!                        ├─► port 0 ──┤ queue: VecDeque<Batch>   credit: available/capacity  │──► Receiver
//!   upstream 1 ──Sender──┘            │ port 1 ...                                         │
//!                                     └────────────────────────────────────────────────────┘
//! ```
//!
//! # Credit
//! Capacity is counted in records. A sender reserves the batch's *weight* before the batch is
//! queued; the receiver returns that weight when it takes the batch. At every instant, for
//! every port:
//!
//! ```text
//!   available + in_flight == capacity      (in_flight = sum of weights of queued batches)
//! ```
//!
//! A batch's weight is `min(len, capacity)`: a batch larger than the whole capacity is clamped
//! and waits for an empty port, so one oversized batch can never deadlock an edge.
//!
//! # Wake-ups
//! The receiver is woken only when it is waiting (empty to non-empty transition) and senders
//! only when one of them is waiting for credit, so the steady state costs one uncontended lock
//! per batch and no futex calls.
//!
//! # End of stream and abort
//! End of stream is in-band: when the last sender of a port is closed (or dropped), the port
//! ends after its queued batches are received. [`Receiver::recv`] reports
//! [`RecvError::Closed`] only when every port has ended. An abort (a failing job) wakes every
//! waiter on both sides and makes every later call fail with `Aborted`.

mod budget;
mod channel;
mod error;
mod lanes;
mod port;
mod spill;

pub use channel::{bounded, EdgeProbe, PortSnapshot, Receiver, Sender};
pub use error::{RecvError, SendError, TryRecvError, TrySendError};
pub use port::{DropTapFn, Dropped, PortConfig};
pub use spill::{DeferHealth, SpillError, SpillLog, SpillSpec, MAX_FRAME};
