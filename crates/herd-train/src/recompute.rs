//! Gradient checkpointing: the forward pass keeps only each decoder layer's input, and the
//! backward pass recomputes one layer at a time from it. Peak memory then holds one layer's
//! activations (attention scores `[B, nh, T, T]` dominate) instead of every layer's, for about
//! one extra forward pass of compute.
//!
//! Each layer's backward is candle's autograd on a small graph: the layer recomputed from its
//! saved input (a fresh variable), contracted with the gradient flowing in from above
//! (`sum(y ⊙ g)`), which gives the parameter gradients and the gradient for the layer below.
//! Dropout masks are set once per micro-batch, so the recomputation sees the same ones.

use candle_core::{Tensor, Var, backprop::GradStore};
use herd_model::reference::RefCache;
use herd_model::spec::ModelSpec;

use crate::loss::{Batch, loss_sum};
use crate::optim::{add_gradients, scale_gradients, zero_gradients};
use crate::{Result, TrainModel};

/// The summed loss of `b` and every parameter's gradient of it, scaled by `scale`, computed
/// layer by layer (the same numbers as [`crate::optim::gradients`] up to summation order).
pub fn loss_and_gradients(tm: &TrainModel, b: &Batch, scale: f64) -> Result<(f32, Vec<Vec<f32>>)> {
    let m = &tm.model;
    let tokens = b.ids_tensor()?;
    let (bs, t) = tokens.dims2()?;
    let empty = RefCache::default();
    let ctx = m.prepare(&b.layout, &empty, bs, t)?;
    let n_layers = m.layers.len();

    // Forward, keeping only each layer's input `[B, T, H]`.
    let x0 = m.embed_tokens(&tokens)?;
    let mut inputs = Vec::with_capacity(n_layers);
    let mut x = x0.detach();
    for li in 0..n_layers {
        inputs.push(x.clone());
        x = m.layer_forward(li, &x, &ctx, &empty)?.0.detach();
    }

    let mut acc = zero_gradients(tm);
    // The head and the loss.
    let xv = Var::from_tensor(&x)?;
    let loss = loss_sum(&m.head(xv.as_tensor())?, b)?;
    let loss_value = loss.to_scalar::<f32>()?;
    let grads = loss.backward()?;
    add_gradients(&mut acc, tm, &grads)?;
    let mut g = upstream(&grads, &xv)?;

    // Backward through the layers, top first.
    for li in (0..n_layers).rev() {
        let xin = Var::from_tensor(&inputs[li])?;
        let (y, _) = m.layer_forward(li, xin.as_tensor(), &ctx, &empty)?;
        let grads = (y * &g)?.sum_all()?.backward()?;
        add_gradients(&mut acc, tm, &grads)?;
        g = upstream(&grads, &xin)?;
    }
    // The embedding table, when it is trained.
    if tm.params.iter().any(|p| p.name.contains("embed_tokens")) {
        let grads = (x0 * &g)?.sum_all()?.backward()?;
        add_gradients(&mut acc, tm, &grads)?;
    }
    scale_gradients(&mut acc, scale);
    Ok((loss_value, acc))
}

/// The gradient that flowed into `v`, or zeros when none did.
fn upstream(grads: &GradStore, v: &Var) -> Result<Tensor> {
    Ok(match grads.get(v.as_tensor()) {
        Some(g) => g.detach(),
        None => v.as_tensor().zeros_like()?,
    })
}

/// Rough bytes of activations autograd keeps for one micro-batch of `b` sequences of `t`
/// tokens without checkpointing: per layer, about a dozen `[B, T, H]` and four `[B, T, F]`
/// tensors plus three `[B, nh, T, T]` attention tensors, in f32; and the logits.
pub fn activation_bytes(spec: &ModelSpec, b: usize, t: usize) -> u64 {
    let (b, t) = (b as u64, t as u64);
    let (h, f, nh, v) = (
        spec.hidden_size as u64,
        spec.intermediate_size as u64,
        spec.n_heads as u64,
        spec.vocab_size as u64,
    );
    let per_layer = b * t * (12 * h + 4 * f) + 3 * b * nh * t * t;
    4 * (spec.n_layers as u64 * per_layer + 3 * b * t * v)
}
