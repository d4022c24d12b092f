use super::*;
use crate::simd::tests::random_floats as values;

/// `x` rounded to f16 bits.
fn to16(x: &[f32]) -> Vec<u16> {
    x.iter()
        .map(|&x| half::f16::from_f32(x).to_bits())
        .collect()
}

/// Softmax attention in f64 of the query `q(d)` over keys `keys` of `k` and `v` (rows `stride`
/// apart, `hd` dimensions), scores times `scale` then softcapped: the output's `hd` values.
#[allow(clippy::too_many_arguments)]
fn attention_f64(
    q: impl Fn(usize) -> f64,
    k: Rows<'_>,
    v: Rows<'_>,
    stride: usize,
    hd: usize,
    keys: std::ops::RangeInclusive<usize>,
    scale: f64,
    cap: Option<f32>,
) -> Vec<f64> {
    let s: Vec<f64> = keys
        .clone()
        .map(|j| {
            let x = (0..hd)
                .map(|d| q(d) * k.at(j * stride + d) as f64)
                .sum::<f64>()
                * scale;
            cap.map_or(x, |c| c as f64 * (x / c as f64).tanh())
        })
        .collect();
    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
    (0..hd)
        .map(|d| {
            s.iter()
                .zip(keys.clone())
                .map(|(x, j)| (x - m).exp() / z * v.at(j * stride + d) as f64)
                .sum()
        })
        .collect()
}

/// Both kernels against softmax attention computed in f64, lane by lane, with f32 rows
/// and with f16 rows (the reference then reads the f16 values: widening is exact).
#[test]
fn tiles_agree_with_f64_attention() {
    for (hd, stride, keys, cap) in [
        (8, 32, 37, None),
        (64, 128, 70, None),
        (64, 128, 300, None),
        (64, 64, 131, None),
        (12, 12, 9, Some(5.0)),
        (3, 5, 11, None),
    ] {
        let q = values(8 * hd, hd as u64);
        let k32: Vec<f32> = values(keys * stride, 7 + hd as u64)
            .iter()
            .map(|x| x * 3.0)
            .collect();
        let v32 = values(keys * stride, 9 + hd as u64);
        let (k16, v16) = (to16(&k32), to16(&v32));
        // Causal queries at the last 8 positions, one windowed lane, one repeated lane.
        let mut lo = [0u32; 8];
        let mut hi = [0u32; 8];
        for (l, h) in hi.iter_mut().enumerate() {
            *h = (keys - 8 + l) as u32;
        }
        lo[3] = hi[3] - 2;
        hi[7] = hi[6];
        for (k, v) in [
            (Rows::F32(&k32), Rows::F32(&v32)),
            (Rows::F16(&k16), Rows::F16(&v16)),
        ] {
            let t = Tile {
                q: &q,
                k,
                v,
                stride,
                hd,
                lo,
                hi,
                scale: 0.3,
                softcap: cap,
                stream: hd == 64,
            };
            let kind = if matches!(k, Rows::F16(_)) {
                "f16"
            } else {
                "f32"
            };
            let (mut a, mut b) = (vec![0f32; 8 * hd], vec![0f32; 8 * hd]);
            attend8(&t, &mut vec![0f32; t.scratch()], &mut a);
            attend8_scalar(&t, &mut vec![0f32; 8 * keys], &mut b);
            let mut c = vec![0f32; 8 * hd];
            lanes::attend8(&t, &mut vec![0f32; t.scratch()], &mut c);
            for l in 0..8 {
                let keys_l = lo[l] as usize..=hi[l] as usize;
                let want =
                    attention_f64(|d| q[d * 8 + l] as f64, k, v, stride, hd, keys_l, 0.3, cap);
                for (d, want) in want.iter().enumerate() {
                    for (what, got) in [
                        ("simd", a[d * 8 + l]),
                        ("scalar", b[d * 8 + l]),
                        ("lanes", c[d * 8 + l]),
                    ] {
                        assert!(
                            // f32 sums of up to 300 terms and a 1-ulp exp; a key or a
                            // lane out of place costs 1e-2 and more.
                            (got as f64 - want).abs() < 1e-5 * want.abs().max(1.0),
                            "{what} {kind} hd={hd} keys={keys} lane {l} dim {d}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}

/// f16 rows change the answer only by their rounding: against the same tile in f32, the
/// outputs differ by about f16's relative precision, not more.
#[test]
fn f16_rows_stay_within_their_rounding_of_f32() {
    let (hd, keys) = (64, 200);
    let q = values(8 * hd, 1);
    let (k, v) = (values(keys * hd, 2), values(keys * hd, 3));
    let (k16, v16) = (to16(&k), to16(&v));
    let tile = |k, v| Tile {
        q: &q,
        k,
        v,
        stride: hd,
        hd,
        lo: [0; 8],
        hi: [(keys - 1) as u32; 8],
        scale: 0.125,
        softcap: None,
        stream: true,
    };
    let (t32, t16) = (
        tile(Rows::F32(&k), Rows::F32(&v)),
        tile(Rows::F16(&k16), Rows::F16(&v16)),
    );
    let (mut a, mut b) = (vec![0f32; 8 * hd], vec![0f32; 8 * hd]);
    attend8(&t32, &mut vec![0f32; t32.scratch()], &mut a);
    attend8(&t16, &mut vec![0f32; t16.scratch()], &mut b);
    let d = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(d > 0.0 && d < 2e-3, "max |f32 − f16| = {d}");
}

/// One query's kernel and its reference against softmax attention in f64, with f32 and f16
/// rows: head sizes the kernel takes (multiples of 8, up to past 64 dimensions a pass) and
/// others, rows apart and packed, key counts not a multiple of 8 or of a block, windows that
/// start past key 0, a softcap, and a single key.
#[test]
fn single_queries_agree_with_f64_attention() {
    for (hd, stride, keys, lo, cap) in [
        (64, 64, 131, 0, None),
        (128, 256, 200, 9, None),
        (80, 80, 70, 3, Some(5.0)),
        (8, 8, 1, 0, None),
        (64, 64, 300, 299, None),
        (12, 12, 9, 2, None),
    ] {
        let q = values(hd, hd as u64 + 1);
        let k32: Vec<f32> = values(keys * stride, 3 + hd as u64)
            .iter()
            .map(|x| x * 3.0)
            .collect();
        let v32 = values(keys * stride, 5 + hd as u64);
        let (k16, v16) = (to16(&k32), to16(&v32));
        for (k, v) in [
            (Rows::F32(&k32), Rows::F32(&v32)),
            (Rows::F16(&k16), Rows::F16(&v16)),
        ] {
            let t = Single {
                q: &q,
                k,
                v,
                stride,
                hd,
                lo,
                hi: keys - 1,
                scale: 0.3,
                softcap: cap,
            };
            let kind = if matches!(k, Rows::F16(_)) {
                "f16"
            } else {
                "f32"
            };
            let (mut a, mut b) = (vec![0f32; hd], vec![0f32; hd]);
            attend1(&t, &mut vec![0f32; t.scratch()], &mut a);
            attend1_scalar(&t, &mut vec![0f32; keys], &mut b);
            let mut c = vec![0f32; hd];
            lanes::attend1(&t, &mut vec![0f32; t.scratch()], &mut c);
            let want = attention_f64(|d| q[d] as f64, k, v, stride, hd, lo..=keys - 1, 0.3, cap);
            for (d, want) in want.iter().enumerate() {
                for (what, got) in [("simd", a[d]), ("scalar", b[d]), ("lanes", c[d])] {
                    assert!(
                        (got as f64 - want).abs() < 1e-5 * want.abs().max(1.0),
                        "{what} {kind} hd={hd} keys={keys} lo={lo} dim {d}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
