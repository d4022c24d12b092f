//! `/v1/embeddings`: one vector per input, as floats or base64 (`herd_model::tokenizer::base64`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use herd_model::tokenizer;
use serde_json::json;

use super::completions::completion_prompts;
use super::{AppState, check_model, collect, parse_body, submit};
use crate::request::{ApiError, Fields};
use crate::scheduler::JobParams;

pub(super) async fn embeddings(
    State(st): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let v = parse_body(&body)?;
    let f = Fields::new(
        &v,
        &["model", "input", "encoding_format", "dimensions", "user"],
        "",
    )?;
    let model = f
        .str("model")?
        .ok_or_else(|| ApiError::bad("'model' is required", Some("model")))?;
    check_model(&st, model)?;
    let base64 = match f.str("encoding_format")? {
        None | Some("float") => false,
        // Little-endian f32s, base64-encoded (what the openai client asks for by default).
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad(
                format!("encoding_format '{other}' is not supported (float, base64)"),
                Some("encoding_format"),
            ));
        }
    };
    if f.get("dimensions").is_some() {
        return Err(ApiError::unsupported("dimensions"));
    }
    let inputs = completion_prompts(
        &st,
        f.get("input")
            .ok_or_else(|| ApiError::bad("'input' is required", Some("input")))?,
    )
    .map_err(|e| ApiError {
        message: e.message.replace("'prompt'", "'input'"),
        param: Some("input".into()),
        ..e
    })?;
    let mut data = vec![];
    let mut total = 0;
    for (i, ids) in inputs.into_iter().enumerate() {
        let params = JobParams {
            max_tokens: Some(0),
            stop: vec![],
            sampler: Default::default(),
            ignore_eos: false,
            logprobs: None,
            prompt_logprobs: None,
            json: None,
            embed: true,
        };
        let (rx, _) = submit(&st, ids, 1, params)?;
        let out = collect(rx, 1).await?;
        total += out.prompt_tokens;
        let e = out.embedding.unwrap_or_default();
        let embedding = if base64 {
            json!(tokenizer::base64(
                &e.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()
            ))
        } else {
            json!(e)
        };
        data.push(json!({"object": "embedding", "index": i, "embedding": embedding}));
    }
    Ok(axum::Json(json!({"object": "list", "data": data, "model": st.opts.model_name, "usage": {"prompt_tokens": total, "total_tokens": total}})).into_response())
}
