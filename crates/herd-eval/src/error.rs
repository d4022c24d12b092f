//! Errors of herd-eval. Every error about a data or task file names the file, and the line
//! where there is one, so that a malformed row is fixed rather than guessed at.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A malformed row of a dataset: file and 1-based line.
    #[error("{path}:{line}: {msg}")]
    Row {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("results store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("{0}")]
    Model(#[from] herd_model::Error),
    #[error("{0}")]
    Generate(#[from] herd_generate::generate::Error),
    #[error("endpoint {url}: {msg}")]
    Http { url: String, msg: String },
    #[error("{0}")]
    Usage(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn row(path: &Path, line: usize, msg: impl Into<String>) -> Self {
        Error::Row {
            path: path.to_path_buf(),
            line,
            msg: msg.into(),
        }
    }

    pub fn file(path: &Path, msg: impl Into<String>) -> Self {
        Error::File {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
}
