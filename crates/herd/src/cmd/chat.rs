//! `herd chat MODEL`: an interactive conversation through the model's chat template.
//!
//! Commands: `/system TEXT` sets the system prompt, `/reset` forgets the conversation,
//! `/exit` (or Ctrl-D) quits. Ctrl-C stops the answer being written, not the program. With a
//! terminal, lines are edited and recalled with rustyline; otherwise lines are read from
//! stdin, one message each (for scripts and tests).

use std::io::{BufRead, IsTerminal};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use herd_generate::{FinishReason, Session};
use herd_model::template::{ChatTemplate, RenderOptions};
use serde_json::json;

use super::sampling::{GenArgs, generate_to_stdout, print_stats};

#[derive(clap::Args)]
pub struct Args {
    /// A .gguf file, a Hugging Face model folder, or a pulled OWNER/REPO[:FILE].
    pub model: String,
    /// Chat template: a built-in name (chatml, llama2, llama3, zephyr, vicuna-v1.1, alpaca),
    /// a Jinja file, or a tokenizer_config.json [default: the model's own].
    #[arg(long)]
    pub template: Option<String>,
    /// System prompt to start with.
    #[arg(long)]
    pub system: Option<String>,
    /// Print each rendered prompt to stderr before the answer.
    #[arg(long)]
    pub show_prompt: bool,
    #[command(flatten)]
    pub generation: GenArgs,
}

enum Line {
    Text(String),
    Interrupted,
    End,
}

/// Where user lines come from.
enum Input {
    Editor(Box<rustyline::DefaultEditor>),
    Plain(std::io::StdinLock<'static>),
}

impl Input {
    fn read(&mut self) -> Result<Line> {
        match self {
            Input::Editor(ed) => match ed.readline("> ") {
                Ok(l) => {
                    if !l.trim().is_empty() {
                        let _ = ed.add_history_entry(l.as_str());
                    }
                    Ok(Line::Text(l))
                }
                Err(rustyline::error::ReadlineError::Interrupted) => Ok(Line::Interrupted),
                Err(rustyline::error::ReadlineError::Eof) => Ok(Line::End),
                Err(e) => Err(e.into()),
            },
            Input::Plain(stdin) => {
                let mut l = String::new();
                if stdin.read_line(&mut l)? == 0 {
                    return Ok(Line::End);
                }
                Ok(Line::Text(l.trim_end_matches(['\n', '\r']).to_string()))
            }
        }
    }
}

pub fn run(a: Args) -> Result<()> {
    let opts = a.generation.options()?;
    let (model, tok, mut engine) = a.generation.load(&a.model)?;
    let template = ChatTemplate::resolve(a.template.as_deref(), model.chat_template().as_deref())?;
    let token_text = |id: Option<u32>| id.and_then(|i| tok.inner.id_to_token(i));
    let render_opts = RenderOptions {
        add_generation_prompt: true,
        bos_token: token_text(tok.bos),
        eos_token: token_text(tok.eos.first().copied()),
        ..Default::default()
    };
    a.generation
        .print_settings(&model, &opts, &[("template", template.name().to_string())]);
    let mut session = Session::new(&engine, a.generation.context(&model));

    // Ctrl-C during an answer stops it; at the prompt, the line editor sees it as a key.
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        ctrlc::set_handler(move || cancel.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
    }
    let tty = std::io::stdin().is_terminal();
    let mut input = if tty {
        Input::Editor(Box::new(rustyline::DefaultEditor::new()?))
    } else {
        Input::Plain(std::io::stdin().lock())
    };
    if tty {
        eprintln!(
            "herd chat with {} ({}): /system TEXT, /reset, /exit; Ctrl-C stops an answer",
            model.path.display(),
            template.name()
        );
    }
    let mut system = a.system.clone();
    let mut history: Vec<serde_json::Value> = vec![];
    loop {
        let line = match input.read()? {
            Line::End => break,
            Line::Interrupted => {
                eprintln!("(Ctrl-C stops an answer; /exit or Ctrl-D quits)");
                continue;
            }
            Line::Text(l) => l,
        };
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        match trimmed
            .split_once(' ')
            .map_or((trimmed, ""), |(c, r)| (c, r.trim()))
        {
            ("/exit" | "/quit", _) => break,
            ("/reset", _) => {
                history.clear();
                session.reset();
                eprintln!("(conversation cleared)");
                continue;
            }
            ("/system", text) => {
                system = (!text.is_empty()).then(|| text.to_string());
                eprintln!(
                    "(system prompt {})",
                    if system.is_some() { "set" } else { "removed" }
                );
                continue;
            }
            (c, _) if c.starts_with('/') && !c.starts_with("//") => {
                eprintln!("(unknown command {c}: /system TEXT, /reset, /exit)");
                continue;
            }
            _ => {}
        }
        history.push(json!({"role": "user", "content": line}));
        let messages: Vec<serde_json::Value> = system
            .iter()
            .map(|s| json!({"role": "system", "content": s}))
            .chain(history.iter().cloned())
            .collect();
        let prompt = match template.render(&messages, &render_opts) {
            Ok(p) => p,
            Err(e) => {
                history.pop();
                eprintln!("herd: {e}");
                continue;
            }
        };
        if a.show_prompt || a.generation.verbose {
            eprintln!("--- prompt ---\n{prompt}\n--- end of prompt ---");
        }
        let mut ids = tok.encode(&prompt, false, true)?;
        // Templates that do not write BOS themselves still get it when the model wants one.
        if let Some(b) = tok
            .bos
            .filter(|_| tok.add_bos && ids.first() != tok.bos.as_ref())
        {
            ids.insert(0, b);
        }
        cancel.store(false, Ordering::SeqCst);
        let g = match generate_to_stdout(&mut engine, &tok, &mut session, &ids, &opts, &cancel) {
            Ok(Some(g)) => g,
            Ok(None) => break,
            Err(e) => {
                history.pop();
                eprintln!("herd: {e}");
                continue;
            }
        };
        if g.finish == FinishReason::Cancelled {
            eprintln!("(stopped)");
        }
        print_stats(a.generation.verbose, &g);
        history.push(json!({"role": "assistant", "content": g.text}));
    }
    Ok(())
}
