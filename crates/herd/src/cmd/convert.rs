//! `herd convert MODEL --out FILE.gguf [--type f16]`

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use herd_kernels::GgmlType;
use herd_license::facts::{Facts, Origin, Problem};
use herd_license::manifest::method;
use herd_license::{Component, Kind, Manifest};
use herd_model::export::{tokenizer_metadata, uniform_plan_with_fallback, write_gguf};

#[derive(clap::Args)]
pub struct Args {
    /// A .gguf file, a Hugging Face model folder, or a pulled OWNER/REPO[:FILE].
    pub model: String,
    /// The GGUF file to write.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Type of the weight matrices: f32, f16, bf16, q8_0, q5_1, q5_0, q4_1, q4_0 (norms and
    /// biases stay f32; matrices whose rows are not whole blocks fall back to f16, as
    /// llama-quantize does).
    #[arg(long = "type", default_value = "f16")]
    pub dtype: String,
    /// Type for matrices whose rows are not whole blocks of `--type` (f16 as llama-quantize,
    /// or f32 to keep them exact).
    #[arg(long, default_value = "f16")]
    pub fallback: String,
}

pub fn run(a: Args) -> Result<()> {
    let dtype = GgmlType::from_name(&a.dtype).ok_or_else(|| {
        anyhow!(
            "unknown type '{}' (f32, f16, bf16, q8_0, q5_1, q5_0, q4_1, q4_0)",
            a.dtype
        )
    })?;
    let fallback = GgmlType::from_name(&a.fallback)
        .filter(|t| !t.is_quantized())
        .ok_or_else(|| anyhow!("--fallback must be f32, f16 or bf16, not '{}'", a.fallback))?;
    let path = super::model_path(&a.model)?;
    let model = herd_model::Model::open(&path)?;
    let mut extra = tokenizer_metadata(&model);
    extra.extend(herd_model::tokenizer::gguf_metadata_for(&model)?);
    extra.extend(lineage(&a, &path, dtype).to_gguf_metadata());
    write_gguf(
        &model,
        &a.out,
        &uniform_plan_with_fallback(dtype, fallback),
        &extra,
    )?;
    eprintln!("wrote {} ({dtype})", a.out.display());
    Ok(())
}

/// The lineage manifest embedded in the written file: method `quantize` or `convert`, with
/// the source's licence facts as its parent. Facts that cannot be read do not stop the
/// conversion: they are recorded as a problem, so `herd license` on the output says unknown.
fn lineage(a: &Args, source: &std::path::Path, dtype: GgmlType) -> Manifest {
    let parent = herd_license::detect(source).unwrap_or_else(|e| {
        eprintln!(
            "herd: warning: the licence facts of {} could not be read: {e}",
            a.model
        );
        let facts = Facts {
            problems: vec![Problem {
                origin: Origin::new(source.display().to_string(), None),
                message: e.to_string(),
            }],
            ..Default::default()
        };
        Manifest::found(Kind::Model, Component::named(&a.model).with_facts(facts))
    });
    let name = a
        .out
        .file_stem()
        .map_or_else(|| "model".to_string(), |s| s.to_string_lossy().into_owned());
    let how = if dtype.is_quantized() {
        method::QUANTIZE
    } else {
        method::CONVERT
    };
    Manifest::new(Kind::Gguf, name, how)
        .with_path(&a.out)
        .with_hyperparameters(serde_json::json!({"type": a.dtype, "fallback": a.fallback}))
        .with_parent(parent)
}
