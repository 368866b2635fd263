//! Stateless record operators. Each works on a whole batch with a tight loop over user code,
//! reusing the input allocation where the types allow it.

use std::sync::Arc;

use sluice_engine::Operator;

/// See [`StreamExt::map`](crate::StreamExt::map).
pub struct Map<F> {
    pub(crate) f: Arc<F>,
}

impl<T, U, F> Operator<T, U> for Map<F>
where
    T: Send + 'static,
    U: Send + 'static,
    F: Fn(T) -> U + Send + Sync + 'static,
{
    fn process(&mut self, input: Vec<T>) -> Vec<U> {
        let f = &*self.f;
        // In place when T and U have the same layout (std's in-place collect).
        input.into_iter().map(f).collect()
    }
}

/// See [`StreamExt::filter`](crate::StreamExt::filter).
pub struct Filter<F> {
    pub(crate) f: Arc<F>,
}

impl<T, F> Operator<T, T> for Filter<F>
where
    T: Send + 'static,
    F: Fn(&T) -> bool + Send + Sync + 'static,
{
    fn process(&mut self, mut input: Vec<T>) -> Vec<T> {
        let f = &*self.f;
        input.retain(f);
        input
    }
}

/// See [`StreamExt::flat_map`](crate::StreamExt::flat_map).
pub struct FlatMap<F> {
    pub(crate) f: Arc<F>,
}

impl<T, U, I, F> Operator<T, U> for FlatMap<F>
where
    T: Send + 'static,
    U: Send + 'static,
    I: IntoIterator<Item = U>,
    F: Fn(T) -> I + Send + Sync + 'static,
{
    fn process(&mut self, input: Vec<T>) -> Vec<U> {
        let f = &*self.f;
        let mut out = Vec::with_capacity(input.len());
        for r in input {
            out.extend(f(r));
        }
        out
    }
}

/// See [`StreamExt::inspect`](crate::StreamExt::inspect).
pub struct Inspect<F> {
    pub(crate) f: Arc<F>,
}

impl<T, F> Operator<T, T> for Inspect<F>
where
    T: Send + 'static,
    F: Fn(&T) + Send + Sync + 'static,
{
    fn process(&mut self, input: Vec<T>) -> Vec<T> {
        let f = &*self.f;
        input.iter().for_each(f);
        input
    }
}
