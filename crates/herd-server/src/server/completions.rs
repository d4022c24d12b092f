//! `/v1/completions`: prompts as text or tokens, echo, legacy logprobs, streaming.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{
    AppState, SseResponse, check_model, collect, finish_name, now, parse_body, sse, submit, usage,
};
use crate::request::{ApiError, COMMON_FIELDS, Fields, common};
use crate::scheduler::{Event, JobParams, TokenLogprob};
use crate::tools;
const COMPLETION_FIELDS: &[&str] = &["prompt", "echo", "logprobs", "best_of", "suffix"];

/// The token lists of `prompt`: a string, a list of strings, a token list or a list of them.
pub(super) fn completion_prompts(st: &AppState, v: &Value) -> Result<Vec<Vec<u32>>, ApiError> {
    let encode = |s: &str| {
        st.tok
            .encode(s, true, false)
            .map_err(|e| ApiError::bad(e.to_string(), Some("prompt")))
    };
    let vocab = st.tok.vocab_size() as u64;
    let tokens = |a: &Vec<Value>| -> Result<Vec<u32>, ApiError> {
        a.iter()
            .map(|t| {
                t.as_u64()
                    .filter(|&x| x < vocab)
                    .map(|x| x as u32)
                    .ok_or_else(|| {
                        ApiError::bad(
                            format!("prompt token {t} is not an id below {vocab}"),
                            Some("prompt"),
                        )
                    })
            })
            .collect()
    };
    match v {
        Value::String(s) => Ok(vec![encode(s)?]),
        Value::Array(a) if a.is_empty() => Err(ApiError::bad("'prompt' is empty", Some("prompt"))),
        Value::Array(a) if a.iter().all(Value::is_string) => {
            a.iter().map(|s| encode(s.as_str().unwrap_or(""))).collect()
        }
        Value::Array(a) if a.iter().all(Value::is_number) => Ok(vec![tokens(a)?]),
        Value::Array(a) if a.iter().all(Value::is_array) => a
            .iter()
            .map(|x| tokens(x.as_array().unwrap_or(&vec![])))
            .collect(),
        _ => Err(ApiError::bad(
            "'prompt' must be a string, a list of strings, a list of token ids or a list of such lists",
            Some("prompt"),
        )),
    }
}

/// OpenAI's legacy logprobs object for a run of tokens starting at text offset `offset`.
fn legacy_logprobs(tokens: &[Option<TokenLogprob>], texts: &[String], mut offset: usize) -> Value {
    let (mut toks, mut lps, mut tops, mut offsets) = (vec![], vec![], vec![], vec![]);
    for (t, text) in tokens.iter().zip(texts) {
        toks.push(json!(text));
        offsets.push(json!(offset));
        offset += text.len();
        match t {
            Some(t) => {
                lps.push(json!(t.logprob));
                let top: serde_json::Map<String, Value> = t
                    .top
                    .iter()
                    .map(|(_, s, lp)| (s.clone(), json!(lp)))
                    .collect();
                tops.push(Value::Object(top));
            }
            None => {
                lps.push(Value::Null);
                tops.push(Value::Null);
            }
        }
    }
    json!({"tokens": toks, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets})
}

pub(super) async fn completions(
    State(st): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let v = parse_body(&body)?;
    let known: Vec<&str> = COMMON_FIELDS
        .iter()
        .chain(COMPLETION_FIELDS)
        .copied()
        .collect();
    let f = Fields::new(&v, &known, "")?;
    let mut c = common(&f, st.sched.config.slots)?;
    check_model(&st, &c.model)?;
    if f.str("suffix")?.is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::unsupported("suffix"));
    }
    if let Some(b) = f.uint("best_of", 64)?
        && b as usize != c.n
    {
        return Err(ApiError::bad(
            "'best_of' other than 'n' is not supported",
            Some("best_of"),
        ));
    }
    c.max_tokens = Some(f.uint("max_tokens", u32::MAX as u64)?.unwrap_or(16) as usize);
    let echo = f.bool("echo")?.unwrap_or(false);
    let logprobs = f.uint("logprobs", 20)?.map(|k| k as usize);
    if c.max_tokens == Some(0) && !echo {
        return Err(ApiError::bad(
            "'max_tokens': 0 is only useful with 'echo': true",
            Some("max_tokens"),
        ));
    }
    if c.stream && echo {
        return Err(ApiError::bad(
            "'echo' with 'stream' is not supported",
            Some("echo"),
        ));
    }
    let prompts = completion_prompts(
        &st,
        f.get("prompt")
            .ok_or_else(|| ApiError::bad("'prompt' is required", Some("prompt")))?,
    )?;
    let params = JobParams {
        max_tokens: c.max_tokens,
        stop: c.stop.clone(),
        sampler: c.sampler.clone(),
        ignore_eos: f.bool("ignore_eos")?.unwrap_or(false),
        logprobs,
        prompt_logprobs: if echo { logprobs } else { None },
        json: None,
        embed: false,
    };
    let id = format!("cmpl-{}", tools::random_id(24));
    let created = now();
    let mut receivers = vec![];
    for p in &prompts {
        receivers.push(submit(&st, p.clone(), c.n, params.clone())?.0);
    }
    if c.stream {
        return Ok(completion_stream(
            st,
            receivers,
            id,
            created,
            c.n,
            c.include_usage,
            logprobs.is_some(),
        )
        .into_response());
    }
    let mut choices = vec![];
    let (mut prompt_total, mut completion_total, mut cached_total) = (0, 0, 0);
    for (pi, rx) in receivers.into_iter().enumerate() {
        let out = collect(rx, c.n).await?;
        prompt_total += out.prompt_tokens;
        cached_total += out.cached_tokens;
        let prompt_texts = prompt_pieces(&st, &prompts[pi]);
        let prompt_text: String = prompt_texts.concat();
        for (ci, ch) in out.choices.iter().enumerate() {
            completion_total += ch.completion_tokens;
            let gen_texts: Vec<String> = ch.tokens.iter().map(|t| t.text.clone()).collect();
            let mut text = ch.text.clone();
            let lp = if logprobs.is_some() {
                let generated: Vec<Option<TokenLogprob>> =
                    ch.tokens.iter().cloned().map(Some).collect();
                if echo {
                    let mut all = out.prompt_logprobs.clone();
                    all.extend(generated);
                    let texts: Vec<String> =
                        prompt_texts.iter().cloned().chain(gen_texts).collect();
                    legacy_logprobs(&all, &texts, 0)
                } else {
                    legacy_logprobs(&generated, &gen_texts, 0)
                }
            } else {
                Value::Null
            };
            if echo {
                text = format!("{prompt_text}{text}");
            }
            choices.push(json!({"text": text, "index": pi * c.n + ci, "logprobs": lp, "finish_reason": finish_name(ch.finish, false)}));
        }
    }
    Ok(axum::Json(json!({
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": st.opts.model_name,
        "system_fingerprint": concat!("herd-", env!("CARGO_PKG_VERSION")),
        "choices": choices,
        "usage": usage(prompt_total, completion_total, cached_total),
    }))
    .into_response())
}

/// The text each prompt token adds, decoded in sequence so that the pieces join to the
/// prompt's text (special tokens add nothing; a character split over several byte tokens
/// comes with its last one).
fn prompt_pieces(st: &AppState, ids: &[u32]) -> Vec<String> {
    let mut d = st.tok.stream_decoder(true);
    let mut out: Vec<String> = ids.iter().map(|&t| d.step(t).unwrap_or_default()).collect();
    if let (Some(last), Ok(rest)) = (out.last_mut(), d.finish()) {
        last.push_str(&rest);
    }
    out
}

fn completion_stream(
    st: Arc<AppState>,
    receivers: Vec<mpsc::UnboundedReceiver<Event>>,
    id: String,
    created: u64,
    n: usize,
    include_usage: bool,
    logprobs: bool,
) -> SseResponse {
    use futures_util::StreamExt;
    let model = st.opts.model_name.clone();
    let k = receivers.len();
    let merged = stream::select_all(receivers.into_iter().enumerate().map(|(pi, rx)| {
        tokio_stream::wrappers::UnboundedReceiverStream::new(rx).map(move |e| (pi, e))
    }));
    struct Totals {
        prompt: usize,
        completion: usize,
        cached: usize,
        done: usize,
    }
    let totals = Arc::new(Mutex::new(Totals {
        prompt: 0,
        completion: 0,
        cached: 0,
        done: 0,
    }));
    let s = merged.filter_map(move |(pi, ev)| {
        let (id, model, totals) = (id.clone(), model.clone(), totals.clone());
        async move {
            let chunk = |choices: Value| json!({"id": id, "object": "text_completion", "created": created, "model": model, "choices": choices});
            let mut t = totals.lock().ok()?;
            match ev {
                Event::Token { choice, text, logprob, .. } => {
                    let lp = match (logprobs, logprob) {
                        (true, Some(l)) => legacy_logprobs(&[Some(l.clone())], &[l.text], 0),
                        _ => Value::Null,
                    };
                    Some(chunk(json!([{"text": text, "index": pi * n + choice, "logprobs": lp, "finish_reason": null}])))
                }
                Event::Finished { choice, finish, completion_tokens } => {
                    t.completion += completion_tokens;
                    Some(chunk(json!([{"text": "", "index": pi * n + choice, "logprobs": null, "finish_reason": finish.openai()}])))
                }
                Event::Done { prompt_tokens, cached_tokens } => {
                    t.prompt += prompt_tokens;
                    t.cached += cached_tokens;
                    t.done += 1;
                    (include_usage && t.done == k).then(|| {
                        let mut c = chunk(json!([]));
                        c["usage"] = usage(t.prompt, t.completion, t.cached);
                        c
                    })
                }
                Event::Error(e) => Some(json!({"error": {"message": e, "type": "server_error", "param": null, "code": "engine_error"}})),
                _ => None,
            }
        }
    });
    sse(s)
}
