//! Conversations to token ids with a loss mask: the model learns only the assistant's tokens.
//!
//! Each assistant turn's tokens are found by rendering the conversation up to that turn with
//! the generation prompt (what the model sees before answering) and through the turn (with
//! its end-of-turn marker, so that the model learns to stop), as Alpaca and FastChat do.

use herd_model::template::{ChatTemplate, RenderOptions};
use herd_model::tokenizer::Tokenizer;
use serde_json::json;

use crate::formats::{Location, Message, Row};

/// One example ready for training.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// `train[i]`: token `i` is a target (predicted from the tokens before it).
    pub train: Vec<bool>,
    pub location: Location,
}

impl Encoded {
    pub fn trained_tokens(&self) -> usize {
        self.train.iter().filter(|&&t| t).count()
    }
}

pub struct Encoder<'a> {
    pub tok: &'a Tokenizer,
    pub template: &'a ChatTemplate,
    /// Longest example, in tokens.
    pub max_len: usize,
}

impl Encoder<'_> {
    fn render(&self, messages: &[Message], generation_prompt: bool) -> Result<String, String> {
        let msgs: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| json!({"role": m.role, "content": m.content}))
            .collect();
        let token_text = |id: Option<u32>| id.and_then(|i| self.tok.inner.id_to_token(i));
        let opts = RenderOptions {
            add_generation_prompt: generation_prompt,
            bos_token: token_text(self.tok.bos),
            eos_token: token_text(self.tok.eos.first().copied()),
            ..Default::default()
        };
        self.template
            .render(&msgs, &opts)
            .map_err(|e| format!("chat template: {e}"))
    }

    /// Token ids of a rendered text: special tokens parsed, BOS added when the model wants
    /// one and the template did not write it.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, String> {
        let mut ids = self
            .tok
            .encode(text, false, true)
            .map_err(|e| e.to_string())?;
        if let Some(b) = self
            .tok
            .bos
            .filter(|_| self.tok.add_bos && ids.first() != self.tok.bos.as_ref())
        {
            ids.insert(0, b);
        }
        Ok(ids)
    }

    pub fn encode(&self, row: &Row) -> Result<Encoded, String> {
        let full = self.tokenize(&self.render(&row.messages, false)?)?;
        if full.len() > self.max_len {
            return Err(format!(
                "{} tokens after templating, more than the maximum length of {}",
                full.len(),
                self.max_len
            ));
        }
        let mut train = vec![false; full.len()];
        for (k, m) in row.messages.iter().enumerate() {
            if m.role != "assistant" {
                continue;
            }
            let before = self.tokenize(&self.render(&row.messages[..k], true)?)?;
            let through = self.tokenize(&self.render(&row.messages[..=k], false)?)?;
            let consistent = full.starts_with(&through)
                && through.starts_with(&before)
                && before.len() < through.len();
            if !consistent {
                return Err(format!(
                    "the chat template does not render turn {} as a continuation of the turns before it, so its tokens cannot be told apart",
                    k + 1
                ));
            }
            train[before.len()..through.len()]
                .iter_mut()
                .for_each(|t| *t = true);
        }
        Ok(Encoded {
            ids: full,
            train,
            location: row.location.clone(),
        })
    }
}
