//! herd-license: whether what you built may be used commercially.
//!
//! A fine-tuned model inherits the terms of its base model and of every dataset it was
//! trained on. This crate
//! - **detects** licence facts wherever they live (GGUF `general.license*` metadata, model and
//!   dataset card front matter, `LICENSE` files recognised by their text, `SOURCE.md` notes)
//!   — `detect.rs`, `text.rs`, `names.rs`;
//! - **normalises** them to SPDX identifiers or named model licences with their conditions —
//!   `catalogue.rs`;
//! - keeps the **lineage** of every artefact herd writes in a versioned manifest
//!   (`herd-lineage.json`, also embedded in GGUF metadata and model cards) — `manifest.rs`;
//! - gives the **verdict**: allowed, allowed with conditions, not allowed, or unknown, with the
//!   chain of reasons — `verdict.rs`.
//!
//! It does not give legal advice: it reports what the licences say, where each fact came
//! from, and says "unknown" when a fact is missing rather than guessing.

pub mod catalogue;
pub mod detect;
pub mod facts;
pub mod frontmatter;
pub mod manifest;
pub mod names;
pub mod text;
pub mod verdict;

use std::path::{Path, PathBuf};

pub use catalogue::{Commercial, Terms};
pub use detect::detect;
pub use facts::{Evidence, Facts, LicenceFact, Origin, Scope};
pub use manifest::{Component, Kind, Manifest};
pub use verdict::{Assessment, Verdict, assess};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// A lineage manifest that cannot be read: the file (or GGUF key) and the problem.
    #[error("{where_}: not a valid herd lineage manifest: {msg}")]
    Manifest { where_: String, msg: String },

    #[error(transparent)]
    Model(#[from] herd_model::Error),

    #[error("{}: {msg}", path.display())]
    NotAnArtefact { path: PathBuf, msg: String },
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
