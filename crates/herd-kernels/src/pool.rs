//! A persistent thread pool for the forward pass.
//!
//! Workers are spawned once and spin briefly before sleeping, so that handing out the ~150
//! matrix products of one decoded token costs microseconds rather than thread start-ups. The
//! caller's thread works too: `ThreadPool::new(n)` runs `n` threads in all.
//!
//! Two kinds of job:
//! - [`ThreadPool::run`]: every thread runs `f(ith, nth)` once; the caller waits for all.
//! - [`ThreadPool::run_dynamic`]: items are claimed from a shared counter by whichever threads
//!   are running. The caller stops waiting for workers that have not started by the time it
//!   has claimed the last item, so on a busy machine (a worker descheduled) the product
//!   degrades to the caller's speed instead of stalling until the worker runs again.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

type Job = dyn Fn(usize, usize) + Sync;

/// The job workers may join.
struct Slot {
    epoch: usize,
    /// Valid while `open` (see `run` / `run_dynamic` for how long that is).
    job: Option<&'static Job>,
    /// Whether workers may still start the job.
    open: bool,
    /// Every worker must run it (`run`) rather than whoever comes (`run_dynamic`).
    all: bool,
}

struct Shared {
    /// `slot.epoch`, readable without the lock; bumped after the slot is filled.
    epoch: AtomicUsize,
    /// `run`: workers that have not yet finished the job.
    pending: AtomicUsize,
    /// `run_dynamic`: workers inside the job. Incremented only under the slot lock while the
    /// job is open, so once the caller has closed it the count can only fall.
    active: AtomicUsize,
    slot: Mutex<Slot>,
    wake: Condvar,
    sleepers: Mutex<()>,
    stop: AtomicBool,
}

pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    n_threads: usize,
}

/// How long a worker spins looking for new work before it sleeps.
const SPIN_ITERS: usize = 20_000;

/// Waits until `done()`: spins first (a worker mid-item finishes in microseconds), then yields
/// the CPU, so that on a machine with more runnable threads than cores a descheduled worker
/// that holds the last part of the job gets to run sooner.
fn wait_until(done: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !done() {
        if spins < 2_000 {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

impl ThreadPool {
    /// A pool of `n_threads` threads in all (the caller's plus `n_threads - 1` workers).
    pub fn new(n_threads: usize) -> Self {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            slot: Mutex::new(Slot {
                epoch: 0,
                job: None,
                open: false,
                all: false,
            }),
            wake: Condvar::new(),
            sleepers: Mutex::new(()),
            stop: AtomicBool::new(false),
        });
        let workers = (1..n_threads)
            .map(|ith| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("herd-worker-{ith}"))
                    .spawn(move || worker(shared, ith, n_threads))
                    .expect("spawning a worker thread")
            })
            .collect();
        ThreadPool {
            shared,
            workers,
            n_threads,
        }
    }

    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.shared.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `job` the current job and wakes the workers.
    fn publish(&self, job: &(dyn Fn(usize, usize) + Sync + '_), all: bool) {
        // SAFETY: the reference is only used by workers that took it from the slot while it
        // was open; both `run` and `run_dynamic` close the slot and wait for every such worker
        // to finish before returning, so `job` outlives every use.
        let job: &'static Job = unsafe {
            std::mem::transmute::<&(dyn Fn(usize, usize) + Sync + '_), &'static Job>(job)
        };
        if all {
            self.shared
                .pending
                .store(self.n_threads - 1, Ordering::SeqCst);
        }
        let epoch = {
            let mut s = self.slot();
            s.epoch += 1;
            s.job = Some(job);
            s.open = true;
            s.all = all;
            s.epoch
        };
        let _g = self
            .shared
            .sleepers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.shared.epoch.store(epoch, Ordering::SeqCst);
        self.shared.wake.notify_all();
    }

    fn close(&self) {
        let mut s = self.slot();
        s.open = false;
        s.job = None;
    }

    /// Runs `f(ith, nth)` on every thread of the pool (`ith` in `0..nth`) and returns when all
    /// have finished.
    pub fn run<F: Fn(usize, usize) + Sync>(&self, f: F) {
        if self.n_threads == 1 {
            f(0, 1);
            return;
        }
        self.publish(&f, true);
        f(0, self.n_threads);
        wait_until(|| self.shared.pending.load(Ordering::Acquire) == 0);
        self.close();
    }

    /// Calls `f(i)` once for every `i` in `0..items`, on whichever threads of the pool are
    /// free, claiming items in increasing order; returns when all calls have returned.
    pub fn run_dynamic<F: Fn(usize) + Sync>(&self, items: usize, f: F) {
        if self.n_threads == 1 || items <= 1 {
            (0..items).for_each(f);
            return;
        }
        let next = AtomicUsize::new(0);
        let job = |_: usize, _: usize| {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items {
                    break;
                }
                f(i);
            }
        };
        self.publish(&job, false);
        job(0, self.n_threads);
        self.close();
        wait_until(|| self.shared.active.load(Ordering::Acquire) == 0);
    }
}

fn worker(shared: Arc<Shared>, ith: usize, nth: usize) {
    let mut seen = 0usize;
    loop {
        let mut spins = 0;
        loop {
            if shared.epoch.load(Ordering::Acquire) != seen {
                break;
            }
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            spins += 1;
            if spins < SPIN_ITERS {
                std::hint::spin_loop();
            } else {
                let g = shared.sleepers.lock().unwrap_or_else(|e| e.into_inner());
                if shared.epoch.load(Ordering::Acquire) == seen
                    && !shared.stop.load(Ordering::Acquire)
                {
                    drop(shared.wake.wait(g).unwrap_or_else(|e| e.into_inner()));
                }
                spins = 0;
            }
        }
        let (epoch, job, all) = {
            let s = shared.slot.lock().unwrap_or_else(|e| e.into_inner());
            let job = if s.open { s.job } else { None };
            if job.is_some() && !s.all {
                shared.active.fetch_add(1, Ordering::SeqCst);
            }
            (s.epoch, job, s.all)
        };
        seen = epoch;
        if let Some(job) = job {
            job(ith, nth);
            if all {
                shared.pending.fetch_sub(1, Ordering::AcqRel);
            } else {
                shared.active.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        {
            let _g = self
                .shared
                .sleepers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.shared.stop.store(true, Ordering::SeqCst);
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// The half-open range of `0..n` that thread `ith` of `nth` takes, in contiguous chunks.
pub fn chunk(n: usize, ith: usize, nth: usize) -> std::ops::Range<usize> {
    let per = n.div_ceil(nth);
    let start = (ith * per).min(n);
    start..((ith + 1) * per).min(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_runs_every_job_once() {
        let pool = ThreadPool::new(3);
        for round in 0..200 {
            let hits = AtomicUsize::new(0);
            let sum = AtomicUsize::new(0);
            pool.run(|ith, nth| {
                assert_eq!(nth, 3);
                hits.fetch_add(1, Ordering::SeqCst);
                sum.fetch_add(ith + round, Ordering::SeqCst);
            });
            assert_eq!(hits.load(Ordering::SeqCst), 3);
            assert_eq!(sum.load(Ordering::SeqCst), 3 + 3 * round);
        }
    }

    #[test]
    fn dynamic_jobs_run_every_item_once_between_static_ones() {
        for threads in [1, 2, 3] {
            let pool = ThreadPool::new(threads);
            for round in 0..300 {
                let items = round % 17;
                let hits: Vec<AtomicUsize> = (0..items).map(|_| AtomicUsize::new(0)).collect();
                pool.run_dynamic(items, |i| {
                    hits[i].fetch_add(1, Ordering::SeqCst);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::SeqCst) == 1));
                // A static job right after must still reach every thread exactly once.
                let ran = AtomicUsize::new(0);
                pool.run(|_, nth| {
                    assert_eq!(nth, threads);
                    ran.fetch_add(1, Ordering::SeqCst);
                });
                assert_eq!(ran.load(Ordering::SeqCst), threads);
            }
        }
    }

    #[test]
    fn chunks_cover_the_range_exactly() {
        for n in 0..20 {
            for nth in 1..5 {
                let mut covered: Vec<usize> = (0..nth).flat_map(|i| chunk(n, i, nth)).collect();
                covered.sort();
                assert_eq!(covered, (0..n).collect::<Vec<_>>());
            }
        }
    }
}
