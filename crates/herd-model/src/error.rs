//! Errors that name the file, the place in it and what was expected.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{}: not a GGUF file: it starts with {found:?}, a GGUF file starts with \"GGUF\"", path.display())]
    BadMagic { path: PathBuf, found: String },

    #[error(
        "{}: GGUF version {version} is not supported: herd reads GGUF versions 2 and 3{hint}",
        path.display()
    )]
    UnsupportedGgufVersion {
        path: PathBuf,
        version: u32,
        hint: &'static str,
    },

    #[error("{}: {what} at byte {offset}: {msg}", path.display())]
    Malformed {
        path: PathBuf,
        offset: u64,
        what: String,
        msg: String,
    },

    #[error(
        "{}: tensor '{tensor}' has type {type_name} (ggml id {type_id}), which herd does not read; supported types: {supported}",
        path.display()
    )]
    UnsupportedTensorType {
        path: PathBuf,
        tensor: String,
        type_id: u32,
        type_name: String,
        supported: String,
    },

    #[error("{}: architecture '{arch}' is not supported; supported architectures: {supported}", path.display())]
    UnsupportedArchitecture {
        path: PathBuf,
        arch: String,
        supported: String,
    },

    #[error("{}: {msg}", path.display())]
    Invalid { path: PathBuf, msg: String },

    #[error("{}: tensor '{name}' is missing (needed for {needed_for})", path.display())]
    MissingTensor {
        path: PathBuf,
        name: String,
        needed_for: String,
    },

    #[error(
        "{}: tensor '{name}' has shape {found:?}, expected {expected:?}",
        path.display()
    )]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },

    #[error("{0}")]
    Usage(String),

    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),

    #[error("tensor computation: {0}")]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Invalid {
            path: path.into(),
            msg: msg.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
