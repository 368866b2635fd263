//! In-process sinks: a closure per record, collect into a vector, count, discard, and a
//! per-instance fold whose results are read after the job.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use sluice_engine::{Rows, Sink, SinkError, SinkHandle, Stream};

/// Sinks on a [`Stream`].
pub trait SinkExt<T: Send + 'static>: Sized {
    /// Calls `f` on every record.
    fn for_each<F>(self, name: &str, f: F) -> SinkHandle
    where
        F: Fn(T) + Send + Sync + 'static;

    /// Collects every record in memory; read them with [`Collected::take`] after the job.
    /// With several instances, each instance's records stay in order.
    fn collect(self, name: &str) -> Collected<T>;

    /// Counts records (of items counted in rows, such as Arrow batches: their rows).
    fn count(self, name: &str) -> Counted;

    /// Accepts and drops every record (counted as delivered).
    fn discard(self, name: &str) -> SinkHandle;

    /// Ends a stream of failures (a [`StreamExt::try_map`](crate::StreamExt::try_map)'s
    /// second output, say) in `f`: its records count as **dead-lettered** in the ledger,
    /// never as delivered. `f` is where they go: a log, a file, a topic.
    fn dead_letter<F>(self, name: &str, f: F) -> SinkHandle
    where
        F: Fn(T) + Send + Sync + 'static;

    /// Folds every record into a per-instance state; read the states with
    /// [`FoldSinkHandle::take`] after the job.
    fn fold_sink<S, I, F>(self, name: &str, init: I, f: F) -> FoldSinkHandle<S>
    where
        S: Send + 'static,
        I: Fn() -> S + Send + Sync + 'static,
        F: Fn(&mut S, T) + Send + Sync + 'static;
}

struct FnSink<T, F> {
    f: Arc<F>,
    _t: PhantomData<fn(T)>,
}

impl<T: Send + 'static, F: Fn(T) + Send + Sync + 'static> Sink<T> for FnSink<T, F> {
    fn write(&mut self, records: Vec<T>) -> Result<(), SinkError> {
        let f = &*self.f;
        records.into_iter().for_each(f);
        Ok(())
    }
}

struct FoldSink<S, F> {
    state: Option<S>,
    f: Arc<F>,
    out: Arc<Mutex<Vec<S>>>,
}

impl<T, S, F> Sink<T> for FoldSink<S, F>
where
    T: Send + 'static,
    S: Send + 'static,
    F: Fn(&mut S, T) + Send + Sync + 'static,
{
    fn write(&mut self, records: Vec<T>) -> Result<(), SinkError> {
        let f = &*self.f;
        if let Some(s) = &mut self.state {
            for r in records {
                f(s, r);
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        if let Some(s) = self.state.take() {
            self.out.lock().push(s);
        }
        Ok(())
    }
}

/// Records collected by [`SinkExt::collect`].
#[derive(Debug)]
pub struct Collected<T> {
    parts: Arc<Mutex<Vec<Vec<T>>>>,
    handle: SinkHandle,
}

impl<T> Collected<T> {
    /// Takes every record collected so far, instance by instance.
    pub fn take(&self) -> Vec<T> {
        self.parts.lock().drain(..).flatten().collect()
    }

    /// Records delivered so far.
    pub fn delivered(&self) -> u64 {
        self.handle.delivered()
    }
}

/// The count of [`SinkExt::count`].
#[derive(Debug, Clone)]
pub struct Counted {
    n: Arc<AtomicU64>,
}

impl Counted {
    /// Records counted so far.
    pub fn get(&self) -> u64 {
        self.n.load(Ordering::Relaxed)
    }
}

/// The per-instance states of [`SinkExt::fold_sink`].
#[derive(Debug)]
pub struct FoldSinkHandle<S> {
    out: Arc<Mutex<Vec<S>>>,
    handle: SinkHandle,
}

impl<S> FoldSinkHandle<S> {
    /// The final state of every instance that finished, in the order they finished.
    pub fn take(&self) -> Vec<S> {
        std::mem::take(&mut *self.out.lock())
    }

    /// Records delivered so far.
    pub fn delivered(&self) -> u64 {
        self.handle.delivered()
    }
}

struct CollectSink<T> {
    buf: Vec<T>,
    parts: Arc<Mutex<Vec<Vec<T>>>>,
}

impl<T: Send + 'static> Sink<T> for CollectSink<T> {
    fn write(&mut self, mut records: Vec<T>) -> Result<(), SinkError> {
        self.buf.append(&mut records);
        Ok(())
    }
    fn finish(&mut self) -> Result<(), SinkError> {
        self.parts.lock().push(std::mem::take(&mut self.buf));
        Ok(())
    }
}

struct DeadLetterSink<T, F> {
    f: Arc<F>,
    dead: u64,
    /// Dead letters are counted in records (the rows of items that hold many).
    rows: Rows<T>,
    _t: PhantomData<fn(T)>,
}

impl<T: Send + 'static, F: Fn(T) + Send + Sync + 'static> Sink<T> for DeadLetterSink<T, F> {
    fn write(&mut self, records: Vec<T>) -> Result<(), SinkError> {
        self.dead += self.rows.all(&records) as u64;
        records.into_iter().for_each(&*self.f);
        Ok(())
    }

    fn take_dead_lettered(&mut self) -> u64 {
        std::mem::take(&mut self.dead)
    }
}

struct CountSink<T> {
    n: Arc<AtomicU64>,
    rows: Rows<T>,
}

impl<T: Send + 'static> Sink<T> for CountSink<T> {
    fn write(&mut self, records: Vec<T>) -> Result<(), SinkError> {
        self.n
            .fetch_add(self.rows.all(&records) as u64, Ordering::Relaxed);
        Ok(())
    }
}

impl<T: Send + 'static> SinkExt<T> for Stream<T> {
    fn for_each<F>(self, name: &str, f: F) -> SinkHandle
    where
        F: Fn(T) + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.sink(name, move |_| FnSink {
            f: f.clone(),
            _t: PhantomData,
        })
    }

    fn collect(self, name: &str) -> Collected<T> {
        let parts = Arc::new(Mutex::new(Vec::new()));
        let p = parts.clone();
        let handle = self.sink(name, move |_| CollectSink {
            buf: Vec::new(),
            parts: p.clone(),
        });
        Collected { parts, handle }
    }

    fn count(self, name: &str) -> Counted {
        let n = Arc::new(AtomicU64::new(0));
        let m = n.clone();
        self.sink(name, move |_| CountSink {
            n: m.clone(),
            rows: sluice_engine::rows::rows_of::<T>(),
        });
        Counted { n }
    }

    fn discard(self, name: &str) -> SinkHandle {
        self.for_each(name, |_| {})
    }

    fn dead_letter<F>(self, name: &str, f: F) -> SinkHandle
    where
        F: Fn(T) + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        self.sink(name, move |_| DeadLetterSink {
            f: f.clone(),
            dead: 0,
            rows: sluice_engine::rows::rows_of::<T>(),
            _t: PhantomData,
        })
    }

    fn fold_sink<S, I, F>(self, name: &str, init: I, f: F) -> FoldSinkHandle<S>
    where
        S: Send + 'static,
        I: Fn() -> S + Send + Sync + 'static,
        F: Fn(&mut S, T) + Send + Sync + 'static,
    {
        let out = Arc::new(Mutex::new(Vec::new()));
        let o = out.clone();
        let f = Arc::new(f);
        let handle = self.sink(name, move |_| FoldSink {
            state: Some(init()),
            f: f.clone(),
            out: o.clone(),
        });
        FoldSinkHandle { out, handle }
    }
}
