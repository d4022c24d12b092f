//! `herd run MODEL [PROMPT]`: complete a prompt, streaming the text to stdout.

use std::io::Read;
use std::sync::atomic::AtomicBool;

use anyhow::{Result, bail};
use herd_generate::Session;

use super::sampling::{GenArgs, generate_to_stdout, print_stats};

#[derive(clap::Args)]
pub struct Args {
    /// A .gguf file, a Hugging Face model folder, or a pulled OWNER/REPO[:FILE].
    pub model: String,
    /// The prompt [default: read from stdin].
    pub prompt: Option<String>,
    /// Do not add BOS at the start of the prompt.
    #[arg(long)]
    pub no_bos: bool,
    /// Let special tokens written in the prompt (`<|im_start|>`) become their ids.
    #[arg(long)]
    pub special: bool,
    #[command(flatten)]
    pub generation: GenArgs,
}

pub fn run(a: Args) -> Result<()> {
    let prompt = match a.prompt {
        Some(p) => p,
        None => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
    };
    if prompt.is_empty() {
        bail!("the prompt is empty (give it as an argument or on stdin)");
    }
    let opts = a.generation.options()?;
    let (model, tok, mut engine) = a.generation.load(&a.model)?;
    a.generation.print_settings(
        &model,
        &opts,
        &[(
            "prompt",
            format!(
                "{} bytes, BOS {}",
                prompt.len(),
                if a.no_bos { "off" } else { "as the model says" }
            ),
        )],
    );
    let ids = tok.encode(&prompt, !a.no_bos, a.special)?;
    let mut session = Session::new(&engine, a.generation.context(&model));
    let Some(g) = generate_to_stdout(
        &mut engine,
        &tok,
        &mut session,
        &ids,
        &opts,
        &AtomicBool::new(false),
    )?
    else {
        return Ok(());
    };
    if g.truncated_tokens > 0 {
        eprintln!(
            "herd: the prompt's first {} tokens were cut to fit the context (--truncate left)",
            g.truncated_tokens
        );
    }
    print_stats(a.generation.verbose, &g);
    Ok(())
}
