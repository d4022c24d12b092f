//! Times herd's matrix products on real model shapes, scalar reference against SIMD.
//!
//! `cargo run --release -p herd-kernels --example kernels [-- options]`
//!
//! For each model and weight type it builds one transformer layer's projections (q, k, v, o,
//! gate, up, down) with random but valid blocks, replicated until the set is well past the
//! L3 cache (so decode reads come from memory, as in a real model), and times:
//! - decode, n = 1: one product per matrix of the set; reported as weight GB/s;
//! - prefill, n = 512: one layer's products; reported as GFLOP/s (2·rows·cols·n per matrix).
//!
//! Variants are timed alternately in the same run and the median of the repeats is kept, as
//! the machine is shared. The scalar reference does one dot per (row, token), so its speed
//! does not depend on n: its prefill figure is measured with `--scalar-n` tokens (default 32)
//! to keep the run short.
//!
//! Options: `--models tiny,qwen` `--types f16,q8_0,q4_0,q4_k,q6_k,q5_0` (a `_x8` suffix, as in
//! `q4_k_x8`, times Q4_K, Q5_K, Q6_K, Q4_0, Q4_1, Q5_0, Q5_1 or Q8_0 in the grouped layout of
//! `herd_kernels::interleave`, as the engine holds them) `--threads 1,2`
//! `--reps N` `--set-mb MB` `--n N` `--scalar-n N` `--no-scalar` `--head` (adds the output
//! projection at n = 1) `--shape ROWSxCOLS` (one matrix of that shape instead of the layers).
//! For tuning on a busy machine: `--cpu` (single-threaded rows timed by the thread's CPU time,
//! so time spent descheduled does not count) and `--min` (fastest repeat, not the median).
//!
//! The engine holds its matrices on huge pages (`herd_model::tensor::place_matrices`); to time
//! the set that way too, run with `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (glibc 2.35 or later
//! then asks for huge pages under its large allocations).
//!
//! Qwen2.5-0.5B's width (896) is not a multiple of 256, so it has no Q4_K/Q6_K rows (llama.cpp
//! stores those tensors as Q5_0 / Q8_0 in its "Q4_K_M" files).

use std::time::Instant;

use herd_kernels::matmul::{WeightRef, matmul_with};
use herd_kernels::{GgmlType, Isa, Layout, ThreadPool, interleave, quantize_row};

struct Model {
    name: &'static str,
    hidden: usize,
    ffn: usize,
    q: usize,
    kv: usize,
    vocab: usize,
}

const MODELS: [Model; 2] = [
    Model {
        name: "tinyllama-1.1b",
        hidden: 2048,
        ffn: 5632,
        q: 2048,
        kv: 256,
        vocab: 32000,
    },
    Model {
        name: "qwen2.5-0.5b",
        hidden: 896,
        ffn: 4864,
        q: 896,
        kv: 128,
        vocab: 151936,
    },
];

impl Model {
    /// `(rows, cols)` of one layer's projections.
    fn layer(&self) -> Vec<(usize, usize)> {
        if let Some(s) = SHAPE.get().copied().flatten() {
            return vec![s];
        }
        let h = self.hidden;
        vec![
            (self.q, h),
            (self.kv, h),
            (self.kv, h),
            (h, self.q),
            (self.ffn, h),
            (self.ffn, h),
            (h, self.ffn),
        ]
    }
}

struct Opts {
    models: Vec<String>,
    types: Vec<(GgmlType, Layout)>,
    threads: Vec<usize>,
    reps: usize,
    set_bytes: usize,
    n: usize,
    scalar_n: usize,
    scalar: bool,
    head: bool,
    cpu: bool,
    /// `--shape ROWSxCOLS`: time this one matrix instead of the models' layers.
    shape: Option<(usize, usize)>,
}

fn parse() -> Opts {
    let mut o = Opts {
        models: vec!["tiny".into(), "qwen".into()],
        types: ["f16", "q8_0", "q4_0", "q4_k", "q6_k", "q5_0"]
            .iter()
            .map(|t| (GgmlType::from_name(t).unwrap(), Layout::Rows))
            .collect(),
        threads: vec![1, 2],
        reps: 5,
        set_bytes: 160 << 20,
        n: 512,
        scalar_n: 32,
        scalar: true,
        head: false,
        cpu: false,
        shape: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let val = || args.get(i + 1).cloned().unwrap_or_default();
        let list = |v: String| v.split(',').map(str::to_string).collect::<Vec<_>>();
        match args[i].as_str() {
            "--models" => o.models = list(val()),
            "--types" => {
                o.types = list(val())
                    .iter()
                    .map(|t| match t.strip_suffix("_x8") {
                        Some(base) => (GgmlType::from_name(base).unwrap(), Layout::Grouped),
                        None => (
                            GgmlType::from_name(t).unwrap_or_else(|| panic!("type {t}")),
                            Layout::Rows,
                        ),
                    })
                    .collect()
            }
            "--threads" => o.threads = list(val()).iter().map(|t| t.parse().unwrap()).collect(),
            "--reps" => o.reps = val().parse().unwrap(),
            "--set-mb" => o.set_bytes = val().parse::<usize>().unwrap() << 20,
            "--n" => o.n = val().parse().unwrap(),
            "--scalar-n" => o.scalar_n = val().parse().unwrap(),
            "--no-scalar" => {
                o.scalar = false;
                i -= 1;
            }
            "--shape" => {
                let v = val();
                let (r, c) = v.split_once('x').expect("--shape ROWSxCOLS");
                o.shape = Some((r.parse().unwrap(), c.parse().unwrap()));
            }
            "--min" => {
                USE_MIN.store(true, std::sync::atomic::Ordering::Relaxed);
                i -= 1;
            }
            "--cpu" => {
                o.cpu = true;
                i -= 1;
            }
            "--head" => {
                o.head = true;
                i -= 1;
            }
            a => panic!("unknown option {a}"),
        }
        i += 2;
    }
    o
}

/// Nanoseconds this thread has run on a CPU: `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`, which
/// (unlike /proc's schedstat) includes the current time slice. Raw syscall, as the crate has
/// no libc dependency; 0 elsewhere.
fn thread_cpu_ns() -> u64 {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        let mut ts = [0i64; 2];
        let ret: i64;
        // SAFETY: clock_gettime(CLOCK_THREAD_CPUTIME_ID = 3, &ts) writes two i64 into `ts`;
        // the syscall clobbers rcx and r11 only.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") 228i64 => ret,
                in("rdi") 3i64,
                in("rsi") ts.as_mut_ptr(),
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        if ret == 0 {
            return ts[0] as u64 * 1_000_000_000 + ts[1] as u64;
        }
    }
    0
}

/// A small, fast PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn float(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// Offsets of the f16 scales in a block: random bytes there could be NaN or huge.
fn scale_offsets(t: GgmlType) -> &'static [usize] {
    match t {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q6_K => &[208],
        _ => &[],
    }
}

/// A `rows × cols` matrix of random valid blocks.
fn random_matrix(t: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let bytes = rows * t.row_bytes(cols).unwrap();
    if !t.is_quantized() {
        let x: Vec<f32> = (0..rows * cols).map(|_| rng.float() * 0.1).collect();
        let mut w = vec![0u8; bytes];
        quantize_row(t, &x, &mut w);
        return w;
    }
    let mut w: Vec<u8> = Vec::with_capacity(bytes);
    while w.len() < bytes {
        w.extend_from_slice(&rng.next().to_le_bytes());
    }
    w.truncate(bytes);
    let scale = half::f16::from_f32(0.01).to_bits().to_le_bytes();
    for b in w.chunks_exact_mut(t.type_size()) {
        for &o in scale_offsets(t) {
            b[o..o + 2].copy_from_slice(&scale);
        }
    }
    w
}

/// The median of the repeats, or their minimum with `--min` (for tuning compute-bound
/// kernels on a busy machine, where interference only ever adds time).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if USE_MIN.load(std::sync::atomic::Ordering::Relaxed) {
        v[0]
    } else {
        v[v.len() / 2]
    }
}

static SHAPE: std::sync::OnceLock<Option<(usize, usize)>> = std::sync::OnceLock::new();

static USE_MIN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

struct Bench<'a> {
    pool: &'a ThreadPool,
    /// Time by this thread's CPU time instead of the wall clock (single-threaded runs on a
    /// busy machine: time spent descheduled is not the kernel's).
    cpu: bool,
    layout: Layout,
    scratch: Vec<u8>,
    y: Vec<f32>,
}

impl Bench<'_> {
    /// Seconds for one product of every matrix in `set` with `n` tokens of `x`.
    fn time(
        &mut self,
        isa: Isa,
        set: &[(usize, usize, Vec<u8>)],
        t: GgmlType,
        x: &[f32],
        n: usize,
    ) -> f64 {
        let (start, cpu0) = (Instant::now(), thread_cpu_ns());
        for (rows, cols, data) in set {
            let w = WeightRef {
                layout: self.layout,
                ..WeightRef::rows(t, *rows, *cols, data)
            };
            let y = &mut self.y[..n * rows];
            matmul_with(isa, self.pool, w, &x[..n * cols], n, y, &mut self.scratch);
        }
        if self.cpu {
            (thread_cpu_ns() - cpu0) as f64 * 1e-9
        } else {
            start.elapsed().as_secs_f64()
        }
    }
}

fn main() {
    let o = parse();
    SHAPE.set(o.shape).unwrap();
    println!(
        "isa: {:?} (available: {:?})",
        herd_kernels::simd::isa(),
        Isa::available()
    );
    let simd = *Isa::available().last().unwrap();
    println!(
        "decode: weight GB/s at n=1 over a {} MB set; prefill: GFLOP/s at n={} (scalar at n={})\n",
        o.set_bytes >> 20,
        o.n,
        o.scalar_n
    );
    println!(
        "| model | type | threads | n=1 scalar GB/s | n=1 SIMD GB/s | n={} scalar GFLOP/s | n={} SIMD GFLOP/s | prefill speed-up |",
        o.n, o.n
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for m in MODELS
        .iter()
        .filter(|m| o.models.iter().any(|s| m.name.starts_with(s.as_str())))
    {
        let maxcols = m.ffn.max(m.hidden);
        let maxrows = m.ffn.max(m.vocab);
        let x: Vec<f32> = (0..o.n.max(o.scalar_n) * maxcols)
            .map(|_| rng.float())
            .collect();
        for &(t, layout) in &o.types {
            if m.layer().iter().any(|&(_, c)| t.row_bytes(c).is_none()) {
                // As in real files: llama.cpp stores such tensors in another type.
                println!(
                    "| {} | {t} | - | rows of {} are not whole {t} blocks | | | | |",
                    m.name, m.hidden
                );
                continue;
            }
            let layer: Vec<(usize, usize, Vec<u8>)> = m
                .layer()
                .into_iter()
                .map(|(r, c)| {
                    let m = random_matrix(t, r, c, &mut rng);
                    if layout == Layout::Rows {
                        return (r, c, m);
                    }
                    let mut g = vec![0u8; interleave::len(t, r, c)];
                    interleave::interleave(&ThreadPool::new(1), t, &m, r, c, &mut g);
                    (r, c, g)
                })
                .collect();
            let layer_bytes: usize = layer.iter().map(|l| l.2.len()).sum();
            // Replicas of the layer, as in a model's stack, so decode reads from memory.
            let copies = o.set_bytes.div_ceil(layer_bytes).max(1);
            let mut set: Vec<(usize, usize, Vec<u8>)> = Vec::new();
            for _ in 0..copies {
                for l in &layer {
                    set.push((l.0, l.1, l.2.clone()));
                }
            }
            let set_bytes = (copies * layer_bytes) as f64;
            let flops =
                |n: usize| -> f64 { layer.iter().map(|l| 2.0 * (l.0 * l.1 * n) as f64).sum() };
            for &th in &o.threads {
                let pool = ThreadPool::new(th);
                let mut b = Bench {
                    pool: &pool,
                    cpu: o.cpu && th == 1,
                    layout,
                    scratch: Vec::new(),
                    y: vec![0f32; o.n.max(o.scalar_n) * maxrows],
                };
                // Warm-up (page faults, packing buffers), then alternate.
                b.time(simd, &set, t, &x, 1);
                let (mut d_s, mut d_v, mut p_s, mut p_v) = (vec![], vec![], vec![], vec![]);
                for _ in 0..o.reps {
                    if o.scalar {
                        d_s.push(b.time(Isa::Scalar, &set, t, &x, 1));
                    }
                    d_v.push(b.time(simd, &set, t, &x, 1));
                }
                let preps = o.reps.div_ceil(2).max(1);
                for _ in 0..preps {
                    if o.scalar {
                        p_s.push(b.time(Isa::Scalar, &layer, t, &x, o.scalar_n));
                    }
                    p_v.push(b.time(simd, &layer, t, &x, o.n));
                }
                let gbs = |v: Vec<f64>| {
                    if v.is_empty() {
                        "-".to_string()
                    } else {
                        format!("{:.2}", set_bytes / median(v) / 1e9)
                    }
                };
                let gfl = |v: Vec<f64>, n: usize| {
                    if v.is_empty() {
                        None
                    } else {
                        Some(flops(n) / median(v) / 1e9)
                    }
                };
                let ps = gfl(p_s, o.scalar_n);
                let pv = gfl(p_v, o.n);
                let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
                let ratio = match (ps, pv) {
                    (Some(s), Some(v)) => format!("{:.1}×", v / s),
                    _ => "-".into(),
                };
                println!(
                    "| {} | {}{} | {} | {} | {} | {} | {} | {} |",
                    m.name,
                    t,
                    if layout == Layout::Rows { "" } else { " x8" },
                    th,
                    gbs(d_s),
                    gbs(d_v),
                    fmt(ps),
                    fmt(pv),
                    ratio
                );
            }
            if o.head {
                let head = vec![(
                    m.vocab,
                    m.hidden,
                    random_matrix(t, m.vocab, m.hidden, &mut rng),
                )];
                for &th in &o.threads {
                    let pool = ThreadPool::new(th);
                    let mut b = Bench {
                        pool: &pool,
                        cpu: o.cpu && th == 1,
                        layout: Layout::Rows,
                        scratch: Vec::new(),
                        y: vec![0f32; m.vocab],
                    };
                    b.time(simd, &head, t, &x, 1);
                    let v: Vec<f64> = (0..o.reps).map(|_| b.time(simd, &head, t, &x, 1)).collect();
                    println!(
                        "| {} head {}×{} | {} | {} | - | {:.2} | - | - | - |",
                        m.name,
                        m.vocab,
                        m.hidden,
                        t,
                        th,
                        head[0].2.len() as f64 / median(v) / 1e9
                    );
                }
            }
        }
    }
}
