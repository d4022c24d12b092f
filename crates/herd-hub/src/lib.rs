//! Models by name from the Hugging Face hub: `herd pull OWNER/REPO[:FILE]` downloads into the
//! cache that Hugging Face's own tools share (`~/.cache/huggingface/hub`, or `$HF_HUB_CACHE`,
//! or `$HF_HOME/hub`), resuming interrupted transfers and verifying every file against the
//! checksum the hub publishes. `$HF_ENDPOINT` and `$HF_TOKEN` are honoured.
//!
//! Cache layout (Hugging Face's): `models--OWNER--REPO/blobs/<etag>` holds the bytes,
//! `snapshots/<commit>/<file>` links to the blob, `refs/<revision>` names the commit.

mod cache;
mod download;

pub use cache::{Cache, CachedModel};
pub use download::{Hub, Progress, PullReport};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{url}: {msg}")]
    Http { url: String, msg: String },
    #[error(
        "{file}: checksum mismatch: the hub says {expected}, the downloaded bytes hash to {actual}; the partial file was removed"
    )]
    Checksum {
        file: String,
        expected: String,
        actual: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `OWNER/REPO[:FILE][@REVISION]` as users write it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelRef {
    pub repo: String,
    pub file: Option<String>,
    pub revision: String,
}

impl ModelRef {
    pub fn parse(s: &str) -> Result<Self> {
        let (rest, revision) = match s.rsplit_once('@') {
            Some((r, rev)) if !rev.is_empty() => (r, rev.to_string()),
            _ => (s, "main".to_string()),
        };
        let (repo, file) = match rest.split_once(':') {
            Some((r, f)) if !f.is_empty() => (r, Some(f.to_string())),
            _ => (rest, None),
        };
        let parts: Vec<&str> = repo.split('/').collect();
        let valid = |p: &str| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if parts.len() != 2 || !parts.iter().all(|p| valid(p)) {
            return Err(Error::Usage(format!(
                "'{s}' is not a hub model name: expected OWNER/REPO, OWNER/REPO:FILE or OWNER/REPO@REVISION"
            )));
        }
        if let Some(f) = &file
            && (f.starts_with('/') || f.split('/').any(|c| c == ".." || c.is_empty()))
        {
            return Err(Error::Usage(format!(
                "'{f}' is not a file path inside a repository"
            )));
        }
        Ok(ModelRef {
            repo: repo.to_string(),
            file,
            revision,
        })
    }

    /// Whether `s` looks like a hub name rather than a local path.
    pub fn looks_like(s: &str) -> bool {
        !s.starts_with('/')
            && !s.starts_with('.')
            && !std::path::Path::new(s).exists()
            && Self::parse(s).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_bad_ones_are_refused() {
        let r = ModelRef::parse("TheBloke/TinyLlama-1.1B-GGUF:tinyllama.Q4_0.gguf").unwrap();
        assert_eq!(r.repo, "TheBloke/TinyLlama-1.1B-GGUF");
        assert_eq!(r.file.as_deref(), Some("tinyllama.Q4_0.gguf"));
        assert_eq!(r.revision, "main");
        let r = ModelRef::parse("Qwen/Qwen2.5-0.5B@v1").unwrap();
        assert_eq!((r.file, r.revision.as_str()), (None, "v1"));
        for bad in [
            "noslash",
            "a/b/c",
            "../x/y",
            "a/b:../../etc/passwd",
            "a/b:/abs",
            "a b/c",
        ] {
            assert!(ModelRef::parse(bad).is_err(), "{bad}");
        }
    }
}
