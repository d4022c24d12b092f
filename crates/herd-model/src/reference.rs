//! The reference forward pass, on candle tensors.
//!
//! Written for clarity and for autograd: every operation is a plain candle op with a backward
//! pass, so training (LoRA and full fine-tuning) runs through this same code. It is also the
//! oracle the fast engine ([`crate::engine`]) is tested against. It is not fast.
//!
//! Shapes: `B` sequences, `T` new tokens each, `S` keys (cached + new), `H` hidden size,
//! `nh`/`nkv` query/key-value heads of `hd` dimensions, `V` vocabulary.

use std::sync::Arc;

use candle_core::{D, DType, Device, Tensor};

use crate::error::Result;
use crate::model::{LayerTensors, Model};
use crate::spec::{Activation, ModelSpec, RopeLayout};
use crate::tensor::StoredTensor;

/// A linear layer's weight: an f32 tensor (trainable or not), or a frozen matrix kept in its
/// stored (quantised) type and multiplied by herd's kernels (QLoRA-style training).
#[derive(Clone, Debug)]
pub enum LinearWeight {
    /// `[out, in]`
    Dense(Tensor),
    Quantized(Arc<StoredTensor>),
}

/// A low-rank adapter on a linear layer, as PEFT's LoRA: `y += (drop(x)·Aᵀ)·Bᵀ · scaling`.
#[derive(Clone, Debug)]
pub struct Lora {
    /// `[r, in]`
    pub a: Tensor,
    /// `[out, r]`
    pub b: Tensor,
    /// `alpha / r`.
    pub scaling: f64,
    /// Dropout for the next forward pass: `[.., in]` of 0 or `1/(1-p)`, set by the trainer.
    pub mask: Option<Tensor>,
}

/// `y = x·wᵀ + b` over the last dimension, plus an optional LoRA term.
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: LinearWeight,
    /// `[out]`
    pub bias: Option<Tensor>,
    pub lora: Option<Lora>,
}

impl Linear {
    pub fn dense(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear {
            weight: LinearWeight::Dense(weight),
            bias,
            lora: None,
        }
    }

    /// The weight as an f32 tensor (dequantised if needed).
    pub fn weight_f32(&self, device: &Device) -> Result<Tensor> {
        match &self.weight {
            LinearWeight::Dense(w) => Ok(w.clone()),
            LinearWeight::Quantized(q) => to_tensor(q, device),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // x: [.., in] → [.., out]
        let y = match &self.weight {
            LinearWeight::Dense(w) => x.broadcast_matmul(&w.t()?)?,
            LinearWeight::Quantized(q) => crate::qlinear::forward(x, q)?,
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        Ok(match &self.lora {
            None => y,
            Some(l) => {
                let x = match &l.mask {
                    Some(m) => x.broadcast_mul(m)?,
                    None => x.clone(),
                };
                let d = x.broadcast_matmul(&l.a.t()?)?.broadcast_matmul(&l.b.t()?)?;
                (y + (d * l.scaling)?)?
            }
        })
    }
}

#[derive(Clone, Debug)]
pub struct RefLayer {
    pub attn_norm: Tensor,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub q_norm: Option<Tensor>,
    pub k_norm: Option<Tensor>,
    pub attn_out_norm: Option<Tensor>,
    pub mlp_norm: Tensor,
    pub mlp_out_norm: Option<Tensor>,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

/// Where each new token sits: its position, whether it is real (not padding) and which packed
/// example it belongs to. Tokens attend only to earlier real tokens of the same example.
#[derive(Clone, Debug)]
pub struct Layout {
    /// `[B][T]` positions (rope angles and causal order).
    pub positions: Vec<Vec<usize>>,
    /// `[B][T]` false for padding.
    pub valid: Vec<Vec<bool>>,
    /// `[B][T]` example ids when several examples are packed into one row.
    pub segments: Option<Vec<Vec<u32>>>,
}

impl Layout {
    /// `B` sequences of `T` real tokens each, continuing from `start[b]`.
    pub fn contiguous(start: &[usize], t: usize) -> Self {
        Layout {
            positions: start.iter().map(|&s| (s..s + t).collect()).collect(),
            valid: vec![vec![true; t]; start.len()],
            segments: None,
        }
    }
}

/// Keys and values of earlier tokens, with the layout they were computed under.
#[derive(Clone, Debug, Default)]
pub struct RefCache {
    /// Per layer: `[B, nkv, S, hd]` keys and values.
    pub kv: Vec<Option<(Tensor, Tensor)>>,
    pub positions: Vec<Vec<usize>>,
    pub valid: Vec<Vec<bool>>,
    pub segments: Vec<Vec<u32>>,
}

impl RefCache {
    pub fn len(&self) -> usize {
        self.positions.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The model as candle tensors (dequantised to f32).
#[derive(Clone, Debug)]
pub struct RefModel {
    pub spec: ModelSpec,
    /// `[V, H]`
    pub embed: Tensor,
    pub layers: Vec<RefLayer>,
    pub final_norm: Tensor,
    /// `[V, H]`
    pub lm_head: Tensor,
    pub device: Device,
}

/// A stored tensor as an f32 candle tensor.
pub fn to_tensor(t: &StoredTensor, device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(t.to_f32(), t.shape.clone(), device)?)
}

impl RefModel {
    /// Dequantises every tensor of `model` to f32 on `device`.
    pub fn load(model: &Model, device: &Device) -> Result<Self> {
        let t = model.tensors()?;
        let lin = |w: &StoredTensor, b: &Option<StoredTensor>| -> Result<Linear> {
            Ok(Linear::dense(
                to_tensor(w, device)?,
                b.as_ref().map(|b| to_tensor(b, device)).transpose()?,
            ))
        };
        let opt = |x: &Option<StoredTensor>| x.as_ref().map(|x| to_tensor(x, device)).transpose();
        let layers = t
            .layers
            .iter()
            .map(|l: &LayerTensors| -> Result<RefLayer> {
                Ok(RefLayer {
                    attn_norm: to_tensor(&l.attn_norm, device)?,
                    q: lin(&l.q, &l.q_bias)?,
                    k: lin(&l.k, &l.k_bias)?,
                    v: lin(&l.v, &l.v_bias)?,
                    o: lin(&l.o, &None)?,
                    q_norm: opt(&l.q_norm)?,
                    k_norm: opt(&l.k_norm)?,
                    attn_out_norm: opt(&l.attn_out_norm)?,
                    mlp_norm: to_tensor(&l.mlp_norm, device)?,
                    mlp_out_norm: opt(&l.mlp_out_norm)?,
                    gate: lin(&l.gate, &None)?,
                    up: lin(&l.up, &None)?,
                    down: lin(&l.down, &None)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let embed = to_tensor(&t.embed, device)?;
        let lm_head = if model.spec.tie_embeddings {
            embed.clone()
        } else {
            to_tensor(&t.lm_head, device)?
        };
        Ok(RefModel {
            spec: model.spec.clone(),
            embed,
            layers,
            final_norm: to_tensor(&t.final_norm, device)?,
            lm_head,
            device: device.clone(),
        })
    }

    /// RMS norm over the last dimension: `x / sqrt(mean(x²) + eps) · (w + offset)`.
    fn norm(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        let xn = x.broadcast_div(&(ms + self.spec.norm_eps as f64)?.sqrt()?)?;
        let w = (w + self.spec.norm_weight_offset as f64)?;
        Ok(xn.broadcast_mul(&w)?)
    }

    /// Rotates `x` (`[B, heads, T, hd]`) by the angles of `cos`/`sin` (`[B, 1, T, rot/2]`).
    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let hd = self.spec.head_dim;
        let rot = self.spec.rope.dim;
        let (b, h, t, _) = x.dims4()?;
        let xr = x.narrow(D::Minus1, 0, rot)?;
        let rotated = match self.spec.rope.layout {
            RopeLayout::Neox => {
                let x1 = xr.narrow(D::Minus1, 0, rot / 2)?;
                let x2 = xr.narrow(D::Minus1, rot / 2, rot / 2)?;
                let a = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
                let c = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
                Tensor::cat(&[a, c], D::Minus1)?
            }
            RopeLayout::Interleaved => {
                let pairs = xr.reshape((b, h, t, rot / 2, 2))?;
                let xe = pairs.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?;
                let xo = pairs.narrow(D::Minus1, 1, 1)?.squeeze(D::Minus1)?;
                let a = (xe.broadcast_mul(cos)? - xo.broadcast_mul(sin)?)?;
                let c = (xo.broadcast_mul(cos)? + xe.broadcast_mul(sin)?)?;
                Tensor::stack(&[a, c], D::Minus1)?.reshape((b, h, t, rot))?
            }
        };
        if rot == hd {
            Ok(rotated)
        } else {
            Ok(Tensor::cat(
                &[rotated, x.narrow(D::Minus1, rot, hd - rot)?],
                D::Minus1,
            )?)
        }
    }

    /// Additive masks `[B, 1, T, S]` (0 or -inf): one for full attention, one per window size.
    fn mask(&self, layout: &Layout, cache: &RefCache, window: Option<usize>) -> Result<Tensor> {
        let b = layout.positions.len();
        let t = layout.positions.first().map_or(0, Vec::len);
        let s_cached = cache.len();
        let s = s_cached + t;
        let mut m = vec![f32::NEG_INFINITY; b * t * s];
        for bi in 0..b {
            let key = |j: usize| -> (usize, bool, u32) {
                if j < s_cached {
                    (
                        cache.positions[bi][j],
                        cache.valid[bi][j],
                        cache
                            .segments
                            .get(bi)
                            .and_then(|x| x.get(j))
                            .copied()
                            .unwrap_or(0),
                    )
                } else {
                    let k = j - s_cached;
                    (
                        layout.positions[bi][k],
                        layout.valid[bi][k],
                        layout.segments.as_ref().map_or(0, |sg| sg[bi][k]),
                    )
                }
            };
            for qi in 0..t {
                let qpos = layout.positions[bi][qi];
                let qseg = layout.segments.as_ref().map_or(0, |sg| sg[bi][qi]);
                let row = &mut m[(bi * t + qi) * s..(bi * t + qi + 1) * s];
                let mut any = false;
                for (j, slot) in row.iter_mut().enumerate() {
                    let (kpos, kvalid, kseg) = key(j);
                    let visible = kvalid
                        && kseg == qseg
                        && kpos <= qpos
                        && window.is_none_or(|w| qpos - kpos < w)
                        // a new token sees only new tokens before it in the row
                        && (j < s_cached || j - s_cached <= qi);
                    if visible {
                        *slot = 0.0;
                        any = true;
                    }
                }
                // A padding query may see nothing; let it see its own slot so softmax stays finite.
                if !any {
                    row[s_cached + qi] = 0.0;
                }
            }
        }
        Ok(Tensor::from_vec(m, (b, 1, t, s), &self.device)?)
    }

    /// Rope angles and attention masks for a forward pass of `[b, t]` new tokens.
    pub fn prepare(
        &self,
        layout: &Layout,
        cache_view: &RefCache,
        b: usize,
        t: usize,
    ) -> Result<LayerContext> {
        let spec = &self.spec;
        // Rope angles for every new token: [B, 1, T, rot/2].
        let max_pos = layout
            .positions
            .iter()
            .flatten()
            .copied()
            .max()
            .unwrap_or(0);
        let inv_freq = spec.rope.inv_freq(max_pos + 1);
        let half = inv_freq.len();
        let mut angles = Vec::with_capacity(b * t * half);
        for row in &layout.positions {
            for &p in row {
                angles.extend(inv_freq.iter().map(|f| p as f32 * f));
            }
        }
        let angles = Tensor::from_vec(angles, (b, 1, t, half), &self.device)?;
        let (cos, sin) = (angles.cos()?, angles.sin()?);

        let full_mask = self.mask(layout, cache_view, None)?;
        let mut window_masks: Vec<(usize, Tensor)> = Vec::new();
        for w in spec.sliding_window.iter().flatten() {
            if !window_masks.iter().any(|(x, _)| x == w) {
                window_masks.push((*w, self.mask(layout, cache_view, Some(*w))?));
            }
        }
        Ok(LayerContext {
            b,
            t,
            cos,
            sin,
            full_mask,
            window_masks,
        })
    }

    /// Token embeddings `[B, T, H]` (scaled where the architecture scales them).
    pub fn embed_tokens(&self, tokens: &Tensor) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let x =
            self.embed
                .embedding(&tokens.flatten_all()?)?
                .reshape((b, t, self.spec.hidden_size))?;
        Ok(match self.spec.embed_scale {
            Some(s) => (x * s as f64)?,
            None => x,
        })
    }

    /// Final norm and output projection: `[B, T, H]` → logits `[B, T, V]`.
    pub fn head(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.norm(x, &self.final_norm)?;
        // [B, T, V]
        let mut logits = x.broadcast_matmul(&self.lm_head.t()?)?;
        if let Some(cap) = self.spec.final_softcap {
            logits = ((logits / cap as f64)?.tanh()? * cap as f64)?;
        }
        Ok(logits)
    }

    /// Decoder layer `li` on `x` `[B, T, H]`; returns its output and the layer's keys and
    /// values `[B, nkv, S, hd]` (cached ones first).
    pub fn layer_forward(
        &self,
        li: usize,
        x: &Tensor,
        ctx: &LayerContext,
        cache_view: &RefCache,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let spec = &self.spec;
        let (b, t) = (ctx.b, ctx.t);
        let (nh, nkv, hd) = (spec.n_heads, spec.n_kv_heads, spec.head_dim);
        let (cos, sin) = (&ctx.cos, &ctx.sin);
        let layer = &self.layers[li];
        let mut x = x.clone();
        let h = self.norm(&x, &layer.attn_norm)?;
        // [B, T, heads·hd] → [B, heads, T, hd]
        let q = layer
            .q
            .forward(&h)?
            .reshape((b, t, nh, hd))?
            .transpose(1, 2)?;
        let k = layer
            .k
            .forward(&h)?
            .reshape((b, t, nkv, hd))?
            .transpose(1, 2)?;
        let v = layer
            .v
            .forward(&h)?
            .reshape((b, t, nkv, hd))?
            .transpose(1, 2)?;
        let q = match &layer.q_norm {
            Some(w) => self.norm(&q, w)?,
            None => q,
        };
        let k = match &layer.k_norm {
            Some(w) => self.norm(&k, w)?,
            None => k,
        };
        let q = self.rope(&q, cos, sin)?;
        let k = self.rope(&k, cos, sin)?;
        // [B, nkv, S, hd]
        let (k, v) = match cache_view.kv.get(li).and_then(Option::as_ref) {
            Some((ck, cv)) => (Tensor::cat(&[ck, &k], 2)?, Tensor::cat(&[cv, &v], 2)?),
            None => (k, v),
        };
        let kv = (k.clone(), v.clone());
        let s = k.dim(2)?;
        // Grouped-query attention: each kv head serves nh/nkv query heads. [B, nh, S, hd]
        let rep = |x: &Tensor| -> Result<Tensor> {
            Ok(x.unsqueeze(2)?
                .expand((b, nkv, nh / nkv, s, hd))?
                .reshape((b, nh, s, hd))?)
        };
        let (k, v) = (rep(&k)?, rep(&v)?);
        // [B, nh, T, S]
        let mut scores = (q.contiguous()?.matmul(&k.t()?.contiguous()?)? * spec.attn_scale as f64)?;
        if let Some(cap) = spec.attn_softcap {
            scores = ((scores / cap as f64)?.tanh()? * cap as f64)?;
        }
        let mask = match spec.sliding_window[li] {
            Some(w) => &ctx
                .window_masks
                .iter()
                .find(|(x, _)| *x == w)
                .map(|(_, m)| m.clone())
                .unwrap_or(ctx.full_mask.clone()),
            None => &ctx.full_mask,
        };
        let scores = scores.broadcast_add(mask)?;
        let max = scores.max_keepdim(D::Minus1)?.detach();
        let e = scores.broadcast_sub(&max)?.exp()?;
        let probs = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
        // [B, nh, T, hd] → [B, T, nh·hd]
        let attn = probs
            .matmul(&v.contiguous()?)?
            .transpose(1, 2)?
            .reshape((b, t, nh * hd))?;
        let mut attn = layer.o.forward(&attn)?;
        if let Some(w) = &layer.attn_out_norm {
            attn = self.norm(&attn, w)?;
        }
        x = (x + attn)?;

        let h = self.norm(&x, &layer.mlp_norm)?;
        let gate = layer.gate.forward(&h)?;
        let gate = match spec.activation {
            Activation::Silu => gate.silu()?,
            Activation::GeluTanh => gate.gelu()?,
            Activation::Gelu => gate.gelu_erf()?,
        };
        let mut mlp = layer.down.forward(&(gate * layer.up.forward(&h)?)?)?;
        if let Some(w) = &layer.mlp_out_norm {
            mlp = self.norm(&mlp, w)?;
        }
        x = (x + mlp)?;
        Ok((x, kv))
    }

    /// Next-token logits `[B, T, V]` for `tokens` (`[B, T]`, u32) placed by `layout`;
    /// appends to `cache` when one is given.
    pub fn forward(
        &self,
        tokens: &Tensor,
        layout: &Layout,
        cache: Option<&mut RefCache>,
    ) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let empty = RefCache::default();
        let cache_view: &RefCache = cache.as_deref().unwrap_or(&empty);
        let ctx = self.prepare(layout, cache_view, b, t)?;
        let mut x = self.embed_tokens(tokens)?;
        let mut new_kv = Vec::with_capacity(self.layers.len());
        for li in 0..self.layers.len() {
            let (y, kv) = self.layer_forward(li, &x, &ctx, cache_view)?;
            new_kv.push(kv);
            x = y;
        }
        let logits = self.head(&x)?;
        if let Some(cache) = cache {
            cache.kv = new_kv.into_iter().map(Some).collect();
            for bi in 0..b {
                if cache.positions.len() <= bi {
                    cache.positions.push(vec![]);
                    cache.valid.push(vec![]);
                    cache.segments.push(vec![]);
                }
                cache.positions[bi].extend(&layout.positions[bi]);
                cache.valid[bi].extend(&layout.valid[bi]);
                match &layout.segments {
                    Some(sg) => cache.segments[bi].extend(&sg[bi]),
                    None => cache.segments[bi].extend(std::iter::repeat_n(0, t)),
                }
            }
        }
        Ok(logits.to_dtype(DType::F32)?)
    }
}

/// What every layer of one forward pass shares: rope angles `[B, 1, T, rot/2]` and masks.
pub struct LayerContext {
    b: usize,
    t: usize,
    cos: Tensor,
    sin: Tensor,
    full_mask: Tensor,
    window_masks: Vec<(usize, Tensor)>,
}
