//! Every SIMD kernel against its scalar reference.

use super::*;
use crate::dequant::dequantize_row;
use crate::dot::tests::random_row;
use crate::quantize::quantize_activations as scalar_quantize;
use crate::types::{QK_K, put_f16};

pub(crate) fn weight_types() -> impl Iterator<Item = GgmlType> {
    GgmlType::ALL
        .into_iter()
        .filter(|t| t.is_weight_type() && *t != GgmlType::F32)
}

/// Deterministic pseudo-random floats in about ±2 with some structure (a few larger values,
/// some exact zeros) so that block maxima and signs vary.
pub(crate) fn random_floats(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            match i % 13 {
                0 => u * 4.0,
                7 => 0.0,
                _ => u,
            }
        })
        .collect()
}

/// A valid random weight row: random blocks for quantised types, random values for floats
/// (random bytes would make NaNs there).
pub(crate) fn weight_row(t: GgmlType, n: usize, seed: u64) -> Vec<u8> {
    if t.is_quantized() {
        random_row(t, n, seed)
    } else {
        let mut w = vec![0u8; t.row_bytes(n).unwrap()];
        crate::quantize::quantize_row(t, &random_floats(n, seed), &mut w);
        w
    }
}

/// `v` copied to a fresh buffer at byte offset `off`, so kernels see unaligned rows.
pub(crate) fn shifted(v: &[u8], off: usize) -> (Vec<u8>, usize) {
    let mut buf = vec![0u8; v.len() + off];
    buf[off..].copy_from_slice(v);
    (buf, off)
}

/// Σ|w·a| of the dequantised rows: the scale of the rounding a dot product may make.
fn abs_sum(t: GgmlType, w: &[u8], at: GgmlType, a: &[u8], n: usize) -> f64 {
    let mut wf = vec![0f32; n];
    let mut af = vec![0f32; n];
    dequantize_row(t, w, &mut wf);
    dequantize_row(at, a, &mut af);
    wf.iter()
        .zip(&af)
        .map(|(&p, &q)| (p as f64 * q as f64).abs())
        .sum()
}

const BLOCK_COUNTS: [usize; 12] = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33];

#[test]
fn quantised_dots_match_the_scalar_reference() {
    for isa in Isa::available() {
        for t in weight_types() {
            let at = t.vec_dot_type();
            for nb in BLOCK_COUNTS {
                let n = nb * t.block_size().max(32);
                let w = weight_row(t, n, (t.id() as u64) << 8 | nb as u64);
                let mut a = vec![0u8; at.row_bytes(n).unwrap()];
                scalar_quantize(at, &random_floats(n, nb as u64), &mut a);
                let want = dot::dot_quant(t, &w, &a) as f64;
                let scale = abs_sum(t, &w, at, &a, n);
                for off in [0, 1, 3] {
                    let (wb, o) = shifted(&w, off);
                    let (ab, p) = shifted(&a, 2 * off);
                    let got = quant_dot(isa, t)(&wb[o..], &ab[p..]) as f64;
                    assert!(
                        (got - want).abs() <= 1e-5 * scale + 1e-6,
                        "{isa:?} {t} nb={nb} off={off}: got {got}, want {want} (Σ|wa| {scale})"
                    );
                }
            }
        }
    }
}

/// A weight row whose float scales (and mins) are all 1.
fn unit_scale_row(t: GgmlType, n: usize, seed: u64) -> Vec<u8> {
    let mut w = random_row(t, n, seed);
    let offsets: &[usize] = match t {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 => &[0, 2],
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q6_K => &[208],
        _ => &[],
    };
    for b in w.chunks_exact_mut(t.type_size()) {
        for &o in offsets {
            put_f16(b, o, 1.0);
        }
    }
    w
}

/// An activation row of scale 1 with small quants (|q| <= 3) and consistent sums, so that
/// every partial sum is a small integer and float arithmetic on it is exact.
fn unit_scale_acts(at: GgmlType, n: usize, seed: u64) -> Vec<u8> {
    let q: Vec<i8> = random_floats(n, seed)
        .iter()
        .map(|v| (v * 3.0).round().clamp(-3.0, 3.0) as i8)
        .collect();
    let mut a = vec![0u8; at.row_bytes(n).unwrap()];
    match at {
        GgmlType::Q8_0 | GgmlType::Q8_1 => {
            let (bs, qs) = if at == GgmlType::Q8_0 {
                (34, 2)
            } else {
                (36, 4)
            };
            for (b, qb) in a.chunks_exact_mut(bs).zip(q.chunks_exact(32)) {
                put_f16(b, 0, 1.0);
                if at == GgmlType::Q8_1 {
                    put_f16(b, 2, qb.iter().map(|&v| v as f32).sum());
                }
                for (d, &v) in b[qs..].iter_mut().zip(qb) {
                    *d = v as u8;
                }
            }
        }
        GgmlType::Q8_K => {
            for (b, qb) in a.chunks_exact_mut(292).zip(q.chunks_exact(QK_K)) {
                b[0..4].copy_from_slice(&1.0f32.to_le_bytes());
                for (d, &v) in b[4..4 + QK_K].iter_mut().zip(qb) {
                    *d = v as u8;
                }
                for j in 0..16 {
                    let s: i16 = qb[16 * j..16 * j + 16].iter().map(|&v| v as i16).sum();
                    b[4 + QK_K + 2 * j..6 + QK_K + 2 * j].copy_from_slice(&s.to_le_bytes());
                }
            }
        }
        _ => unreachable!(),
    }
    a
}

/// The per-block extras the matrix product prepares for Q8_0/Q8_1 rows: scale as f32, then
/// Σq as i32 (Q8_0) or the stored d·Σq as f32 (Q8_1).
fn aux_of(at: GgmlType, a: &[u8]) -> Vec<u8> {
    let f16 =
        |b: &[u8], i: usize| half::f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32();
    let mut aux = Vec::new();
    for b in a.chunks_exact(at.type_size()) {
        aux.extend_from_slice(&f16(b, 0).to_le_bytes());
        if at == GgmlType::Q8_1 {
            aux.extend_from_slice(&f16(b, 2).to_le_bytes());
        } else {
            let s: i32 = b[2..34].iter().map(|&q| q as i8 as i32).sum();
            aux.extend_from_slice(&s.to_le_bytes());
        }
    }
    aux
}

#[test]
fn dots_with_block_extras_match_the_scalar_reference() {
    for isa in Isa::available() {
        for t in weight_types() {
            let Some(f) = quant_dot_aux(isa, t) else {
                continue;
            };
            let at = t.vec_dot_type();
            for nb in BLOCK_COUNTS {
                let n = nb * 32;
                let w = weight_row(t, n, 7 * nb as u64);
                let mut a = vec![0u8; at.row_bytes(n).unwrap()];
                scalar_quantize(at, &random_floats(n, 3 + nb as u64), &mut a);
                let aux = aux_of(at, &a);
                let want = dot::dot_quant(t, &w, &a) as f64;
                let scale = abs_sum(t, &w, at, &a, n);
                let (wb, o) = shifted(&w, 1);
                let got = f(&wb[o..], &a, &aux) as f64;
                assert!(
                    (got - want).abs() <= 1e-5 * scale + 1e-6,
                    "{isa:?} {t} nb={nb}: got {got}, want {want}"
                );
                // Exact on unit scales.
                let w = unit_scale_row(t, n, nb as u64);
                let a = unit_scale_acts(at, n, 5 + nb as u64);
                assert_eq!(
                    f(&w, &a, &aux_of(at, &a)),
                    dot::dot_quant(t, &w, &a),
                    "{isa:?} {t} nb={nb} (unit scales)"
                );
            }
        }
    }
}

#[test]
fn integer_parts_are_exact() {
    for isa in Isa::available() {
        for t in weight_types().filter(|t| t.is_quantized()) {
            let at = t.vec_dot_type();
            for nb in [1, 3, 4] {
                let n = nb * t.block_size().max(32);
                let w = unit_scale_row(t, n, 99 + nb as u64);
                let a = unit_scale_acts(at, n, nb as u64);
                let want = dot::dot_quant(t, &w, &a);
                let got = quant_dot(isa, t)(&w, &a);
                assert_eq!(got, want, "{isa:?} {t} nb={nb}");
            }
        }
    }
}

#[test]
fn float_dots_match_the_scalar_reference() {
    for isa in Isa::available() {
        for t in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
            for n in (0..70).chain([127, 128, 129, 1000, 2048]) {
                let x = random_floats(n, n as u64);
                let mut w = vec![0u8; t.row_bytes(n).unwrap()];
                crate::quantize::quantize_row(t, &random_floats(n, 7 + n as u64), &mut w);
                let mut wf = vec![0f32; n];
                dequantize_row(t, &w, &mut wf);
                let scale: f64 = wf.iter().zip(&x).map(|(a, b)| (a * b).abs() as f64).sum();
                let want = dot::dot_float(t, &w, &x) as f64;
                let (wb, o) = shifted(&w, 1);
                let got = float_dot(isa, t)(&wb[o..], &x) as f64;
                assert!(
                    (got - want).abs() <= 1e-5 * scale + 1e-6,
                    "{isa:?} {t} n={n}: got {got}, want {want}"
                );
                if t != GgmlType::F32 {
                    // Same-type activations, as `quant_dot` takes them.
                    let mut a = vec![0u8; w.len()];
                    crate::quantize::quantize_row(t, &x, &mut a);
                    let want = dot::dot_quant(t, &w, &a) as f64;
                    let got = quant_dot(isa, t)(&wb[o..], &a) as f64;
                    assert!(
                        (got - want).abs() <= 1e-5 * scale + 1e-6,
                        "{isa:?} {t}·{t} n={n}: got {got}, want {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn activation_quantisation_is_byte_identical() {
    for isa in Isa::available() {
        for t in [
            GgmlType::Q8_0,
            GgmlType::Q8_1,
            GgmlType::Q8_K,
            GgmlType::F16,
        ] {
            let bs = t.block_size().max(32);
            for nb in [1, 2, 3, 8] {
                let n = nb * bs;
                let mut inputs = vec![random_floats(n, nb as u64), vec![0.0; n]];
                // Exact halves after scaling (amax 127 → scale 1) test round-half-to-even.
                let mut halves: Vec<f32> = (0..n).map(|i| (i % 64) as f32 - 31.5).collect();
                for c in halves.chunks_mut(bs) {
                    c[5] = 127.0;
                }
                inputs.push(halves);
                // A block whose largest magnitude appears twice with opposite signs.
                let mut tie = random_floats(n, 5);
                for c in tie.chunks_mut(bs) {
                    c[3] = -2.5;
                    c[9] = 2.5;
                }
                inputs.push(tie);
                for (k, x) in inputs.iter().enumerate() {
                    let mut want = vec![0u8; t.row_bytes(n).unwrap()];
                    let mut got = vec![0xAAu8; want.len()];
                    scalar_quantize(t, x, &mut want);
                    quantize_activations(isa, t, x, &mut got);
                    assert_eq!(got, want, "{isa:?} {t} nb={nb} input {k}");
                }
            }
        }
    }
}

#[test]
fn the_kernel_summary_names_the_level_in_use() {
    let k = kernels();
    let level = isa().name();
    assert!(
        k == level || k.starts_with(&format!("{level}, ")),
        "{k:?} for {:?}",
        isa()
    );
}
