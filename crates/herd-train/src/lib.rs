//! Fine-tuning: LoRA on herd's own forward and backward pass ([`native`]) where it applies,
//! otherwise through the reference forward pass (`herd_model::reference`), which candle's
//! autograd differentiates: LoRA adapters (on a frozen base that may stay quantised) and full
//! fine-tuning, AdamW as PyTorch computes it, schedules, gradient accumulation and clipping,
//! checkpoints that resume to the same numbers, PEFT export and merging.
//!
//! Not dataset parsing (that is `herd-data`).

pub mod adapter;
pub mod loss;
pub mod merge;
pub mod model;
pub mod native;
pub mod optim;
pub mod recompute;
pub mod trainer;

pub use model::{LoraConfig, Method, TrainModel};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {msg}", path.display())]
    Invalid { path: PathBuf, msg: String },
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Model(#[from] herd_model::Error),
    #[error("tensor computation: {0}")]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
