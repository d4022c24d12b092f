//! Instruction data for fine-tuning: reading Alpaca, ShareGPT and OpenAI-messages files with
//! every bad row reported by file and line, rendering conversations with a chat template into
//! token ids whose loss mask covers only the assistant's answers, packing and splitting.
//!
//! Not the training itself (that is `herd-train`).

pub mod encode;
pub mod formats;
pub mod pack;

pub use encode::{Encoded, Encoder};
pub use formats::{Dataset, Format, Location, Message, Row, RowError, load};
pub use pack::{Sequence, pack, split};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{location}: {reason}")]
    Format { location: Location, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
