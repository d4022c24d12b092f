//! Real instruction datasets from `../shared/data`, broken rows, and assistant-only loss masks.

use std::path::PathBuf;

use herd_data::{Encoder, Format, load, pack};
use herd_model::Model;
use herd_model::template::ChatTemplate;
use herd_model::tokenizer::Tokenizer;

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

/// Rows in the dataset's MANIFEST.tsv.
fn manifest_rows(dir: &str, file: &str) -> usize {
    let m = std::fs::read_to_string(shared().join("data").join(dir).join("MANIFEST.tsv")).unwrap();
    m.lines()
        .find(|l| l.starts_with(file))
        .unwrap()
        .split('\t')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn every_row_of_the_real_datasets_is_read_or_reported() {
    for (dir, file, format) in [
        (
            "gpteacher",
            "roleplay-simple-deduped-roleplay-dataset.json",
            Format::Alpaca,
        ),
        (
            "gpteacher",
            "toolformer-similarity-0.6-dataset.json",
            Format::Alpaca,
        ),
        ("huatuo_med_instruct", "llama_data.json", Format::Alpaca),
        (
            "fastchat_dummy_conversation",
            "dummy_conversation.json",
            Format::ShareGpt,
        ),
    ] {
        let d = load(&shared().join("data").join(dir).join(file), None, false).unwrap();
        assert_eq!(d.format, format, "{file}");
        assert_eq!(
            d.rows.len() + d.skipped.len(),
            manifest_rows(dir, file),
            "{file}: rows + skipped"
        );
        assert!(
            d.rows.len() * 100 >= (d.rows.len() + d.skipped.len()) * 99,
            "{file}: {} skipped: {:?}",
            d.skipped.len(),
            d.skipped.first()
        );
    }
}

#[test]
fn bad_rows_are_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    std::fs::write(
        &path,
        concat!(
            "{\"instruction\": \"Say hi\", \"output\": \"Hi!\"}\n",
            "{\"instruction\": \"No answer\"}\n",
            "\n",
            "{\"instruction\": 3, \"output\": \"x\"}\n",
            "{\"instruction\": \"Empty\", \"output\": \"  \"}\n",
            "{not json\n",
            "{\"instruction\": \"Fine\", \"input\": \"with input\", \"output\": \"Yes.\"}\n",
        ),
    )
    .unwrap();
    let d = load(&path, None, false).unwrap();
    assert_eq!(d.rows.len(), 2);
    assert_eq!(d.rows[1].messages[0].content, "Fine\n\nwith input");
    let got: Vec<(usize, String)> = d
        .skipped
        .iter()
        .map(|e| (e.location.line, e.reason.clone()))
        .collect();
    assert_eq!(got[0], (2, "missing field 'output'".to_string()));
    assert_eq!(
        got[1],
        (
            4,
            "field 'instruction' should be a string, found a number".to_string()
        )
    );
    assert_eq!(got[2], (5, "an empty answer".to_string()));
    assert_eq!(got[3].0, 6);
    assert!(got[3].1.starts_with("not valid JSON"));
    let err = load(&path, None, true).unwrap_err().to_string();
    assert!(
        err.contains("bad.jsonl:2") && err.contains("missing field 'output'"),
        "{err}"
    );

    // A JSON array: the line of each element, and the elements after a broken one still read.
    let path = dir.path().join("bad.json");
    std::fs::write(&path, "[\n  {\"instruction\": \"a\", \"output\": \"b\"},\n  {\"instruction\": \"c\"},\n  {\"instruction\": \"d\", \"output\": \"e\"}\n]\n").unwrap();
    let d = load(&path, Some(Format::Alpaca), false).unwrap();
    assert_eq!(d.rows.len(), 2);
    assert_eq!(d.skipped[0].location.line, 3);
    std::fs::write(
        &path,
        "[\n  {\"instruction\": \"a\", \"output\": \"b\"},\n  {\"instruction\": \"c\"",
    )
    .unwrap();
    assert!(
        load(&path, None, false)
            .unwrap_err()
            .to_string()
            .contains("not closed")
    );
}

#[test]
fn only_assistant_tokens_are_trained_and_packing_keeps_them() {
    let model = Model::open(shared().join("golden/hf-tiny/qwen2")).unwrap();
    let tok = Tokenizer::for_model(&model).unwrap();
    let template = ChatTemplate::resolve(None, model.chat_template().as_deref()).unwrap();
    let enc = Encoder {
        tok: &tok,
        template: &template,
        max_len: 4096,
    };
    let path = shared().join("data/fastchat_dummy_conversation/dummy_conversation.json");
    let d = load(&path, None, true).unwrap();
    let row = &d.rows[0];
    let e = enc.encode(row).unwrap();
    // The trained tokens are exactly the assistant turns with their end-of-turn markers.
    let mut spans = vec![];
    let mut cur: Vec<u32> = vec![];
    for (&id, &t) in e.ids.iter().zip(&e.train) {
        if t {
            cur.push(id);
        } else if !cur.is_empty() {
            spans.push(tok.decode(&std::mem::take(&mut cur), false).unwrap());
        }
    }
    if !cur.is_empty() {
        spans.push(tok.decode(&cur, false).unwrap());
    }
    let answers: Vec<String> = row
        .messages
        .iter()
        .filter(|m| m.role == "assistant")
        .map(|m| format!("{}<|im_end|>\n", m.content))
        .collect();
    assert_eq!(spans, answers);
    let too_long = Encoder {
        tok: &tok,
        template: &template,
        max_len: 8,
    };
    assert!(
        too_long
            .encode(row)
            .unwrap_err()
            .contains("more than the maximum length of 8")
    );
    // Packing keeps every trained token (except an example's first, never a target).
    let all: Vec<_> = d.rows[..10]
        .iter()
        .map(|r| enc.encode(r).unwrap())
        .collect();
    let seqs = pack(&all, 1024);
    let packed: usize = seqs
        .iter()
        .map(|s| s.train.iter().filter(|&&t| t).count())
        .sum();
    assert_eq!(
        packed,
        all.iter().map(|e| e.trained_tokens()).sum::<usize>()
    );
    assert!(seqs.len() < all.len());
}
