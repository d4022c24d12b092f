//! f32 vector primitives for the engine's attention (a query against each cached key, the
//! probabilities times the cached values), with AVX2/FMA chosen at run time ([`crate::simd::isa`]).
//!
//! The scalar references sum in order; the AVX2 versions keep 32 partial sums, so results agree
//! to rounding (the tests hold them within 1e-6 of the sum of |products|).

use crate::simd::{Isa, isa};

/// Σ a[i]·b[i] over the common length.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx2 {
        // SAFETY: `isa()` is Avx2 only when the CPU has AVX2 and FMA.
        return unsafe { x86::dot(a, b) };
    }
    dot_scalar(a, b)
}

/// y[i] += alpha·x[i] over the common length.
#[inline]
pub fn axpy_f32(alpha: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx2 {
        // SAFETY: as above.
        return unsafe { x86::axpy(alpha, &x[..n], &mut y[..n]) };
    }
    axpy_scalar(alpha, &x[..n], &mut y[..n])
}

/// The reference for [`dot_f32`].
pub fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The reference for [`axpy_f32`].
pub fn axpy_scalar(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use crate::simd::x86::hsum_ps;

    /// # Safety
    /// The CPU must have AVX2 and FMA; `a` and `b` have the same length.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY (loads): `i + 8·k + 8 <= n` elements of both slices.
        unsafe {
            while i + 32 <= n {
                for (k, s) in acc.iter_mut().enumerate() {
                    let e = i + 8 * k;
                    *s =
                        _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(e)), _mm256_loadu_ps(pb.add(e)), *s);
                }
                i += 32;
            }
            while i + 8 <= n {
                acc[0] = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i)),
                    _mm256_loadu_ps(pb.add(i)),
                    acc[0],
                );
                i += 8;
            }
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut s = hsum_ps(s);
        for j in i..n {
            s += a[j] * b[j];
        }
        s
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA; `x` and `y` have the same length.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
        let n = x.len();
        let av = _mm256_set1_ps(alpha);
        let (px, py) = (x.as_ptr(), y.as_mut_ptr());
        let mut i = 0;
        // SAFETY: `i + 8 <= n` elements of both slices; `y` is not aliased by `x`.
        unsafe {
            while i + 8 <= n {
                let v = _mm256_fmadd_ps(av, _mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i)));
                _mm256_storeu_ps(py.add(i), v);
                i += 8;
            }
        }
        for j in i..n {
            y[j] += alpha * x[j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn simd_dot_and_axpy_agree_with_the_references() {
        for n in [0, 1, 7, 8, 9, 31, 32, 33, 64, 100, 257] {
            let (a, b) = (values(n, 1 + n as u32), values(n, 1000 + n as u32));
            let bound: f32 =
                a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum::<f32>() * 1e-6 + 1e-7;
            let (got, want) = (dot_f32(&a, &b), dot_scalar(&a, &b));
            assert!((got - want).abs() <= bound, "dot n={n}: {got} vs {want}");
            let (mut y1, mut y2) = (b.clone(), b.clone());
            axpy_f32(0.37, &a, &mut y1);
            axpy_scalar(0.37, &a, &mut y2);
            for (p, q) in y1.iter().zip(&y2) {
                // An FMA rounds once, the reference twice.
                assert!(
                    (p - q).abs() <= 1e-6 * (1.0 + q.abs()),
                    "axpy n={n}: {p} vs {q}"
                );
            }
        }
    }
}
