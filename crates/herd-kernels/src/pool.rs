//! A persistent thread pool for the forward pass.
//!
//! Workers are spawned once and spin briefly before sleeping, so that handing out the ~150
//! matrix products of one decoded token costs microseconds rather than thread start-ups. The
//! caller's thread works too: `ThreadPool::new(n)` runs `n` threads in all.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

type Job = dyn Fn(usize, usize) + Sync;

struct Shared {
    /// Incremented for every job; workers run each epoch once.
    epoch: AtomicUsize,
    /// Workers that have not yet finished the current job.
    pending: AtomicUsize,
    /// The current job, type-erased; valid while `pending > 0` (see `run`).
    job: Mutex<Option<&'static Job>>,
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

impl ThreadPool {
    /// A pool of `n_threads` threads in all (the caller's plus `n_threads - 1` workers).
    pub fn new(n_threads: usize) -> Self {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            job: Mutex::new(None),
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

    /// Runs `f(ith, nth)` on every thread of the pool (`ith` in `0..nth`) and returns when all
    /// have finished.
    pub fn run<F: Fn(usize, usize) + Sync>(&self, f: F) {
        if self.n_threads == 1 {
            f(0, 1);
            return;
        }
        let job: &(dyn Fn(usize, usize) + Sync + '_) = &f;
        // SAFETY: the reference is only used by workers between the epoch increment below and
        // their decrement of `pending`; we wait for `pending == 0` before returning, so `f`
        // outlives every use.
        let job: &'static Job = unsafe {
            std::mem::transmute::<&(dyn Fn(usize, usize) + Sync + '_), &'static Job>(job)
        };
        *self.shared.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
        self.shared
            .pending
            .store(self.n_threads - 1, Ordering::SeqCst);
        {
            let _g = self
                .shared
                .sleepers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.shared.epoch.fetch_add(1, Ordering::SeqCst);
            self.shared.wake.notify_all();
        }
        f(0, self.n_threads);
        while self.shared.pending.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
        }
    }
}

fn worker(shared: Arc<Shared>, ith: usize, nth: usize) {
    let mut seen = 0usize;
    loop {
        let mut spins = 0;
        let epoch = loop {
            let e = shared.epoch.load(Ordering::Acquire);
            if e != seen {
                break e;
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
        };
        seen = epoch;
        let job = *shared.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(job) = job {
            job(ith, nth);
        }
        shared.pending.fetch_sub(1, Ordering::AcqRel);
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
