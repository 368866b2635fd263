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
//! A batch's weight is `min(records, capacity)`: a batch larger than the whole capacity is
//! clamped and waits for an empty port, so one oversized batch can never deadlock an edge.
//!
//! A record is an item, or a row of an item whose type registered a row count
//! ([`crate::rows`]): a port of capacity 8,192 then holds 8,192 rows, and its counters and
//! drops are in rows. Policies act on whole items (an item is dropped, evicted or deferred
//! whole, counted as its rows); a port evicting to free `n` records takes the fewest whole
//! items that hold them.
//!
//! A sender cuts a batch of such items that is larger than its port's capacity before
//! offering it: whole items up to the capacity, and an item that alone exceeds it into
//! slices of the capacity, if its type can be sliced ([`crate::slice_rows`]; Arrow record
//! batches slice without copying). The parts are offered in order, each as a new batch,
//! and the receiver is woken for each part before the sender waits for credit for the
//! next; a send that ends early hands back every row not queued. So an edge of sliceable
//! items never holds more rows than its capacity.
//!
//! A port may also be bounded in bytes ([`PortConfig::max_bytes`]): senders weigh each
//! batch outside the lock with the type's byte size ([`crate::count_bytes`]) and the port
//! moves its capacity in rows toward `max_bytes / bytes per row`, by free credit only, as a
//! port sized in time does.
//!
//! # Wake-ups
//! The receiver is woken only when it is waiting (empty to non-empty transition) and senders
//! only when one of them is waiting for credit, so the steady state costs one uncontended lock
//! per batch and no futex calls.
//!
//! # Service order
//! A port is served FIFO unless it classifies its records and its [`ServiceOrder`](crate::ServiceOrder) is by
//! class ([`PortConfig::service`]). Then it keeps per-class lanes (`lanes.rs`): senders still
//! push to the arrival queue; the arrival queue is classified and split into the lanes only
//! when the order matters (two or more batches queued, or a policy needs the classes), and the
//! receiver takes the highest class (or, weighted, the class furthest behind its share). An
//! inbox with a class-served port takes from the port whose highest queued class is highest.
//! Splitting keeps weights: the parts of a batch carry its weight between them, so the credit
//! identity below is untouched by sorting.
//!
//! # Sized in time
//! A port with a budget ([`PortConfig::budget`], `budget.rs`) measures how fast its receiver
//! drains it and moves its capacity toward `budget x rate`, growing by adding credit and
//! shrinking only by absorbing credit that is free, so the identity holds throughout.
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
