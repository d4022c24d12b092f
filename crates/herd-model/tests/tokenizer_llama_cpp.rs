//! Every GGUF vocabulary in shared/ (and hf-tiny llama converted by herd) against the ids
//! llama.cpp itself gives, with and without special tokens (fixture made by
//! `scripts/make_llama_cpp_tokenizer_fixture.py` with the llama.cpp commit it names).

mod common;

use herd_model::Model;
use herd_model::gguf::{GgufFile, GgufWriter};
use herd_model::tokenizer::{Tokenizer, gguf::from_gguf, gguf_metadata_for};
use serde_json::Value;

/// Texts (by index into the fixture's texts, then its data texts) on which a vocabulary is
/// known to differ from llama.cpp, and why.
/// The BERT ones were checked against transformers' (slow, pure Python) `BertTokenizer` with
/// the same vocabulary, which agrees with herd.
const KNOWN: &[(&str, usize, &str)] = &[
    (
        "bert-bge",
        14,
        "BERT decomposes Hangul syllables (NFD) and drops only non-spacing marks (Mn); \
         llama.cpp's NFD leaves Hangul whole and it drops every mark (Devanagari and Thai \
         vowel signs too)",
    ),
    (
        "bert-bge",
        16,
        "BERT deletes U+0085 (a control character) and so joins the words around it; \
         llama.cpp takes it for whitespace",
    ),
    (
        "bert-bge",
        17,
        "BERT keeps U+20E3 (an enclosing mark, Me), making `1⃣` unknown; llama.cpp drops it",
    ),
];

fn data_text(r: &Value) -> String {
    let text = std::fs::read_to_string(common::shared().join(r["file"].as_str().unwrap())).unwrap();
    let line = text
        .split('\n')
        .nth(r["line"].as_u64().unwrap() as usize)
        .unwrap();
    let row: Value = serde_json::from_str(line).unwrap();
    let mut v = &row[r["field"].as_str().unwrap()];
    if let Some(i) = r["index"].as_u64() {
        v = &v[i as usize];
    }
    let chars = r["chars"].as_u64().unwrap() as usize;
    v.as_str().unwrap().chars().take(chars).collect()
}

fn load(entry: &Value, tmp: &std::path::Path) -> Tokenizer {
    if let Some(f) = entry["file"].as_str() {
        return from_gguf(&GgufFile::open(common::shared().join(f)).unwrap()).unwrap();
    }
    // What `herd convert` writes for the folder, read back.
    let model = Model::open(common::shared().join(entry["hf_dir"].as_str().unwrap())).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in gguf_metadata_for(&model).unwrap() {
        w.set(&k, v);
    }
    let path = tmp.join("converted.gguf");
    w.write(&path).unwrap();
    from_gguf(&GgufFile::open(&path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn llama_cpp_tokenize_fixture() {
    let fixture: Value =
        serde_json::from_str(include_str!("fixtures/llama_cpp_tokenize.json")).unwrap();
    let mut texts: Vec<String> = fixture["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    texts.extend(
        fixture["data_texts"]
            .as_array()
            .unwrap()
            .iter()
            .map(data_text),
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut bad = vec![];
    let mut report = vec![];
    for (name, entry) in fixture["vocabularies"].as_object().unwrap() {
        let tok = load(entry, tmp.path());
        let mut exact = 0;
        for (i, text) in texts.iter().enumerate() {
            let want = &entry["ids"][i];
            let got = [
                tok.encode(text, false, false).unwrap(),
                tok.encode(text, true, true).unwrap(),
            ];
            let same = got[0] == ids(&want[0]) && got[1] == ids(&want[1]);
            let known = KNOWN.iter().any(|(v, k, _)| v == name && *k == i);
            match (same, known) {
                (true, false) => exact += 1,
                (false, true) => {}
                (true, true) => bad.push(format!("{name} #{i} matches now: drop it from KNOWN")),
                (false, false) => bad.push(format!(
                    "{name} #{i} {text:?}\n  llama.cpp {want}\n  herd      {got:?}"
                )),
            }
        }
        let known = KNOWN.iter().filter(|(v, _, _)| v == name).count();
        report.push(format!(
            "{name}: {exact}/{} texts exact, {known} known differences",
            texts.len()
        ));
    }
    eprintln!("{}", report.join("\n"));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
