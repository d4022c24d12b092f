//! The inference engine: the same decoder as [`crate::reference`], over memory-mapped weights
//! in their stored types and herd's own kernels, with buffers allocated once and reused.
//!
//! One call to [`Engine::forward`] runs any number of sequences together: their new tokens are
//! stacked into one `[N, H]` activation matrix so that every weight matrix is read once per
//! step, whatever the number of sequences (the server's continuous batching relies on this);
//! attention then runs per sequence over that sequence's own [`KvCache`].

mod attention;
mod cache;
mod lora;
mod ops;

pub use cache::{CacheType, KvCache};
pub use lora::{LayerLora, LoraPair};

use herd_kernels::matmul::{WeightRef, matmul};
use herd_kernels::pool::ThreadPool;

use crate::error::{Error, Result};
use crate::model::{LayerTensors, Model, ModelTensors};
use crate::spec::ModelSpec;
use crate::tensor::StoredTensor;

/// Which positions of a sequence's new tokens need output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    None,
    Last,
    All,
    /// Every position's final hidden state (after the last norm, before the output
    /// projection) instead of logits: `[n, hidden_size]` rows, for embeddings.
    Hidden,
}

/// New tokens of one sequence for one forward call.
pub struct SeqInput<'a> {
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
    pub logits: Logits,
}

/// Per-layer vectors the engine keeps as f32 (norm weights with their offset, biases).
struct LayerVecs {
    attn_norm: Vec<f32>,
    mlp_norm: Vec<f32>,
    attn_out_norm: Option<Vec<f32>>,
    mlp_out_norm: Option<Vec<f32>>,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    q_bias: Option<Vec<f32>>,
    k_bias: Option<Vec<f32>>,
    v_bias: Option<Vec<f32>>,
}

/// Buffers of the forward pass, grown to the largest batch seen and then reused.
#[derive(Default)]
struct Buffers {
    x: Vec<f32>,
    xn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    o: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// Per thread: attention scores over one sequence's keys.
    scores: Vec<Vec<f32>>,
    /// Per thread: one key/value head's keys, then values, widened from an f16 cache for a
    /// prompt's tiles (`[2][capacity][head_dim]`).
    wide: Vec<Vec<f32>>,
    /// Per new token: (sequence index, position).
    rows: Vec<(usize, usize)>,
    /// Attention's items for the current step (`attention::plan`).
    work: Vec<attention::Item>,
    out_rows: Vec<usize>,
    final_x: Vec<f32>,
    logits: Vec<f32>,
    quant: Vec<u8>,
    inv_freq: Vec<f32>,
    lora: lora::Scratch,
}

fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

pub struct Engine {
    spec: ModelSpec,
    t: ModelTensors,
    layers: Vec<LayerVecs>,
    final_norm: Vec<f32>,
    pool: ThreadPool,
    buf: Buffers,
    /// Run-time adapters, one entry per layer (empty: none).
    lora: Vec<LayerLora>,
    /// The element type of the caches [`Engine::new_cache`] makes.
    cache_type: CacheType,
}

/// Puts the matrices decode streams in one huge-page map, in the order decode reads them
/// (`tensor::place_matrices`), those that decode faster grouped (`herd_kernels::interleave`)
/// in that layout; prefill reads the same copy. The output projection is placed even when it
/// is tied to the embeddings: the lookup keeps its own rows view of the file, of which it
/// touches only the tokens' rows.
fn place_matrices(t: &mut ModelTensors, pool: &ThreadPool) {
    let mut all: Vec<&mut StoredTensor> = Vec::new();
    for l in &mut t.layers {
        all.extend(l.matrices_mut());
    }
    all.push(&mut t.lm_head);
    crate::tensor::place_matrices(all, pool);
}

impl Engine {
    /// An engine over `model`'s weights with `threads` threads.
    pub fn new(model: &Model, threads: usize) -> Result<Self> {
        Self::build(model, threads, true)
    }

    /// An engine that keeps every matrix in ggml's rows, as the file has them: what the
    /// grouped layout is compared against (`HERD_INTERLEAVE=0` does this process-wide).
    pub fn with_ggml_rows(model: &Model, threads: usize) -> Result<Self> {
        Self::build(model, threads, false)
    }

    fn build(model: &Model, threads: usize, group: bool) -> Result<Self> {
        let spec = model.spec.clone();
        let t = model.tensors()?;
        let off = spec.norm_weight_offset;
        let norm =
            |s: &StoredTensor| -> Vec<f32> { s.to_f32().into_iter().map(|w| w + off).collect() };
        let opt_norm = |s: &Option<StoredTensor>| s.as_ref().map(norm);
        let opt = |s: &Option<StoredTensor>| s.as_ref().map(StoredTensor::to_f32);
        let layers = t
            .layers
            .iter()
            .map(|l| LayerVecs {
                attn_norm: norm(&l.attn_norm),
                mlp_norm: norm(&l.mlp_norm),
                attn_out_norm: opt_norm(&l.attn_out_norm),
                mlp_out_norm: opt_norm(&l.mlp_out_norm),
                q_norm: opt_norm(&l.q_norm),
                k_norm: opt_norm(&l.k_norm),
                q_bias: opt(&l.q_bias),
                k_bias: opt(&l.k_bias),
                v_bias: opt(&l.v_bias),
            })
            .collect();
        for (name, w) in t
            .layers
            .iter()
            .flat_map(|l| {
                [
                    ("q", &l.q),
                    ("k", &l.k),
                    ("v", &l.v),
                    ("o", &l.o),
                    ("gate", &l.gate),
                    ("up", &l.up),
                    ("down", &l.down),
                ]
            })
            .chain([("lm_head", &t.lm_head)])
        {
            if !w.dtype.is_weight_type() || w.dtype.row_bytes(w.row_len()).is_none() {
                return Err(Error::invalid(
                    &model.path,
                    format!("{name} weights of type {} cannot be multiplied", w.dtype),
                ));
            }
        }
        let final_norm = norm(&t.final_norm);
        let buf = Buffers {
            inv_freq: spec.rope.inv_freq(spec.context_length),
            ..Default::default()
        };
        let pool = ThreadPool::new(threads);
        let mut t = t;
        if group {
            place_matrices(&mut t, &pool);
        }
        Ok(Engine {
            spec,
            t,
            layers,
            final_norm,
            pool,
            buf,
            lora: vec![],
            cache_type: CacheType::default(),
        })
    }

    /// Makes later [`Engine::new_cache`] calls use `t` (caches made before keep theirs).
    pub fn set_cache_type(&mut self, t: CacheType) {
        self.cache_type = t;
    }

    pub fn cache_type(&self) -> CacheType {
        self.cache_type
    }

    /// How many matrices this engine holds grouped for decoding (`herd_kernels::interleave`).
    pub fn grouped_matrices(&self) -> usize {
        self.t
            .layers
            .iter()
            .flat_map(LayerTensors::matrices)
            .chain([&self.t.lm_head])
            .filter(|w| w.layout != herd_kernels::Layout::Rows)
            .count()
    }

    /// Applies `lora` (one entry per layer) in every later forward pass, beside the base
    /// weights; an empty vector removes the adapters.
    pub fn set_lora(&mut self, lora: Vec<LayerLora>) -> Result<()> {
        let s = &self.spec;
        if !lora.is_empty() && lora.len() != s.n_layers {
            return Err(Error::Usage(format!(
                "LoRA for {} layers given to a model of {}",
                lora.len(),
                s.n_layers
            )));
        }
        let (h, qd, kvd, ff) = (s.hidden_size, s.q_dim(), s.kv_dim(), s.intermediate_size);
        for (li, l) in lora.iter().enumerate() {
            for (name, pair) in l.pairs() {
                let (inp, out) = match name {
                    "q" => (h, qd),
                    "k" | "v" => (h, kvd),
                    "o" => (qd, h),
                    "gate" | "up" => (h, ff),
                    _ => (ff, h),
                };
                if let Some(p) = pair {
                    lora::check(p, li, name, inp, out)?;
                }
            }
        }
        self.lora = lora;
        Ok(())
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub fn threads(&self) -> usize {
        self.pool.n_threads()
    }

    /// A cache for a sequence of up to `capacity` tokens, of the engine's cache type.
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache::new(&self.spec, capacity, self.cache_type)
    }

    /// Runs the new tokens of every sequence in `seqs` and appends them to their caches.
    /// Returns the logits asked for, `[n, V]`, in order of sequence and position (or, when
    /// every sequence asks for [`Logits::Hidden`], the final hidden states `[n, H]`).
    pub fn forward(&mut self, seqs: &mut [SeqInput<'_>]) -> Result<&[f32]> {
        let Engine {
            spec,
            t: tensors,
            layers,
            final_norm,
            pool,
            buf: b,
            lora: adapters,
            ..
        } = self;
        let spec = &*spec;
        let (h, qd, kvd, ff, v) = (
            spec.hidden_size,
            spec.q_dim(),
            spec.kv_dim(),
            spec.intermediate_size,
            spec.vocab_size,
        );
        let hidden = seqs.iter().filter(|s| s.logits == Logits::Hidden).count();
        if hidden != 0 && hidden != seqs.len() {
            return Err(Error::Usage(
                "hidden states and logits cannot be asked for in the same call".into(),
            ));
        }
        for (si, s) in seqs.iter().enumerate() {
            if s.cache.kv_dim != kvd
                || s.cache.head_dim != spec.head_dim
                || s.cache.k.len() != spec.n_layers * s.cache.capacity * kvd
            {
                return Err(Error::Usage(format!(
                    "sequence {si}: cache was made for another model"
                )));
            }
            if s.cache.len + s.tokens.len() > s.cache.capacity {
                return Err(Error::Usage(format!(
                    "sequence {si}: {} cached + {} new tokens exceed the context of {} tokens",
                    s.cache.len,
                    s.tokens.len(),
                    s.cache.capacity
                )));
            }
            if let Some(&bad) = s.tokens.iter().find(|&&t| t as usize >= v) {
                return Err(Error::Usage(format!(
                    "sequence {si}: token id {bad} is outside the vocabulary of {v}"
                )));
            }
        }
        let n: usize = seqs.iter().map(|s| s.tokens.len()).sum();
        b.rows.clear();
        b.out_rows.clear();
        for (si, s) in seqs.iter().enumerate() {
            for i in 0..s.tokens.len() {
                let row = b.rows.len();
                b.rows.push((si, s.cache.len + i));
                let want = match s.logits {
                    Logits::None => false,
                    Logits::Last => i + 1 == s.tokens.len(),
                    Logits::All | Logits::Hidden => true,
                };
                if want {
                    b.out_rows.push(row);
                }
            }
        }
        if n == 0 {
            return Ok(&[]);
        }
        for (buf, width) in [
            (&mut b.x, h),
            (&mut b.xn, h),
            (&mut b.q, qd),
            (&mut b.k, kvd),
            (&mut b.v, kvd),
            (&mut b.attn, qd),
            (&mut b.o, h),
            (&mut b.gate, ff),
            (&mut b.up, ff),
        ] {
            grow(buf, n * width);
        }

        // Rope angles per new token: [N, rot/2].
        let half = spec.rope.dim / 2;
        grow(&mut b.cos, n * half);
        grow(&mut b.sin, n * half);
        for (row, &(si, pos)) in b.rows.iter().enumerate() {
            if spec.rope.is_dynamic() {
                let s = &seqs[si];
                b.inv_freq = spec.rope.inv_freq(s.cache.len + s.tokens.len());
            }
            for i in 0..half {
                let a = pos as f32 * b.inv_freq[i];
                b.cos[row * half + i] = a.cos();
                b.sin[row * half + i] = a.sin();
            }
        }

        // Embeddings: [N, H].
        let embed = tensors.embed.as_weight();
        let mut row = 0;
        for s in seqs.iter() {
            for &tok in s.tokens {
                let x = &mut b.x[row * h..(row + 1) * h];
                herd_kernels::dequantize_row(embed.dtype, embed.row(tok as usize), x);
                if let Some(scale) = spec.embed_scale {
                    x.iter_mut().for_each(|v| *v *= scale);
                }
                row += 1;
            }
        }

        attention::plan(spec, pool, seqs, b);

        for (li, (lw, lv)) in tensors.layers.iter().zip(layers.iter()).enumerate() {
            let x = &b.x;
            ops::each_row(pool, &mut b.xn, h, n, |r, out| {
                ops::rms_norm(&x[r * h..(r + 1) * h], &lv.attn_norm, spec.norm_eps, out)
            });
            let xn = &b.xn[..n * h];
            matmul(
                pool,
                lw.q.as_weight(),
                xn,
                n,
                &mut b.q[..n * qd],
                &mut b.quant,
            );
            if let Some(p) = adapters.get(li).and_then(|l| l.q.as_ref()) {
                lora::apply(
                    pool,
                    p,
                    xn,
                    n,
                    &mut b.q[..n * qd],
                    &mut b.lora,
                    &mut b.quant,
                );
            }
            matmul(
                pool,
                lw.k.as_weight(),
                xn,
                n,
                &mut b.k[..n * kvd],
                &mut b.quant,
            );
            if let Some(p) = adapters.get(li).and_then(|l| l.k.as_ref()) {
                lora::apply(
                    pool,
                    p,
                    xn,
                    n,
                    &mut b.k[..n * kvd],
                    &mut b.lora,
                    &mut b.quant,
                );
            }
            matmul(
                pool,
                lw.v.as_weight(),
                xn,
                n,
                &mut b.v[..n * kvd],
                &mut b.quant,
            );
            if let Some(p) = adapters.get(li).and_then(|l| l.v.as_ref()) {
                lora::apply(
                    pool,
                    p,
                    xn,
                    n,
                    &mut b.v[..n * kvd],
                    &mut b.lora,
                    &mut b.quant,
                );
            }
            // Biases; then the queries and keys are rotated per head (`rotated` holds their
            // per-head norm, if the model has one), the values are not.
            let hd = spec.head_dim;
            let (cos, sin) = (&b.cos, &b.sin);
            for (buf, bias, rotated, width) in [
                (&mut b.q, &lv.q_bias, Some(&lv.q_norm), qd),
                (&mut b.k, &lv.k_bias, Some(&lv.k_norm), kvd),
                (&mut b.v, &lv.v_bias, None, kvd),
            ] {
                if bias.is_none() && rotated.is_none() {
                    continue;
                }
                ops::each_row(pool, buf, width, n, |r, row| {
                    if let Some(bias) = bias {
                        row.iter_mut().zip(bias).for_each(|(x, b)| *x += b);
                    }
                    if let Some(norm) = rotated {
                        let cos = &cos[r * half..(r + 1) * half];
                        let sin = &sin[r * half..(r + 1) * half];
                        for head in row.chunks_exact_mut(hd) {
                            if let Some(w) = norm {
                                ops::rms_norm_inplace(head, w, spec.norm_eps);
                            }
                            ops::rope(head, cos, sin, spec.rope.layout);
                        }
                    }
                });
            }
            // Append the new keys and values to each sequence's cache.
            for (r, &(si, pos)) in b.rows.iter().enumerate() {
                let c = &mut *seqs[si].cache;
                for kvh in 0..spec.n_kv_heads {
                    let at = c.head_offset(li, kvh) + pos * hd;
                    let from = r * kvd + kvh * hd;
                    c.k.put(at, &b.k[from..from + hd]);
                    c.v.put(at, &b.v[from..from + hd]);
                }
            }
            attention::attend(spec, pool, b, li, seqs);
            matmul(
                pool,
                lw.o.as_weight(),
                &b.attn[..n * qd],
                n,
                &mut b.o[..n * h],
                &mut b.quant,
            );
            if let Some(p) = adapters.get(li).and_then(|l| l.o.as_ref()) {
                lora::apply(
                    pool,
                    p,
                    &b.attn[..n * qd],
                    n,
                    &mut b.o[..n * h],
                    &mut b.lora,
                    &mut b.quant,
                );
            }
            ops::residual(
                pool,
                &mut b.x,
                &mut b.o,
                h,
                n,
                lv.attn_out_norm.as_deref(),
                spec.norm_eps,
            );
            let x = &b.x;
            ops::each_row(pool, &mut b.xn, h, n, |r, out| {
                ops::rms_norm(&x[r * h..(r + 1) * h], &lv.mlp_norm, spec.norm_eps, out)
            });
            let xn = &b.xn[..n * h];
            matmul(
                pool,
                lw.gate.as_weight(),
                xn,
                n,
                &mut b.gate[..n * ff],
                &mut b.quant,
            );
            if let Some(p) = adapters.get(li).and_then(|l| l.gate.as_ref()) {
                lora::apply(
                    pool,
                    p,
                    xn,
                    n,
                    &mut b.gate[..n * ff],
                    &mut b.lora,
                    &mut b.quant,
                );
            }
            matmul(
                pool,
                lw.up.as_weight(),
                xn,
                n,
                &mut b.up[..n * ff],
                &mut b.quant,
            );
            if let Some(p) = adapters.get(li).and_then(|l| l.up.as_ref()) {
                lora::apply(
                    pool,
                    p,
                    xn,
                    n,
                    &mut b.up[..n * ff],
                    &mut b.lora,
                    &mut b.quant,
                );
            }
            let up = &b.up;
            ops::each_row(pool, &mut b.gate, ff, n, |r, g| {
                ops::gated_activation(g, &up[r * ff..(r + 1) * ff], spec.activation)
            });
            matmul(
                pool,
                lw.down.as_weight(),
                &b.gate[..n * ff],
                n,
                &mut b.o[..n * h],
                &mut b.quant,
            );
            if let Some(p) = adapters.get(li).and_then(|l| l.down.as_ref()) {
                lora::apply(
                    pool,
                    p,
                    &b.gate[..n * ff],
                    n,
                    &mut b.o[..n * h],
                    &mut b.lora,
                    &mut b.quant,
                );
            }
            ops::residual(
                pool,
                &mut b.x,
                &mut b.o,
                h,
                n,
                lv.mlp_out_norm.as_deref(),
                spec.norm_eps,
            );
        }
        for s in seqs.iter_mut() {
            s.cache.len += s.tokens.len();
        }

        let n_out = b.out_rows.len();
        grow(&mut b.final_x, n_out * h);
        for (i, &r) in b.out_rows.iter().enumerate() {
            ops::rms_norm(
                &b.x[r * h..(r + 1) * h],
                final_norm,
                spec.norm_eps,
                &mut b.final_x[i * h..(i + 1) * h],
            );
        }
        if seqs.iter().all(|s| s.logits == Logits::Hidden) {
            return Ok(&b.final_x[..n_out * h]);
        }
        grow(&mut b.logits, n_out * v);
        let lm: WeightRef<'_> = tensors.lm_head.as_weight();
        matmul(
            pool,
            lm,
            &b.final_x[..n_out * h],
            n_out,
            &mut b.logits[..n_out * v],
            &mut b.quant,
        );
        if let Some(cap) = spec.final_softcap {
            ops::softcap(&mut b.logits[..n_out * v], cap);
        }
        Ok(&b.logits[..n_out * v])
    }
}
