//! The element-wise and matrix pieces of the native training pass, each forward with its
//! backward beside it. Activations are row-major `[N, width]` with `N = B·T` (row `b·T + t`).

use herd_kernels::vec::{exp_sum_f32, swiglu_f32};
use herd_model::spec::RopeLayout;

/// `c[m×n] = acc·c + scale · op(a)[m×k] · op(b)[k×n]`, row-major; `ta`: `a` is stored `[k, m]`,
/// `tb`: `b` is stored `[n, k]`. `acc = false` overwrites `c`.
#[allow(clippy::too_many_arguments)]
pub fn mm(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    ta: bool,
    tb: bool,
    acc: bool,
    scale: f32,
) {
    assert!(
        c.len() >= m * n && a.len() >= m * k && b.len() >= k * n,
        "mm: buffers too small for {m}×{k} · {k}×{n}"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !acc {
            c[..m * n].fill(0.0);
        }
        return;
    }
    let (lhs_cs, lhs_rs) = if ta { (m as isize, 1) } else { (1, k as isize) };
    let (rhs_cs, rhs_rs) = if tb { (k as isize, 1) } else { (1, n as isize) };
    // Threads pay off only on products of some size; tiny ones (LoRA's rank) run inline.
    let par = if m * n * k >= 1 << 18 {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the assertion above keeps every index the strides reach inside the buffers,
    // and `c` does not alias `a` or `b` (it is borrowed mutably).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            acc,
            a.as_ptr(),
            lhs_cs,
            lhs_rs,
            b.as_ptr(),
            rhs_cs,
            rhs_rs,
            1.0,
            scale,
            false,
            false,
            false,
            par,
        );
    }
}

/// RMS norm of each row of `x` (`[N, H]`) into `y`, times `w + offset`; returns `1/rms`
/// per row (`[N]`), which the backward pass needs.
pub fn rmsnorm(x: &[f32], w: &[f32], offset: f32, eps: f32, y: &mut [f32]) -> Vec<f32> {
    let h = w.len();
    let mut inv = Vec::with_capacity(x.len() / h);
    for (xr, yr) in x.chunks_exact(h).zip(y.chunks_exact_mut(h)) {
        let ms = xr.iter().map(|v| v * v).sum::<f32>() / h as f32;
        let r = 1.0 / (ms + eps).sqrt();
        for ((yv, &xv), &wv) in yr.iter_mut().zip(xr).zip(w) {
            *yv = xv * r * (wv + offset);
        }
        inv.push(r);
    }
    inv
}

/// Adds the gradient of [`rmsnorm`]'s input to `dx`, given its output's gradient `dy`:
/// with `g = dy·w`, `dx = r·g − x·r³·(g·x)/H`.
pub fn rmsnorm_backward(
    dx: &mut [f32],
    dy: &[f32],
    x: &[f32],
    inv: &[f32],
    w: &[f32],
    offset: f32,
) {
    let h = w.len();
    let mut g = vec![0f32; h];
    for (((dxr, dyr), xr), &r) in dx
        .chunks_exact_mut(h)
        .zip(dy.chunks_exact(h))
        .zip(x.chunks_exact(h))
        .zip(inv)
    {
        for ((gv, &d), &wv) in g.iter_mut().zip(dyr).zip(w) {
            *gv = d * (wv + offset);
        }
        let dot: f32 = g.iter().zip(xr).map(|(a, b)| a * b).sum();
        let c = r * r * r * dot / h as f32;
        for ((d, &gv), &xv) in dxr.iter_mut().zip(&g).zip(xr) {
            *d += r * gv - xv * c;
        }
    }
}

/// Rotary angles per row: `cos` and `sin`, each `[N, rot/2]`, from the rows' positions.
pub struct Rope {
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
    pub half: usize,
    pub layout: RopeLayout,
}

impl Rope {
    /// Angles `position · inv_freq` in f32, as the reference forward pass computes them.
    pub fn new(
        positions: impl Iterator<Item = usize>,
        inv_freq: &[f32],
        layout: RopeLayout,
    ) -> Self {
        let half = inv_freq.len();
        let (mut cos, mut sin) = (vec![], vec![]);
        for p in positions {
            for f in inv_freq {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Rope {
            cos,
            sin,
            half,
            layout,
        }
    }

    /// Rotates the first `2·half` dimensions of every `hd`-wide head of `x` (`[N, heads·hd]`);
    /// `inverse` rotates back, which is the backward pass of the rotation.
    pub fn apply(&self, x: &mut [f32], width: usize, hd: usize, inverse: bool) {
        let half = self.half;
        let sign = if inverse { -1.0 } else { 1.0 };
        for (row, (cs, sn)) in x
            .chunks_exact_mut(width)
            .zip(self.cos.chunks_exact(half).zip(self.sin.chunks_exact(half)))
        {
            for head in row.chunks_exact_mut(hd) {
                for j in 0..half {
                    let (ia, ib) = match self.layout {
                        RopeLayout::Neox => (j, j + half),
                        RopeLayout::Interleaved => (2 * j, 2 * j + 1),
                    };
                    let (a, b) = (head[ia], head[ib]);
                    let (c, s) = (cs[j], sign * sn[j]);
                    head[ia] = a * c - b * s;
                    head[ib] = b * c + a * s;
                }
            }
        }
    }
}

/// `act = silu(gate) · up`, element-wise.
pub fn swiglu(gate: &[f32], up: &[f32]) -> Vec<f32> {
    let mut act = gate.to_vec();
    swiglu_f32(&mut act, up);
    act
}

/// The gradients of [`swiglu`]'s inputs from its output's `d_act`: with `σ = sigmoid(gate)`,
/// `d_gate = d_act·up·σ·(1 + gate·(1 − σ))` and `d_up = d_act·gate·σ`.
pub fn swiglu_backward(d_act: &[f32], gate: &[f32], up: &[f32]) -> (Vec<f32>, Vec<f32>) {
    // σ through the vector exp: e^-g, then 1/(1 + e^-g).
    let mut sig: Vec<f32> = gate.iter().map(|g| -g).collect();
    exp_sum_f32(&mut sig, 0.0);
    let mut d_gate = Vec::with_capacity(gate.len());
    let mut d_up = Vec::with_capacity(gate.len());
    for (((&d, &g), &u), &e) in d_act.iter().zip(gate).zip(up).zip(&sig) {
        let s = 1.0 / (1.0 + e);
        d_gate.push(d * u * s * (1.0 + g * (1.0 - s)));
        d_up.push(d * g * s);
    }
    (d_gate, d_up)
}

/// Rows of the batch whose logits predict a trained token: `(row of the prediction, token)`.
pub fn targets(ids: &[Vec<u32>], train: &[Vec<bool>]) -> Vec<(usize, u32)> {
    let t = ids.first().map_or(0, Vec::len);
    let mut out = vec![];
    for (bi, (row, tr)) in ids.iter().zip(train).enumerate() {
        for i in 1..t {
            if tr[i] {
                out.push((bi * t + i - 1, row[i]));
            }
        }
    }
    out
}

/// Cross-entropy of `logits` (`[M, V]`, one row per target): returns `Σ −log p(target)` and
/// overwrites `logits` with the gradient of `scale` times that sum (`scale·(softmax − onehot)`).
pub fn cross_entropy(logits: &mut [f32], v: usize, tokens: &[u32], scale: f32) -> f64 {
    let mut loss = 0f64;
    for (row, &tok) in logits.chunks_exact_mut(v).zip(tokens) {
        let picked = row[tok as usize];
        let max = herd_kernels::vec::max_f32(row);
        let sum = exp_sum_f32(row, max);
        loss += (max + sum.ln() - picked) as f64;
        let k = scale / sum;
        row.iter_mut().for_each(|x| *x *= k);
        row[tok as usize] -= scale;
    }
    loss
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::test_values as values;

    #[test]
    fn mm_matches_the_naive_product_in_every_transpose() {
        let (m, n, k) = (5, 7, 3);
        let a = values(m * k, 1);
        let b = values(k * n, 2);
        let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut want = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                want[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum::<f32>() * 0.5;
            }
        }
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut c = vec![1f32; m * n];
            mm(
                &mut c,
                if ta { &at } else { &a },
                if tb { &bt } else { &b },
                (m, n, k),
                ta,
                tb,
                true,
                0.5,
            );
            for (x, y) in c.iter().zip(&want) {
                assert!((x - 1.0 - y).abs() < 1e-6, "ta={ta} tb={tb}: {x} vs {y}+1");
            }
        }
    }

    /// Each backward against central differences of its forward.
    #[test]
    fn backward_passes_match_finite_differences() {
        let (n, h) = (3, 8);
        let x = values(n * h, 3);
        let w = values(h, 4);
        let dy = values(n * h, 5);
        let f = |x: &[f32]| -> f64 {
            let mut y = vec![0f32; n * h];
            rmsnorm(x, &w, 0.5, 1e-5, &mut y);
            y.iter().zip(&dy).map(|(a, b)| (a * b) as f64).sum()
        };
        let mut y = vec![0f32; n * h];
        let inv = rmsnorm(&x, &w, 0.5, 1e-5, &mut y);
        let mut dx = vec![0f32; n * h];
        rmsnorm_backward(&mut dx, &dy, &x, &inv, &w, 0.5);
        for i in 0..n * h {
            let (mut p, mut q) = (x.clone(), x.clone());
            p[i] += 1e-3;
            q[i] -= 1e-3;
            let fd = (f(&p) - f(&q)) / 2e-3;
            assert!(
                (fd - dx[i] as f64).abs() < 1e-3,
                "rmsnorm {i}: {fd} vs {}",
                dx[i]
            );
        }

        let g = values(n * h, 6).iter().map(|v| v * 4.0).collect::<Vec<_>>();
        let u = values(n * h, 7);
        let (dg, du) = swiglu_backward(&dy, &g, &u);
        let f = |g: &[f32], u: &[f32]| -> f64 {
            swiglu(g, u)
                .iter()
                .zip(&dy)
                .map(|(a, b)| (a * b) as f64)
                .sum()
        };
        for i in 0..n * h {
            let (mut p, mut q) = (g.clone(), g.clone());
            p[i] += 1e-3;
            q[i] -= 1e-3;
            let fd = (f(&p, &u) - f(&q, &u)) / 2e-3;
            assert!((fd - dg[i] as f64).abs() < 1e-3, "swiglu gate {i}");
            let (mut p, mut q) = (u.clone(), u.clone());
            p[i] += 1e-3;
            q[i] -= 1e-3;
            let fd = (f(&g, &p) - f(&g, &q)) / 2e-3;
            assert!((fd - du[i] as f64).abs() < 1e-3, "swiglu up {i}");
        }

        for layout in [RopeLayout::Neox, RopeLayout::Interleaved] {
            let rope = Rope::new([0, 5, 9].into_iter(), &[1.0, 0.1, 0.01], layout);
            let x0 = values(n * h, 8);
            let mut x = x0.clone();
            rope.apply(&mut x, h, h, false);
            rope.apply(&mut x, h, h, true);
            for (a, b) in x.iter().zip(&x0) {
                assert!((a - b).abs() < 1e-6, "{layout:?}: rotating back");
            }
            // A rotation's transpose is its inverse: <R x, y> = <x, Rᵀ y>.
            let (mut rx, mut ry) = (x0.clone(), dy.clone());
            rope.apply(&mut rx, h, h, false);
            rope.apply(&mut ry, h, h, true);
            let a: f32 = rx.iter().zip(&dy).map(|(a, b)| a * b).sum();
            let b: f32 = x0.iter().zip(&ry).map(|(a, b)| a * b).sum();
            assert!((a - b).abs() < 1e-5, "{layout:?}: adjoint");
        }

        let v = 6;
        let logits = values(2 * v, 9);
        let toks = [2u32, 5];
        let f = |l: &[f32]| -> f64 { cross_entropy(&mut l.to_vec(), v, &toks, 1.0) };
        let mut grad = logits.clone();
        cross_entropy(&mut grad, v, &toks, 1.0);
        for i in 0..2 * v {
            let (mut p, mut q) = (logits.clone(), logits.clone());
            p[i] += 1e-3;
            q[i] -= 1e-3;
            let fd = (f(&p) - f(&q)) / 2e-3;
            assert!((fd - grad[i] as f64).abs() < 1e-3, "cross entropy {i}");
        }
    }
}
