//! The matrix product at every level against the scalar reference, over shapes that exercise
//! the tile edges (rows not a multiple of 8, token counts not a multiple of the tile).

use super::*;
use crate::dequant::dequantize_row;
use crate::simd::tests::{random_floats, weight_row, weight_types};

fn weights(t: GgmlType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    (0..rows)
        .flat_map(|r| weight_row(t, cols, seed * 1000 + r as u64))
        .collect()
}

/// Σ|w·x| for every output: the scale of the rounding each may carry.
fn abs_sums(w: WeightRef<'_>, x: &[f32], n: usize) -> Vec<f64> {
    let mut wf = vec![0f32; w.cols];
    let mut out = vec![0f64; n * w.rows];
    for r in 0..w.rows {
        dequantize_row(w.dtype, w.row(r), &mut wf);
        for i in 0..n {
            let xi = &x[i * w.cols..(i + 1) * w.cols];
            out[i * w.rows + r] = wf.iter().zip(xi).map(|(a, b)| (a * b).abs() as f64).sum();
        }
    }
    out
}

fn check(t: GgmlType, rows: usize, cols: usize, n: usize, threads: usize) {
    let data = weights(t, rows, cols, rows as u64 * 31 + cols as u64);
    let w = WeightRef::rows(t, rows, cols, &data);
    let x = random_floats(n * cols, n as u64 + 3);
    let pool = ThreadPool::new(threads);
    let mut scratch = Vec::new();
    let mut want = vec![0f32; n * rows];
    matmul_with(Isa::Scalar, &pool, w, &x, n, &mut want, &mut scratch);
    let scale = abs_sums(w, &x, n);
    for isa in Isa::available() {
        let mut got = vec![f32::NAN; n * rows];
        matmul_with(isa, &pool, w, &x, n, &mut got, &mut scratch);
        for (k, ((g, w), s)) in got.iter().zip(&want).zip(&scale).enumerate() {
            // Both levels quantise the activations to the same bytes and their integer block
            // sums are exact, so they differ only in the order floats are summed.
            assert!(
                ((g - w) as f64).abs() <= 1e-5 * s + 1e-6,
                "{isa:?} {t} {rows}×{cols} n={n} threads={threads}: y[{}][{}] = {g}, want {w}",
                k / rows,
                k % rows
            );
        }
    }
}

#[test]
fn matmul_matches_the_scalar_reference_for_every_type() {
    for t in weight_types().chain([GgmlType::F32]) {
        let cols = 2 * t
            .block_size()
            .max(32)
            .max(if t.is_quantized() { 0 } else { 40 });
        for (rows, n) in [(1, 1), (9, 2), (17, 5), (8, 4), (33, 9), (3, 13)] {
            check(t, rows, cols, n, 2);
        }
    }
}

#[test]
fn matmul_edges_and_thread_counts() {
    for t in [
        GgmlType::Q4_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::F16,
        GgmlType::F32,
    ] {
        let cols = 3 * t.block_size().max(32);
        for threads in [1, 3] {
            for n in [1, 2, 3, 4, 6, 7, 8, 11] {
                check(t, 21, cols, n, threads);
            }
        }
    }
    // Q4_0/Q5_0 decode takes blocks in pairs: odd and even block counts.
    for t in [GgmlType::Q4_0, GgmlType::Q5_0] {
        for nb in [1, 2, 3, 5, 8] {
            for n in [1, 3] {
                check(t, 11, 32 * nb, n, 2);
            }
        }
    }
    // Enough tokens for the packed float kernel, with row and token counts off its tile.
    for t in [GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q4_1] {
        check(t, 37, 64, 45, 2);
    }
    // Long rows, not a multiple of the float kernels' steps.
    check(GgmlType::F16, 19, 600, 33, 2);
    check(GgmlType::F32, 9, 520, 40, 1);
    // The packed float kernel on rows that are not a multiple of 8 long.
    check(GgmlType::F32, 18, 517, 40, 2);
    check(GgmlType::BF16, 17, 780, 37, 1);
    // Float rows that are not a multiple of 8 long take the scalar tail of the tiles.
    for n in [1, 4, 40] {
        check(GgmlType::F32, 7, 45, n, 2);
        check(GgmlType::F16, 5, 13, n, 1);
    }
}

/// The quantised tiles have two x86 kernels each, AVX2 (`maddubs`) and, where the CPU has it,
/// AVX-512 VNNI (`vpdpbusd`, 8 tokens a call): both against the scalar reference, at token
/// counts around both tile widths.
#[cfg(target_arch = "x86_64")]
#[test]
fn quantised_tiles_match_with_and_without_vnni() {
    for off in [true, false] {
        crate::simd::x86::set_vnni_off(off);
        for t in weight_types().filter(|t| t.is_quantized()) {
            for n in [9, 16, 23, 40] {
                check(t, 19, 2 * t.block_size().max(256), n, 2);
            }
        }
    }
    crate::simd::x86::set_vnni_off(false);
}

/// Decode hands F16/BF16 row kernels half activations, where the tiled kernels get f32 rows of
/// the half-rounded values: the same numbers in the same order, so each output must equal, to
/// the bit, the float row dot over the rounded f32 row.
#[test]
fn half_decode_equals_the_float_dot_over_rounded_activations() {
    let (rows, cols) = (13, 600);
    let pool = ThreadPool::new(2);
    for t in [GgmlType::F16, GgmlType::BF16] {
        let data = weights(t, rows, cols, 7);
        let w = WeightRef::rows(t, rows, cols, &data);
        let x = random_floats(cols, 11);
        let rounded: Vec<f32> = x
            .iter()
            .map(|&v| match t {
                GgmlType::F16 => half::f16::from_f32(v).to_f32(),
                _ => half::bf16::from_f32(v).to_f32(),
            })
            .collect();
        for isa in Isa::available() {
            if isa == Isa::Scalar {
                continue;
            }
            let mut got = vec![f32::NAN; rows];
            matmul_with(isa, &pool, w, &x, 1, &mut got, &mut Vec::new());
            let fdot = simd::float_dot(isa, t);
            for (r, g) in got.iter().enumerate() {
                let want = fdot(w.row(r), &rounded);
                assert_eq!(
                    g.to_bits(),
                    want.to_bits(),
                    "{isa:?} {t} row {r}: {g} vs {want}"
                );
            }
        }
    }
}
