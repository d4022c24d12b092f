//! Reading OpenAI request bodies: every field herd supports, and a 400 that names any other.

use std::collections::HashMap;

use herd_generate::SamplerConfig;
use herd_generate::json::Schema;
use serde_json::{Map, Value};

/// A request error: HTTP status, message and the offending field.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub param: Option<String>,
    pub code: &'static str,
    pub kind: &'static str,
}

impl ApiError {
    pub fn bad(message: impl Into<String>, param: Option<&str>) -> Self {
        ApiError {
            status: 400,
            message: message.into(),
            param: param.map(str::to_string),
            code: "invalid_request",
            kind: "invalid_request_error",
        }
    }

    pub fn unsupported(field: &str) -> Self {
        ApiError {
            code: "unsupported_parameter",
            ..Self::bad(
                format!("Unsupported parameter: '{field}' is not supported by herd."),
                Some(field),
            )
        }
    }
}

/// The fields of an object, checked against the ones herd knows.
pub struct Fields<'a> {
    obj: &'a Map<String, Value>,
    prefix: &'a str,
}

impl<'a> Fields<'a> {
    pub fn new(v: &'a Value, known: &[&str], prefix: &'a str) -> Result<Self, ApiError> {
        let obj = v.as_object().ok_or_else(|| {
            ApiError::bad(
                format!(
                    "{} must be a JSON object",
                    if prefix.is_empty() {
                        "the request body"
                    } else {
                        prefix
                    }
                ),
                None,
            )
        })?;
        for k in obj.keys() {
            if !known.contains(&k.as_str()) {
                return Err(ApiError::unsupported(&format!("{prefix}{k}")));
            }
        }
        Ok(Fields { obj, prefix })
    }

    pub fn get(&self, k: &str) -> Option<&'a Value> {
        self.obj.get(k).filter(|v| !v.is_null())
    }

    fn name(&self, k: &str) -> String {
        format!("{}{k}", self.prefix)
    }

    pub fn f32(&self, k: &str, lo: f32, hi: f32) -> Result<Option<f32>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => {
                let x = v.as_f64().ok_or_else(|| {
                    ApiError::bad(format!("'{}' must be a number", self.name(k)), Some(k))
                })? as f32;
                if !(lo..=hi).contains(&x) {
                    return Err(ApiError::bad(
                        format!("'{}' must be between {lo} and {hi}, got {x}", self.name(k)),
                        Some(k),
                    ));
                }
                Ok(Some(x))
            }
        }
    }

    pub fn uint(&self, k: &str, hi: u64) -> Result<Option<u64>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => {
                let x = v.as_u64().ok_or_else(|| {
                    ApiError::bad(
                        format!("'{}' must be a non-negative integer", self.name(k)),
                        Some(k),
                    )
                })?;
                if x > hi {
                    return Err(ApiError::bad(
                        format!("'{}' must be at most {hi}, got {x}", self.name(k)),
                        Some(k),
                    ));
                }
                Ok(Some(x))
            }
        }
    }

    pub fn bool(&self, k: &str) -> Result<Option<bool>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| {
                ApiError::bad(format!("'{}' must be true or false", self.name(k)), Some(k))
            }),
        }
    }

    pub fn str(&self, k: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| {
                ApiError::bad(format!("'{}' must be a string", self.name(k)), Some(k))
            }),
        }
    }
}

/// Settings common to chat and text completions.
#[derive(Clone, Debug)]
pub struct Common {
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    pub n: usize,
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub sampler: SamplerConfig,
}

/// Fields both endpoints accept (each endpoint adds its own).
pub const COMMON_FIELDS: &[&str] = &[
    "model",
    "stream",
    "stream_options",
    "n",
    "stop",
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
    // herd's (and llama.cpp's) extensions
    "top_k",
    "min_p",
    "repetition_penalty",
    "ignore_eos",
];

pub fn common(f: &Fields<'_>, max_n: usize) -> Result<Common, ApiError> {
    let model = f
        .str("model")?
        .ok_or_else(|| ApiError::bad("'model' is required", Some("model")))?
        .to_string();
    let stream = f.bool("stream")?.unwrap_or(false);
    let include_usage = match f.get("stream_options") {
        None => false,
        Some(v) => {
            let so = Fields::new(v, &["include_usage"], "stream_options.")?;
            if !stream {
                return Err(ApiError::bad(
                    "'stream_options' is only allowed with 'stream': true",
                    Some("stream_options"),
                ));
            }
            so.bool("include_usage")?.unwrap_or(false)
        }
    };
    let n = f.uint("n", max_n as u64)?.unwrap_or(1) as usize;
    if n == 0 {
        return Err(ApiError::bad("'n' must be at least 1", Some("n")));
    }
    let stop = match f.get("stop") {
        None => vec![],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => {
            if a.len() > 4 {
                return Err(ApiError::bad(
                    "'stop' holds at most 4 sequences",
                    Some("stop"),
                ));
            }
            a.iter()
                .map(|s| {
                    s.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| ApiError::bad("'stop' must hold strings", Some("stop")))
                })
                .collect::<Result<_, _>>()?
        }
        Some(_) => {
            return Err(ApiError::bad(
                "'stop' must be a string or a list of strings",
                Some("stop"),
            ));
        }
    };
    let mut logit_bias = HashMap::new();
    if let Some(b) = f.get("logit_bias") {
        let obj = b.as_object().ok_or_else(|| {
            ApiError::bad(
                "'logit_bias' must map token ids to numbers",
                Some("logit_bias"),
            )
        })?;
        for (k, v) in obj {
            let id: u32 = k.parse().map_err(|_| {
                ApiError::bad(
                    format!("'logit_bias' key '{k}' is not a token id"),
                    Some("logit_bias"),
                )
            })?;
            let bias = v
                .as_f64()
                .filter(|x| (-100.0..=100.0).contains(x))
                .ok_or_else(|| {
                    ApiError::bad(
                        format!("'logit_bias' value for {k} must be a number in [-100, 100]"),
                        Some("logit_bias"),
                    )
                })?;
            logit_bias.insert(id, bias as f32);
        }
    }
    let sampler = SamplerConfig {
        temperature: f.f32("temperature", 0.0, 2.0)?.unwrap_or(1.0),
        top_p: f
            .f32("top_p", 0.0, 1.0)?
            .unwrap_or(1.0)
            .max(f32::MIN_POSITIVE),
        top_k: f.uint("top_k", u32::MAX as u64)?.unwrap_or(0) as usize,
        min_p: f.f32("min_p", 0.0, 1.0)?.unwrap_or(0.0),
        repetition_penalty: f.f32("repetition_penalty", 0.01, 10.0)?.unwrap_or(1.0),
        presence_penalty: f.f32("presence_penalty", -2.0, 2.0)?.unwrap_or(0.0),
        frequency_penalty: f.f32("frequency_penalty", -2.0, 2.0)?.unwrap_or(0.0),
        penalty_last_n: 0,
        logit_bias,
        seed: match f.get("seed") {
            None => None,
            Some(v) => Some(
                v.as_i64()
                    .map(|s| s as u64)
                    .ok_or_else(|| ApiError::bad("'seed' must be an integer", Some("seed")))?,
            ),
        },
    };
    Ok(Common {
        model,
        stream,
        include_usage,
        n,
        max_tokens: None,
        stop,
        sampler,
    })
}

/// `response_format`: `None` for text, a schema for JSON output.
pub fn response_format(f: &Fields<'_>) -> Result<Option<Schema>, ApiError> {
    let Some(v) = f.get("response_format") else {
        return Ok(None);
    };
    let rf = Fields::new(v, &["type", "json_schema"], "response_format.")?;
    match rf.str("type")? {
        None | Some("text") => Ok(None),
        Some("json_object") => Ok(Some(Schema::any_object())),
        Some("json_schema") => {
            let js = rf.get("json_schema").ok_or_else(|| {
                ApiError::bad(
                    "'response_format.json_schema' is required for type json_schema",
                    Some("response_format"),
                )
            })?;
            let jf = Fields::new(
                js,
                &["name", "schema", "strict", "description"],
                "response_format.json_schema.",
            )?;
            let schema = jf
                .get("schema")
                .cloned()
                .unwrap_or(Value::Object(Map::new()));
            Schema::parse(&schema).map(Some).map_err(|e| {
                ApiError::bad(
                    format!("response_format.json_schema.schema: {e}"),
                    Some("response_format"),
                )
            })
        }
        Some(other) => Err(ApiError::bad(
            format!(
                "response_format type '{other}' is not supported (text, json_object, json_schema)"
            ),
            Some("response_format"),
        )),
    }
}
