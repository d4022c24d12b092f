//! `herd`: the command line over herd's library crates. Each subcommand lives in `cmd/` and
//! only parses arguments, calls a library and prints.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "herd",
    version,
    about = "Run, serve, fine-tune and evaluate small open language models on your own machine",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Complete a prompt, streaming the text to stdout (prompt from stdin when absent).
    Run(cmd::run::Args),
    /// Chat with a model through its chat template (/system, /reset, /exit; Ctrl-C stops an answer).
    Chat(cmd::chat::Args),
    /// Serve the OpenAI-compatible API and a web chat (127.0.0.1:8080 by default).
    Serve(cmd::serve::Args),
    /// Fine-tune a model on instruction data (LoRA or full), resume a run, plot its losses.
    Tune(cmd::tune::Args),
    /// Fold a LoRA adapter into a model's weights (GGUF or safetensors out).
    Merge(cmd::merge::Args),
    /// Look at a dataset before training on it.
    Data(cmd::data::Args),
    /// Print the token ids and pieces of a text.
    Tokenize(cmd::tokenize::Args),
    /// Describe a model: architecture, parameters, tensor types, context, rope, template, licence.
    Info(cmd::info::Args),
    /// Write the next-token logits at every position of a prompt to a safetensors file.
    Logits(cmd::logits::Args),
    /// Measure prompt-processing and generation speed (like llama-bench).
    Bench(cmd::bench::Args),
    /// Write a model (GGUF or Hugging Face folder) as GGUF, optionally in another type.
    Convert(cmd::convert::Args),
    /// Download a model from the Hugging Face hub into its shared cache.
    Pull(cmd::hub::PullArgs),
    /// List the models in the cache with size, architecture, quantization and licence.
    List(cmd::hub::ListArgs),
    /// Evaluate: benchmarks, LLM judges, ratings, reports (results kept in SQLite).
    Eval(cmd::eval::Args),
    /// May it be used commercially? The verdict over a model's or dataset's whole lineage.
    License(cmd::license::Args),
}

fn main() {
    let cli = Cli::parse();
    if !matches!(cli.cmd, Cmd::Serve(_)) {
        die_quietly_on_a_closed_pipe();
    }
    let res = match cli.cmd {
        Cmd::Run(a) => cmd::run::run(a),
        Cmd::Chat(a) => cmd::chat::run(a),
        Cmd::Tokenize(a) => cmd::tokenize::run(a),
        Cmd::Serve(a) => cmd::serve::run(a),
        Cmd::Tune(a) => cmd::tune::run(a),
        Cmd::Merge(a) => cmd::merge::run(a),
        Cmd::Data(a) => cmd::data::run(a),
        Cmd::Info(a) => cmd::info::run(a),
        Cmd::Logits(a) => cmd::logits::run(a),
        Cmd::Bench(a) => cmd::bench::run(a),
        Cmd::Convert(a) => cmd::convert::run(a),
        Cmd::Pull(a) => cmd::hub::pull(a),
        Cmd::List(a) => cmd::hub::list(a),
        Cmd::Eval(a) => cmd::eval::run(a),
        Cmd::License(a) => cmd::license::run(a),
    };
    if let Err(e) = res {
        eprintln!("herd: error: {e:#}");
        std::process::exit(1);
    }
}

/// Rust ignores SIGPIPE, so `println!` to a reader that has gone (`herd bench | head -1`)
/// panics with a backtrace. A command-line tool should end as `cat` does there: the signal's
/// default action, a quiet exit. The server keeps the Rust default: its sockets get the error
/// back instead (Rust sends with `MSG_NOSIGNAL`), and its logs must not take it down.
fn die_quietly_on_a_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called once at start-up, before any thread exists, with a handler libc defines.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
