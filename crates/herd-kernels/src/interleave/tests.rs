//! The grouped layout against ggml's rows: lossless, and every kernel that reads it (the
//! scalar and AVX2 decode kernels, the tiled prefill packing) gives the products the scalar
//! row kernels give on the original matrix.

use super::*;
use crate::matmul::matmul_with;
use crate::simd::tests::{random_floats, weight_row};

fn q4_k(rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    (0..rows)
        .flat_map(|r| weight_row(GgmlType::Q4_K, cols, seed * 1000 + r as u64))
        .collect()
}

fn grouped(pool: &ThreadPool, src: &[u8], rows: usize, cols: usize) -> Vec<u8> {
    let mut dst = vec![0u8; len(rows, cols)];
    interleave_q4_k(pool, src, rows, cols, &mut dst);
    dst
}

#[test]
fn grouping_is_lossless() {
    let pool = ThreadPool::new(2);
    let (rows, cols) = (24, 3 * QK_K);
    let src = q4_k(rows, cols, 5);
    let g = grouped(&pool, &src, rows, cols);
    let rb = cols / QK_K * Q4K;
    let mut row = vec![0u8; rb];
    for r in 0..rows {
        row_of(&g, cols, r, &mut row);
        assert_eq!(row, src[r * rb..(r + 1) * rb], "row {r}");
    }
}

#[test]
fn only_whole_groups_of_q4_k_are_grouped() {
    assert!(supports(GgmlType::Q4_K, 8, 256));
    assert!(supports(GgmlType::Q4_K, 5632, 2048));
    assert!(!supports(GgmlType::Q4_K, 12, 256));
    assert!(!supports(GgmlType::Q4_K, 0, 256));
    assert!(!supports(GgmlType::Q4_K, 8, 128));
    assert!(!supports(GgmlType::Q6_K, 8, 256));
}

/// Products over the grouped matrix at every level and token count (decode below 8 tokens,
/// the tiles from 8) against the scalar row kernels over ggml's rows.
#[test]
fn grouped_products_match_the_row_kernels() {
    for (rows, cols) in [(8, QK_K), (32, 4 * QK_K), (72, 2 * QK_K)] {
        let src = q4_k(rows, cols, rows as u64 + cols as u64);
        for threads in [1, 2] {
            let pool = ThreadPool::new(threads);
            let g = grouped(&pool, &src, rows, cols);
            let w_rows = WeightRef::rows(GgmlType::Q4_K, rows, cols, &src);
            let w_grouped = WeightRef {
                data: &g,
                layout: Layout::Q4kX8,
                ..w_rows
            };
            let mut scratch = Vec::new();
            for n in [1, 2, 3, 4, 5, 7, 8, 9, 13] {
                let x = random_floats(n * cols, n as u64 * 7 + 1);
                let mut want = vec![0f32; n * rows];
                matmul_with(Isa::Scalar, &pool, w_rows, &x, n, &mut want, &mut scratch);
                let scale: f32 = want.iter().map(|v| v.abs()).fold(1.0, f32::max);
                for isa in Isa::available() {
                    let mut got = vec![f32::NAN; n * rows];
                    matmul_with(isa, &pool, w_grouped, &x, n, &mut got, &mut scratch);
                    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                        // Same activation bytes, exact integer block sums: only the order
                        // of the float sums differs.
                        assert!(
                            (g - w).abs() <= 1e-5 * scale,
                            "{isa:?} {rows}×{cols} n={n} threads={threads}: y[{}][{}] = {g}, \
                             want {w}",
                            k / rows,
                            k % rows
                        );
                    }
                }
            }
        }
    }
}
