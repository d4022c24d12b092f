//! herd's own LoRA forward and backward pass against the reference pass that candle's autograd
//! differentiates (itself pinned to PyTorch + peft by `peft_parity.rs`), on what that fixture
//! does not reach: packed rows, padding, dropout, Qwen2's biases, Mistral's sliding window,
//! stories260K's interleaved rotary layout, every target module, gradient checkpointing.

use std::collections::HashMap;
use std::path::PathBuf;

use herd_data::Sequence;
use herd_model::Model;
use herd_model::rng::Rng;
use herd_train::loss::{Batch, loss_sum};
use herd_train::model::MODULES;
use herd_train::optim::gradients;
use herd_train::{LoraConfig, Method, TrainModel};

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

/// Row 0 packs two examples; row 1 holds one shorter example and padding.
fn batch(vocab: usize, seed: u64) -> Batch {
    let mut rng = Rng::new(seed);
    let mut example = |len: usize, seg: u32| -> Sequence {
        Sequence {
            ids: (0..len)
                .map(|_| (rng.next_f64() * vocab as f64) as u32 % vocab as u32)
                .collect(),
            train: (0..len).map(|i| i >= len / 3).collect(),
            positions: (0..len).collect(),
            segments: vec![seg; len],
        }
    };
    let (a, b, c) = (example(7, 0), example(9, 1), example(11, 0));
    let packed = Sequence {
        ids: [a.ids, b.ids].concat(),
        train: [a.train, b.train].concat(),
        positions: [a.positions, b.positions].concat(),
        segments: [a.segments, b.segments].concat(),
    };
    Batch::new(&[&packed, &c])
}

fn close(got: &[f32], want: &[f32], rel: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f32, |a, x| a.max(x.abs()));
    assert!(scale > 0.0, "{what}: all zero");
    let d = got
        .iter()
        .zip(want)
        .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
    assert!(
        d <= rel * scale,
        "{what}: max |Δ| {d} against max |x| {scale}"
    );
}

/// A rank-4 LoRA on all seven projections of `model`, every adapter matrix set to random
/// values drawn from `seed` (B starts at zero, which would leave A's gradients zero).
fn lora_with_values(model: &Model, dropout: f32, seed: u64) -> TrainModel {
    let cfg = LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout,
        targets: MODULES.iter().map(|s| s.to_string()).collect(),
    };
    let tm = TrainModel::new(model, &Method::Lora(cfg), 7).unwrap();
    let mut rng = Rng::new(seed);
    let values: HashMap<String, Vec<f32>> = tm
        .values()
        .unwrap()
        .into_iter()
        .map(|(n, _, v)| {
            let w = v
                .iter()
                .map(|_| (rng.next_f64() - 0.5) as f32 * 0.2)
                .collect();
            (n, w)
        })
        .collect();
    tm.set_values(&values).unwrap();
    tm
}

fn compare(model: Model, what: &str) {
    let mut tm = lora_with_values(&model, 0.2, 11);
    assert_eq!(herd_train::native::unsupported(&tm), None, "{what}");
    let b = batch(model.spec.vocab_size, 5);
    let (bs, t) = (b.ids.len(), b.ids[0].len());
    tm.set_dropout(&mut Rng::new(3), bs, t).unwrap();

    let logits = tm
        .model
        .forward(&b.ids_tensor().unwrap(), &b.layout, None)
        .unwrap();
    let loss = loss_sum(&logits, &b).unwrap();
    let want_loss = loss.to_scalar::<f32>().unwrap();
    let scale = 1.0 / b.targets() as f64;
    let want = gradients(&tm, &loss, scale).unwrap();

    let eval = herd_train::native::loss_sum(&tm, &b).unwrap().unwrap();
    close(&[eval as f32], &[want_loss], 1e-5, &format!("{what}: loss"));
    for ckpt in [false, true] {
        let (loss, got) = herd_train::native::loss_and_gradients(&tm, &b, scale, ckpt)
            .unwrap()
            .unwrap();
        close(&[loss], &[want_loss], 1e-5, &format!("{what}: loss"));
        for (p, (g, w)) in tm.params.iter().zip(got.iter().zip(&want)) {
            close(
                g,
                w,
                1e-5,
                &format!("{what} (checkpointing {ckpt}): gradient of {}", p.name),
            );
        }
    }
}

#[test]
fn native_pass_equals_the_reference_on_llama_qwen2_mistral_and_stories260k() {
    for name in ["llama", "qwen2", "mistral"] {
        compare(
            Model::open(shared().join("golden/hf-tiny").join(name)).unwrap(),
            name,
        );
    }
    compare(
        Model::open(shared().join("models/stories260K/stories260K.gguf")).unwrap(),
        "stories260K",
    );
}

/// QLoRA: on a Q8_0 base the native pass multiplies by the dequantised weights; the reference
/// pass given the same dequantised weights as dense matrices must agree with it.
#[test]
fn native_pass_trains_on_a_quantized_base() {
    use herd_model::reference::{LinearWeight, to_tensor};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llama-q8_0.gguf");
    let hf = Model::open(shared().join("golden/hf-tiny/llama")).unwrap();
    herd_model::export::write_gguf(
        &hf,
        &path,
        &herd_model::export::uniform_plan(herd_kernels::GgmlType::Q8_0),
        &[],
    )
    .unwrap();
    let q8 = Model::open(&path).unwrap();
    let mut tm = lora_with_values(&q8, 0.0, 2);
    let b = batch(q8.spec.vocab_size, 9);
    let scale = 1.0 / b.targets() as f64;
    let (loss, got) = herd_train::native::loss_and_gradients(&tm, &b, scale, false)
        .unwrap()
        .unwrap();
    let mut quantized = 0;
    for l in tm.model.layers.iter_mut() {
        for lin in [
            &mut l.q,
            &mut l.k,
            &mut l.v,
            &mut l.o,
            &mut l.gate,
            &mut l.up,
            &mut l.down,
        ] {
            if let LinearWeight::Quantized(q) = &lin.weight {
                lin.weight = LinearWeight::Dense(to_tensor(q, &candle_core::Device::Cpu).unwrap());
                quantized += 1;
            }
        }
    }
    assert_eq!(
        quantized,
        7 * q8.spec.n_layers,
        "every projection stayed Q8_0"
    );
    let logits = tm
        .model
        .forward(&b.ids_tensor().unwrap(), &b.layout, None)
        .unwrap();
    let want_loss = loss_sum(&logits, &b).unwrap();
    let want = gradients(&tm, &want_loss, scale).unwrap();
    close(
        &[loss],
        &[want_loss.to_scalar::<f32>().unwrap()],
        1e-5,
        "Q8_0 base: loss",
    );
    for (p, (g, w)) in tm.params.iter().zip(got.iter().zip(&want)) {
        close(g, w, 1e-5, &format!("Q8_0 base: gradient of {}", p.name));
    }
}

#[test]
fn native_pass_declines_what_it_does_not_cover() {
    let qwen3 = Model::open(shared().join("golden/hf-tiny/qwen3")).unwrap();
    let cfg = LoraConfig {
        r: 2,
        alpha: 4.0,
        dropout: 0.0,
        targets: vec!["q_proj".into()],
    };
    let tm = TrainModel::new(&qwen3, &Method::Lora(cfg), 1).unwrap();
    assert_eq!(
        herd_train::native::unsupported(&tm),
        Some("query/key norms")
    );
    let b = batch(qwen3.spec.vocab_size, 1);
    assert!(
        herd_train::native::loss_and_gradients(&tm, &b, 1.0, false)
            .unwrap()
            .is_none()
    );
    let llama = Model::open(shared().join("golden/hf-tiny/llama")).unwrap();
    let full = TrainModel::new(&llama, &Method::Full, 1).unwrap();
    assert_eq!(
        herd_train::native::unsupported(&full),
        Some("full fine-tuning")
    );
}
