//! A Hugging Face `tokenizer.json` as GGUF `tokenizer.ggml.*` metadata, laid out as llama.cpp's
//! converter writes it, so that llama.cpp (and [`super::gguf::from_gguf`]) tokenize the same.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value as Json;

use super::Tokenizer;
use super::json::{SPACE, parse_byte_token};
use super::pre;
use super::vocab::TokenType;
use crate::error::{Error, Result};
use crate::gguf::{Value, ValueType};

/// Reads `dir`'s tokenizer. `vocab_size` pads the token list to the model's embedding rows;
/// `bos`/`eos` are used when the tokenizer files name none.
pub fn metadata(
    dir: &Path,
    vocab_size: Option<usize>,
    bos: Option<u32>,
    eos: Option<u32>,
) -> Result<Vec<(String, Value)>> {
    let path = dir.join("tokenizer.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let doc: Json =
        serde_json::from_str(&text).map_err(|e| Error::invalid(&path, format!("not JSON: {e}")))?;
    let cfg: Option<Json> = std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    // BOS/EOS and whether they are added, as herd reads them from the folder.
    let tok = Tokenizer::from_hf_dir(dir)?;
    let bad = |msg: String| Error::invalid(&path, msg);

    let model = &doc["model"];
    let (vocab, added) = token_table(&doc).map_err(bad)?;
    let n_tokens = vocab.len().max(vocab_size.unwrap_or(0));
    if let Some(v) = vocab_size.filter(|&v| v < vocab.len()) {
        return Err(bad(format!(
            "the tokenizer has {} tokens but the model only {v} embedding rows",
            vocab.len()
        )));
    }
    let mut tokens = Vec::with_capacity(n_tokens);
    let mut types = Vec::with_capacity(n_tokens);
    for (i, t) in vocab.iter().enumerate() {
        match t {
            Some(t) => {
                tokens.push(t.clone());
                types.push(match added.get(&(i as u32)) {
                    Some(true) => TokenType::Control,
                    Some(false) => TokenType::UserDefined,
                    None => TokenType::Normal,
                });
            }
            None => {
                tokens.push(format!("[PAD{i}]"));
                types.push(TokenType::Unused);
            }
        }
    }
    for i in vocab.len()..n_tokens {
        tokens.push(format!("[PAD{i}]"));
        types.push(TokenType::Unused);
    }

    let mut out: Vec<(String, Value)> = vec![];
    let mut put = |k: &str, v: Value| out.push((format!("tokenizer.{k}"), v));
    let unk = model["unk_token"]
        .as_str()
        .and_then(|u| tokens.iter().position(|t| t == u));
    match model["type"].as_str() {
        Some("BPE") if is_spm_style(&doc) => {
            let merges = merge_list(model).map_err(bad)?;
            let scores = spm_scores(&tokens, &merges);
            for (i, t) in tokens.iter().enumerate() {
                if types[i] == TokenType::Normal && parse_byte_token(t).is_some() {
                    types[i] = TokenType::Byte;
                }
            }
            if let Some(u) = unk {
                types[u] = TokenType::Unknown;
            }
            put("ggml.model", Value::String("llama".into()));
            put("ggml.pre", Value::String("default".into()));
            put("ggml.tokens", ValueType::strings(tokens));
            put("ggml.scores", f32s(scores));
            put("ggml.token_type", i32s(&types));
            let prefix = add_space_prefix(&doc).map_err(bad)?;
            put("ggml.add_space_prefix", Value::Bool(prefix));
        }
        Some("BPE") => {
            let merges = merge_list(model).map_err(bad)?;
            let ignore = model["ignore_merges"].as_bool().unwrap_or(false);
            let pre = bpe_pre_name(&doc, ignore).map_err(bad)?;
            let mut lines = Vec::with_capacity(merges.len());
            for (a, b) in &merges {
                // llama.cpp cuts a merge line at its first space after the first byte.
                let space_inside = a.char_indices().skip(1).any(|(_, c)| c == ' ');
                if a.is_empty() || space_inside || b.is_empty() {
                    return Err(bad(format!(
                        "merge ('{a}', '{b}') cannot be written as a GGUF merge line"
                    )));
                }
                lines.push(format!("{a} {b}"));
            }
            put("ggml.model", Value::String("gpt2".into()));
            put("ggml.pre", Value::String(pre.into()));
            put("ggml.tokens", ValueType::strings(tokens));
            put("ggml.token_type", i32s(&types));
            put("ggml.merges", ValueType::strings(lines));
        }
        Some("WordPiece") => {
            let prefix = model["continuing_subword_prefix"].as_str().unwrap_or("##");
            // llama.cpp's phantom-space layout: word starts get ▁, continuations lose ##.
            let tokens: Vec<String> = tokens
                .iter()
                .zip(&types)
                .map(|(t, ty)| match (ty, t.strip_prefix(prefix)) {
                    (TokenType::Control, _) => t.clone(),
                    (_, Some(rest)) => rest.to_string(),
                    (_, None) => format!("{SPACE}{t}"),
                })
                .collect();
            let norm = &doc["normalizer"];
            let lowercase = norm["lowercase"].as_bool().unwrap_or(true);
            put("ggml.model", Value::String("bert".into()));
            put("ggml.tokens", ValueType::strings(tokens));
            put("ggml.token_type", i32s(&types));
            put("ggml.normalizer.lowercase", Value::Bool(lowercase));
            let strip = norm["strip_accents"].as_bool().unwrap_or(lowercase);
            put("ggml.normalizer.strip_accents", Value::Bool(strip));
            if let Some(u) = unk {
                put("ggml.unknown_token_id", Value::U32(u as u32));
            }
        }
        other => {
            return Err(bad(format!(
                "a {} tokenizer cannot be written as a GGUF vocabulary (herd writes BPE and \
                 WordPiece ones)",
                other.unwrap_or("model-less")
            )));
        }
    }
    let is_wpm = model["type"].as_str() == Some("WordPiece");
    let (bos_key, eos_key) = if is_wpm {
        ("ggml.cls_token_id", "ggml.seperator_token_id")
    } else {
        ("ggml.bos_token_id", "ggml.eos_token_id")
    };
    // BERT names its wrapping tokens [CLS] and [SEP] rather than BOS and EOS.
    let named = |key: &str, default: &str| {
        let text = cfg
            .as_ref()
            .and_then(|c| token_text(&c[key]))
            .unwrap_or(default);
        tok.inner.token_to_id(text)
    };
    let (bos, eos) = if is_wpm {
        (named("cls_token", "[CLS]"), named("sep_token", "[SEP]"))
    } else {
        (tok.bos.or(bos), tok.eos.first().copied().or(eos))
    };
    if let Some(b) = bos {
        put(bos_key, Value::U32(b));
    }
    if let Some(e) = eos {
        put(eos_key, Value::U32(e));
    }
    if let Some(u) = unk.filter(|_| !is_wpm) {
        put("ggml.unknown_token_id", Value::U32(u as u32));
    }
    if let Some(p) = cfg
        .as_ref()
        .and_then(|c| token_text(&c["pad_token"]))
        .and_then(|p| tok.inner.token_to_id(p))
    {
        put("ggml.padding_token_id", Value::U32(p));
    }
    if !is_wpm {
        put("ggml.add_bos_token", Value::Bool(tok.add_bos));
        put("ggml.add_eos_token", Value::Bool(tok.add_eos));
    }
    match cfg.as_ref().map(|c| &c["chat_template"]) {
        Some(Json::String(t)) => put("chat_template", Value::String(t.clone())),
        // Several named templates: llama.cpp reads `chat_template.NAME`, the default plain.
        Some(Json::Array(list)) => {
            for item in list {
                if let (Some(name), Some(t)) = (item["name"].as_str(), item["template"].as_str()) {
                    let key = match name {
                        "default" => "chat_template".to_string(),
                        n => format!("chat_template.{n}"),
                    };
                    put(&key, Value::String(t.to_string()));
                }
            }
        }
        _ => {}
    }
    Ok(out)
}

/// Tokens by id (gaps are `None`) and which ids are added tokens (`true`: special).
type TokenTable = (Vec<Option<String>>, HashMap<u32, bool>);

fn token_table(doc: &Json) -> std::result::Result<TokenTable, String> {
    let mut by_id: Vec<Option<String>> = vec![];
    let mut set = |id: u64, t: &str| -> std::result::Result<(), String> {
        let id = usize::try_from(id)
            .ok()
            .filter(|&i| i < 1 << 24)
            .ok_or(format!("token id {id} is too large"))?;
        if by_id.len() <= id {
            by_id.resize(id + 1, None);
        }
        by_id[id] = Some(t.to_string());
        Ok(())
    };
    match &doc["model"]["vocab"] {
        Json::Object(map) => {
            for (t, id) in map {
                set(id.as_u64().ok_or("a vocabulary id is not a number")?, t)?;
            }
        }
        // Unigram: [[piece, score], ...] by id.
        Json::Array(list) => {
            for (i, p) in list.iter().enumerate() {
                set(
                    i as u64,
                    p[0].as_str().ok_or("a vocabulary entry is not text")?,
                )?;
            }
        }
        _ => return Err("the model has no vocabulary".into()),
    }
    let mut added = HashMap::new();
    for t in doc["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(content)) = (t["id"].as_u64(), t["content"].as_str()) else {
            return Err("an added token lacks its id or content".into());
        };
        set(id, content)?;
        added.insert(id as u32, t["special"].as_bool().unwrap_or(false));
    }
    Ok((by_id, added))
}

fn token_text(v: &Json) -> Option<&str> {
    v.as_str().or_else(|| v["content"].as_str())
}

fn merge_list(model: &Json) -> std::result::Result<Vec<(String, String)>, String> {
    let mut out = vec![];
    for m in model["merges"].as_array().into_iter().flatten() {
        let pair = match m {
            Json::String(s) => s
                .split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string())),
            Json::Array(p) => match (
                p.first().and_then(Json::as_str),
                p.get(1).and_then(Json::as_str),
            ) {
                (Some(a), Some(b)) => Some((a.to_string(), b.to_string())),
                _ => None,
            },
            _ => None,
        };
        out.push(pair.ok_or_else(|| format!("merge {m} is not a pair"))?);
    }
    Ok(out)
}

/// A SentencePiece-style BPE (Llama 2, Mistral): spaces become `▁` and unknown characters fall
/// back to `<0xNN>` bytes, rather than GPT-2's byte-level alphabet.
fn is_spm_style(doc: &Json) -> bool {
    doc["model"]["byte_fallback"].as_bool() == Some(true)
        || steps(&doc["pre_tokenizer"], "pretokenizers")
            .iter()
            .any(|s| s["type"] == "Metaspace")
        || steps(&doc["normalizer"], "normalizers")
            .iter()
            .any(|s| s["type"] == "Replace" && s["content"] == SPACE)
}

/// The steps of a `Sequence`, or the one step.
fn steps<'a>(v: &'a Json, key: &str) -> Vec<&'a Json> {
    match v {
        Json::Null => vec![],
        v if v["type"] == "Sequence" => v[key].as_array().into_iter().flatten().collect(),
        v => vec![v],
    }
}

/// Whether SentencePiece's leading space is added: a `Prepend("▁")` normalizer or a
/// `Metaspace` pre-tokenizer that prepends.
fn add_space_prefix(doc: &Json) -> std::result::Result<bool, String> {
    let norm = steps(&doc["normalizer"], "normalizers");
    if norm
        .iter()
        .any(|s| s["type"] == "Prepend" && s["prepend"] == SPACE)
    {
        return Ok(true);
    }
    for s in steps(&doc["pre_tokenizer"], "pretokenizers") {
        if s["type"] == "Metaspace" {
            return Ok(match s["prepend_scheme"].as_str() {
                Some("never") => false,
                Some(_) => true,
                None => s["add_prefix_space"].as_bool().unwrap_or(true),
            });
        }
    }
    if norm
        .iter()
        .any(|s| s["type"] == "Replace" && s["content"] == SPACE)
    {
        return Ok(false);
    }
    Err("cannot tell how this SentencePiece-style tokenizer marks spaces".into())
}

/// Scores that make llama.cpp's best-score-first merging follow the BPE merge ranks: a token
/// scores minus the rank of the first merge that makes it. Single characters, bytes and
/// special tokens are never merged into (0); other tokens no merge makes come last.
fn spm_scores(tokens: &[String], merges: &[(String, String)]) -> Vec<f32> {
    let index: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut scores: Vec<Option<f32>> = vec![None; tokens.len()];
    for (rank, (a, b)) in merges.iter().enumerate() {
        if let Some(&i) = index.get(format!("{a}{b}").as_str()) {
            scores[i].get_or_insert(-(rank as f32));
        }
    }
    scores
        .iter()
        .zip(tokens)
        .map(|(s, t)| {
            s.unwrap_or(if t.chars().count() <= 1 || parse_byte_token(t).is_some() {
                0.0
            } else {
                -1e9
            })
        })
        .collect()
}

/// The llama.cpp pre-tokenizer name of a byte-level BPE's pre-tokenizer.
fn bpe_pre_name(doc: &Json, ignore_merges: bool) -> std::result::Result<&'static str, String> {
    match &doc["normalizer"] {
        Json::Null => {}
        // llama.cpp runs no normalizer; NFC only changes text that is not already composed.
        n if n["type"] == "NFC" => {}
        n => return Err(format!("normalizer {n} has no llama.cpp equivalent")),
    }
    let st = steps(&doc["pre_tokenizer"], "pretokenizers");
    let is = |s: &Json, t: &str| s["type"] == t;
    let byte_level = |s: &Json, regex: bool| {
        is(s, "ByteLevel")
            && s["use_regex"].as_bool().unwrap_or(true) == regex
            && !s["add_prefix_space"].as_bool().unwrap_or(false)
    };
    let regexes: Vec<String> = match st.as_slice() {
        [b] if byte_level(b, true) => vec![pre::GPT2.to_string()],
        // Falcon: punctuation runs, GPT-2's regex, digit runs, then digits in threes.
        [p, b, d, s]
            if is(p, "Punctuation")
                && byte_level(b, true)
                && is(d, "Digits")
                && is(s, "Split")
                && s["pattern"]["Regex"] == "[0-9][0-9][0-9]" =>
        {
            return Ok("falcon");
        }
        [splits @ .., b] if byte_level(b, false) => {
            let mut out = vec![];
            for s in splits {
                let ok = is(s, "Split")
                    && s["behavior"] == "Isolated"
                    && !s["invert"].as_bool().unwrap_or(false);
                match s["pattern"]["Regex"].as_str() {
                    Some(r) if ok => out.push(pre::canonical_regex(r)),
                    _ => {
                        return Err(format!(
                            "pre-tokenizer step {s} has no llama.cpp equivalent"
                        ));
                    }
                }
            }
            out
        }
        _ => {
            return Err(format!(
                "pre-tokenizer {} has no llama.cpp equivalent",
                doc["pre_tokenizer"]
            ));
        }
    };
    let same = |spec: &pre::PreSpec| {
        spec.regexes.len() == regexes.len()
            && spec.regexes.iter().zip(&regexes).all(|(a, b)| a == b)
    };
    let matching: Vec<pre::PreSpec> = pre::all().filter(same).collect();
    matching
        .iter()
        .find(|s| s.ignore_merges == ignore_merges)
        .or(matching.first())
        .map(|s| s.name)
        .ok_or_else(|| format!("no llama.cpp pre-tokenizer splits with {regexes:?}"))
}

fn f32s(v: Vec<f32>) -> Value {
    Value::Array(ValueType::F32, v.into_iter().map(Value::F32).collect())
}

fn i32s(v: &[TokenType]) -> Value {
    Value::Array(
        ValueType::I32,
        v.iter().map(|&t| Value::I32(t as i32)).collect(),
    )
}
