//! How byte-level BPE vocabularies cut text into words before merging, per
//! `tokenizer.ggml.pre`.
//!
//! llama.cpp applies a list of regexes one after the other: each one cuts every piece left by
//! the previous one into matches and the text between them (Hugging Face's `Split` with
//! behaviour `Isolated`). The regexes here are llama.cpp's (`llm_tokenizer_bpe` in
//! `llama-vocab.cpp`), with one change: llama.cpp recognises the GPT-2 regex by its text and
//! runs a hand-written matcher that also has GPT-2's final `\s+` alternative, which its regex
//! text lacks, so [`GPT2`] carries it.

/// GPT-2's regex, as llama.cpp's hand-written matcher runs it.
pub const GPT2: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Llama 3's regex with llama.cpp's case-insensitive contractions spelled out (`(?i:...)` in
/// the original also folds non-ASCII letters such as `ſ`, which llama.cpp does not).
pub const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

pub const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const DEFAULT: &[&str] = &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"];

const FALCON: &[&str] = &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"];

const STARCODER: &[&str] = &[r"\p{N}", GPT2];

// Non-ASCII characters are escaped: several (Ω U+2126, K U+212A, ώ U+1F7D) would
// otherwise be at the mercy of editors that normalise text to NFC.
const DEEPSEEK_LLM: &[&str] = &[
    "[\r\n]",
    "\\s?[A-Za-z\u{b5}\u{c0}-\u{d6}\u{d8}-\u{f6}\u{f8}-\u{1ba}\u{1bc}-\u{1bf}\u{1c4}-\u{293}\u{295}-\u{2af}\u{370}-\u{373}\u{376}\u{377}\u{37b}-\u{37d}\u{37f}\u{386}\u{388}-\u{38a}\u{38c}\u{38e}-\u{3a1}\u{3a3}-\u{3f5}\u{3f7}-\u{481}\u{48a}-\u{52f}\u{531}-\u{556}\u{10a0}-\u{10c5}\u{13a0}-\u{13f5}\u{13f8}-\u{13fd}\u{1c90}-\u{1cba}\u{1cbd}-\u{1cbf}\u{1d00}-\u{1d2b}\u{1d6b}-\u{1d77}\u{1d79}-\u{1d9a}\u{1e00}-\u{1f15}\u{1f18}-\u{1f1d}\u{1f20}-\u{1f45}\u{1f48}-\u{1f4d}\u{1f50}-\u{1f57}\u{1f59}\u{1f5b}\u{1f5d}\u{1f5f}-\u{1f7d}\u{1f80}-\u{1fb4}\u{1fb6}-\u{1fbc}\u{1fbe}\u{1fc2}-\u{1fc4}\u{1fc6}-\u{1fcc}\u{1fd0}-\u{1fd3}\u{1fd6}-\u{1fdb}\u{1fe0}-\u{1fec}\u{1ff2}-\u{1ff4}\u{1ff6}-\u{1ffc}\u{2102}\u{2107}\u{210a}-\u{2113}\u{2115}\u{2119}-\u{211d}\u{2124}\u{2126}\u{2128}\u{212a}-\u{212d}\u{212f}-\u{2134}\u{2139}\u{213c}-\u{213f}\u{2145}-\u{2149}\u{214e}\u{2183}\u{2184}\u{2c00}-\u{2c7b}\u{2c7e}-\u{2ce4}\u{2ceb}-\u{2cee}\u{2cf2}\u{2cf3}\u{a640}-\u{a66d}\u{a680}-\u{a69b}\u{a722}-\u{a76f}\u{a771}-\u{a787}\u{a78b}-\u{a78e}\u{ab70}-\u{abbf}\u{fb00}-\u{fb06}\u{fb13}-\u{fb17}\u{ff21}-\u{ff3a}\u{ff41}-\u{ff5a}\u{10400}-\u{1044f}\u{104b0}-\u{104d3}\u{104d8}-\u{104fb}\u{10c80}-\u{10cb2}\u{10cc0}-\u{10cf2}\u{118a0}-\u{118df}\u{1e900}-\u{1e943}]+",
    "\\s?[!-/:-~\u{ff01}-\u{ff0f}\u{ff1a}-\u{ff5e}\u{2018}-\u{201f}\u{3000}-\u{3002}]+",
    "\\s+$",
    "[\u{4e00}-\u{9fa5}\u{800}-\u{4e00}\u{ac00}-\u{d7ff}]+",
    "\\p{N}+",
];

const DEEPSEEK_CODER: &[&str] = &[
    "[\r\n]",
    "\\s?\\p{L}+",
    "\\s?\\p{P}+",
    "[\u{4e00}-\u{9fa5}\u{800}-\u{4e00}\u{ac00}-\u{d7ff}]+",
    "\\p{N}",
];

const DEEPSEEK3: &[&str] = &[
    "\\p{N}{1,3}",
    "[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
];

const BLOOM: &str = " ?[^(\\s|.,!?\u{2026}\u{3002}\u{ff0c}\u{3001}\u{964}\u{6d4}\u{60c})]+";

/// How one `tokenizer.ggml.pre` value tokenizes, with the defaults llama.cpp ties to it.
#[derive(Clone, Copy, Debug)]
pub struct PreSpec {
    /// The name herd writes for this behaviour (the first llama.cpp name of the group).
    pub name: &'static str,
    pub regexes: &'static [&'static str],
    /// A word that is itself a token is not merged (Llama 3, GLM 4).
    pub ignore_merges: bool,
    /// llama.cpp's `add_bos` when `tokenizer.ggml.add_bos_token` is absent.
    pub add_bos: bool,
    /// llama.cpp forgets any BOS id for these (ChatGLM).
    pub no_bos: bool,
}

const fn spec(name: &'static str, regexes: &'static [&'static str]) -> PreSpec {
    PreSpec {
        name,
        regexes,
        ignore_merges: false,
        add_bos: false,
        no_bos: false,
    }
}

/// The pre-tokenizer of `pre` (absent: llama.cpp's "default"), or `None` for a name herd
/// does not know (llama.cpp refuses those too).
pub fn lookup(pre: Option<&str>) -> Option<PreSpec> {
    let s = match pre.unwrap_or("default") {
        "default" => spec("default", DEFAULT),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => PreSpec {
            ignore_merges: true,
            add_bos: true,
            ..spec("llama-bpe", &[LLAMA3])
        },
        "dbrx" => spec("dbrx", &[LLAMA3]),
        "smaug-bpe" => spec("smaug-bpe", &[LLAMA3]),
        "chatglm-bpe" => PreSpec {
            no_bos: true,
            ..spec("chatglm-bpe", &[LLAMA3])
        },
        "glm4" | "glm5" => PreSpec {
            no_bos: true,
            ignore_merges: true,
            ..spec("glm4", &[LLAMA3])
        },
        "deepseek-llm" => spec("deepseek-llm", DEEPSEEK_LLM),
        "deepseek-coder" => spec("deepseek-coder", DEEPSEEK_CODER),
        "deepseek-v3" | "hunyuan-dense" | "joyai-llm" | "hy_v4" => spec("deepseek-v3", DEEPSEEK3),
        "falcon" => spec("falcon", FALCON),
        "mpt" => spec("mpt", &[GPT2]),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "a.x-4.0" | "mellum" | "modern-bert" | "exaone4" | "olmo" | "jais" | "trillion"
        | "granite-docling" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe" => {
            spec("gpt-2", &[GPT2])
        }
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b"
        | "mellum2" => spec("starcoder", STARCODER),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "stablelm2" | "hunyuan"
        | "solar-open" | "megrez" => spec("qwen2", &[QWEN2]),
        "qwen35" => spec("qwen35", &[QWEN35]),
        "poro-chat" | "bloom" | "gpt3-finnish" => spec("bloom", &[BLOOM]),
        "viking" => spec("viking", &[BLOOM, r"\p{N}"]),
        _ => return None,
    };
    Some(s)
}

/// Names whose behaviour [`lookup`] knows, for error messages.
pub const KNOWN: &str = "default, llama-bpe (llama3), dbrx, smaug-bpe, chatglm-bpe, glm4, \
    deepseek-llm, deepseek-coder, deepseek-v3, falcon, mpt, gpt-2, starcoder, refact, qwen2, \
    qwen35, bloom, viking and their llama.cpp aliases";

/// Every distinct behaviour, for recognising a Hugging Face pre-tokenizer.
pub fn all() -> impl Iterator<Item = PreSpec> {
    [
        "llama-bpe",
        "dbrx",
        "glm4",
        "qwen2",
        "gpt-2",
        "default",
        "deepseek-llm",
        "deepseek-coder",
        "deepseek-v3",
        "falcon",
        "starcoder",
        "qwen35",
        "bloom",
        "viking",
    ]
    .into_iter()
    .filter_map(|n| lookup(Some(n)))
}

/// `r` as llama.cpp would run it: the Hugging Face spellings of the contraction group and of
/// the GPT-2 regex map onto the ones above.
pub fn canonical_regex(r: &str) -> String {
    const HF_CONTRACTIONS: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
    const LC_CONTRACTIONS: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
    let r = r.replace(HF_CONTRACTIONS, LC_CONTRACTIONS);
    if r == GPT2.trim_end_matches(r"|\s+") {
        GPT2.to_string()
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::SplitDelimiterBehavior;
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};

    #[test]
    fn every_regex_compiles() {
        for spec in all() {
            for r in spec.regexes {
                let s = Split::new(
                    SplitPattern::Regex(r.to_string()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                );
                assert!(s.is_ok(), "{}: {r:?}: {:?}", spec.name, s.err());
            }
        }
    }
}
