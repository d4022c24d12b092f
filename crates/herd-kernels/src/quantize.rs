//! f32 to block formats: ggml's reference quantisers (`quantize_row_*_ref`).
//!
//! Activations are quantised to Q8_0 / Q8_1 / Q8_K before integer dot products; weights can be
//! written as Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 (k-quant weight quantisers need ggml's iterative
//! scale search and are not implemented: `quantize_row` says so).

use crate::types::{GgmlType, QK_K, put_f16};

/// Quantises `src` into `dst` as type `t`. Returns `false` for a type herd cannot quantise to.
///
/// # Panics
/// If `dst` is not exactly `t.row_bytes(src.len())` bytes (a bug in the caller).
pub fn quantize_row(t: GgmlType, src: &[f32], dst: &mut [u8]) -> bool {
    assert_eq!(
        t.row_bytes(src.len()),
        Some(dst.len()),
        "quantize_row: size mismatch for {t}"
    );
    let bs = t.type_size();
    let qk = t.block_size();
    let blocks = src.chunks_exact(qk).zip(dst.chunks_exact_mut(bs));
    match t {
        GgmlType::F32 => {
            for (x, y) in blocks {
                y.copy_from_slice(&x[0].to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for (x, y) in blocks {
                put_f16(y, 0, x[0]);
            }
        }
        GgmlType::BF16 => {
            for (x, y) in blocks {
                y.copy_from_slice(&half::bf16::from_f32(x[0]).to_bits().to_le_bytes());
            }
        }
        GgmlType::Q8_0 => blocks.for_each(|(x, y)| quantize_q8_0(x, y)),
        GgmlType::Q8_1 => blocks.for_each(|(x, y)| quantize_q8_1(x, y)),
        GgmlType::Q8_K => blocks.for_each(|(x, y)| quantize_q8_k(x, y)),
        GgmlType::Q4_0 => blocks.for_each(|(x, y)| quantize_q4_0(x, y)),
        GgmlType::Q4_1 => blocks.for_each(|(x, y)| quantize_q4_1(x, y)),
        GgmlType::Q5_0 => blocks.for_each(|(x, y)| quantize_q5_0(x, y)),
        GgmlType::Q5_1 => blocks.for_each(|(x, y)| quantize_q5_1(x, y)),
        GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => {
            return false;
        }
    }
    true
}

/// Quantises one activation row for a dot product, as ggml's CPU back end does at run time
/// on x86 (`ggml-cpu/arch/x86/quants.c`): Q8_0 and Q8_1 scale by `127/amax` and round half to
/// even, unlike the reference quantisers that write model files; F16/BF16 are plain
/// conversions. Matching it keeps herd's greedy output equal to llama.cpp's on quantised models.
///
/// # Panics
/// If `dst` is not exactly `t.row_bytes(src.len())` bytes.
pub fn quantize_activations(t: GgmlType, src: &[f32], dst: &mut [u8]) {
    assert_eq!(
        t.row_bytes(src.len()),
        Some(dst.len()),
        "quantize_activations: size mismatch for {t}"
    );
    match t {
        GgmlType::Q8_0 | GgmlType::Q8_1 => {
            let with_sum = t == GgmlType::Q8_1;
            let (qs_at, bs) = if with_sum { (4, 36) } else { (2, 34) };
            for (x, y) in src.chunks_exact(32).zip(dst.chunks_exact_mut(bs)) {
                let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                let d = amax / 127.0;
                let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
                put_f16(y, 0, d);
                let mut sum = 0i32;
                for j in 0..32 {
                    let q = (x[j] * id).round_ties_even() as i32;
                    y[qs_at + j] = q as i8 as u8;
                    sum += q;
                }
                if with_sum {
                    put_f16(y, 2, d * sum as f32);
                }
            }
        }
        _ => {
            quantize_row(t, src, dst);
        }
    }
}

/// Types `quantize_row` can write.
pub fn can_quantize(t: GgmlType) -> bool {
    !matches!(
        t,
        GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K
    )
}

fn amax_and_max(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    (amax, max)
}

fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter()
        .fold((f32::MAX, -f32::MAX), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

pub(crate) fn quantize_q8_0(x: &[f32], y: &mut [u8]) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(y, 0, d);
    for j in 0..32 {
        y[2 + j] = (x[j] * id).round() as i8 as u8;
    }
}

fn quantize_q8_1(x: &[f32], y: &mut [u8]) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(y, 0, d);
    let mut sum = 0i32;
    for j in 0..32 {
        let q = (x[j] * id).round() as i8;
        y[4 + j] = q as u8;
        sum += q as i32;
    }
    put_f16(y, 2, sum as f32 * d);
}

fn quantize_q8_k(x: &[f32], y: &mut [u8]) {
    let (amax, max) = amax_and_max(x);
    if amax == 0.0 {
        y.fill(0);
        return;
    }
    let iscale = -127.0 / max;
    for j in 0..QK_K {
        let v = (iscale * x[j]).round_ties_even() as i32;
        y[4 + j] = v.min(127) as i8 as u8;
    }
    for j in 0..QK_K / 16 {
        let sum: i32 = (0..16).map(|i| y[4 + 16 * j + i] as i8 as i32).sum();
        let off = 4 + QK_K + 2 * j;
        y[off..off + 2].copy_from_slice(&(sum as i16).to_le_bytes());
    }
    y[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
}

fn quantize_q4_0(x: &[f32], y: &mut [u8]) {
    let (_, max) = amax_and_max(x);
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(y, 0, d);
    for j in 0..16 {
        let x0 = ((x[j] * id + 8.5) as i8).min(15) as u8;
        let x1 = ((x[j + 16] * id + 8.5) as i8).min(15) as u8;
        y[2 + j] = x0 | (x1 << 4);
    }
}

fn quantize_q4_1(x: &[f32], y: &mut [u8]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(y, 0, d);
    put_f16(y, 2, min);
    for j in 0..16 {
        let x0 = (((x[j] - min) * id + 0.5) as i8).min(15) as u8;
        let x1 = (((x[j + 16] - min) * id + 0.5) as i8).min(15) as u8;
        y[4 + j] = x0 | (x1 << 4);
    }
}

fn quantize_q5_0(x: &[f32], y: &mut [u8]) {
    let (_, max) = amax_and_max(x);
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(y, 0, d);
    let mut qh = 0u32;
    for j in 0..16 {
        let x0 = ((x[j] * id + 16.5) as i8).min(31) as u8;
        let x1 = ((x[j + 16] * id + 16.5) as i8).min(31) as u8;
        y[6 + j] = (x0 & 0x0F) | ((x1 & 0x0F) << 4);
        qh |= (((x0 & 0x10) >> 4) as u32) << j;
        qh |= (((x1 & 0x10) >> 4) as u32) << (j + 16);
    }
    y[2..6].copy_from_slice(&qh.to_le_bytes());
}

fn quantize_q5_1(x: &[f32], y: &mut [u8]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(y, 0, d);
    put_f16(y, 2, min);
    let mut qh = 0u32;
    for j in 0..16 {
        let x0 = ((x[j] - min) * id + 0.5) as u8;
        let x1 = ((x[j + 16] - min) * id + 0.5) as u8;
        y[8 + j] = (x0 & 0x0F) | ((x1 & 0x0F) << 4);
        qh |= (((x0 & 0x10) >> 4) as u32) << j;
        qh |= (((x1 & 0x10) >> 4) as u32) << (j + 16);
    }
    y[4..8].copy_from_slice(&qh.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dequant::dequantize_row;

    fn sample(n: usize) -> Vec<f32> {
        // A deterministic, sign-mixed signal with a spread of magnitudes.
        (0..n)
            .map(|i| (i as f32 * 0.37).sin() * 1.7 + (i as f32 * 0.011).cos() * 0.3)
            .collect()
    }

    #[test]
    fn quantise_then_dequantise_stays_within_the_format_step() {
        let x = sample(512);
        // Worst-case error bound per format, relative to the block's absolute maximum.
        for (t, rel) in [
            (GgmlType::Q8_0, 1.0 / 127.0),
            (GgmlType::Q8_1, 1.0 / 127.0),
            (GgmlType::Q8_K, 1.0 / 127.0),
            (GgmlType::Q4_0, 2.0 / 8.0), // the side opposite the max clamps at 7·d
            (GgmlType::Q4_1, 2.0 / 15.0), // the step spans max - min, up to 2·amax
            (GgmlType::Q5_0, 2.0 / 16.0),
            (GgmlType::Q5_1, 2.0 / 31.0),
            (GgmlType::F16, 1e-3),
            (GgmlType::BF16, 1e-2),
        ] {
            let mut q = vec![0u8; t.row_bytes(x.len()).unwrap()];
            assert!(quantize_row(t, &x, &mut q));
            let mut y = vec![0f32; x.len()];
            dequantize_row(t, &q, &mut y);
            for (bx, by) in x
                .chunks(t.block_size().max(32))
                .zip(y.chunks(t.block_size().max(32)))
            {
                let amax = bx.iter().fold(0f32, |a, v| a.max(v.abs()));
                for (a, b) in bx.iter().zip(by) {
                    assert!(
                        (a - b).abs() <= amax * rel * 0.5 + 2e-3 * amax,
                        "{t}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn q4_0_block_matches_hand_computed_values() {
        // Block max is -8 → d = 1, so values are stored exactly as q - 8.
        let mut x = [0f32; 32];
        for (i, v) in x.iter_mut().enumerate() {
            *v = (i as f32 % 16.0) - 8.0;
        }
        let mut q = [0u8; 18];
        quantize_row(GgmlType::Q4_0, &x, &mut q);
        assert_eq!(
            half::f16::from_bits(u16::from_le_bytes([q[0], q[1]])).to_f32(),
            1.0
        );
        assert_eq!(q[2], 0x00); // x[0] = -8 → 0, x[16] = -8 → 0
        assert_eq!(q[3], 0x11);
        let mut y = [0f32; 32];
        dequantize_row(GgmlType::Q4_0, &q, &mut y);
        assert_eq!(y, x);
    }
}
