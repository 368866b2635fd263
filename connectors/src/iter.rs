//! A source that drains an iterator.

use sluice_engine::{Source, SourceError, SourceStatus};

/// Produces the items of an iterator, a batch at a time.
#[derive(Debug)]
pub struct IterSource<I> {
    iter: I,
}

impl<I> IterSource<I> {
    /// Wraps an iterator.
    pub fn new(iter: I) -> Self {
        IterSource { iter }
    }
}

impl<T, I> Source<T> for IterSource<I>
where
    T: Send + 'static,
    I: Iterator<Item = T> + Send + 'static,
{
    fn poll_batch(&mut self, out: &mut Vec<T>, max: usize) -> Result<SourceStatus, SourceError> {
        out.extend(self.iter.by_ref().take(max));
        if out.len() < max {
            Ok(SourceStatus::Done)
        } else {
            Ok(SourceStatus::More)
        }
    }
}
