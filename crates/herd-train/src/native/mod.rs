//! LoRA training on herd's own kernels: a hand-written forward and backward pass for
//! llama-family decoders (LLaMA, Mistral, Qwen2 and their kin), used instead of candle's
//! autograd whenever the model and batch allow.
//!
//! Why: candle's CPU autograd allocates a tensor per operation, materialises `[B, heads, T, T]`
//! attention scores three times over, and spends its time in small element-wise maps. Here the
//! matrix products go straight to `gemm`, attention never builds the score matrix (see
//! [`attention`]), and only the activations the backward pass reads are kept: about
//! `4·(6H + 3F + q + 2kv)` bytes per token per layer, or just the layer inputs with gradient
//! checkpointing.
//!
//! The numbers are the reference pass's up to float rounding: the PEFT parity tests run on both.
//! What it does not cover (full fine-tuning, Qwen3's q/k norms, Gemma's sandwich norms and soft
//! caps, packed rows whose examples interleave) stays on the reference pass.

pub mod attention;
pub mod ops;

/// Deterministic values in [-1, 1) for the unit tests of `native/`.
#[cfg(test)]
fn test_values(n: usize, seed: u64) -> Vec<f32> {
    let mut r = herd_model::rng::Rng::new(seed);
    (0..n).map(|_| (r.next_f64() * 2.0 - 1.0) as f32).collect()
}

use std::collections::HashMap;
use std::ops::Deref;

use candle_core::{CpuStorage, Storage, Tensor};
use herd_model::reference::{Linear, LinearWeight, RefLayer};
use herd_model::spec::Activation;

use crate::loss::Batch;
use crate::model::{MODULES, peft_key};
use crate::{Error, Method, Result, TrainModel};
use attention::Dims;
use ops::{Rope, mm, rmsnorm, rmsnorm_backward};

/// Why the native pass cannot train `tm` (`None` when it can).
pub fn unsupported(tm: &TrainModel) -> Option<&'static str> {
    unsupported_for(&tm.model.spec, &tm.method)
}

/// Why the native pass cannot train a model of spec `s` by `method` (`None` when it can).
pub fn unsupported_for(s: &herd_model::spec::ModelSpec, method: &Method) -> Option<&'static str> {
    if !matches!(method, Method::Lora(_)) {
        return Some("full fine-tuning");
    }
    if s.qk_norm {
        return Some("query/key norms");
    }
    if s.sandwich_norms {
        return Some("sandwich norms");
    }
    if s.attn_softcap.is_some() || s.final_softcap.is_some() {
        return Some("soft-capped scores");
    }
    if s.embed_scale.is_some() {
        return Some("scaled embeddings");
    }
    if s.activation != Activation::Silu {
        return Some("an activation other than SiLU");
    }
    None
}

/// Bytes of activations the native pass keeps for a micro-batch of `b` rows of `t` tokens:
/// every layer's (or, with checkpointing, one layer's plus every layer's input), and the
/// logits of the trained positions (at most all of them).
pub fn activation_bytes(spec: &herd_model::spec::ModelSpec, b: usize, t: usize, ckpt: bool) -> u64 {
    let n = (b * t) as u64;
    let (h, f) = (spec.hidden_size as u64, spec.intermediate_size as u64);
    let (qd, kvd) = (spec.q_dim() as u64, spec.kv_dim() as u64);
    let layer = n * (6 * h + 3 * f + 2 * qd + 2 * kvd + spec.n_heads as u64);
    let layers = spec.n_layers as u64;
    let kept = if ckpt {
        layer + layers * n * h
    } else {
        layers * layer
    };
    4 * (kept + 2 * n * spec.vocab_size as u64)
}

/// A tensor's f32 values, borrowed from candle's storage when they are contiguous f32.
enum View<'a> {
    /// candle's read guard on the storage, and the tensor's range in it.
    Borrowed(Box<dyn Deref<Target = Storage> + 'a>, usize, usize),
    Owned(Vec<f32>),
}

impl Deref for View<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match self {
            View::Borrowed(g, a, b) => match &***g {
                Storage::Cpu(CpuStorage::F32(v)) => &v[*a..*b],
                _ => &[],
            },
            View::Owned(v) => v,
        }
    }
}

fn view(t: &Tensor) -> Result<View<'_>> {
    let (st, layout) = t.storage_and_layout();
    if let (Storage::Cpu(CpuStorage::F32(_)), Some((a, b))) = (&*st, layout.contiguous_offsets()) {
        return Ok(View::Borrowed(Box::new(st), a, b));
    }
    drop(st);
    Ok(View::Owned(
        t.to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1()?,
    ))
}

/// A LoRA adapter's values for one step, and where its gradients go.
struct LoraStep<'a> {
    a: Vec<f32>,
    b: Vec<f32>,
    r: usize,
    scale: f32,
    /// `[N, in]` dropout multipliers.
    mask: Option<&'a [f32]>,
    /// Parameter indices of A and B.
    ia: usize,
    ib: usize,
}

/// A frozen projection (`[out, in]`, dequantised when stored quantised) with its adapter.
struct Lin<'a> {
    w: View<'a>,
    out: usize,
    inp: usize,
    bias: Option<View<'a>>,
    lora: Option<LoraStep<'a>>,
}

impl Lin<'_> {
    /// `y = x·Wᵀ + bias + scale·((x⊙mask)·Aᵀ)·Bᵀ` for `x` `[N, in]`; also returns the adapter's
    /// `(x⊙mask)·Aᵀ` (`[N, r]`), which the backward pass needs.
    fn forward(&self, x: &[f32], n: usize) -> (Vec<f32>, Option<Vec<f32>>) {
        let mut y = vec![0f32; n * self.out];
        mm(
            &mut y,
            x,
            &self.w,
            (n, self.out, self.inp),
            false,
            true,
            false,
            1.0,
        );
        if let Some(b) = &self.bias {
            for row in y.chunks_exact_mut(self.out) {
                row.iter_mut().zip(b.iter()).for_each(|(y, b)| *y += b);
            }
        }
        let u = self.lora.as_ref().map(|l| {
            let xm = masked(x, l.mask);
            let mut u = vec![0f32; n * l.r];
            mm(
                &mut u,
                &xm,
                &l.a,
                (n, l.r, self.inp),
                false,
                true,
                false,
                1.0,
            );
            mm(
                &mut y,
                &u,
                &l.b,
                (n, self.out, l.r),
                false,
                true,
                true,
                l.scale,
            );
            u
        });
        (y, u)
    }

    /// Writes (`acc = false`) or adds the input's gradient to `dx` from the output's `dy`, and
    /// adds the adapter's gradients to `grads`.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        dy: &[f32],
        x: &[f32],
        u: Option<&[f32]>,
        n: usize,
        dx: &mut [f32],
        acc: bool,
        grads: &mut [Vec<f32>],
    ) {
        mm(
            dx,
            dy,
            &self.w,
            (n, self.inp, self.out),
            false,
            false,
            acc,
            1.0,
        );
        let (Some(l), Some(u)) = (&self.lora, u) else {
            return;
        };
        // g = dy·B: [N, r]
        let mut g = vec![0f32; n * l.r];
        mm(
            &mut g,
            dy,
            &l.b,
            (n, l.r, self.out),
            false,
            false,
            false,
            1.0,
        );
        // dB += s·dyᵀ·u: [out, r]
        mm(
            &mut grads[l.ib],
            dy,
            u,
            (self.out, l.r, n),
            true,
            false,
            true,
            l.scale,
        );
        // dA += s·gᵀ·(x⊙mask): [r, in]
        let xm = masked(x, l.mask);
        mm(
            &mut grads[l.ia],
            &g,
            &xm,
            (l.r, self.inp, n),
            true,
            false,
            true,
            l.scale,
        );
        // dx += s·(g·A)⊙mask: [N, in]
        match l.mask {
            None => mm(
                dx,
                &g,
                &l.a,
                (n, self.inp, l.r),
                false,
                false,
                true,
                l.scale,
            ),
            Some(m) => {
                let mut t = vec![0f32; n * self.inp];
                mm(
                    &mut t,
                    &g,
                    &l.a,
                    (n, self.inp, l.r),
                    false,
                    false,
                    false,
                    l.scale,
                );
                for ((d, tv), mv) in dx.iter_mut().zip(&t).zip(m) {
                    *d += tv * mv;
                }
            }
        }
    }
}

fn masked<'x>(x: &'x [f32], mask: Option<&[f32]>) -> std::borrow::Cow<'x, [f32]> {
    match mask {
        None => std::borrow::Cow::Borrowed(x),
        Some(m) => x.iter().zip(m).map(|(a, b)| a * b).collect(),
    }
}

/// What a layer's backward pass reads, from its forward pass.
struct Acts {
    x: Vec<f32>,
    h1: Vec<f32>,
    inv1: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    o: Vec<f32>,
    lse: Vec<f32>,
    x2: Vec<f32>,
    h2: Vec<f32>,
    inv2: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    act: Vec<f32>,
    /// Per module (in [`MODULES`] order), the adapter's `(x⊙mask)·Aᵀ`.
    u: [Option<Vec<f32>>; 7],
}

/// One micro-batch's fixed inputs: shapes, rotary angles, attention ranges, parameter slots.
struct Pass<'a> {
    tm: &'a TrainModel,
    n: usize,
    dims: Dims,
    rope: Rope,
    /// Attention ranges per sliding window (`None`: the full causal range).
    ranges: Vec<(Option<usize>, Vec<u32>)>,
    /// Parameter index by name.
    slots: HashMap<&'a str, usize>,
    /// Dropout masks by parameter index of A, `[N, in]`.
    masks: HashMap<usize, Vec<f32>>,
}

impl<'a> Pass<'a> {
    /// `None` when the batch's attention pattern is not made of ranges.
    fn new(tm: &'a TrainModel, b: &Batch) -> Result<Option<Self>> {
        let spec = &tm.model.spec;
        let (bs, t) = (b.ids.len(), b.ids.first().map_or(0, Vec::len));
        let mut ranges: Vec<(Option<usize>, Vec<u32>)> = vec![];
        for w in spec.sliding_window.iter().copied().chain([None]) {
            if ranges.iter().any(|(x, _)| *x == w) {
                continue;
            }
            match attention::ranges(&b.layout, w) {
                Some(r) => ranges.push((w, r)),
                None => return Ok(None),
            }
        }
        let max_pos = b
            .layout
            .positions
            .iter()
            .flatten()
            .copied()
            .max()
            .unwrap_or(0);
        let rope = Rope::new(
            b.layout.positions.iter().flatten().copied(),
            &spec.rope.inv_freq(max_pos + 1),
            spec.rope.layout,
        );
        let slots = tm
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), i))
            .collect();
        let mut pass = Pass {
            tm,
            n: bs * t,
            dims: Dims {
                b: bs,
                t,
                nh: spec.n_heads,
                nkv: spec.n_kv_heads,
                hd: spec.head_dim,
                scale: spec.attn_scale,
            },
            rope,
            ranges,
            slots,
            masks: HashMap::new(),
        };
        for (li, l) in tm.model.layers.iter().enumerate() {
            for (mi, lin) in modules(l).into_iter().enumerate() {
                if let Some(mask) = lin.lora.as_ref().and_then(|x| x.mask.as_ref()) {
                    let ia = pass.slot(li, mi, "A")?;
                    pass.masks.insert(ia, mask.flatten_all()?.to_vec1()?);
                }
            }
        }
        Ok(Some(pass))
    }

    fn slot(&self, li: usize, mi: usize, ab: &str) -> Result<usize> {
        let name = MODULES[mi];
        let parent = if mi < 4 { "self_attn" } else { "mlp" };
        let key = peft_key(li, parent, name, ab);
        self.slots
            .get(key.as_str())
            .copied()
            .ok_or_else(|| Error::Usage(format!("no trainable parameter {key}")))
    }

    /// Layer `li`'s projections in [`MODULES`] order, with this step's adapter values.
    fn linears(&self, li: usize) -> Result<Vec<Lin<'_>>> {
        let layer = &self.tm.model.layers[li];
        modules(layer)
            .into_iter()
            .enumerate()
            .map(|(mi, lin)| {
                let (w, out, inp) = match &lin.weight {
                    LinearWeight::Dense(w) => {
                        let (o, i) = w.dims2()?;
                        (view(w)?, o, i)
                    }
                    LinearWeight::Quantized(q) => (View::Owned(q.to_f32()), q.shape[0], q.shape[1]),
                };
                let lora = match &lin.lora {
                    None => None,
                    Some(l) => {
                        let (ia, ib) = (self.slot(li, mi, "A")?, self.slot(li, mi, "B")?);
                        Some(LoraStep {
                            a: l.a.flatten_all()?.to_vec1()?,
                            b: l.b.flatten_all()?.to_vec1()?,
                            r: l.a.dim(0)?,
                            scale: l.scaling as f32,
                            mask: self.masks.get(&ia).map(Vec::as_slice),
                            ia,
                            ib,
                        })
                    }
                };
                Ok(Lin {
                    w,
                    out,
                    inp,
                    bias: lin.bias.as_ref().map(view).transpose()?,
                    lora,
                })
            })
            .collect()
    }

    fn lo(&self, li: usize) -> &[u32] {
        let w = self.tm.model.spec.sliding_window.get(li).copied().flatten();
        self.ranges
            .iter()
            .find(|(x, _)| *x == w)
            .map_or(&[][..], |(_, r)| r)
    }

    /// Decoder layer `li` on `x` (`[N, H]`): its output and what its backward pass reads.
    fn layer_forward(&self, li: usize, x: Vec<f32>) -> Result<(Vec<f32>, Acts)> {
        let spec = &self.tm.model.spec;
        let layer = &self.tm.model.layers[li];
        let (n, h, hd) = (self.n, spec.hidden_size, spec.head_dim);
        let (off, eps) = (spec.norm_weight_offset, spec.norm_eps);
        let lins = self.linears(li)?;
        let mut h1 = vec![0f32; n * h];
        let inv1 = rmsnorm(&x, &view(&layer.attn_norm)?, off, eps, &mut h1);
        let (mut q, uq) = lins[0].forward(&h1, n);
        let (mut k, uk) = lins[1].forward(&h1, n);
        let (v, uv) = lins[2].forward(&h1, n);
        self.rope.apply(&mut q, spec.q_dim(), hd, false);
        self.rope.apply(&mut k, spec.kv_dim(), hd, false);
        let (o, lse) = attention::forward(&self.dims, &q, &k, &v, self.lo(li));
        let (ao, uo) = lins[3].forward(&o, n);
        let x2: Vec<f32> = x.iter().zip(&ao).map(|(a, b)| a + b).collect();
        let mut h2 = vec![0f32; n * h];
        let inv2 = rmsnorm(&x2, &view(&layer.mlp_norm)?, off, eps, &mut h2);
        let (gate, ug) = lins[4].forward(&h2, n);
        let (up, uu) = lins[5].forward(&h2, n);
        let act = ops::swiglu(&gate, &up);
        let (down, ud) = lins[6].forward(&act, n);
        let y = x2.iter().zip(&down).map(|(a, b)| a + b).collect();
        Ok((
            y,
            Acts {
                x,
                h1,
                inv1,
                q,
                k,
                v,
                o,
                lse,
                x2,
                h2,
                inv2,
                gate,
                up,
                act,
                u: [uq, uk, uv, uo, ug, uu, ud],
            },
        ))
    }

    /// The gradient of layer `li`'s input from its output's `dy`; adds adapter gradients.
    fn layer_backward(
        &self,
        li: usize,
        a: &Acts,
        dy: Vec<f32>,
        grads: &mut [Vec<f32>],
    ) -> Result<Vec<f32>> {
        let spec = &self.tm.model.spec;
        let layer = &self.tm.model.layers[li];
        let (n, h, hd) = (self.n, spec.hidden_size, spec.head_dim);
        let off = spec.norm_weight_offset;
        let lins = self.linears(li)?;
        let u = |i: usize| a.u[i].as_deref();

        let mut d_act = vec![0f32; n * spec.intermediate_size];
        lins[6].backward(&dy, &a.act, u(6), n, &mut d_act, false, grads);
        let (d_gate, d_up) = ops::swiglu_backward(&d_act, &a.gate, &a.up);
        drop(d_act);
        let mut dh2 = vec![0f32; n * h];
        lins[4].backward(&d_gate, &a.h2, u(4), n, &mut dh2, false, grads);
        lins[5].backward(&d_up, &a.h2, u(5), n, &mut dh2, true, grads);
        let mut dx2 = dy;
        rmsnorm_backward(&mut dx2, &dh2, &a.x2, &a.inv2, &view(&layer.mlp_norm)?, off);

        let mut d_o = vec![0f32; n * spec.q_dim()];
        lins[3].backward(&dx2, &a.o, u(3), n, &mut d_o, false, grads);
        let (mut dq, mut dk, dv) = attention::backward(
            &self.dims,
            &a.q,
            &a.k,
            &a.v,
            &a.o,
            &a.lse,
            &d_o,
            self.lo(li),
        );
        self.rope.apply(&mut dq, spec.q_dim(), hd, true);
        self.rope.apply(&mut dk, spec.kv_dim(), hd, true);
        let mut dh1 = vec![0f32; n * h];
        lins[0].backward(&dq, &a.h1, u(0), n, &mut dh1, false, grads);
        lins[1].backward(&dk, &a.h1, u(1), n, &mut dh1, true, grads);
        lins[2].backward(&dv, &a.h1, u(2), n, &mut dh1, true, grads);
        let mut dx = dx2;
        rmsnorm_backward(&mut dx, &dh1, &a.x, &a.inv1, &view(&layer.attn_norm)?, off);
        Ok(dx)
    }

    /// Token embeddings `[N, H]`.
    fn embed(&self, b: &Batch) -> Result<Vec<f32>> {
        let m = &self.tm.model;
        let (v, h) = (m.spec.vocab_size, m.spec.hidden_size);
        let table = view(&m.embed)?;
        let mut x = Vec::with_capacity(self.n * h);
        for &id in b.ids.iter().flatten() {
            if id as usize >= v {
                return Err(Error::Usage(format!(
                    "token id {id} is outside the model's vocabulary ({v})"
                )));
            }
            x.extend_from_slice(&table[id as usize * h..][..h]);
        }
        Ok(x)
    }

    /// The summed loss over the batch's targets from the last layer's output `x`; with
    /// `grad_scale`, also the gradient of `grad_scale × loss` with respect to `x`.
    fn head(&self, b: &Batch, x: &[f32], grad_scale: Option<f32>) -> Result<(f64, Vec<f32>)> {
        let m = &self.tm.model;
        let spec = &m.spec;
        let (h, v) = (spec.hidden_size, spec.vocab_size);
        let (rows, tokens): (Vec<usize>, Vec<u32>) =
            ops::targets(&b.ids, &b.train).into_iter().unzip();
        let mt = rows.len();
        // Only the rows that predict a trained token need logits: [M, H] → [M, V].
        let mut xs = Vec::with_capacity(mt * h);
        for &r in &rows {
            xs.extend_from_slice(&x[r * h..][..h]);
        }
        let wf = view(&m.final_norm)?;
        let mut hf = vec![0f32; mt * h];
        let inv = rmsnorm(&xs, &wf, spec.norm_weight_offset, spec.norm_eps, &mut hf);
        let lm = view(&m.lm_head)?;
        let mut logits = vec![0f32; mt * v];
        mm(&mut logits, &hf, &lm, (mt, v, h), false, true, false, 1.0);
        let loss = ops::cross_entropy(&mut logits, v, &tokens, grad_scale.unwrap_or(0.0));
        let Some(_) = grad_scale else {
            return Ok((loss, vec![]));
        };
        let mut dhf = vec![0f32; mt * h];
        mm(&mut dhf, &logits, &lm, (mt, h, v), false, false, false, 1.0);
        let mut dxs = vec![0f32; mt * h];
        rmsnorm_backward(&mut dxs, &dhf, &xs, &inv, &wf, spec.norm_weight_offset);
        let mut dx = vec![0f32; self.n * h];
        for (i, &r) in rows.iter().enumerate() {
            dx[r * h..][..h].copy_from_slice(&dxs[i * h..][..h]);
        }
        Ok((loss, dx))
    }
}

fn modules(l: &RefLayer) -> [&Linear; 7] {
    [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down]
}

/// The summed loss of `b` and every parameter's gradient of `scale × loss`, in parameter
/// order; `checkpoint` keeps only layer inputs and recomputes each layer in the backward pass.
/// `None` when the native pass does not cover `tm` or `b` ([`unsupported`]).
pub fn loss_and_gradients(
    tm: &TrainModel,
    b: &Batch,
    scale: f64,
    checkpoint: bool,
) -> Result<Option<(f32, Vec<Vec<f32>>)>> {
    if unsupported(tm).is_some() {
        return Ok(None);
    }
    let Some(pass) = Pass::new(tm, b)? else {
        return Ok(None);
    };
    let mut grads = crate::optim::zero_gradients(tm);
    let n_layers = tm.model.layers.len();
    let mut x = pass.embed(b)?;
    let mut saved: Vec<Option<Acts>> = Vec::with_capacity(n_layers);
    let mut inputs: Vec<Vec<f32>> = Vec::with_capacity(n_layers);
    for li in 0..n_layers {
        if checkpoint {
            inputs.push(x.clone());
        }
        let (y, acts) = pass.layer_forward(li, x)?;
        saved.push((!checkpoint).then_some(acts));
        x = y;
    }
    let (loss, mut dy) = pass.head(b, &x, Some(scale as f32))?;
    for li in (0..n_layers).rev() {
        let acts = match saved[li].take() {
            Some(a) => a,
            None => pass.layer_forward(li, std::mem::take(&mut inputs[li]))?.1,
        };
        dy = pass.layer_backward(li, &acts, dy, &mut grads)?;
    }
    Ok(Some((loss as f32, grads)))
}

/// The summed loss of `b` (no gradients, dropout as set). `None` as for
/// [`loss_and_gradients`].
pub fn loss_sum(tm: &TrainModel, b: &Batch) -> Result<Option<f64>> {
    if unsupported(tm).is_some() {
        return Ok(None);
    }
    let Some(pass) = Pass::new(tm, b)? else {
        return Ok(None);
    };
    let mut x = pass.embed(b)?;
    for li in 0..tm.model.layers.len() {
        x = pass.layer_forward(li, x)?.0;
    }
    Ok(Some(pass.head(b, &x, None)?.0))
}
