//! Decoding ids as they are generated, one at a time.
//!
//! A token's text depends on its neighbours: a character can be spread over several
//! byte-fallback or byte-level tokens, and SentencePiece decoders drop the space that starts
//! the text. So each step decodes a short window of recent ids and hands out what the window
//! adds to the text of its first part (the previous chunk), once that ends in a whole
//! character.

use super::Tokenizer;
use crate::error::{Error, Result};

/// Turns ids into text as they arrive; the concatenated outputs of [`StreamDecoder::step`]
/// and [`StreamDecoder::finish`] equal `decode` of all the ids.
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    skip_special: bool,
    /// The ids of the last chunk handed out, then those not handed out yet.
    ids: Vec<u32>,
    /// How many of `ids` belong to the last chunk handed out.
    prefix_len: usize,
    /// The text of `ids[..prefix_len]` on its own.
    prefix: String,
}

impl<'a> StreamDecoder<'a> {
    pub fn new(tok: &'a Tokenizer, skip_special: bool) -> Self {
        StreamDecoder {
            tok,
            skip_special,
            ids: vec![],
            prefix_len: 0,
            prefix: String::new(),
        }
    }

    /// Starts after `context` (the prompt's last few ids), whose text is not given out: the
    /// first generated token then keeps the space that a SentencePiece decoder would strip
    /// from the start of a text (" there", not "there", after "Once upon a time").
    pub fn with_context(mut self, context: &[u32]) -> Result<Self> {
        self.ids = context.to_vec();
        self.prefix_len = self.ids.len();
        self.prefix = self.tok.decode(&self.ids, self.skip_special)?;
        Ok(self)
    }

    /// Adds `id`; returns the text that is now complete (often empty: a character still
    /// missing bytes, or a token with no text).
    ///
    /// A text that really ends in U+FFFD (the replacement character) is held back like an
    /// incomplete one until the next id or [`finish`](Self::finish).
    pub fn step(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = self.tok.decode(&self.ids, self.skip_special)?;
        if text.len() <= self.prefix.len() || text.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        let new = self.new_part(&text)?;
        self.ids.drain(..self.prefix_len);
        self.prefix_len = self.ids.len();
        self.prefix = self.tok.decode(&self.ids, self.skip_special)?;
        Ok(new)
    }

    /// The text still held back, leaving the decoder empty (for a stream that ends while the
    /// decoder must stay in place).
    pub fn flush(&mut self) -> Result<String> {
        let text = self.tok.decode(&self.ids, self.skip_special)?;
        let rest = self.new_part(&text)?;
        self.ids.clear();
        self.prefix_len = 0;
        self.prefix.clear();
        Ok(rest)
    }

    /// The text still held back (bytes of an unfinished character come out as U+FFFD, as
    /// `decode` writes them).
    pub fn finish(self) -> Result<String> {
        let text = self.tok.decode(&self.ids, self.skip_special)?;
        self.new_part(&text)
    }

    fn new_part(&self, text: &str) -> Result<String> {
        text.strip_prefix(self.prefix.as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "streaming decode: the text of the recent ids, {text:?}, does not continue \
                     the text already given out ({:?}); this tokenizer's decoder changes \
                     earlier text as tokens are added",
                    self.prefix
                ))
            })
    }
}
