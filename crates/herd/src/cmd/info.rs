//! `herd info MODEL`

use std::collections::BTreeMap;

use anyhow::Result;
use herd_model::Model;
use herd_model::model::Source;
use herd_model::spec::RopeScaling;
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// A .gguf file, a Hugging Face model folder, or a pulled OWNER/REPO[:FILE].
    pub model: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Licence facts stored in the model's own metadata (GGUF `general.license*` and base-model
/// keys; a Hugging Face folder's model card front matter).
pub fn licence_facts(model: &Model) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match &model.source {
        Source::Gguf(f) => {
            for k in &f.key_order {
                let licence_key = ["general.license", "general.base_model", "general.dataset"]
                    .iter()
                    .any(|p| k.starts_with(p));
                if let Some(v) = f.get(k).filter(|_| licence_key) {
                    out.insert(k.clone(), v.display_short());
                }
            }
        }
        Source::HuggingFace { dir, .. } => {
            if let Ok(card) = std::fs::read_to_string(dir.join("README.md")) {
                let mut lines = card.lines();
                if lines.next().map(str::trim) == Some("---") {
                    for l in lines.take_while(|l| l.trim() != "---") {
                        if let Some((k, v)) = l.split_once(':') {
                            let k = k.trim();
                            if matches!(
                                k,
                                "license" | "license_name" | "license_link" | "base_model"
                            ) {
                                out.insert(k.to_string(), v.trim().to_string());
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

pub fn run(a: Args) -> Result<()> {
    let model = super::open_model(&a.model)?;
    let s = &model.spec;
    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    let mut params = 0usize;
    for t in model.weights.tensors.values() {
        *types.entry(t.dtype.name().to_string()).or_default() += 1;
        params += t.elem_count();
    }
    let format = match &model.source {
        Source::Gguf(f) => format!("GGUF v{}", f.version),
        Source::HuggingFace { .. } => "Hugging Face folder (safetensors)".to_string(),
    };
    let rope_scaling = match &s.rope.scaling {
        RopeScaling::None => "none".to_string(),
        RopeScaling::Linear { factor } => format!("linear ×{factor}"),
        RopeScaling::Dynamic {
            factor,
            original_max,
        } => format!("dynamic NTK ×{factor} beyond {original_max}"),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max,
        } => format!(
            "llama3 ×{factor} (low {low_freq_factor}, high {high_freq_factor}, original context {original_max})"
        ),
        RopeScaling::FreqFactors(f) => {
            format!("per-frequency factors ({} values, llama3 style)", f.len())
        }
    };
    let template = model.chat_template();
    let licence = licence_facts(&model);
    let windows: Vec<String> = s
        .sliding_window
        .iter()
        .map(|w| w.map_or("full".to_string(), |w| w.to_string()))
        .collect();
    if a.json {
        let v = json!({
            "path": model.path,
            "format": format,
            "architecture": s.arch.name(),
            "parameters": params,
            "tensor_types": types,
            "bytes": model.weights.total_bytes(),
            "context_length": s.context_length,
            "vocab_size": s.vocab_size,
            "layers": s.n_layers,
            "hidden_size": s.hidden_size,
            "intermediate_size": s.intermediate_size,
            "heads": s.n_heads,
            "kv_heads": s.n_kv_heads,
            "head_dim": s.head_dim,
            "rope": {"theta": s.rope.theta, "dim": s.rope.dim, "layout": format!("{:?}", s.rope.layout), "scaling": rope_scaling},
            "sliding_window": s.sliding_window,
            "attn_softcap": s.attn_softcap,
            "final_softcap": s.final_softcap,
            "tied_embeddings": s.tie_embeddings,
            "bos_token_id": s.bos_token_id,
            "eos_token_ids": s.eos_token_ids,
            "chat_template": template.is_some(),
            "license": licence,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let types_s: Vec<String> = types.iter().map(|(t, n)| format!("{t} ×{n}")).collect();
    println!("model           {}", model.path.display());
    println!("format          {format}");
    println!("architecture    {}", s.arch);
    println!("parameters      {} ({params})", super::human_count(params));
    println!("tensor types    {}", types_s.join(", "));
    println!(
        "weights         {}",
        super::human_bytes(model.weights.total_bytes() as u64)
    );
    println!("context length  {}", s.context_length);
    println!("vocabulary      {}", s.vocab_size);
    println!(
        "shape           {} layers, hidden {}, ffn {}, {} heads / {} kv heads of {}",
        s.n_layers, s.hidden_size, s.intermediate_size, s.n_heads, s.n_kv_heads, s.head_dim
    );
    println!(
        "rope            theta {}, {} dims, {:?} layout, scaling {rope_scaling}",
        s.rope.theta, s.rope.dim, s.rope.layout
    );
    println!("attention       window per layer [{}]", windows.join(", "));
    if s.attn_softcap.is_some() || s.final_softcap.is_some() {
        println!(
            "soft-capping    attention {:?}, final {:?}",
            s.attn_softcap, s.final_softcap
        );
    }
    println!(
        "norm            RMS, eps {}{}",
        s.norm_eps,
        if s.norm_weight_offset != 0.0 {
            ", weights (1 + w)"
        } else {
            ""
        }
    );
    println!(
        "embeddings      {}",
        if s.tie_embeddings {
            "tied to the output"
        } else {
            "separate output matrix"
        }
    );
    println!(
        "special tokens  bos {:?}, eos {:?}",
        s.bos_token_id, s.eos_token_ids
    );
    match &template {
        Some(t) => println!("chat template   present ({} chars)", t.chars().count()),
        None => println!("chat template   none"),
    }
    if licence.is_empty() {
        println!("licence         not stated in the model's metadata");
    } else {
        for (k, v) in &licence {
            println!("licence         {k} = {v}");
        }
    }
    Ok(())
}
