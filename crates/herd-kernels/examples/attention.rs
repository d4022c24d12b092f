//! Times one attention tile (`herd_kernels::attention::attend8`) against growing key counts,
//! as a decoding step's grouped heads or a prompt's 8-query tile meet them: 8 query lanes,
//! 64-dimensional heads, each head's rows one after another (the engine's cache), in f32 and
//! in f16.
//!
//! `cargo run --release -p herd-kernels --example attention [-- KEYS,KEYS,...]`
//!
//! The keys and values stay in cache between repeats, so this measures the kernel's compute;
//! in a model, decoding reads them from memory. Prints the median of 7 timings per count.

use std::time::Instant;

use herd_kernels::attention::{Rows, Tile, attend8};

fn main() -> Result<(), String> {
    let counts = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "128,512,2048,8192".into())
        .split(',')
        .map(|k| match k.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "{k:?}: key counts are positive integers, as 128,512"
            )),
        })
        .collect::<Result<Vec<usize>, String>>()?;
    let (hd, stride) = (64usize, 64usize);
    // Values in [-0.5, 0.5) from a fixed sequence: the timing does not depend on them.
    let fill = |n: usize, m: usize| -> Vec<f32> {
        (0..n).map(|i| ((i * m) % 97) as f32 / 97.0 - 0.5).collect()
    };
    let to16 = |x: &[f32]| -> Vec<u16> {
        x.iter()
            .map(|&x| half::f16::from_f32(x).to_bits())
            .collect()
    };
    println!("| rows | keys | µs per tile | ns per key | FMA lanes per ns |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (keys, f16) in counts.iter().flat_map(|&k| [(k, false), (k, true)]) {
        let (q, k, v) = (
            fill(8 * hd, 7919),
            fill(keys * stride, 104_729),
            fill(keys * stride, 15_485_863),
        );
        let (k16, v16) = (to16(&k), to16(&v));
        let (k, v) = if f16 {
            (Rows::F16(&k16), Rows::F16(&v16))
        } else {
            (Rows::F32(&k), Rows::F32(&v))
        };
        let t = Tile {
            q: &q,
            k,
            v,
            stride,
            hd,
            lo: [0; 8],
            hi: [(keys - 1) as u32; 8],
            scale: 0.125,
            softcap: None,
            stream: false,
        };
        let (mut s, mut out) = (vec![0f32; t.scratch()], vec![0f32; 8 * hd]);
        let reps = (2_000_000 / keys).max(10);
        attend8(&t, &mut s, &mut out);
        let mut times: Vec<f64> = (0..7)
            .map(|_| {
                let t0 = Instant::now();
                for _ in 0..reps {
                    attend8(&t, &mut s, &mut out);
                }
                t0.elapsed().as_secs_f64() / reps as f64
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let dt = times[3];
        // q·k and p·v: 2 · keys · hd multiply-adds on 8 lanes each.
        let lanes = (2 * keys * hd * 8) as f64;
        println!(
            "| {} | {keys} | {:.1} | {:.1} | {:.1} |",
            if f16 { "f16" } else { "f32" },
            dt * 1e6,
            dt * 1e9 / keys as f64,
            lanes / (dt * 1e9)
        );
    }
    Ok(())
}
