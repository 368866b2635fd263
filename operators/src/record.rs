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
        if std::mem::needs_drop::<T>() {
            input.retain(f);
        } else {
            compact::retain_plain(&mut input, f);
        }
        input
    }
}

/// A filter without branches on the predicate, for records without drop glue.
///
/// `Vec::retain` branches on each record's verdict; when the verdicts follow no pattern (W1's
/// `value % 10 < 7` keeps 70% at random) about a third of those branches are mispredicted,
/// which cost W1's source thread more than the rest of the filter. Here every record is
/// copied to the write position and the position advances by the verdict (0 or 1), so the
/// loop has no data-dependent branch. Discarding a record by overwriting it is only right
/// for types that need no drop, hence the `needs_drop` check at the call site.
/// `sluice bench pipeline` measures it (the README's W1 section).
#[allow(unsafe_code)]
mod compact {
    /// Keeps the records of `v` for which `f` holds, in order. For types that do not need
    /// drop; for others it falls back to `Vec::retain`.
    pub(super) fn retain_plain<T, F: Fn(&T) -> bool>(v: &mut Vec<T>, f: F) {
        if std::mem::needs_drop::<T>() {
            v.retain(f);
            return;
        }
        let len = v.len();
        let p = v.as_mut_ptr();
        // SAFETY: while the loop runs the vector claims no record, so a panicking `f` leaks
        // the records (harmless: they need no drop) rather than exposing moved-over ones.
        unsafe { v.set_len(0) };
        let mut w = 0;
        for i in 0..len {
            // SAFETY: `i < len`, and slot `i` still holds the record it held on entry:
            // iteration `j` wrote only slot `w <= j`, below `i`.
            let keep = f(unsafe { &*p.add(i) });
            // SAFETY: `w <= i < len`, both within the allocation; `copy` allows overlap
            // (`w == i`). What slot `w` held was either a record already copied lower down
            // or one the predicate rejected, which needs no drop.
            unsafe { std::ptr::copy(p.add(i), p.add(w), 1) };
            w += usize::from(keep);
        }
        // SAFETY: slots `0..w` hold the kept records, each exactly once, in order.
        unsafe { v.set_len(w) };
    }

    #[cfg(test)]
    mod tests {
        use super::retain_plain;

        #[test]
        fn keeps_exactly_what_retain_keeps_in_order() {
            for len in [0usize, 1, 2, 7, 1000] {
                let v: Vec<(u64, u8)> = (0..len as u64).map(|i| (i * 7919 % 1013, 1)).collect();
                let pred = |r: &(u64, u8)| r.0 % 10 < 7;
                let mut a = v.clone();
                a.retain(pred);
                let mut b = v;
                retain_plain(&mut b, pred);
                assert_eq!(a, b);
            }
        }

        #[test]
        fn every_verdict_pattern_of_ten_records() {
            for mask in 0u32..1024 {
                let v: Vec<u32> = (0..10).collect();
                let pred = |r: &u32| mask & (1 << r) != 0;
                let mut a = v.clone();
                a.retain(pred);
                let mut b = v;
                retain_plain(&mut b, pred);
                assert_eq!(a, b, "mask {mask:b}");
            }
        }

        #[test]
        fn types_with_drop_glue_take_std_retain() {
            let mut v: Vec<String> = (0..10).map(|i| i.to_string()).collect();
            retain_plain(&mut v, |s| s.len() == 1 && s != "3");
            assert_eq!(v, ["0", "1", "2", "4", "5", "6", "7", "8", "9"]);
        }
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
