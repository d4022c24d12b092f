//! SentencePiece `.model` files against the ids of the `sentencepiece` library
//! (fixture made by `scripts/make_sentencepiece_fixture.py`).

mod common;

use herd_model::tokenizer::Tokenizer;
use serde_json::Value;

fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100000001B3))
}

/// The fixture's hash of a block of lines' ids.
fn block_hash(lines: &[Vec<u32>]) -> String {
    let mut h = 0xCBF29CE484222325;
    for ids in lines {
        for i in ids {
            h = fnv1a(h, &i.to_le_bytes());
        }
        h = fnv1a(h, &[0xff; 4]);
    }
    format!("{h:016x}")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn check(model: &str) {
    let fixture: Value = serde_json::from_str(include_str!("fixtures/sentencepiece.json")).unwrap();
    let want = &fixture["models"][model];
    let dir = common::shared().join("models/tokenizers/sentencepiece");
    let tok = Tokenizer::from_sentencepiece(&dir.join(format!("{model}.model"))).unwrap();
    let text =
        std::fs::read_to_string(common::shared().join(fixture["text"].as_str().unwrap())).unwrap();
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines.len() as u64, fixture["lines"].as_u64().unwrap());
    let got: Vec<Vec<u32>> = lines
        .iter()
        .map(|l| tok.encode(l, false, false).unwrap())
        .collect();
    for (i, w) in want["first_lines"].as_array().unwrap().iter().enumerate() {
        assert_eq!(got[i], ids(w), "{model}: line {i} {:?}", lines[i]);
    }
    let block = fixture["block"].as_u64().unwrap() as usize;
    let hashes = want["blocks"].as_array().unwrap();
    let bad: Vec<usize> = got
        .chunks(block)
        .zip(hashes)
        .enumerate()
        .filter(|(_, (lines, h))| block_hash(lines) != h.as_str().unwrap())
        .map(|(i, _)| i)
        .collect();
    assert!(
        bad.is_empty(),
        "{model}: blocks {bad:?} of {block} lines differ (see them with \
         scripts/make_sentencepiece_fixture.py --dump N)"
    );
    let total: usize = got.iter().map(Vec::len).sum();
    assert_eq!(total as u64, want["total_ids"].as_u64().unwrap());

    let unk = want["unk_id"].as_u64().unwrap() as u32;
    let extra = fixture["extra_texts"].as_array().unwrap();
    for (i, t) in extra.iter().enumerate() {
        let t = t.as_str().unwrap();
        let w = ids(&want["extra_ids"][i]);
        let g = tok.encode(t, false, false).unwrap();
        assert_eq!(g, w, "{model}: {t:?}");
        // sentencepiece writes an unknown piece as " ⁇ ", Hugging Face as its text.
        if !g.contains(&unk) {
            let decoded = want["extra_decoded"][i].as_str().unwrap();
            assert_eq!(
                tok.decode(&g, false).unwrap(),
                decoded,
                "{model}: decode {t:?}"
            );
        }
    }
    eprintln!(
        "{model}: {} lines of botchan.txt ({total} ids) and {} texts of our own exact",
        lines.len(),
        extra.len()
    );
}

#[test]
fn botchan_bpe() {
    check("botchan_en_bpe_1000");
}

#[test]
fn botchan_unigram() {
    check("botchan_en_unigram_1000");
}

#[test]
fn kyoto_japanese_unigram() {
    check("kyoto_ja_unigram_8000");
}
