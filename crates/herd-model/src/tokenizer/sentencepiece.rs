//! SentencePiece model files (`.model`, a `ModelProto` protobuf) as Hugging Face tokenizers
//! that tokenize as the `sentencepiece` library does.
//!
//! The protobuf is read by hand: only the fields tokenizing needs (`sentencepiece_model.proto`
//! numbers them) are looked at, everything else is skipped by its wire type.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value as Json, json};
use tokenizers::AddedToken;

use super::Tokenizer;
use super::json::{self as tj, BpeOptions, Parts, SPACE};
use super::vocab::{TokenType, spm_merges};
use crate::error::{Error, Result};

/// The parts of a `ModelProto` herd uses.
#[derive(Debug)]
pub struct SpModel {
    pub pieces: Vec<Piece>,
    /// `TrainerSpec.model_type`: 1 unigram, 2 BPE, 3 word, 4 char.
    pub model_type: u64,
    pub byte_fallback: bool,
    pub treat_whitespace_as_suffix: bool,
    pub unk_id: i32,
    pub bos_id: i32,
    pub eos_id: i32,
    pub precompiled_charsmap: Vec<u8>,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub escape_whitespaces: bool,
}

#[derive(Debug, Clone)]
pub struct Piece {
    pub piece: String,
    pub score: f32,
    pub kind: TokenType,
}

enum Wire<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| format!("a field of {n} bytes runs past the end"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next field number and value, or `None` at the end.
    fn field(&mut self) -> std::result::Result<Option<(u64, Wire<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Wire::Fixed64
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
                Wire::Bytes(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                Wire::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            t => return Err(format!("unsupported protobuf wire type {t}")),
        };
        Ok(Some((key >> 3, wire)))
    }
}

fn text(b: &[u8]) -> std::result::Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "a piece is not valid UTF-8".to_string())
}

/// int32 fields hold negative values as 64-bit two's complement.
fn int32(v: u64) -> i32 {
    v as i64 as i32
}

impl SpModel {
    pub fn parse(buf: &[u8]) -> std::result::Result<Self, String> {
        let mut m = SpModel {
            pieces: vec![],
            model_type: 1,
            byte_fallback: false,
            treat_whitespace_as_suffix: false,
            unk_id: 0,
            bos_id: 1,
            eos_id: 2,
            precompiled_charsmap: vec![],
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        };
        let mut r = Reader::new(buf);
        while let Some((field, wire)) = r.field()? {
            match (field, wire) {
                (1, Wire::Bytes(b)) => m.pieces.push(parse_piece(b)?),
                (2, Wire::Bytes(b)) => m.parse_trainer(b)?,
                (3, Wire::Bytes(b)) => m.parse_normalizer(b)?,
                _ => {}
            }
        }
        if m.pieces.is_empty() {
            return Err("the model has no pieces (not a SentencePiece model?)".into());
        }
        Ok(m)
    }

    fn parse_trainer(&mut self, b: &[u8]) -> std::result::Result<(), String> {
        let mut r = Reader::new(b);
        while let Some((field, wire)) = r.field()? {
            if let Wire::Varint(v) = wire {
                match field {
                    3 => self.model_type = v,
                    24 => self.treat_whitespace_as_suffix = v != 0,
                    35 => self.byte_fallback = v != 0,
                    40 => self.unk_id = int32(v),
                    41 => self.bos_id = int32(v),
                    42 => self.eos_id = int32(v),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn parse_normalizer(&mut self, b: &[u8]) -> std::result::Result<(), String> {
        let mut r = Reader::new(b);
        while let Some((field, wire)) = r.field()? {
            match (field, wire) {
                (2, Wire::Bytes(b)) => self.precompiled_charsmap = b.to_vec(),
                (3, Wire::Varint(v)) => self.add_dummy_prefix = v != 0,
                (4, Wire::Varint(v)) => self.remove_extra_whitespaces = v != 0,
                (5, Wire::Varint(v)) => self.escape_whitespaces = v != 0,
                _ => {}
            }
        }
        Ok(())
    }

    fn id(&self, id: i32) -> Option<u32> {
        u32::try_from(id)
            .ok()
            .filter(|&i| (i as usize) < self.pieces.len())
    }
}

fn parse_piece(b: &[u8]) -> std::result::Result<Piece, String> {
    let mut p = Piece {
        piece: String::new(),
        score: 0.0,
        kind: TokenType::Normal,
    };
    let mut r = Reader::new(b);
    while let Some((field, wire)) = r.field()? {
        match (field, wire) {
            (1, Wire::Bytes(b)) => p.piece = text(b)?,
            (2, Wire::Fixed32(v)) => p.score = f32::from_bits(v),
            (3, Wire::Varint(v)) => p.kind = TokenType::from_i64(v as i64),
            _ => {}
        }
    }
    Ok(p)
}

/// `path` as a tokenizer. BOS/EOS are the model's, but not added: `sentencepiece` does not
/// add them unless asked.
pub fn load(path: &Path) -> Result<Tokenizer> {
    let buf = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let m = SpModel::parse(&buf).map_err(|e| Error::invalid(path, e))?;
    build(&m, path)
}

pub fn build(m: &SpModel, path: &Path) -> Result<Tokenizer> {
    if m.treat_whitespace_as_suffix {
        return Err(Error::invalid(
            path,
            "models that put the space after words (treat_whitespace_as_suffix) are not supported",
        ));
    }
    let unk = m.id(m.unk_id);
    let added: Vec<AddedToken> = m
        .pieces
        .iter()
        .filter_map(|p| match p.kind {
            TokenType::Control | TokenType::Unknown => Some(tj::added_token(&p.piece, true, false)),
            TokenType::UserDefined => Some(tj::added_token(&p.piece, false, false)),
            _ => None,
        })
        .collect();
    let bad = |e: String| Error::invalid(path, format!("cannot build the tokenizer: {e}"));
    let model = match m.model_type {
        1 => tj::model(json!({
            "type": "Unigram",
            "unk_id": unk,
            "vocab": m.pieces.iter().map(|p| json!([p.piece, p.score])).collect::<Vec<_>>(),
            "byte_fallback": m.byte_fallback,
        }))
        .map_err(bad)?,
        2 => {
            let texts: Vec<String> = m.pieces.iter().map(|p| p.piece.clone()).collect();
            let scores: Vec<f32> = m.pieces.iter().map(|p| p.score).collect();
            // Only these pieces take part in merging in SentencePiece's BPE.
            let mergeable: HashMap<&str, u32> = m
                .pieces
                .iter()
                .enumerate()
                .filter(|(_, p)| matches!(p.kind, TokenType::Normal | TokenType::UserDefined))
                .map(|(i, p)| (p.piece.as_str(), i as u32))
                .collect();
            let merges = spm_merges(&texts, &scores, &mergeable);
            let options = BpeOptions {
                unk_token: unk.map(|u| texts[u as usize].clone()),
                byte_fallback: m.byte_fallback,
                // SentencePiece writes a run of unknown characters as one <unk>.
                fuse_unk: true,
                ignore_merges: false,
            };
            tj::bpe(texts, merges, options).map_err(bad)?
        }
        t => {
            return Err(Error::invalid(
                path,
                format!("SentencePiece model type {t} is not supported (unigram and BPE are)"),
            ));
        }
    };
    let parts = Parts {
        model,
        normalizer: normalizer(m),
        pre_tokenizer: Json::Null,
        decoder: tj::spm_decoder(m.add_dummy_prefix),
        added_tokens: added,
    };
    let inner = parts.load(path)?;
    let bos = m.id(m.bos_id);
    let eos = m.id(m.eos_id).into_iter().collect();
    Ok(Tokenizer::new(inner, bos, eos, false, false))
}

/// SentencePiece's normalizer (`normalizer.cc`): the precompiled character map, then runs of
/// spaces squeezed and spaces at both ends dropped, a space put in front of non-empty text,
/// and spaces shown as `▁`.
fn normalizer(m: &SpModel) -> Json {
    let mut steps = vec![];
    if !m.precompiled_charsmap.is_empty() {
        steps.push(json!({
            "type": "Precompiled",
            "precompiled_charsmap": tj::base64(&m.precompiled_charsmap),
        }));
    }
    if m.remove_extra_whitespaces {
        steps.push(tj::replace_regex_normalizer(" {2,}", " "));
        steps.push(tj::replace_regex_normalizer("^ ", ""));
    }
    if m.add_dummy_prefix {
        steps.push(tj::prepend_normalizer(" "));
    }
    let space = if m.escape_whitespaces {
        steps.push(tj::replace_normalizer(" ", SPACE));
        SPACE
    } else {
        " "
    };
    if m.remove_extra_whitespaces {
        // After escaping, as SentencePiece does: a `▁` typed at the end goes too.
        steps.push(tj::replace_regex_normalizer(&format!("{space}+$"), ""));
    }
    tj::sequence_normalizer(steps)
}
