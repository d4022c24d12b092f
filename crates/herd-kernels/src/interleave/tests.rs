//! The grouped layouts (Q4_K, Q5_K, Q6_K, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) against ggml's rows:
//! lossless, and every kernel that reads them (the scalar and AVX2 decode kernels, the tiled
//! prefill packing) gives the products the scalar row kernels give on the original matrix.

use super::*;
use crate::matmul::matmul_with;
use crate::simd::tests::{random_floats, weight_row};

/// Every type that groups (eight of them: `only_whole_groups_…` pins `supports` down).
fn types() -> impl Iterator<Item = GgmlType> {
    let types = GgmlType::ALL
        .into_iter()
        .filter(|&t| supports(t, GROUP, QK_K));
    assert_eq!(types.clone().count(), 8);
    types
}

fn matrix(t: GgmlType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    (0..rows)
        .flat_map(|r| weight_row(t, cols, seed * 1000 + r as u64))
        .collect()
}

fn grouped(pool: &ThreadPool, t: GgmlType, src: &[u8], rows: usize, cols: usize) -> Vec<u8> {
    let mut dst = vec![0u8; len(t, rows, cols)];
    interleave(pool, t, src, rows, cols, &mut dst);
    dst
}

#[test]
fn grouping_is_lossless() {
    let pool = ThreadPool::new(2);
    for t in types() {
        let (rows, cols) = (24, 3 * block_len(t));
        let src = matrix(t, rows, cols, 5);
        let g = grouped(&pool, t, &src, rows, cols);
        let rb = t.row_bytes(cols).unwrap();
        let mut row = vec![0u8; rb];
        for r in 0..rows {
            row_of(t, &g, cols, r, &mut row);
            assert_eq!(row, src[r * rb..(r + 1) * rb], "{t} row {r}");
        }
    }
}

#[test]
fn only_whole_groups_of_the_grouped_types_are_grouped() {
    assert!(supports(GgmlType::Q4_K, 8, 256));
    assert!(supports(GgmlType::Q4_K, 5632, 2048));
    assert!(!supports(GgmlType::Q4_K, 12, 256));
    assert!(!supports(GgmlType::Q4_K, 0, 256));
    assert!(!supports(GgmlType::Q4_K, 8, 128));
    assert!(supports(GgmlType::Q4_0, 896, 4864));
    assert!(!supports(GgmlType::Q4_0, 900, 896));
    assert!(!supports(GgmlType::Q4_0, 8, 48));
    assert!(supports(GgmlType::Q6_K, 8, 256));
    assert!(!supports(GgmlType::Q6_K, 8, 896));
    assert!(supports(GgmlType::Q5_K, 8, 256));
    assert!(!supports(GgmlType::Q5_K, 8, 896));
    assert!(!supports(GgmlType::Q3_K, 8, 256));
    assert!(supports(GgmlType::Q5_0, 8, 896));
    assert!(supports(GgmlType::Q5_1, 8, 896));
    assert!(supports(GgmlType::Q4_1, 4864, 896));
    assert!(!supports(GgmlType::Q4_1, 8, 48));
    assert!(!supports(GgmlType::Q2_K, 8, 256));
    assert!(supports(GgmlType::Q8_0, 8, 896));
    assert!(!supports(GgmlType::Q8_0, 4, 896));
}

/// Products over the grouped matrix at every level and token count (decode below the tiles'
/// threshold, the tiles from there) against the scalar row kernels over ggml's rows; on a CPU
/// with AVX-512 VNNI, with its kernels and with the AVX2 ones.
#[test]
fn grouped_products_match_the_row_kernels() {
    #[cfg(target_arch = "x86_64")]
    for off in [true, false] {
        crate::simd::x86::set_vnni_off(off);
        grouped_products_match(off);
    }
    #[cfg(not(target_arch = "x86_64"))]
    grouped_products_match(false);
}

fn grouped_products_match(vnni_off: bool) {
    for t in types() {
        let bl = block_len(t);
        for (rows, cols) in [(8, bl), (32, 4 * bl), (72, 2 * bl), (16, 7 * bl)] {
            let src = matrix(t, rows, cols, rows as u64 + cols as u64);
            for threads in [1, 2] {
                let pool = ThreadPool::new(threads);
                let g = grouped(&pool, t, &src, rows, cols);
                let w_rows = WeightRef::rows(t, rows, cols, &src);
                let w_grouped = WeightRef {
                    data: &g,
                    layout: Layout::Grouped,
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
                                "{t} {isa:?} (VNNI off: {vnni_off}) {rows}×{cols} n={n} \
                                 threads={threads}: y[{}][{}] = {g}, want {w}",
                                k / rows,
                                k % rows
                            );
                        }
                    }
                }
            }
        }
    }
}
