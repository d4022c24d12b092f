//! PEFT's LoRA adapter format: `adapter_config.json` and `adapter_model.safetensors`, which
//! Hugging Face `peft` loads unchanged.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use serde_json::{Value, json};

use crate::model::{LoraConfig, MODULES, Method, TrainModel, permute_rows};
use crate::{Error, Result};

/// An adapter read from disk: its configuration and matrices (in Hugging Face row order).
#[derive(Clone, Debug)]
pub struct Adapter {
    pub config: LoraConfig,
    /// PEFT key → (shape, values).
    pub tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    pub base_model: Option<String>,
}

impl Adapter {
    pub fn read(dir: &Path) -> Result<Self> {
        let cfg_path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::Io {
            path: cfg_path.clone(),
            source: e,
        })?;
        let cfg: Value = serde_json::from_str(&text).map_err(|e| Error::Invalid {
            path: cfg_path.clone(),
            msg: format!("not JSON: {e}"),
        })?;
        let bad = |msg: String| Error::Invalid {
            path: cfg_path.clone(),
            msg,
        };
        if cfg.get("peft_type").and_then(Value::as_str) != Some("LORA") {
            return Err(bad("peft_type is not LORA".into()));
        }
        for (flag, what) in [("use_dora", "DoRA"), ("use_rslora", "rsLoRA")] {
            if cfg.get(flag).and_then(Value::as_bool) == Some(true) {
                return Err(bad(format!("{what} adapters are not supported")));
            }
        }
        let r = cfg
            .get("r")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("no 'r'".into()))? as usize;
        let alpha = cfg
            .get("lora_alpha")
            .and_then(Value::as_f64)
            .ok_or_else(|| bad("no 'lora_alpha'".into()))?;
        let targets: Vec<String> = match cfg.get("target_modules") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => vec![],
        };
        for t in &targets {
            if !MODULES.contains(&t.as_str()) {
                return Err(bad(format!(
                    "target module '{t}' is not one herd adapts ({})",
                    MODULES.join(", ")
                )));
            }
        }
        let st_path = dir.join("adapter_model.safetensors");
        let bytes = std::fs::read(&st_path).map_err(|e| Error::Io {
            path: st_path.clone(),
            source: e,
        })?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::Invalid {
            path: st_path.clone(),
            msg: e.to_string(),
        })?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            let data: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F32 => view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                safetensors::Dtype::F16 => view
                    .data()
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                safetensors::Dtype::BF16 => view
                    .data()
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                other => {
                    return Err(Error::Invalid {
                        path: st_path.clone(),
                        msg: format!("{name} has dtype {other:?}"),
                    });
                }
            };
            // PEFT saves without the adapter name (".default").
            tensors.insert(name.replace(".default", ""), (view.shape().to_vec(), data));
        }
        Ok(Adapter {
            config: LoraConfig {
                r,
                alpha,
                dropout: cfg
                    .get("lora_dropout")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0) as f32,
                targets,
            },
            tensors,
            base_model: cfg
                .get("base_model_name_or_path")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    /// The adapter's matrices in `tm`'s row order (llama.cpp's for GGUF llama bases), for
    /// [`TrainModel::set_values`].
    pub fn values_for(&self, tm: &TrainModel) -> Result<HashMap<String, Vec<f32>>> {
        let mut out = HashMap::new();
        for (name, (shape, data)) in &self.tensors {
            let data = match (tm.permuted_qk, qk_heads(name, tm.permuted_qk)) {
                (Some(_), Some(heads)) if name.contains("lora_B") => {
                    permute_rows(data, shape[0], shape[1], heads, false)
                }
                _ => data.clone(),
            };
            out.insert(name.clone(), data);
        }
        Ok(out)
    }
}

/// Heads of the q or k projection an adapter key belongs to, when Q/K rows are permuted.
fn qk_heads(name: &str, permuted: Option<(usize, usize, usize)>) -> Option<usize> {
    let (nh, nkv, _) = permuted?;
    if name.contains(".q_proj.") {
        Some(nh)
    } else if name.contains(".k_proj.") {
        Some(nkv)
    } else {
        None
    }
}

/// Writes `tm`'s adapter as PEFT does (Hugging Face row order, f32).
pub fn write(tm: &TrainModel, dir: &Path, base_model: &str) -> Result<()> {
    let Method::Lora(cfg) = &tm.method else {
        return Err(Error::Usage("only LoRA training writes an adapter".into()));
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let mut bufs: Vec<(String, Vec<usize>, Vec<u8>)> = vec![];
    for (name, shape, data) in tm.values()? {
        let data = match qk_heads(&name, tm.permuted_qk) {
            Some(heads) if name.contains("lora_B") => {
                permute_rows(&data, shape[0], shape[1], heads, true)
            }
            _ => data,
        };
        bufs.push((
            name,
            shape,
            data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ));
    }
    let views: Vec<(String, TensorView<'_>)> = bufs
        .iter()
        .map(|(n, s, b)| {
            Ok((
                n.clone(),
                TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .map_err(|e| Error::Usage(e.to_string()))?,
            ))
        })
        .collect::<Result<_>>()?;
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let bytes =
        safetensors::serialize(views, Some(meta)).map_err(|e| Error::Usage(e.to_string()))?;
    herd_model::io::atomic_write(&dir.join("adapter_model.safetensors"), &bytes)?;
    let config = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": cfg.r,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "target_modules": cfg.targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
        "use_dora": false,
        "use_rslora": false,
        "revision": null,
    });
    let text = serde_json::to_string_pretty(&config).map_err(|e| Error::Usage(e.to_string()))?;
    herd_model::io::atomic_write(&dir.join("adapter_config.json"), text.as_bytes())?;
    Ok(())
}
