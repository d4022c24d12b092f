//! Folding adapters into weights, and writing a fine-tuned model as GGUF or as a Hugging
//! Face folder.

use std::path::{Path, PathBuf};

use herd_kernels::GgmlType;
use herd_model::export::{tokenizer_metadata, uniform_plan, write_gguf};
use herd_model::gguf::Value;
use herd_model::model::Source;
use herd_model::{Model, StoredTensor};
use safetensors::tensor::TensorView;

use crate::adapter::Adapter;
use crate::model::{MODULES, TrainModel, permute_rows};
use crate::{Error, Result};

fn f32_tensor(shape: Vec<usize>, data: &[f32]) -> StoredTensor {
    StoredTensor::owned(
        GgmlType::F32,
        shape,
        data.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

fn parent_of(module: &str) -> &'static str {
    if matches!(module, "gate_proj" | "up_proj" | "down_proj") {
        "mlp"
    } else {
        "self_attn"
    }
}

/// One projection an adapter covers: `A [r, inp]`, and `B [out, r]` in the model's row order.
pub struct AdaptedProjection {
    pub layer: usize,
    /// The PEFT module name (`q_proj`, …, `down_proj`).
    pub module: &'static str,
    /// The weight's name in the model (`model.layers.{i}.self_attn.q_proj.weight`).
    pub weight: String,
    pub rank: usize,
    pub inp: usize,
    pub out: usize,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

/// Every projection `adapter` covers, checked against `model`'s weights, with `B`'s rows
/// permuted where the model stores Q and K in llama.cpp's rotary order.
pub fn adapted_projections(model: &Model, adapter: &Adapter) -> Result<Vec<AdaptedProjection>> {
    let permuted = matches!(
        model.spec.arch,
        herd_model::Arch::Llama | herd_model::Arch::Mistral
    ) && model.spec.rope.layout == herd_model::spec::RopeLayout::Interleaved;
    let mut found = vec![];
    for i in 0..model.spec.n_layers {
        for m in MODULES {
            let key = |ab: &str| crate::model::peft_key(i, parent_of(m), m, ab);
            let (Some((sa, a)), Some((sb, b))) = (
                adapter.tensors.get(&key("A")),
                adapter.tensors.get(&key("B")),
            ) else {
                continue;
            };
            let name = format!("model.layers.{i}.{}.{m}.weight", parent_of(m));
            let w = model
                .weights
                .get(&name)
                .ok_or_else(|| Error::Usage(format!("the model has no {name}")))?;
            let (out, inp) = (w.shape[0], w.shape[1]);
            let r = sa.first().copied().unwrap_or(0);
            if sa != &[r, inp] || sb != &[out, r] {
                return Err(Error::Usage(format!(
                    "adapter for {name}: A {sa:?}, B {sb:?} do not fit the weight {:?}",
                    w.shape
                )));
            }
            // Adapters are stored in Hugging Face's row order; GGUF llama rows are permuted.
            let b = match (permuted, m) {
                (true, "q_proj") => permute_rows(b, out, r, model.spec.n_heads, false),
                (true, "k_proj") => permute_rows(b, out, r, model.spec.n_kv_heads, false),
                _ => b.clone(),
            };
            found.push(AdaptedProjection {
                layer: i,
                module: m,
                weight: name,
                rank: r,
                inp,
                out,
                a: a.clone(),
                b,
            });
        }
    }
    if found.is_empty() {
        return Err(Error::Usage(
            "the adapter covers none of this model's projections".into(),
        ));
    }
    Ok(found)
}

/// `model` with `W + (alpha/r)·B·A` for every projection the adapter covers (f32).
pub fn merge_adapter(mut model: Model, adapter: &Adapter) -> Result<Model> {
    let scaling = adapter.config.scaling();
    for p in adapted_projections(&model, adapter)? {
        let w = model
            .weights
            .get(&p.weight)
            .ok_or_else(|| Error::Usage(format!("the model has no {}", p.weight)))?;
        let (out, inp, r) = (p.out, p.inp, p.rank);
        let mut data = w.to_f32();
        for o in 0..out {
            for k in 0..r {
                let s = (p.b[o * r + k] as f64 * scaling) as f32;
                if s != 0.0 {
                    let row = &mut data[o * inp..(o + 1) * inp];
                    row.iter_mut()
                        .zip(&p.a[k * inp..(k + 1) * inp])
                        .for_each(|(x, &av)| *x += s * av);
                }
            }
        }
        model
            .weights
            .insert(p.weight, f32_tensor(vec![out, inp], &data));
    }
    Ok(model)
}

/// The adapter as the engine applies it at run time, beside the unchanged base weights.
pub fn engine_lora(model: &Model, adapter: &Adapter) -> Result<Vec<herd_model::engine::LayerLora>> {
    let scale = adapter.config.scaling() as f32;
    let mut layers: Vec<herd_model::engine::LayerLora> = (0..model.spec.n_layers)
        .map(|_| Default::default())
        .collect();
    for p in adapted_projections(model, adapter)? {
        let pair = herd_model::engine::LoraPair::new(&p.a, &p.b, p.rank, p.inp, p.out, scale)?;
        let l = &mut layers[p.layer];
        let slot = match p.module {
            "q_proj" => &mut l.q,
            "k_proj" => &mut l.k,
            "v_proj" => &mut l.v,
            "o_proj" => &mut l.o,
            "gate_proj" => &mut l.gate,
            "up_proj" => &mut l.up,
            _ => &mut l.down,
        };
        *slot = Some(pair);
    }
    Ok(layers)
}

/// `model` with every trained parameter of `tm` in place of its weight (full fine-tuning).
pub fn apply_full(mut model: Model, tm: &TrainModel) -> Result<Model> {
    for (name, shape, data) in tm.values()? {
        model.weights.insert(name, f32_tensor(shape, &data));
    }
    Ok(model)
}

/// Writes `model` as GGUF (`out` ending in `.gguf`, matrices in `dtype`) or as a Hugging Face
/// folder (`model.safetensors` in f32 with the source folder's configuration and tokenizer).
pub fn write_model(
    model: &Model,
    out: &Path,
    dtype: GgmlType,
    extra: &[(String, Value)],
) -> Result<PathBuf> {
    if out.extension().is_some_and(|e| e == "gguf") {
        let mut meta = tokenizer_metadata(model);
        meta.extend(herd_model::tokenizer::gguf_metadata_for(model)?);
        meta.extend(extra.iter().cloned());
        if let Some(dir) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::Io {
                path: dir.to_path_buf(),
                source: e,
            })?;
        }
        write_gguf(model, out, &uniform_plan(dtype), &meta)?;
        return Ok(out.to_path_buf());
    }
    let Source::HuggingFace { dir: src, .. } = &model.source else {
        return Err(Error::Usage(format!(
            "{}: a model read from GGUF is written as GGUF: give a path ending in .gguf",
            out.display()
        )));
    };
    std::fs::create_dir_all(out).map_err(|e| Error::Io {
        path: out.to_path_buf(),
        source: e,
    })?;
    let bufs: Vec<(String, Vec<usize>, Vec<u8>)> = model
        .weights
        .tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.shape.clone(),
                t.to_f32().iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bufs
        .iter()
        .map(|(n, s, b)| {
            TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Usage(e.to_string()))
        })
        .collect::<Result<_>>()?;
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes =
        safetensors::serialize(views, Some(meta)).map_err(|e| Error::Usage(e.to_string()))?;
    herd_model::io::atomic_write(&out.join("model.safetensors"), &bytes)?;
    for f in [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
        "tokenizer.model",
    ] {
        let p = src.join(f);
        if p.is_file() {
            std::fs::copy(&p, out.join(f)).map_err(|e| Error::Io {
                path: p.clone(),
                source: e,
            })?;
        }
    }
    Ok(out.to_path_buf())
}

/// The result of full fine-tuning: GGUF beside a GGUF base, a folder beside a folder.
pub fn write_full(
    tm: &TrainModel,
    base: &Model,
    dir: &Path,
    extra: &[(String, Value)],
) -> Result<PathBuf> {
    let model = apply_full(Model::open(&base.path)?, tm)?;
    let out = match base.source {
        Source::Gguf(_) => dir.join("model.gguf"),
        Source::HuggingFace { .. } => dir.to_path_buf(),
    };
    write_model(&model, &out, GgmlType::F32, extra)
}
