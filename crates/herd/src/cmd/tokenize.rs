//! `herd tokenize MODEL TEXT`: token ids and pieces, as llama.cpp's tokenizer tests use them.

use anyhow::Result;
use herd_model::tokenizer::Tokenizer;

#[derive(clap::Args)]
pub struct Args {
    /// A model, or a vocabulary-only GGUF file.
    pub model: String,
    /// The text.
    pub text: String,
    /// Do not add BOS (and other special tokens the vocabulary adds).
    #[arg(long)]
    pub no_bos: bool,
    /// Let special tokens written in the text (`<s>`, `<|im_start|>`) become their ids.
    #[arg(long)]
    pub special: bool,
    /// Print JSON: [{"id": …, "piece": …}, …].
    #[arg(long)]
    pub json: bool,
    /// Print only the ids, comma-separated.
    #[arg(long)]
    pub ids: bool,
}

pub fn run(a: Args) -> Result<()> {
    let path = super::model_path(&a.model)?;
    // Vocabulary-only GGUF files have no weights: read just their tokenizer.
    let tok = if path.is_file() {
        Tokenizer::from_gguf_file(&path)?
    } else {
        Tokenizer::for_model(&herd_model::Model::open(&path)?)?
    };
    let ids = tok.encode(&a.text, !a.no_bos, a.special)?;
    let piece = |id: u32| tok.inner.id_to_token(id).unwrap_or_default();
    if a.json {
        let v: Vec<_> = ids
            .iter()
            .map(|&id| serde_json::json!({"id": id, "piece": piece(id)}))
            .collect();
        println!("{}", serde_json::to_string(&v)?);
    } else if a.ids {
        println!(
            "{}",
            ids.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
    } else {
        for id in ids {
            println!("{id:>8} {:?}", piece(id));
        }
    }
    Ok(())
}
