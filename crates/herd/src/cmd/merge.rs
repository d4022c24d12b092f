//! `herd merge MODEL --lora ADAPTER -o OUT`: the adapter folded into the weights.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use herd_kernels::GgmlType;
use herd_license::{Kind, Manifest, manifest::method};
use herd_train::adapter::Adapter;

#[derive(clap::Args)]
pub struct Args {
    /// The base model the adapter was trained on.
    pub model: String,
    /// A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors).
    #[arg(long)]
    pub lora: PathBuf,
    /// Output: a path ending in .gguf, or a folder (Hugging Face safetensors, f32).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Type of the matrices in a GGUF output (f32, f16, bf16, q8_0, q5_1, q5_0, q4_1, q4_0).
    #[arg(long = "type", default_value = "f16")]
    pub dtype: String,
}

pub fn run(a: Args) -> Result<()> {
    let dtype =
        GgmlType::from_name(&a.dtype).ok_or_else(|| anyhow!("unknown type '{}'", a.dtype))?;
    let path = super::model_path(&a.model)?;
    let model = herd_model::Model::open(&path)?;
    let adapter = Adapter::read(&a.lora)?;
    let merged = herd_train::merge::merge_adapter(model, &adapter)?;
    let mut lineage = Manifest::new(Kind::MergedModel, "merged", method::MERGE)
        .with_path(&a.out)
        .with_hyperparameters(serde_json::json!({"lora": a.lora, "type": a.dtype}));
    for p in [path.as_path(), a.lora.as_path()] {
        if let Ok(m) = herd_license::detect(p) {
            lineage = lineage.with_parent(m);
        }
    }
    let out = herd_train::merge::write_model(&merged, &a.out, dtype, &lineage.to_gguf_metadata())?;
    if out.is_dir() {
        lineage.write(out.join(herd_license::manifest::FILE_NAME))?;
    }
    eprintln!("wrote {}", out.display());
    Ok(())
}
