//! One training step and five AdamW steps against PyTorch + peft (fixtures made by
//! `scripts/make_tune_fixtures.py` on the hf-tiny llama model).

use std::collections::HashMap;
use std::path::PathBuf;

use herd_model::Model;
use herd_model::reference::Layout;
use herd_train::adapter::Adapter;
use herd_train::loss::{Batch, loss_sum};
use herd_train::optim::{AdamWConfig, Moments, apply, gradients};
use herd_train::{Method, TrainModel};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn model() -> Model {
    Model::open(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden/hf-tiny/llama"),
    )
    .unwrap()
}

fn reference(name: &str) -> HashMap<String, Vec<f32>> {
    let bytes = std::fs::read(fixtures().join(name)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| {
            (
                n,
                v.data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            )
        })
        .collect()
}

/// The fixture's batch: right-padded, labels -100 where not trained.
fn batch() -> Batch {
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("batch.json")).unwrap())
            .unwrap();
    let rows = |k: &str| -> Vec<Vec<i64>> {
        j[k].as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_i64().unwrap())
                    .collect()
            })
            .collect()
    };
    let (ids, mask, labels) = (rows("input_ids"), rows("attention_mask"), rows("labels"));
    let t = ids[0].len();
    Batch {
        ids: ids
            .iter()
            .map(|r| r.iter().map(|&x| x as u32).collect())
            .collect(),
        train: labels
            .iter()
            .map(|r| r.iter().map(|&x| x != -100).collect())
            .collect(),
        layout: Layout {
            positions: vec![(0..t).collect(); ids.len()],
            valid: mask
                .iter()
                .map(|r| r.iter().map(|&x| x == 1).collect())
                .collect(),
            segments: None,
        },
    }
}

fn close(got: &[f32], want: &[f32], rel: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f32, |a, x| a.max(x.abs()));
    let d = got
        .iter()
        .zip(want)
        .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
    assert!(
        d <= rel * scale + 1e-7,
        "{what}: max |Δ| {d} against max |x| {scale}"
    );
}

fn mean_loss(tm: &TrainModel, b: &Batch) -> candle_core::Tensor {
    let logits = tm
        .model
        .forward(&b.ids_tensor().unwrap(), &b.layout, None)
        .unwrap();
    (loss_sum(&logits, b).unwrap() / b.targets() as f64).unwrap()
}

/// The mean loss of the fixture's batch and the gradients of it, through candle's autograd
/// on the reference pass or (`native`) through herd's own backward pass.
fn loss_and_gradients(tm: &TrainModel, b: &Batch, native: bool) -> (f32, Vec<Vec<f32>>) {
    if native {
        let n = b.targets() as f64;
        let (loss, g) = herd_train::native::loss_and_gradients(tm, b, 1.0 / n, false)
            .unwrap()
            .expect("the native pass covers this model");
        return (loss / n as f32, g);
    }
    let loss = mean_loss(tm, b);
    (
        loss.to_scalar::<f32>().unwrap(),
        gradients(tm, &loss, 1.0).unwrap(),
    )
}

fn check(tm: TrainModel, fixture: &str, lr: f64, native: bool) {
    let want = reference(fixture);
    let b = batch();
    let (loss, grads) = loss_and_gradients(&tm, &b, native);
    close(&[loss], &want["loss"], 1e-5, "loss");
    for (p, g) in tm.params.iter().zip(&grads) {
        close(
            g,
            &want[&format!("grad.{}", p.name)],
            1e-5,
            &format!("gradient of {}", p.name),
        );
    }
    // Five AdamW steps as torch.optim.AdamW takes them.
    let cfg = AdamWConfig {
        lr,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
    };
    let mut moments = vec![Moments::default(); tm.params.len()];
    let mut losses = vec![];
    for step in 1..=5 {
        let (loss, g) = loss_and_gradients(&tm, &b, native);
        losses.push(loss);
        apply(&tm, &g, &mut moments, &cfg, lr, step).unwrap();
    }
    close(&losses, &want["losses"], 1e-5, "losses of the five steps");
    // Adam divides each gradient by its own running magnitude, so the float noise of a
    // near-zero gradient element (1e-6 of it, from a different summation order) becomes an
    // absolute difference of up to ~lr·1e-4 in that weight: the largest seen is 1.2e-5 of the
    // tensor's scale (one LoRA A of k_proj), hence 2e-5 here; loss and gradients hold 1e-5.
    for (name, _, v) in tm.values().unwrap() {
        close(
            &v,
            &want[&format!("final.{name}")],
            2e-5,
            &format!("{name} after five steps"),
        );
    }
}

#[test]
fn lora_step_gradients_and_adamw_equal_peft() {
    let m = model();
    let adapter = Adapter::read(&fixtures().join("lora_init")).unwrap();
    let tm = TrainModel::new(&m, &Method::Lora(adapter.config.clone()), 0).unwrap();
    tm.set_values(&adapter.values_for(&tm).unwrap()).unwrap();
    assert_eq!(tm.params.len(), 2 * 7 * 2);
    check(tm, "lora_reference.safetensors", 1e-2, false);
}

/// herd's own forward and backward pass (what `herd tune` trains LoRA with) against PEFT.
#[test]
fn native_lora_step_gradients_and_adamw_equal_peft() {
    let m = model();
    let adapter = Adapter::read(&fixtures().join("lora_init")).unwrap();
    let tm = TrainModel::new(&m, &Method::Lora(adapter.config.clone()), 0).unwrap();
    tm.set_values(&adapter.values_for(&tm).unwrap()).unwrap();
    assert_eq!(herd_train::native::unsupported(&tm), None);
    check(tm, "lora_reference.safetensors", 1e-2, true);
}

#[test]
fn full_fine_tuning_gradients_and_adamw_equal_pytorch() {
    let m = model();
    let tm = TrainModel::new(&m, &Method::Full, 0).unwrap();
    check(tm, "full_reference.safetensors", 1e-3, false);
}

/// Gradient checkpointing recomputes each layer in the backward pass; its loss and gradients
/// must still be PyTorch's, for LoRA and for full fine-tuning (embeddings included).
#[test]
fn gradient_checkpointing_gives_pytorchs_gradients() {
    let m = model();
    let adapter = Adapter::read(&fixtures().join("lora_init")).unwrap();
    let lora = TrainModel::new(&m, &Method::Lora(adapter.config.clone()), 0).unwrap();
    lora.set_values(&adapter.values_for(&lora).unwrap())
        .unwrap();
    let full = TrainModel::new(&m, &Method::Full, 0).unwrap();
    let b = batch();
    for (tm, fixture) in [
        (lora, "lora_reference.safetensors"),
        (full, "full_reference.safetensors"),
    ] {
        let want = reference(fixture);
        let (loss, grads) =
            herd_train::recompute::loss_and_gradients(&tm, &b, 1.0 / b.targets() as f64).unwrap();
        close(&[loss / b.targets() as f32], &want["loss"], 1e-5, "loss");
        for (p, g) in tm.params.iter().zip(&grads) {
            close(
                g,
                &want[&format!("grad.{}", p.name)],
                1e-5,
                &format!("{fixture}: checkpointed gradient of {}", p.name),
            );
        }
    }
}
