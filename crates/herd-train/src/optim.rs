//! AdamW exactly as `torch.optim.AdamW` (single-tensor path) computes it, learning-rate
//! schedules as Hugging Face's `get_*_schedule_with_warmup` define them, and gradient
//! clipping as `torch.nn.utils.clip_grad_norm_`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// First and second moments of one parameter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Moments {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

/// torch's `lerp` on CPU: exact at both ends, symmetric in rounding.
#[inline]
fn lerp(start: f32, end: f32, w: f32) -> f32 {
    if w.abs() < 0.5 {
        start + w * (end - start)
    } else {
        end - (end - start) * (1.0 - w)
    }
}

/// One AdamW update of `p` with gradient `g` at step `step` (1-based), learning rate `lr`.
pub fn adamw_step(
    p: &mut [f32],
    g: &[f32],
    st: &mut Moments,
    cfg: &AdamWConfig,
    lr: f64,
    step: u64,
) {
    if st.m.len() != p.len() {
        st.m = vec![0.0; p.len()];
        st.v = vec![0.0; p.len()];
    }
    let decay = (1.0 - lr * cfg.weight_decay) as f32;
    let bc1 = 1.0 - cfg.beta1.powi(step as i32);
    let bc2 = 1.0 - cfg.beta2.powi(step as i32);
    let step_size = (lr / bc1) as f32;
    let bc2_sqrt = bc2.sqrt() as f32;
    let (b1w, b2, b2w, eps) = (
        (1.0 - cfg.beta1) as f32,
        cfg.beta2 as f32,
        (1.0 - cfg.beta2) as f32,
        cfg.eps as f32,
    );
    for i in 0..p.len() {
        p[i] *= decay;
        st.m[i] = lerp(st.m[i], g[i], b1w);
        st.v[i] = st.v[i] * b2 + b2w * g[i] * g[i];
        let denom = st.v[i].sqrt() / bc2_sqrt + eps;
        // torch's addcdiv: p + (value·m) / denom, in that order.
        p[i] += (-step_size * st.m[i]) / denom;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    Linear,
    Cosine,
}

impl Schedule {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "constant" => Some(Schedule::Constant),
            "linear" => Some(Schedule::Linear),
            "cosine" => Some(Schedule::Cosine),
            _ => None,
        }
    }

    /// The learning-rate multiplier for optimizer step `step` (0-based) of `total`, after
    /// `warmup` steps of linear warm-up.
    pub fn factor(self, step: usize, warmup: usize, total: usize) -> f64 {
        if step < warmup {
            return step as f64 / warmup.max(1) as f64;
        }
        match self {
            Schedule::Constant => 1.0,
            Schedule::Linear => ((total.saturating_sub(step)) as f64
                / (total.saturating_sub(warmup)).max(1) as f64)
                .max(0.0),
            Schedule::Cosine => {
                let progress =
                    (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
                (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
            }
        }
    }
}

/// Scales the gradients so that their global L2 norm is at most `max_norm`; returns the norm
/// before clipping.
pub fn clip_grad_norm(grads: &mut [Vec<f32>], max_norm: f64) -> f64 {
    let total = grads
        .iter()
        .map(|g| {
            let n: f64 = g.iter().map(|&x| (x as f64) * (x as f64)).sum();
            n
        })
        .sum::<f64>()
        .sqrt();
    let coef = max_norm / (total + 1e-6);
    if coef < 1.0 {
        for g in grads.iter_mut() {
            g.iter_mut().for_each(|x| *x = (*x as f64 * coef) as f32);
        }
    }
    total
}

/// Gradients of `loss` for every parameter of `tm`, scaled by `scale`, as f32 vectors in
/// parameter order (zeros for a parameter the loss does not reach).
pub fn gradients(
    tm: &crate::TrainModel,
    loss: &candle_core::Tensor,
    scale: f64,
) -> crate::Result<Vec<Vec<f32>>> {
    let mut acc = zero_gradients(tm);
    add_gradients(&mut acc, tm, &loss.backward()?)?;
    scale_gradients(&mut acc, scale);
    Ok(acc)
}

/// A zero gradient for every parameter of `tm`, in parameter order.
pub fn zero_gradients(tm: &crate::TrainModel) -> Vec<Vec<f32>> {
    tm.params
        .iter()
        .map(|p| vec![0.0; p.var.elem_count()])
        .collect()
}

/// Adds the gradients in `grads` to `acc` (parameters the graph did not reach get nothing).
pub fn add_gradients(
    acc: &mut [Vec<f32>],
    tm: &crate::TrainModel,
    grads: &candle_core::backprop::GradStore,
) -> crate::Result<()> {
    for (a, p) in acc.iter_mut().zip(&tm.params) {
        if let Some(g) = grads.get(p.var.as_tensor()) {
            let g = g.flatten_all()?.to_vec1::<f32>()?;
            a.iter_mut().zip(g).for_each(|(a, x)| *a += x);
        }
    }
    Ok(())
}

/// Multiplies every gradient by `scale` (in f64, as the mean over a step's tokens needs).
pub fn scale_gradients(acc: &mut [Vec<f32>], scale: f64) {
    if scale != 1.0 {
        for v in acc.iter_mut() {
            v.iter_mut().for_each(|x| *x = (*x as f64 * scale) as f32);
        }
    }
}

/// One AdamW update of every parameter of `tm`.
pub fn apply(
    tm: &crate::TrainModel,
    grads: &[Vec<f32>],
    moments: &mut [Moments],
    cfg: &AdamWConfig,
    lr: f64,
    step: u64,
) -> crate::Result<()> {
    for ((p, g), st) in tm.params.iter().zip(grads).zip(moments.iter_mut()) {
        let mut v = p.var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        adamw_step(&mut v, g, st, cfg, lr, step);
        p.var.set(&candle_core::Tensor::from_vec(
            v,
            p.var.shape().clone(),
            &candle_core::Device::Cpu,
        )?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_match_hugging_faces_definitions() {
        // get_linear_schedule_with_warmup(warmup=2, total=10)
        let lin: Vec<f64> = (0..11).map(|s| Schedule::Linear.factor(s, 2, 10)).collect();
        assert_eq!(lin[..3], [0.0, 0.5, 1.0]);
        assert!((lin[6] - 0.5).abs() < 1e-12 && lin[10] == 0.0);
        // get_cosine_schedule_with_warmup: halfway through the decay the factor is 0.5
        assert!((Schedule::Cosine.factor(6, 2, 10) - 0.5).abs() < 1e-12);
        assert!((Schedule::Cosine.factor(2, 2, 10) - 1.0).abs() < 1e-12);
        assert_eq!(Schedule::Constant.factor(5, 0, 10), 1.0);
    }

    #[test]
    fn clipping_scales_to_the_maximum_norm() {
        let mut g = vec![vec![3.0f32], vec![4.0f32]];
        let n = clip_grad_norm(&mut g, 1.0);
        assert!((n - 5.0).abs() < 1e-9);
        assert!((g[0][0] - 0.6).abs() < 1e-6 && (g[1][0] - 0.8).abs() < 1e-6);
        let mut small = vec![vec![0.1f32]];
        clip_grad_norm(&mut small, 1.0);
        assert_eq!(small[0][0], 0.1);
    }

    #[test]
    fn the_first_adamw_step_moves_by_the_learning_rate() {
        // With bias correction the first step is lr · sign(g) (up to eps), after decay.
        let mut p = vec![1.0f32, -2.0];
        let mut st = Moments::default();
        let cfg = AdamWConfig {
            lr: 0.1,
            weight_decay: 0.0,
            ..Default::default()
        };
        adamw_step(&mut p, &[0.5, -3.0], &mut st, &cfg, 0.1, 1);
        assert!(
            (p[0] - 0.9).abs() < 1e-6 && (p[1] + 1.9).abs() < 1e-6,
            "{p:?}"
        );
    }
}
