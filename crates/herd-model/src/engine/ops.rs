//! The small per-row operations of the engine's forward pass, on plain f32 slices, and the
//! helpers that share a prompt's rows of them among the pool's threads.

use herd_kernels::matmul::SharedMut;
use herd_kernels::pool::{ThreadPool, chunk};

use crate::spec::{Activation, RopeLayout};

/// `cap·tanh(x/cap)` on each element (the final logits of Gemma 2).
pub use herd_kernels::vec::softcap;

/// Calls `f(r, row)` for each of the first `n` rows of `width` in `buf`, split among the
/// pool's threads when a prompt brings enough rows to pay for the hand-off; a lone row
/// (decoding) runs on the caller. Each row is computed the same way whichever thread takes
/// it. The per-row steps between the matrix products were serial, and a serial step keeps
/// every other thread waiting, more of them the more cores there are.
pub fn each_row(
    pool: &ThreadPool,
    buf: &mut [f32],
    width: usize,
    n: usize,
    f: impl Fn(usize, &mut [f32]) + Sync,
) {
    let buf = &mut buf[..n * width];
    if n < 4 * pool.n_threads() {
        buf.chunks_exact_mut(width)
            .enumerate()
            .for_each(|(r, row)| f(r, row));
        return;
    }
    let p = SharedMut(buf.as_mut_ptr());
    pool.run(|ith, nth| {
        for r in chunk(n, ith, nth) {
            // SAFETY: row `r < n` lies inside `buf`, and `chunk` gives it to this thread only.
            f(r, unsafe {
                std::slice::from_raw_parts_mut(p.at(r * width), width)
            });
        }
    });
}

/// `x += o` over `n` rows of `h`, `o` first normalised in place when the block has an output
/// norm (Gemma 2's post-norms).
pub fn residual(
    pool: &ThreadPool,
    x: &mut [f32],
    o: &mut [f32],
    h: usize,
    n: usize,
    norm: Option<&[f32]>,
    eps: f32,
) {
    if let Some(w) = norm {
        each_row(pool, o, h, n, |_, row| rms_norm_inplace(row, w, eps));
    }
    let o = &*o;
    each_row(pool, x, h, n, |r, row| {
        row.iter_mut()
            .zip(&o[r * h..(r + 1) * h])
            .for_each(|(x, o)| *x += o)
    });
}

/// `out = x / sqrt(mean(x²) + eps) · w` (w already includes any norm offset).
#[inline]
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let scale = 1.0 / (ms + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * g;
    }
}

/// In-place RMS norm.
#[inline]
pub fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let scale = 1.0 / (ms + eps).sqrt();
    for (v, &g) in x.iter_mut().zip(w) {
        *v = *v * scale * g;
    }
}

/// Rotates the first `cos.len() * 2` dimensions of one head's vector.
#[inline]
pub fn rope(head: &mut [f32], cos: &[f32], sin: &[f32], layout: RopeLayout) {
    let half = cos.len();
    match layout {
        RopeLayout::Neox => {
            for i in 0..half {
                let (x1, x2) = (head[i], head[i + half]);
                head[i] = x1 * cos[i] - x2 * sin[i];
                head[i + half] = x2 * cos[i] + x1 * sin[i];
            }
        }
        RopeLayout::Interleaved => {
            for i in 0..half {
                let (x0, x1) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = x0 * cos[i] - x1 * sin[i];
                head[2 * i + 1] = x1 * cos[i] + x0 * sin[i];
            }
        }
    }
}

/// `gate = act(gate) · up`, elementwise over one row.
#[inline]
pub fn gated_activation(gate: &mut [f32], up: &[f32], act: Activation) {
    match act {
        Activation::Silu => herd_kernels::vec::swiglu_f32(gate, up),
        Activation::GeluTanh => {
            const SQRT_2_OVER_PI: f32 = 0.797_884_6;
            for (g, &u) in gate.iter_mut().zip(up) {
                let x = *g;
                *g = 0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh()) * u;
            }
        }
        Activation::Gelu => {
            for (g, &u) in gate.iter_mut().zip(up) {
                let x = *g;
                *g = 0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2)) * u;
            }
        }
    }
}

/// erf to f32 precision: Numerical Recipes' Chebyshev fit of erfc (fractional error below
/// 1.2e-7), evaluated in f64.
fn erf(x: f32) -> f32 {
    let x = x as f64;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let y = 1.0
        - t * (-x * x - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    (if x >= 0.0 { y } else { -y }) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // Values from Abramowitz & Stegun table 7.1.
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (2.0, 0.995_322_3),
            (-1.0, -0.842_700_8),
        ] {
            assert!((erf(x) - want).abs() < 2e-7, "erf({x}) = {}", erf(x));
        }
    }
}
