//! Dot products of one weight row with one activation row: the scalar reference.
//!
//! Quantised weights meet activations quantised to their `vec_dot_type` (ggml's scheme: integer
//! products inside a block, one float multiply per block); float weights meet f32 activations.
//! Ports of ggml's `ggml_vec_dot_*_generic` (`ggml/src/ggml-cpu/quants.c`). The SIMD versions in
//! [`crate::simd`] are tested against these.

use crate::dequant::{q3_k_scales, scale_min_k4};
use crate::types::{GgmlType, QK_K, f16_at, f32_at};

/// Dot product of a weight row of float type `t` (F32, F16, BF16) with f32 activations.
pub fn dot_float(t: GgmlType, w: &[u8], x: &[f32]) -> f32 {
    match t {
        GgmlType::F32 => w
            .chunks_exact(4)
            .zip(x)
            .map(|(b, &v)| f32_at(b, 0) * v)
            .sum(),
        GgmlType::F16 => w
            .chunks_exact(2)
            .zip(x)
            .map(|(b, &v)| f16_at(b, 0) * v)
            .sum(),
        GgmlType::BF16 => w
            .chunks_exact(2)
            .zip(x)
            .map(|(b, &v)| half::bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32() * v)
            .sum(),
        _ => panic!("dot_float called with quantised type {t}"),
    }
}

/// Dot product of a weight row of type `t` (anything but F32) with activations already
/// converted to `t.vec_dot_type()`; both hold the same number of elements.
pub fn dot_quant(t: GgmlType, w: &[u8], a: &[u8]) -> f32 {
    let wb = t.type_size();
    let ab = t.vec_dot_type().type_size();
    let pairs = w.chunks_exact(wb).zip(a.chunks_exact(ab));
    match t {
        GgmlType::F16 => w
            .chunks_exact(2)
            .zip(a.chunks_exact(2))
            .map(|(x, y)| f16_at(x, 0) * f16_at(y, 0))
            .sum(),
        GgmlType::BF16 => {
            let bf = |b: &[u8]| half::bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            w.chunks_exact(2)
                .zip(a.chunks_exact(2))
                .map(|(x, y)| bf(x) * bf(y))
                .sum()
        }
        GgmlType::Q4_0 => pairs
            .map(|(x, y)| {
                let s: i32 = (0..16)
                    .map(|j| {
                        let lo = (x[2 + j] & 0x0F) as i32 - 8;
                        let hi = (x[2 + j] >> 4) as i32 - 8;
                        lo * y[2 + j] as i8 as i32 + hi * y[2 + j + 16] as i8 as i32
                    })
                    .sum();
                s as f32 * f16_at(x, 0) * f16_at(y, 0)
            })
            .sum(),
        GgmlType::Q4_1 => pairs
            .map(|(x, y)| {
                let s: i32 = (0..16)
                    .map(|j| {
                        let lo = (x[4 + j] & 0x0F) as i32;
                        let hi = (x[4 + j] >> 4) as i32;
                        lo * y[4 + j] as i8 as i32 + hi * y[4 + j + 16] as i8 as i32
                    })
                    .sum();
                f16_at(x, 0) * f16_at(y, 0) * s as f32 + f16_at(x, 2) * f16_at(y, 2)
            })
            .sum(),
        GgmlType::Q5_0 => pairs
            .map(|(x, y)| {
                let qh = u32::from_le_bytes([x[2], x[3], x[4], x[5]]);
                let s: i32 = (0..16)
                    .map(|j| {
                        let h0 = ((qh >> j) << 4) & 0x10;
                        let h1 = (qh >> (j + 12)) & 0x10;
                        let lo = ((x[6 + j] as u32 & 0x0F) | h0) as i32 - 16;
                        let hi = ((x[6 + j] as u32 >> 4) | h1) as i32 - 16;
                        lo * y[2 + j] as i8 as i32 + hi * y[2 + j + 16] as i8 as i32
                    })
                    .sum();
                s as f32 * f16_at(x, 0) * f16_at(y, 0)
            })
            .sum(),
        GgmlType::Q5_1 => pairs
            .map(|(x, y)| {
                let qh = u32::from_le_bytes([x[4], x[5], x[6], x[7]]);
                let s: i32 = (0..16)
                    .map(|j| {
                        let h0 = ((qh >> j) << 4) & 0x10;
                        let h1 = (qh >> (j + 12)) & 0x10;
                        let lo = ((x[8 + j] as u32 & 0x0F) | h0) as i32;
                        let hi = ((x[8 + j] as u32 >> 4) | h1) as i32;
                        lo * y[4 + j] as i8 as i32 + hi * y[4 + j + 16] as i8 as i32
                    })
                    .sum();
                f16_at(x, 0) * f16_at(y, 0) * s as f32 + f16_at(x, 2) * f16_at(y, 2)
            })
            .sum(),
        GgmlType::Q8_0 => pairs
            .map(|(x, y)| {
                let s: i32 = (0..32)
                    .map(|j| x[2 + j] as i8 as i32 * y[2 + j] as i8 as i32)
                    .sum();
                s as f32 * f16_at(x, 0) * f16_at(y, 0)
            })
            .sum(),
        GgmlType::Q2_K => pairs.map(|(x, y)| dot_q2_k(x, y)).sum(),
        GgmlType::Q3_K => pairs.map(|(x, y)| dot_q3_k(x, y)).sum(),
        GgmlType::Q4_K => pairs.map(|(x, y)| dot_q45_k(x, y, false)).sum(),
        GgmlType::Q5_K => pairs.map(|(x, y)| dot_q45_k(x, y, true)).sum(),
        GgmlType::Q6_K => pairs.map(|(x, y)| dot_q6_k(x, y)).sum(),
        _ => panic!("dot_quant called with {t}, which has no quantised dot product"),
    }
}

/// The pieces of a Q8_K activation block: scale, 256 quants, 16 sums of 16.
#[inline(always)]
fn q8k(y: &[u8]) -> (f32, &[u8], impl Fn(usize) -> i32 + '_) {
    let bsum =
        move |j: usize| i16::from_le_bytes([y[4 + QK_K + 2 * j], y[5 + QK_K + 2 * j]]) as i32;
    (f32_at(y, 0), &y[4..4 + QK_K], bsum)
}

/// Σ scale[s] · Σ_{l in sub-block s} w[l]·a[l] over sub-blocks of `sub` elements.
#[inline(always)]
fn scaled_isum(w: &[i8; QK_K], a: &[u8], sub: usize, scale: impl Fn(usize) -> i32) -> i32 {
    w.chunks_exact(sub)
        .zip(a.chunks_exact(sub))
        .enumerate()
        .map(|(s, (wc, ac))| {
            let dot: i32 = wc
                .iter()
                .zip(ac)
                .map(|(&q, &v)| q as i32 * v as i8 as i32)
                .sum();
            scale(s) * dot
        })
        .sum()
}

fn dot_q2_k(x: &[u8], y: &[u8]) -> f32 {
    let (yd, q8, bsum) = q8k(y);
    let sc = &x[0..16];
    let summs: i32 = (0..16).map(|j| bsum(j) * (sc[j] >> 4) as i32).sum();
    let dall = yd * f16_at(x, 80);
    let dmin = yd * f16_at(x, 82);
    let mut w = [0i8; QK_K];
    let mut o = 0;
    for n in 0..2 {
        let q2 = &x[16 + 32 * n..16 + 32 * n + 32];
        for shift in [0u32, 2, 4, 6] {
            for l in 0..32 {
                w[o + l] = ((q2[l] >> shift) & 3) as i8;
            }
            o += 32;
        }
    }
    let isum = scaled_isum(&w, q8, 16, |s| (sc[s] & 0xF) as i32);
    dall * isum as f32 - dmin * summs as f32
}

fn dot_q3_k(x: &[u8], y: &[u8]) -> f32 {
    let (yd, q8, _) = q8k(y);
    let hm = &x[0..32];
    let scales = q3_k_scales(&x[96..108]);
    let mut w = [0i8; QK_K];
    let mut o = 0;
    let mut m = 1u8;
    for n in 0..2 {
        let q = &x[32 + 32 * n..32 + 32 * n + 32];
        for shift in [0u32, 2, 4, 6] {
            for l in 0..32 {
                let high = if hm[l] & m != 0 { 0 } else { 4 };
                w[o + l] = ((q[l] >> shift) & 3) as i8 - high;
            }
            o += 32;
            m <<= 1;
        }
    }
    let isum = scaled_isum(&w, q8, 16, |s| scales[s] as i32);
    f16_at(x, 108) * yd * isum as f32
}

fn dot_q45_k(x: &[u8], y: &[u8], five_bits: bool) -> f32 {
    let (yd, q8, bsum) = q8k(y);
    let scales = &x[4..16];
    let (qh, ql) = if five_bits {
        (&x[16..48], &x[48..176])
    } else {
        (&x[0..0], &x[16..144])
    };
    let mut w = [0i8; QK_K];
    let (mut u1, mut u2) = (1u8, 2u8);
    for j in 0..4 {
        for l in 0..32 {
            let q = ql[32 * j + l];
            let (h1, h2) = if five_bits {
                (
                    if qh[l] & u1 != 0 { 16 } else { 0 },
                    if qh[l] & u2 != 0 { 16 } else { 0 },
                )
            } else {
                (0, 0)
            };
            w[64 * j + l] = ((q & 0xF) + h1) as i8;
            w[64 * j + 32 + l] = ((q >> 4) + h2) as i8;
        }
        u1 <<= 2;
        u2 <<= 2;
    }
    let sm: Vec<(u8, u8)> = (0..8).map(|j| scale_min_k4(j, scales)).collect();
    let sumi_mins: i32 = (0..16).map(|j| bsum(j) * sm[j / 2].1 as i32).sum();
    let isum = scaled_isum(&w, q8, 32, |s| sm[s].0 as i32);
    f16_at(x, 0) * yd * isum as f32 - f16_at(x, 2) * yd * sumi_mins as f32
}

fn dot_q6_k(x: &[u8], y: &[u8]) -> f32 {
    let (yd, q8, _) = q8k(y);
    let mut w = [0i8; QK_K];
    for n in 0..2 {
        let ql = &x[64 * n..64 * n + 64];
        let qh = &x[128 + 32 * n..128 + 32 * n + 32];
        let a = &mut w[128 * n..128 * n + 128];
        for l in 0..32 {
            a[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            a[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            a[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            a[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    let sc = &x[192..208];
    let isum = scaled_isum(&w, q8, 16, |s| sc[s] as i8 as i32);
    f16_at(x, 208) * yd * isum as f32
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dequant::dequantize_row;
    use crate::quantize::quantize_row;

    /// Random bytes make valid blocks of any type except for their f16 scales, which may be
    /// NaN or huge: overwrite those with small values.
    pub(crate) fn random_row(t: GgmlType, n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        let mut bytes: Vec<u8> = (0..t.row_bytes(n).unwrap())
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 33) as u8
            })
            .collect();
        let scale_offsets: &[usize] = match t {
            GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
            GgmlType::Q4_1 | GgmlType::Q5_1 => &[0, 2],
            GgmlType::Q2_K => &[80, 82],
            GgmlType::Q3_K => &[108],
            GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
            GgmlType::Q6_K => &[208],
            _ => &[],
        };
        for (bi, b) in bytes.chunks_exact_mut(t.type_size()).enumerate() {
            for (k, &o) in scale_offsets.iter().enumerate() {
                let v = 0.01 + 0.003 * ((bi * 7 + k * 3) % 11) as f32;
                b[o..o + 2].copy_from_slice(&half::f16::from_f32(v).to_bits().to_le_bytes());
            }
        }
        bytes
    }

    pub(crate) fn activations(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * 1.3)
            .collect()
    }

    /// The integer dot product must equal dequantise-then-multiply on the same quantised
    /// activations, up to float rounding.
    #[test]
    fn quantised_dot_equals_dot_of_dequantised_rows() {
        let n = 512;
        let x = activations(n);
        for t in GgmlType::ALL
            .into_iter()
            .filter(|t| t.is_quantized() && t.is_weight_type())
        {
            let w = random_row(t, n, t.id() as u64);
            let at = t.vec_dot_type();
            let mut a = vec![0u8; at.row_bytes(n).unwrap()];
            quantize_row(at, &x, &mut a);
            let mut wf = vec![0f32; n];
            let mut af = vec![0f32; n];
            dequantize_row(t, &w, &mut wf);
            dequantize_row(at, &a, &mut af);
            let want: f64 = wf.iter().zip(&af).map(|(&p, &q)| p as f64 * q as f64).sum();
            let got = dot_quant(t, &w, &a) as f64;
            let scale: f64 = wf
                .iter()
                .zip(&af)
                .map(|(&p, &q)| (p as f64 * q as f64).abs())
                .sum();
            // Q8_1 stores d·Σq as f16, so the min term of Q4_1/Q5_1 is rounded there.
            let tol = if at == GgmlType::Q8_1 { 2e-3 } else { 1e-5 };
            assert!(
                (got - want).abs() <= tol * scale + 1e-6,
                "{t}: got {got}, want {want}"
            );
        }
    }
}
