//! The engine's decode loop allocates nothing once its buffers have grown: a counting global
//! allocator watches 32 decode steps of two sequences.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use herd_model::Model;
use herd_model::engine::{CacheType, Engine, Logits, SeqInput};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn decoding_allocates_nothing_per_token() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/golden/hf-tiny/gemma2");
    let model = Model::open(path).unwrap();
    let mut e = Engine::new(&model, 2).unwrap();
    // One sequence with each cache type.
    let mut a = e.new_cache(128);
    e.set_cache_type(CacheType::F16);
    let mut b = e.new_cache(128);
    let prompt = [5u32, 6, 7, 8, 9];
    e.forward(&mut [
        SeqInput {
            tokens: &prompt,
            cache: &mut a,
            logits: Logits::Last,
        },
        SeqInput {
            tokens: &prompt[..3],
            cache: &mut b,
            logits: Logits::Last,
        },
    ])
    .unwrap();
    let step = |e: &mut Engine, a: &mut _, b: &mut _, t: u32| {
        e.forward(&mut [
            SeqInput {
                tokens: &[t],
                cache: a,
                logits: Logits::Last,
            },
            SeqInput {
                tokens: &[t + 1],
                cache: b,
                logits: Logits::Last,
            },
        ])
        .unwrap()[0]
    };
    step(&mut e, &mut a, &mut b, 10); // the first two-sequence step sizes the buffers
    let before = ALLOCS.load(Ordering::SeqCst);
    let mut sink = 0.0;
    for t in 0..32 {
        sink += step(&mut e, &mut a, &mut b, 20 + t);
    }
    let allocs = ALLOCS.load(Ordering::SeqCst) - before;
    assert!(sink.is_finite());
    assert_eq!(allocs, 0, "{allocs} allocations in 32 decode steps");
}
