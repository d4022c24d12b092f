//! f32 vector primitives for the engine's attention (a query against each cached key, the
//! probabilities times the cached values), with AVX2/FMA chosen at run time ([`crate::simd::isa`]).
//!
//! The scalar references work in order; the AVX2 versions keep partial sums (dot) and fuse the
//! multiply-add (axpy), so results agree to rounding (the tests bound the difference).

#[cfg(target_arch = "x86_64")]
use crate::simd::Isa;
use crate::simd::isa;
use crate::types::GgmlType;

/// Σ a[i]·b[i] over the common length: the row dot product of F32 matrices
/// ([`crate::simd::float_dot`]), with `a` as the row.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    // SAFETY: every byte of an f32 is a valid u8; the view lives as long as `a`.
    let row = unsafe { std::slice::from_raw_parts(a.as_ptr().cast::<u8>(), 4 * n) };
    crate::simd::float_dot(isa(), GgmlType::F32)(row, &b[..n])
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

/// `x = cap·tanh(x/cap)` on each element: Gemma 2's soft cap on attention scores and logits.
pub fn softcap(xs: &mut [f32], cap: f32) {
    for x in xs {
        *x = cap * (*x / cap).tanh();
    }
}

/// Widens f16 bits to f32, `dst[i] = src[i]` over the common length.
pub fn f16_to_f32(src: &[u16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx2 {
        // SAFETY: `Isa::Avx2` is only chosen on CPUs with F16C.
        return unsafe { x86::f16_to_f32(&src[..n], &mut dst[..n]) };
    }
    for (d, &h) in dst[..n].iter_mut().zip(&src[..n]) {
        *d = half::f16::from_bits(h).to_f32();
    }
}

/// Rounds f32 to f16 bits (to nearest, ties to even, as `half` and F16C both do) over the
/// common length.
pub fn f32_to_f16(src: &[f32], dst: &mut [u16]) {
    let n = src.len().min(dst.len());
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx2 {
        // SAFETY: as above.
        return unsafe { x86::f32_to_f16(&src[..n], &mut dst[..n]) };
    }
    for (d, &x) in dst[..n].iter_mut().zip(&src[..n]) {
        *d = half::f16::from_f32(x).to_bits();
    }
}

/// `e^x` exactly as ggml's AVX2 `ggml_v_expf` computes it, lane by lane (ARM's
/// optimized-routines expf: a degree-5 polynomial after range reduction, about 1 ulp).
/// Matching it bit for bit keeps herd's activations equal to llama.cpp's, which matters once
/// they are rounded to F16 or Q8 for the next matrix product.
#[inline]
pub fn ggml_expf(x: f32) -> f32 {
    let r = f32::from_bits(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(f32::from_bits(0x3fb8_aa3b), r); // log2(e)
    let n = z - r;
    let b = (-n).mul_add(
        f32::from_bits(0x35bf_be8e),
        (-n).mul_add(f32::from_bits(0x3f31_7200), x),
    );
    let e = z.to_bits() << 23;
    let k = f32::from_bits(e.wrapping_add(1.0f32.to_bits()));
    let u = b * b;
    let j = f32::from_bits(0x3c07_2010)
        .mul_add(b, f32::from_bits(0x3d2b_9f17))
        .mul_add(
            u,
            f32::from_bits(0x3e2a_af33).mul_add(b, f32::from_bits(0x3eff_fedb)),
        )
        .mul_add(u, f32::from_bits(0x3f7f_fff6) * b);
    if n.abs() <= 126.0 {
        return j.mul_add(k, k);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = f32::from_bits(g.wrapping_add(0x7f00_0000));
    let s2 = f32::from_bits(e.wrapping_sub(g));
    if n.abs() > 192.0 {
        s1 * s1
    } else {
        s2.mul_add(j, s2) * s1
    }
}

/// `gate[i] = silu(gate[i]) · up[i]` as ggml's swiglu computes it: `x / (1 + e^-x) · u`, with
/// [`ggml_expf`] on whole groups of 8 (its AVX2 `ggml_v_expf`, bit for bit) and libm's `exp`
/// on the rest.
#[inline]
pub fn swiglu_f32(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx2 {
        let vec_end = n / 8 * 8;
        // SAFETY: as above.
        unsafe { x86::swiglu(&mut gate[..vec_end], &up[..vec_end]) };
        swiglu_tail(&mut gate[vec_end..n], &up[vec_end..n]);
        return;
    }
    swiglu_scalar(&mut gate[..n], &up[..n]);
}

/// `x[i] = e^(x[i] - shift)` in place, returning Σ x[i] afterwards: softmax's numerator and
/// denominator in one pass ([`ggml_expf`] on every element; AVX2 in groups of 8).
#[inline]
pub fn exp_sum_f32(xs: &mut [f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx2 {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { x86::exp_sum(xs, shift) };
    }
    exp_sum_scalar(xs, shift)
}

/// The reference for [`exp_sum_f32`].
pub fn exp_sum_scalar(xs: &mut [f32], shift: f32) -> f32 {
    let mut sum = 0.0;
    for x in xs.iter_mut() {
        *x = ggml_expf(*x - shift);
        sum += *x;
    }
    sum
}

/// The largest element (−∞ for an empty slice; NaNs are skipped).
#[inline]
pub fn max_f32(xs: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx2 {
        // SAFETY: the CPU has AVX2.
        return unsafe { x86::max(xs) };
    }
    xs.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// The reference for [`swiglu_f32`].
pub fn swiglu_scalar(gate: &mut [f32], up: &[f32]) {
    let vec_end = gate.len() / 8 * 8;
    for (g, &u) in gate[..vec_end].iter_mut().zip(up) {
        *g = *g / (1.0 + ggml_expf(-*g)) * u;
    }
    swiglu_tail(&mut gate[vec_end..], &up[vec_end..]);
}

fn swiglu_tail(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
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
pub(crate) use x86::{expf8 as x86_expf8, f16_to_f32 as x86_f16_to_f32};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// `ggml_v_expf` (ggml-cpu's AVX2 exp), the vector form of [`super::ggml_expf`].
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(crate) fn expf8(x: __m256) -> __m256 {
        let c = |bits: u32| _mm256_set1_ps(f32::from_bits(bits));
        let r = c(0x4b40_0000);
        let z = _mm256_fmadd_ps(x, c(0x3fb8_aa3b), r);
        let n = _mm256_sub_ps(z, r);
        let b = _mm256_fnmadd_ps(n, c(0x35bf_be8e), _mm256_fnmadd_ps(n, c(0x3f31_7200), x));
        let e = _mm256_slli_epi32::<23>(_mm256_castps_si256(z));
        let k = _mm256_castsi256_ps(_mm256_add_epi32(
            e,
            _mm256_castps_si256(_mm256_set1_ps(1.0)),
        ));
        let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
        let cmask = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(126.0));
        let u = _mm256_mul_ps(b, b);
        let j = _mm256_fmadd_ps(
            _mm256_fmadd_ps(
                _mm256_fmadd_ps(c(0x3c07_2010), b, c(0x3d2b_9f17)),
                u,
                _mm256_fmadd_ps(c(0x3e2a_af33), b, c(0x3eff_fedb)),
            ),
            u,
            _mm256_mul_ps(c(0x3f7f_fff6), b),
        );
        if _mm256_movemask_ps(cmask) == 0 {
            return _mm256_fmadd_ps(j, k, k);
        }
        let g = _mm256_and_si256(
            _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps())),
            _mm256_set1_epi32(0x8200_0000u32 as i32),
        );
        let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f00_0000)));
        let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
        let dmask = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(192.0));
        _mm256_or_ps(
            _mm256_and_ps(dmask, _mm256_mul_ps(s1, s1)),
            _mm256_andnot_ps(
                dmask,
                _mm256_or_ps(
                    _mm256_and_ps(cmask, _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1)),
                    _mm256_andnot_ps(cmask, _mm256_fmadd_ps(k, j, k)),
                ),
            ),
        )
    }

    /// # Safety
    /// F16C; `src` and `dst` have the same length.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn f16_to_f32(src: &[u16], dst: &mut [f32]) {
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
        let mut i = 0;
        // SAFETY: `i + 8 <= len` elements of both slices.
        unsafe {
            while i + 8 <= src.len() {
                _mm256_storeu_ps(d.add(i), _mm256_cvtph_ps(_mm_loadu_si128(s.add(i).cast())));
                i += 8;
            }
        }
        for (d, &h) in dst[i..].iter_mut().zip(&src[i..]) {
            *d = half::f16::from_bits(h).to_f32();
        }
    }

    /// # Safety
    /// F16C; `src` and `dst` have the same length.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn f32_to_f16(src: &[f32], dst: &mut [u16]) {
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
        let mut i = 0;
        // SAFETY: `i + 8 <= len` elements of both slices.
        unsafe {
            while i + 8 <= src.len() {
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(s.add(i)));
                _mm_storeu_si128(d.add(i).cast(), h);
                i += 8;
            }
        }
        for (d, &x) in dst[i..].iter_mut().zip(&src[i..]) {
            *d = half::f16::from_f32(x).to_bits();
        }
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA; `gate` and `up` have the same length, a multiple of 8.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn swiglu(gate: &mut [f32], up: &[f32]) {
        let one = _mm256_set1_ps(1.0);
        let (pg, pu) = (gate.as_mut_ptr(), up.as_ptr());
        let mut i = 0;
        // SAFETY: `i + 8 <= len` elements of both slices.
        unsafe {
            while i + 8 <= gate.len() {
                let x = _mm256_loadu_ps(pg.add(i));
                let silu = _mm256_div_ps(
                    x,
                    _mm256_add_ps(one, expf8(_mm256_sub_ps(_mm256_setzero_ps(), x))),
                );
                _mm256_storeu_ps(pg.add(i), _mm256_mul_ps(silu, _mm256_loadu_ps(pu.add(i))));
                i += 8;
            }
        }
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn exp_sum(xs: &mut [f32], shift: f32) -> f32 {
        let sv = _mm256_set1_ps(shift);
        let mut acc = _mm256_setzero_ps();
        let p = xs.as_mut_ptr();
        let mut i = 0;
        // SAFETY: `i + 8 <= len`.
        unsafe {
            while i + 8 <= xs.len() {
                let e = expf8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), sv));
                _mm256_storeu_ps(p.add(i), e);
                acc = _mm256_add_ps(acc, e);
                i += 8;
            }
        }
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        let mut sum: f32 = lanes.iter().sum();
        for x in &mut xs[i..] {
            *x = super::ggml_expf(*x - shift);
            sum += *x;
        }
        sum
    }

    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn max(xs: &[f32]) -> f32 {
        let mut acc = _mm256_set1_ps(f32::NEG_INFINITY);
        let p = xs.as_ptr();
        let mut i = 0;
        // SAFETY: `i + 8 <= len`.
        unsafe {
            while i + 8 <= xs.len() {
                // maxps returns its second operand when either is NaN: the running max stays.
                acc = _mm256_max_ps(_mm256_loadu_ps(p.add(i)), acc);
                i += 8;
            }
        }
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        lanes
            .iter()
            .chain(&xs[i..])
            .copied()
            .fold(f32::NEG_INFINITY, f32::max)
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

    /// The vector conversions against `half`'s, bit for bit, on values that round every way:
    /// ties (even and odd), subnormals, overflow to infinity, infinities, and a 13-element
    /// tail past the vector width.
    #[test]
    fn f16_conversions_match_half_bit_for_bit() {
        let mut xs = values(1000, 3);
        for x in xs.iter_mut() {
            *x *= 70_000.0;
        }
        let tie_even = f32::from_bits(0x3f80_1000); // 1 + 2^-11: halfway, rounds down to 1
        let tie_odd = f32::from_bits(0x3f80_3000); // 1 + 3·2^-11: halfway, rounds up
        xs.extend([
            tie_even,
            tie_odd,
            -tie_odd,
            1e-6,
            -3e-7,
            6e-8,
            65_520.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            1.0,
            0.1,
        ]);
        let mut h = vec![0u16; xs.len()];
        f32_to_f16(&xs, &mut h);
        for (i, (&x, &got)) in xs.iter().zip(&h).enumerate() {
            assert_eq!(got, half::f16::from_f32(x).to_bits(), "element {i}: {x}");
        }
        assert_eq!(h[1000], 0x3c00);
        assert_eq!(h[1001], 0x3c02);
        assert_eq!(h[1006], 0x7c00, "65520 overflows to infinity");
        let mut back = vec![0f32; h.len()];
        f16_to_f32(&h, &mut back);
        for (i, (&b, &hb)) in back.iter().zip(&h).enumerate() {
            assert_eq!(
                b.to_bits(),
                half::f16::from_bits(hb).to_f32().to_bits(),
                "element {i}"
            );
        }
    }

    #[test]
    fn ggml_expf_is_within_two_ulp_of_exp() {
        let mut x = -100.0f32;
        while x < 88.0 {
            let (a, b) = (ggml_expf(x), x.exp());
            assert!(
                (a - b).abs() <= 2.5e-7 * b.abs() + f32::MIN_POSITIVE,
                "exp({x}): {a} vs {b}"
            );
            x += 0.0137;
        }
        assert_eq!(ggml_expf(-200.0), 0.0);
        assert!(ggml_expf(100.0).is_infinite());
    }

    #[test]
    fn simd_exp_sum_and_max_agree_with_the_references() {
        for n in [0, 3, 8, 13, 64, 515] {
            let xs: Vec<f32> = values(n, 5 + n as u32).iter().map(|v| v * 40.0).collect();
            let m = max_f32(&xs);
            assert_eq!(
                m,
                xs.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                "n={n}"
            );
            let (mut a, mut b) = (xs.clone(), xs.clone());
            let (sa, sb) = (exp_sum_f32(&mut a, m), exp_sum_scalar(&mut b, m));
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.to_bits(), y.to_bits(), "n={n}");
            }
            let exact: f64 = xs.iter().map(|&x| ((x - m) as f64).exp()).sum();
            assert!(
                (sa as f64 - exact).abs() <= 1e-5 * exact.max(1e-30),
                "n={n}: {sa} vs {exact}"
            );
            assert!((sa - sb).abs() <= 1e-5 * sb.abs().max(1e-30), "n={n}");
        }
    }

    #[test]
    fn simd_swiglu_is_the_reference_bit_for_bit() {
        for n in [0, 5, 8, 13, 64, 1000] {
            let mut gate: Vec<f32> = values(n, 7 + n as u32).iter().map(|v| v * 30.0).collect();
            // Huge and tiny inputs take the exponent's slow paths.
            if n >= 8 {
                gate[0] = -150.0;
                gate[1] = 100.0;
                gate[2] = -95.0;
                gate[3] = 200.0;
            }
            let up = values(n, 99 + n as u32);
            let (mut a, mut b) = (gate.clone(), gate.clone());
            swiglu_f32(&mut a, &up);
            swiglu_scalar(&mut b, &up);
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                assert_eq!(
                    x.to_bits(),
                    y.to_bits(),
                    "n={n} i={i}: {x} vs {y} (input {})",
                    gate[i]
                );
            }
        }
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
