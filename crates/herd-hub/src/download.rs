//! Talking to the hub: which files a revision has, their checksums, and resumable downloads.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha1::Digest as _;

use crate::cache::Cache;
use crate::{Error, ModelRef, Result};

/// Told about each file's progress (the command line draws a bar with it).
pub trait Progress {
    fn start(&mut self, file: &str, total: Option<u64>, already: u64);
    fn advance(&mut self, bytes: u64);
    fn finish(&mut self, file: &str);
}

/// No output.
impl Progress for () {
    fn start(&mut self, _: &str, _: Option<u64>, _: u64) {}
    fn advance(&mut self, _: u64) {}
    fn finish(&mut self, _: &str) {}
}

pub struct Hub {
    pub endpoint: String,
    pub token: Option<String>,
    pub cache: Cache,
    agent: ureq::Agent,
    /// Attempts per file before giving up (each resumes where the last stopped).
    pub attempts: usize,
}

#[derive(Clone, Debug)]
pub struct PullReport {
    pub repo: String,
    pub commit: String,
    pub dir: PathBuf,
    /// (file, bytes, how: "downloaded" | "resumed" | "cached")
    pub files: Vec<(String, u64, &'static str)>,
    /// The path to use as MODEL in other commands.
    pub model_path: PathBuf,
}

/// What the hub says about one file.
struct FileMeta {
    etag: String,
    size: Option<u64>,
}

impl Hub {
    /// `$HF_ENDPOINT` (default https://huggingface.co), `$HF_TOKEN`, the cache from the
    /// environment.
    pub fn from_env() -> Self {
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "https://huggingface.co".into());
        let token = std::env::var("HF_TOKEN").ok().filter(|s| !s.is_empty());
        Self::new(endpoint, token, Cache::from_env())
    }

    pub fn new(endpoint: String, token: Option<String>, cache: Cache) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_body(Some(Duration::from_secs(120)))
            .user_agent(concat!("herd/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Hub {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
            cache,
            agent,
            attempts: 5,
        }
    }

    fn get(
        &self,
        url: &str,
        range_from: Option<u64>,
        head: bool,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut url = url.to_string();
        // Follow redirects by hand, so that the token goes only to the hub itself: the hub
        // redirects relatively for renamed repositories (token kept) and absolutely to its
        // storage for large files (pre-signed URLs; token dropped).
        let mut send_token = true;
        for _ in 0..10 {
            let mut req = if head {
                self.agent.head(&url).force_send_body()
            } else {
                self.agent.get(&url).force_send_body()
            };
            if let Some(t) = self
                .token
                .as_ref()
                .filter(|_| send_token && url.starts_with(&self.endpoint))
            {
                req = req.header("Authorization", &format!("Bearer {t}"));
            }
            if let Some(from) = range_from.filter(|&f| f > 0) {
                req = req.header("Range", &format!("bytes={from}-"));
            }
            let resp = req.send_empty().map_err(|e| Error::Http {
                url: url.clone(),
                msg: e.to_string(),
            })?;
            let status = resp.status().as_u16();
            if (300..400).contains(&status) && !head {
                let loc = header(&resp, "location").ok_or_else(|| Error::Http {
                    url: url.clone(),
                    msg: format!("redirect {status} without a Location"),
                })?;
                send_token &= !(loc.starts_with("http://") || loc.starts_with("https://"));
                url = join_url(&url, &loc);
                continue;
            }
            return Ok(resp);
        }
        Err(Error::Http {
            url,
            msg: "too many redirects".into(),
        })
    }

    fn json(&self, url: &str) -> Result<serde_json::Value> {
        let resp = self.get(url, None, false)?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| Error::Http {
                url: url.into(),
                msg: e.to_string(),
            })?;
        match status {
            200 => serde_json::from_str(&body).map_err(|e| Error::Http {
                url: url.into(),
                msg: format!("not JSON: {e}"),
            }),
            401 | 403 => Err(Error::Http {
                url: url.into(),
                msg: format!("{status}: not allowed (a gated or private repository? set HF_TOKEN)"),
            }),
            404 => Err(Error::Http {
                url: url.into(),
                msg: "404: no such repository or revision".into(),
            }),
            s => Err(Error::Http {
                url: url.into(),
                msg: format!("HTTP {s}: {}", body.chars().take(200).collect::<String>()),
            }),
        }
    }

    /// The commit of `r.revision` and the files it holds.
    fn revision_info(&self, r: &ModelRef) -> Result<(String, Vec<String>)> {
        let url = format!(
            "{}/api/models/{}/revision/{}",
            self.endpoint, r.repo, r.revision
        );
        let j = self.json(&url)?;
        let sha = j["sha"].as_str().ok_or_else(|| Error::Http {
            url: url.clone(),
            msg: "no 'sha' in the answer".into(),
        })?;
        let files = j["siblings"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["rfilename"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Ok((sha.to_string(), files))
    }

    fn file_meta(&self, repo: &str, commit: &str, file: &str) -> Result<FileMeta> {
        let url = format!("{}/{repo}/resolve/{commit}/{file}", self.endpoint);
        let resp = self.get(&url, None, true)?;
        let status = resp.status().as_u16();
        if !(200..400).contains(&status) {
            return Err(Error::Http {
                url,
                msg: format!("HTTP {status} for {file}"),
            });
        }
        // Large (LFS) files: X-Linked-Etag is their sha256; small ones: ETag is the git blob id.
        let etag = header(&resp, "x-linked-etag")
            .or_else(|| header(&resp, "etag"))
            .map(|e| e.trim_start_matches("W/").trim_matches('"').to_string())
            .ok_or_else(|| Error::Http {
                url: url.clone(),
                msg: "no ETag: the file's checksum is unknown".into(),
            })?;
        let size = header(&resp, "x-linked-size")
            .or_else(|| {
                if status == 200 {
                    header(&resp, "content-length")
                } else {
                    None
                }
            })
            .and_then(|s| s.parse().ok());
        if !is_hex(&etag, 64) && !is_hex(&etag, 40) {
            return Err(Error::Http {
                url,
                msg: format!(
                    "ETag {etag:?} is not a sha256 or git blob id, so the download could not be verified"
                ),
            });
        }
        Ok(FileMeta { etag, size })
    }

    /// Downloads `r` (one file, or the files a model needs) into the cache.
    pub fn pull(&self, r: &ModelRef, progress: &mut dyn Progress) -> Result<PullReport> {
        let (commit, all_files) = self.revision_info(r)?;
        let files: Vec<String> = match &r.file {
            Some(f) => {
                if !all_files.is_empty() && !all_files.contains(f) {
                    return Err(Error::Usage(format!(
                        "{} has no file '{f}'; it has: {}",
                        r.repo,
                        all_files.join(", ")
                    )));
                }
                vec![f.clone()]
            }
            None => choose_files(&r.repo, &all_files)?,
        };
        let repo_dir = self.cache.repo_dir(&r.repo);
        let snap = repo_dir.join("snapshots").join(&commit);
        let blobs = repo_dir.join("blobs");
        for d in [&snap, &blobs] {
            std::fs::create_dir_all(d).map_err(|e| Error::Io {
                path: d.clone(),
                source: e,
            })?;
        }
        let mut report = PullReport {
            repo: r.repo.clone(),
            commit: commit.clone(),
            dir: snap.clone(),
            files: vec![],
            model_path: snap.clone(),
        };
        for f in &files {
            let meta = self.file_meta(&r.repo, &commit, f)?;
            let blob = blobs.join(&meta.etag);
            let how = if blob.exists() {
                "cached"
            } else {
                let url = format!("{}/{}/resolve/{commit}/{f}", self.endpoint, r.repo);
                self.download(&url, f, &meta, &blob, progress)?
            };
            let size = std::fs::metadata(&blob).map(|m| m.len()).unwrap_or(0);
            link(&blob, &snap.join(f))?;
            report.files.push((f.clone(), size, how));
        }
        let refs = repo_dir.join("refs");
        std::fs::create_dir_all(&refs).map_err(|e| Error::Io {
            path: refs.clone(),
            source: e,
        })?;
        if r.revision != commit {
            write_atomic(&refs.join(&r.revision), commit.as_bytes())?;
        }
        report.model_path = match &r.file {
            Some(f) => snap.join(f),
            None => self.cache.resolve(&ModelRef {
                revision: commit.clone(),
                ..r.clone()
            })?,
        };
        Ok(report)
    }

    /// Fetches into `blob.incomplete`, resuming what an earlier attempt left, then verifies
    /// and renames. Returns "downloaded" or "resumed".
    fn download(
        &self,
        url: &str,
        file: &str,
        meta: &FileMeta,
        blob: &Path,
        progress: &mut dyn Progress,
    ) -> Result<&'static str> {
        let part = blob.with_extension("incomplete");
        let io = |e| Error::Io {
            path: part.clone(),
            source: e,
        };
        let resumed_at_start = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        let mut last_err = None;
        for _ in 0..self.attempts.max(1) {
            let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
            if meta.size.is_some_and(|s| have >= s) {
                break;
            }
            let resp = match self.get(url, Some(have), false) {
                Ok(r) => r,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let append = match status {
                206 => true,
                200 => false, // the server ignored the range: start over
                416 if meta.size == Some(have) => break,
                s => {
                    return Err(Error::Http {
                        url: url.into(),
                        msg: format!("HTTP {s} downloading {file}"),
                    });
                }
            };
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(append)
                .truncate(!append)
                .open(&part)
                .map_err(io)?;
            let start = if append { have } else { 0 };
            progress.start(file, meta.size, start);
            let mut reader = resp.into_body().into_with_config().limit(u64::MAX).reader();
            let mut buf = vec![0u8; 1 << 16];
            let result = loop {
                match reader.read(&mut buf) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        out.write_all(&buf[..n]).map_err(io)?;
                        progress.advance(n as u64);
                    }
                    Err(e) => break Err(e),
                }
            };
            out.flush().map_err(io)?;
            drop(out);
            match result {
                Ok(()) => {
                    last_err = None;
                    break;
                }
                Err(e) => {
                    let got = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
                    last_err = Some(Error::Http {
                        url: url.into(),
                        msg: format!(
                            "transfer interrupted after {got} bytes ({e}); run the same command again to resume"
                        ),
                    });
                }
            }
        }
        if let Some(e) = last_err {
            return Err(e);
        }
        let got = std::fs::metadata(&part).map_err(io)?.len();
        if let Some(size) = meta.size.filter(|&s| s != got) {
            let _ = std::fs::remove_file(&part);
            return Err(Error::Http {
                url: url.into(),
                msg: format!("{file}: got {got} bytes, the hub announced {size}"),
            });
        }
        let actual = checksum(&part, &meta.etag, got)?;
        if actual != meta.etag {
            let _ = std::fs::remove_file(&part);
            return Err(Error::Checksum {
                file: file.into(),
                expected: meta.etag.clone(),
                actual,
            });
        }
        std::fs::rename(&part, blob).map_err(|e| Error::Io {
            path: blob.to_path_buf(),
            source: e,
        })?;
        progress.finish(file);
        Ok(if resumed_at_start > 0 {
            "resumed"
        } else {
            "downloaded"
        })
    }
}

/// Files to fetch when no file was named: a Hugging Face model folder's weights, configs and
/// tokenizer; for GGUF repositories the user must choose one quantization.
fn choose_files(repo: &str, files: &[String]) -> Result<Vec<String>> {
    let ggufs: Vec<&String> = files.iter().filter(|f| f.ends_with(".gguf")).collect();
    let has_safetensors = files.iter().any(|f| f.ends_with(".safetensors"));
    if !has_safetensors {
        return match ggufs.as_slice() {
            [one] => Ok(vec![(*one).clone()]),
            [] => Err(Error::Usage(format!(
                "{repo} has neither .gguf nor .safetensors files"
            ))),
            many => Err(Error::Usage(format!(
                "{repo} has {} GGUF files; name one: herd pull {repo}:FILE, with FILE one of: {}",
                many.len(),
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        };
    }
    Ok(files
        .iter()
        .filter(|f| !f.contains('/'))
        .filter(|f| {
            f.ends_with(".safetensors")
                || f.ends_with(".json")
                || f.ends_with(".jinja")
                || f.ends_with(".model")
                || f.as_str() == "README.md"
                || f.starts_with("LICENSE")
                || f.starts_with("LICENCE")
                || f.starts_with("USE_POLICY")
        })
        .cloned()
        .collect())
}

fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn join_url(base: &str, loc: &str) -> String {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        return loc.to_string();
    }
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    if loc.starts_with('/') {
        format!("{}{loc}", &base[..host_end])
    } else {
        let dir_end = base.rfind('/').unwrap_or(base.len());
        format!("{}/{loc}", &base[..dir_end])
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// sha256 of the file for LFS etags (64 hex), git's blob sha1 for the rest (40 hex).
fn checksum(path: &Path, etag: &str, len: u64) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::Io {
        path: path.into(),
        source: e,
    })?;
    let mut buf = vec![0u8; 1 << 20];
    let mut feed = |update: &mut dyn FnMut(&[u8])| -> Result<()> {
        loop {
            let n = f.read(&mut buf).map_err(|e| Error::Io {
                path: path.into(),
                source: e,
            })?;
            if n == 0 {
                return Ok(());
            }
            update(&buf[..n]);
        }
    };
    if etag.len() == 64 {
        let mut h = sha2::Sha256::new();
        feed(&mut |b| h.update(b))?;
        Ok(format!("{:x}", h.finalize()))
    } else {
        let mut h = sha1::Sha1::new();
        h.update(format!("blob {len}\0").as_bytes());
        feed(&mut |b| h.update(b))?;
        Ok(format!("{:x}", h.finalize()))
    }
}

/// `snapshot/file` → the blob, as a relative symlink (a copy where links are not possible).
fn link(blob: &Path, at: &Path) -> Result<()> {
    if let Some(parent) = at.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::Io {
            path: parent.into(),
            source: e,
        })?;
    }
    let _ = std::fs::remove_file(at);
    #[cfg(unix)]
    {
        // snapshots/<commit>/<dirs…>/<file> → ../../(../ per dir)blobs/<etag>
        let depth = at.components().count()
            - blob
                .parent()
                .and_then(Path::parent)
                .map_or(0, |p| p.components().count())
            - 1;
        let mut rel = PathBuf::new();
        for _ in 0..depth {
            rel.push("..");
        }
        rel.push("blobs");
        rel.push(blob.file_name().unwrap_or_default());
        if std::os::unix::fs::symlink(&rel, at).is_ok() {
            return Ok(());
        }
    }
    std::fs::copy(blob, at).map(|_| ()).map_err(|e| Error::Io {
        path: at.into(),
        source: e,
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::Io {
        path: tmp.clone(),
        source: e,
    })?;
    std::fs::rename(&tmp, path).map_err(|e| Error::Io {
        path: path.into(),
        source: e,
    })
}
