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

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// A job, behind a thin pointer so it can be published atomically.
struct JobRef<'a>(&'a (dyn Fn(usize, usize) + Sync));

/// `state` packs the job's epoch, whether it is open (workers may still join it) and how many
/// workers are inside it, so that joining is one compare-and-swap: no lock a descheduled worker
/// could hold while the caller needs it (on a busy machine that cost milliseconds per job).
const ACTIVE: usize = (1 << 16) - 1;
const OPEN: usize = 1 << 16;
const EPOCH_SHIFT: u32 = 17;

struct Shared {
    /// `epoch << EPOCH_SHIFT | OPEN? | active workers`.
    state: AtomicUsize,
    /// The current job; valid for workers that joined it while it was open (the caller waits
    /// for them before the job goes out of scope).
    job: AtomicPtr<JobRef<'static>>,
    /// The current job must run on every thread (`run`), not just on whoever comes.
    all: AtomicBool,
    /// `run`: workers that have not yet finished the job.
    pending: AtomicUsize,
    /// Workers asleep (or about to sleep) on `wake`; publishing notifies only if any are.
    sleeping: AtomicUsize,
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
        assert!(n_threads <= ACTIVE, "too many threads");
        let shared = Arc::new(Shared {
            state: AtomicUsize::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            all: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            sleeping: AtomicUsize::new(0),
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

    /// Makes `job` the current, open job and wakes sleeping workers. The previous job must be
    /// closed with no worker inside (both `run` and `run_dynamic` wait for that).
    fn publish(&self, job: &JobRef<'_>, all: bool) {
        let sh = &*self.shared;
        if all {
            sh.pending.store(self.n_threads - 1, Ordering::Relaxed);
        }
        sh.all.store(all, Ordering::Relaxed);
        // Lifetime erased: workers only dereference it after joining the job, and the caller
        // waits for every joined worker to leave before `job` goes out of scope.
        let ptr = (job as *const JobRef<'_>)
            .cast::<JobRef<'static>>()
            .cast_mut();
        sh.job.store(ptr, Ordering::Relaxed);
        let epoch = (sh.state.load(Ordering::Relaxed) >> EPOCH_SHIFT) + 1;
        // SeqCst: releases the stores above, and is ordered before the read of `sleeping`
        // (a worker going to sleep increments it before re-checking the state).
        sh.state
            .store(epoch << EPOCH_SHIFT | OPEN, Ordering::SeqCst);
        if sh.sleeping.load(Ordering::SeqCst) > 0 {
            let _g = sh.sleepers.lock().unwrap_or_else(|e| e.into_inner());
            sh.wake.notify_all();
        }
    }

    /// Closes the current job to newcomers and waits for those inside to leave.
    fn close_and_drain(&self) {
        let sh = &*self.shared;
        sh.state.fetch_and(!OPEN, Ordering::SeqCst);
        wait_until(|| sh.state.load(Ordering::Acquire) & ACTIVE == 0);
    }

    /// Runs `f(ith, nth)` on every thread of the pool (`ith` in `0..nth`) and returns when all
    /// have finished.
    pub fn run<F: Fn(usize, usize) + Sync>(&self, f: F) {
        if self.n_threads == 1 {
            f(0, 1);
            return;
        }
        // A named local, not a temporary: workers use it until `close_and_drain` returns.
        let job = JobRef(&f);
        self.publish(&job, true);
        f(0, self.n_threads);
        wait_until(|| self.shared.pending.load(Ordering::Acquire) == 0);
        self.close_and_drain();
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
        let job_ref = JobRef(&job);
        self.publish(&job_ref, false);
        job(0, self.n_threads);
        self.close_and_drain();
    }
}

fn worker(shared: Arc<Shared>, ith: usize, nth: usize) {
    let sh = &*shared;
    let mut seen = 0usize;
    let mut spins = 0usize;
    loop {
        let st = sh.state.load(Ordering::Acquire);
        let epoch = st >> EPOCH_SHIFT;
        if epoch == seen {
            if sh.stop.load(Ordering::Acquire) {
                return;
            }
            spins += 1;
            if spins < SPIN_ITERS {
                std::hint::spin_loop();
            } else {
                sh.sleeping.fetch_add(1, Ordering::SeqCst);
                let g = sh.sleepers.lock().unwrap_or_else(|e| e.into_inner());
                if sh.state.load(Ordering::SeqCst) >> EPOCH_SHIFT == seen
                    && !sh.stop.load(Ordering::SeqCst)
                {
                    drop(sh.wake.wait(g).unwrap_or_else(|e| e.into_inner()));
                } else {
                    drop(g);
                }
                sh.sleeping.fetch_sub(1, Ordering::SeqCst);
                spins = 0;
            }
            continue;
        }
        seen = epoch;
        spins = 0;
        // Join the job if it is still this epoch's and open.
        let mut cur = st;
        let joined = loop {
            if cur >> EPOCH_SHIFT != epoch || cur & OPEN == 0 {
                break false;
            }
            match sh
                .state
                .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break true,
                Err(now) => cur = now,
            }
        };
        if joined {
            let all = sh.all.load(Ordering::Relaxed);
            // SAFETY: published before the state that let us join (acquired by the CAS); the
            // caller keeps it alive until we leave (decrement below).
            let job = unsafe { &*sh.job.load(Ordering::Relaxed) };
            (job.0)(ith, nth);
            if all {
                sh.pending.fetch_sub(1, Ordering::AcqRel);
            }
            sh.state.fetch_sub(1, Ordering::Release);
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
                if round % 50 == 49 {
                    // Long enough for the workers to stop spinning and sleep.
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
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
