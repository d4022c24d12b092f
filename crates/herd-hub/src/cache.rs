//! Hugging Face's hub cache on disk.

use std::path::{Path, PathBuf};

use crate::{Error, ModelRef, Result};

#[derive(Clone, Debug)]
pub struct Cache {
    pub root: PathBuf,
}

/// One cached snapshot of a repository.
#[derive(Clone, Debug)]
pub struct CachedModel {
    pub repo: String,
    pub commit: String,
    pub dir: PathBuf,
    /// Files present, relative to `dir`.
    pub files: Vec<String>,
}

impl Cache {
    /// `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
    /// `~/.cache/huggingface/hub`: where huggingface_hub looks.
    pub fn from_env() -> Self {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let root = env("HF_HUB_CACHE")
            .or_else(|| env("HF_HOME").map(|h| h.join("hub")))
            .or_else(|| env("XDG_CACHE_HOME").map(|c| c.join("huggingface/hub")))
            .or_else(|| env("HOME").map(|h| h.join(".cache/huggingface/hub")))
            .unwrap_or_else(|| PathBuf::from(".cache/huggingface/hub"));
        Cache { root }
    }

    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root
            .join(format!("models--{}", repo.replace('/', "--")))
    }

    /// The commit a revision points at, if it was pulled.
    pub fn commit_of(&self, repo: &str, revision: &str) -> Option<String> {
        if revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit()) {
            return Some(revision.to_string());
        }
        std::fs::read_to_string(self.repo_dir(repo).join("refs").join(revision))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// The local path of a pulled model: its file when one was named (or the only GGUF file of
    /// the snapshot), else the snapshot folder.
    pub fn resolve(&self, r: &ModelRef) -> Result<PathBuf> {
        let commit = self.commit_of(&r.repo, &r.revision).ok_or_else(|| {
            Error::Usage(format!(
                "{} (revision {}) is not in the cache {}: run `herd pull {}` first",
                r.repo,
                r.revision,
                self.root.display(),
                r.repo
            ))
        })?;
        let dir = self.repo_dir(&r.repo).join("snapshots").join(&commit);
        match &r.file {
            Some(f) => {
                let p = dir.join(f);
                if p.exists() {
                    Ok(p)
                } else {
                    Err(Error::Usage(format!(
                        "{f} of {} is not in the cache: run `herd pull {}:{f}`",
                        r.repo, r.repo
                    )))
                }
            }
            None => {
                let ggufs: Vec<PathBuf> = list_files(&dir)
                    .into_iter()
                    .filter(|f| f.ends_with(".gguf"))
                    .map(|f| dir.join(f))
                    .collect();
                match ggufs.as_slice() {
                    [one] if !dir.join("config.json").exists() => Ok(one.clone()),
                    _ => Ok(dir),
                }
            }
        }
    }

    /// Every cached snapshot.
    pub fn list(&self) -> Vec<CachedModel> {
        let mut out = vec![];
        let Ok(repos) = std::fs::read_dir(&self.root) else {
            return out;
        };
        for repo in repos.flatten() {
            let name = repo.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("models--") else {
                continue;
            };
            let repo_name = rest.replacen("--", "/", 1);
            let Ok(snaps) = std::fs::read_dir(repo.path().join("snapshots")) else {
                continue;
            };
            for snap in snaps.flatten() {
                let files = list_files(&snap.path());
                if !files.is_empty() {
                    out.push(CachedModel {
                        repo: repo_name.clone(),
                        commit: snap.file_name().to_string_lossy().into_owned(),
                        dir: snap.path(),
                        files,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.repo.cmp(&b.repo));
        out
    }
}

/// Files under `dir`, relative, sorted (links followed: snapshots hold links to blobs).
pub(crate) fn list_files(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir).map(Path::to_path_buf)
                && p.is_file()
            {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}
