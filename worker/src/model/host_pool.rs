//! The threads the host kernels split work over: the calling thread and one persistent helper
//! per other core. The calling thread works too (it would otherwise only wait), so no thread
//! spins for work next to it while it runs Burn's single-threaded operations, and no thread is
//! started per call.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use rayon::{ThreadPool, ThreadPoolBuilder};

/// One helper per core after the first; `None` on one core (or when no thread can be started).
fn helpers() -> Option<&'static ThreadPool> {
    static POOL: OnceLock<Option<ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cores < 2 {
            return None;
        }
        ThreadPoolBuilder::new()
            .num_threads(cores - 1)
            .thread_name(|i| format!("host-kernel-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Threads [`for_each`] runs on: the caller and its helpers.
pub fn threads() -> usize {
    1 + helpers().map_or(0, ThreadPool::current_num_threads)
}

thread_local! {
    /// Set while this thread works on an item of a [`for_each`].
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as working on an item until dropped (also when the work panics).
struct Inside;

impl Inside {
    fn enter() -> Self {
        INSIDE.set(true);
        Inside
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        INSIDE.set(false);
    }
}

/// Runs `work` on every item, in order of `items` but on whichever thread is free: the caller
/// and the helpers each take the next item until none is left; returns when all are done. A
/// `for_each` inside another's item runs on its own thread (the others are busy with items of
/// the outer one).
pub fn for_each<T: Send>(items: Vec<T>, work: impl Fn(T) + Sync) {
    for_each_on(items, usize::MAX, work);
}

/// [`for_each`] on at most `threads` threads (the caller included): for work whose items each
/// hold a lot of memory while they run.
pub fn for_each_on<T: Send>(items: Vec<T>, threads: usize, work: impl Fn(T) + Sync) {
    let pool = match helpers() {
        Some(pool) if items.len() > 1 && threads > 1 && !INSIDE.get() => pool,
        _ => return items.into_iter().for_each(work),
    };
    let slots: Vec<Mutex<Option<T>>> = items.into_iter().map(|i| Mutex::new(Some(i))).collect();
    let next = AtomicUsize::new(0);
    let drain = || loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(slot) = slots.get(index) else {
            break;
        };
        let item = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(item) = item {
            let _inside = Inside::enter();
            work(item);
        }
    };
    let helpers = pool
        .current_num_threads()
        .min(slots.len() - 1)
        .min(threads - 1);
    pool.in_place_scope(|scope| {
        for _ in 0..helpers {
            scope.spawn(|_| drain());
        }
        drain();
    });
}

/// Runs `work(start, chunk)` on consecutive chunks of `out` of `len` values (the last may be
/// shorter; `start` is the chunk's offset in `out`), as [`for_each`] does; `len` is rounded up
/// to a multiple of `align` so a chunk never splits a row of `align` values.
pub fn chunks_mut(
    out: &mut [f32],
    len: usize,
    align: usize,
    work: impl Fn(usize, &mut [f32]) + Sync,
) {
    let align = align.max(1);
    let len = len.max(1).div_ceil(align) * align;
    let chunks: Vec<(usize, &mut [f32])> = out
        .chunks_mut(len)
        .enumerate()
        .map(|(i, chunk)| (i * len, chunk))
        .collect();
    for_each(chunks, |(start, chunk)| work(start, chunk));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_worked_on_once() {
        for n in [0, 1, 2, 5, 100] {
            let seen = Mutex::new(vec![0u32; n]);
            for_each((0..n).collect(), |i: usize| {
                seen.lock().expect("not poisoned")[i] += 1;
            });
            assert!(seen
                .into_inner()
                .expect("not poisoned")
                .iter()
                .all(|&c| c == 1));
        }
        assert!(threads() >= 1);
    }

    #[test]
    fn items_can_hold_mutable_borrows() {
        let mut out = vec![0usize; 64];
        let chunks: Vec<(usize, &mut [usize])> = out.chunks_mut(8).enumerate().collect();
        for_each(chunks, |(index, chunk)| {
            chunk.iter_mut().for_each(|v| *v = index)
        });
        assert!(out.iter().enumerate().all(|(i, v)| *v == i / 8));
    }

    #[test]
    fn a_limit_of_one_thread_runs_everything_on_the_caller() {
        let here = std::thread::current().id();
        let seen = Mutex::new(0);
        for_each_on((0..9).collect(), 1, |_: usize| {
            assert_eq!(std::thread::current().id(), here);
            *seen.lock().expect("not poisoned") += 1;
        });
        assert_eq!(seen.into_inner().expect("not poisoned"), 9);
    }

    #[test]
    fn a_nested_for_each_runs_on_its_own_thread() {
        let seen = Mutex::new(Vec::new());
        for_each((0..4).collect(), |outer: usize| {
            let here = std::thread::current().id();
            for_each((0..3).collect(), |inner: usize| {
                assert_eq!(std::thread::current().id(), here);
                seen.lock().expect("not poisoned").push((outer, inner));
            });
        });
        assert_eq!(seen.into_inner().expect("not poisoned").len(), 12);
    }

    #[test]
    fn chunks_cover_the_buffer_in_whole_rows() {
        let mut out = vec![0f32; 100];
        chunks_mut(&mut out, 7, 10, |start, chunk| {
            assert_eq!(start % 10, 0);
            assert!(chunk.len() == 10 || start + chunk.len() == 100);
            chunk
                .iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = (start + i) as f32);
        });
        assert!(out.iter().enumerate().all(|(i, v)| *v == i as f32));
    }
}
