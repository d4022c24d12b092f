//! `herd logits MODEL (--text T | --ids 1,2,3) --out FILE.safetensors`

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use herd_model::engine::{CacheType, Logits, SeqInput};
use herd_model::reference::{Layout, RefModel};

#[derive(clap::Args)]
pub struct Args {
    /// A .gguf file, a Hugging Face model folder, or a pulled OWNER/REPO[:FILE].
    pub model: String,
    /// Token ids, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        conflicts_with = "text",
        required_unless_present = "text"
    )]
    pub ids: Vec<u32>,
    /// Text, tokenized with the model's tokenizer (BOS added as the model asks).
    #[arg(long)]
    pub text: Option<String>,
    /// Output file: `logits` [T, V] f32 and `input_ids` [T] i64.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Compute with the candle reference forward pass instead of the fast engine.
    #[arg(long)]
    pub reference: bool,
    /// Apply this PEFT LoRA adapter (a folder with adapter_config.json and
    /// adapter_model.safetensors, e.g. from `herd tune`) at run time
    /// (with --reference: merged into the weights first).
    #[arg(long, value_name = "DIR")]
    pub lora: Option<PathBuf>,
    /// Threads for the fast engine [default: CPUs available to this process].
    #[arg(long, short)]
    pub threads: Option<usize>,
    /// Element type of the fast engine's KV cache. f32 by default: this command's logits are
    /// for comparing against other implementations, and an f16 cache moves them by about
    /// 1e-3 (f16 is what run, chat, serve and eval use).
    #[arg(long, default_value_t = CacheType::F32)]
    pub cache_type: CacheType,
}

pub fn run(a: Args) -> Result<()> {
    let model = super::open_model(&a.model)?;
    let ids: Vec<u32> = match &a.text {
        Some(text) => {
            let tok = herd_model::tokenizer::Tokenizer::for_model(&model)?;
            tok.encode(text, true, false)?
        }
        None => a.ids.clone(),
    };
    if ids.is_empty() {
        bail!("the prompt has no tokens");
    }
    let v = model.spec.vocab_size;
    let logits: Vec<f32> = if a.reference {
        let merged;
        let model = match &a.lora {
            Some(dir) => {
                let adapter = herd_train::adapter::Adapter::read(dir)?;
                merged = herd_train::merge::merge_adapter(super::open_model(&a.model)?, &adapter)?;
                &merged
            }
            None => &model,
        };
        let rm = RefModel::load(model, &candle_core::Device::Cpu)?;
        let t =
            candle_core::Tensor::from_vec(ids.clone(), (1, ids.len()), &candle_core::Device::Cpu)?;
        rm.forward(&t, &Layout::contiguous(&[0], ids.len()), None)?
            .flatten_all()?
            .to_vec1::<f32>()?
    } else {
        let mut e = super::engine(
            &model,
            a.threads.unwrap_or_else(super::default_threads),
            a.cache_type,
            a.lora.as_deref(),
        )?;
        let mut cache = e.new_cache(ids.len());
        e.forward(&mut [SeqInput {
            tokens: &ids,
            cache: &mut cache,
            logits: Logits::All,
        }])?
        .to_vec()
    };
    let logit_bytes: Vec<u8> = logits.iter().flat_map(|x| x.to_le_bytes()).collect();
    let id_bytes: Vec<u8> = ids.iter().flat_map(|&i| (i as i64).to_le_bytes()).collect();
    let views = [
        (
            "logits",
            safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                vec![ids.len(), v],
                &logit_bytes,
            )?,
        ),
        (
            "input_ids",
            safetensors::tensor::TensorView::new(
                safetensors::Dtype::I64,
                vec![ids.len()],
                &id_bytes,
            )?,
        ),
    ];
    let bytes = safetensors::serialize(views, None).context("serialising the logits")?;
    herd_model::io::atomic_write(&a.out, &bytes)?;
    eprintln!(
        "wrote logits [{} × {v}] for {} tokens to {}",
        ids.len(),
        ids.len(),
        a.out.display()
    );
    Ok(())
}
