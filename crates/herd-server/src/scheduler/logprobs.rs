//! Token log-probabilities and the text each token adds, as the API reports them.

use herd_generate::json::JsonConstraint;
use herd_model::tokenizer::Tokenizer;

use super::TokenLogprob;

/// log-softmax of `logits` at `id`, with the `k` most likely tokens.
pub(super) fn token_logprob(
    logits: &[f32],
    id: u32,
    k: usize,
    pieces: &TokenPieces,
) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max
        + logits
            .iter()
            .map(|&l| ((l - max) as f64).exp())
            .sum::<f64>()
            .ln() as f32;
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    if k > 0 {
        for (i, &l) in logits.iter().enumerate() {
            if top.len() < k || l > top[top.len() - 1].1 {
                let at = top.partition_point(|&(_, x)| x >= l);
                top.insert(at, (i as u32, l));
                top.truncate(k);
            }
        }
    }
    let text = |t: u32| pieces.display(t).to_string();
    TokenLogprob {
        id,
        text: text(id),
        logprob: logits
            .get(id as usize)
            .map_or(f32::NEG_INFINITY, |&l| l - lse),
        top: top
            .into_iter()
            .map(|(t, l)| (t, text(t), l - lse))
            .collect(),
    }
}

/// The text each token adds after other text (with its leading space, unlike decoding it
/// alone), or `None` for tokens that are not text on their own (bytes of a longer
/// character, control tokens).
pub struct TokenPieces {
    pieces: Vec<Option<String>>,
    /// What to show for each token in log-probabilities: its piece, or its own decoding
    /// (which may hold U+FFFD for part of a character).
    display: Vec<String>,
    /// Token id by piece (the lowest id when several tokens write the same text).
    by_text: std::collections::HashMap<String, u32>,
}

impl TokenPieces {
    pub fn new(tok: &Tokenizer, vocab: usize) -> Self {
        // Decode each token after an anchor token and keep what it adds.
        let anchor = tok
            .encode("a", false, false)
            .ok()
            .and_then(|v| v.last().copied());
        let base = anchor
            .and_then(|a| tok.decode(&[a], false).ok())
            .unwrap_or_default();
        let display = (0..vocab as u32)
            .map(|id| tok.decode(&[id], false).unwrap_or_default())
            .collect();
        let pieces: Vec<Option<String>> = (0..vocab as u32)
            .map(|id| {
                let text = match anchor {
                    Some(a) => tok
                        .decode(&[a, id], false)
                        .ok()?
                        .strip_prefix(base.as_str())?
                        .to_string(),
                    None => tok.decode(&[id], false).ok()?,
                };
                let special = tok
                    .inner
                    .id_to_token(id)
                    .is_some_and(|t| tok.inner.get_added_vocabulary().is_special_token(&t));
                (!text.contains('\u{FFFD}') && !special).then_some(text)
            })
            .collect();
        let pieces: Vec<Option<String>> = pieces;
        let mut by_text = std::collections::HashMap::new();
        for (id, p) in pieces.iter().enumerate() {
            if let Some(p) = p {
                by_text.entry(p.clone()).or_insert(id as u32);
            }
        }
        TokenPieces {
            pieces,
            display,
            by_text,
        }
    }

    pub fn get(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).and_then(|p| p.as_deref())
    }

    /// The token whose text is the longest prefix of `text` that `j` accepts.
    pub fn longest_prefix_token(&self, text: &str, j: &JsonConstraint) -> Option<u32> {
        let ends: Vec<usize> = text
            .char_indices()
            .map(|(i, c)| i + c.len_utf8())
            .take(32)
            .collect();
        ends.iter().rev().find_map(|&end| {
            let prefix = &text[..end];
            self.by_text
                .get(prefix)
                .copied()
                .filter(|_| j.accepts(prefix))
        })
    }

    pub fn display(&self, id: u32) -> &str {
        self.get(id)
            .or_else(|| self.display.get(id as usize).map(String::as_str))
            .unwrap_or("")
    }
}
