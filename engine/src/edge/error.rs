//! Edge errors, one type per operation. Errors that fail to deliver a batch hand it back.

use crate::batch::Batch;

/// [`Sender::send`](super::Sender::send) failed; the batch is handed back.
#[derive(thiserror::Error)]
pub enum SendError<T> {
    /// The receiver is gone; nothing will ever consume this batch.
    #[error("edge receiver is disconnected")]
    Disconnected(Batch<T>),
    /// The job is aborting (an operator failed or a forced stop).
    #[error("edge was aborted")]
    Aborted(Batch<T>),
}

impl<T> SendError<T> {
    /// The batch that was not sent.
    pub fn into_inner(self) -> Batch<T> {
        match self {
            SendError::Disconnected(b) | SendError::Aborted(b) => b,
        }
    }
}

impl<T> std::fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Disconnected(b) => write!(f, "Disconnected({} records)", b.len()),
            SendError::Aborted(b) => write!(f, "Aborted({} records)", b.len()),
        }
    }
}

/// [`Sender::try_send`](super::Sender::try_send) failed; the batch is handed back.
#[derive(thiserror::Error)]
pub enum TrySendError<T> {
    /// Not enough credit right now.
    #[error("edge is full")]
    Full(Batch<T>),
    /// The receiver is gone.
    #[error("edge receiver is disconnected")]
    Disconnected(Batch<T>),
    /// The job is aborting.
    #[error("edge was aborted")]
    Aborted(Batch<T>),
}

impl<T> TrySendError<T> {
    /// The batch that was not sent.
    pub fn into_inner(self) -> Batch<T> {
        match self {
            TrySendError::Full(b) | TrySendError::Disconnected(b) | TrySendError::Aborted(b) => b,
        }
    }

    /// True for [`TrySendError::Full`].
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full(_))
    }
}

impl<T> std::fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrySendError::Full(b) => write!(f, "Full({} records)", b.len()),
            TrySendError::Disconnected(b) => write!(f, "Disconnected({} records)", b.len()),
            TrySendError::Aborted(b) => write!(f, "Aborted({} records)", b.len()),
        }
    }
}

/// [`Receiver::recv`](super::Receiver::recv) returned no batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// Every port has ended and every queued batch was received: end of stream.
    #[error("all inputs ended")]
    Closed,
    /// The job is aborting.
    #[error("edge was aborted")]
    Aborted,
}

/// [`Receiver::try_recv`](super::Receiver::try_recv) returned no batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing queued right now, but some port is still open.
    #[error("no batch queued")]
    Empty,
    /// Every port has ended: end of stream.
    #[error("all inputs ended")]
    Closed,
    /// The job is aborting.
    #[error("edge was aborted")]
    Aborted,
}
