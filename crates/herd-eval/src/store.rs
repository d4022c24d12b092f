//! The results store: one SQLite file (`herd-eval.sqlite` by default) holding every run with
//! what makes it reproducible (model file hash, task file text and version, seed, sampler and
//! batch settings) and every item's prompt as sent, raw answer and score.
//!
//! Each item is written in its own transaction, after it is complete, so a run killed at any
//! point holds only whole items, and resuming it computes exactly the items that are missing.

use std::collections::HashSet;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    task_version TEXT NOT NULL,
    kind TEXT NOT NULL,
    task_sha256 TEXT NOT NULL,
    task_text TEXT NOT NULL,
    model TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    backend TEXT NOT NULL,
    settings TEXT NOT NULL,
    created TEXT NOT NULL,
    finished TEXT,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS items (
    run_id TEXT NOT NULL REFERENCES runs(id),
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    category TEXT NOT NULL,
    prompt TEXT NOT NULL,
    output TEXT NOT NULL,
    score REAL,
    detail TEXT NOT NULL,
    written TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
";

/// What identifies a run and makes it reproducible.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    pub id: String,
    pub task: String,
    pub task_version: String,
    pub kind: String,
    pub task_sha256: String,
    pub task_text: String,
    pub model: String,
    pub model_sha256: String,
    pub backend: String,
    /// Seed, sampler, batch size, few-shot count, judge … as JSON.
    pub settings: Value,
    pub created: String,
    pub finished: Option<String>,
    pub summary: Option<Value>,
}

/// One finished item.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ItemRow {
    pub key: String,
    /// Position in the task, for stable ordering.
    pub seq: i64,
    pub category: String,
    /// Prompts as sent (text, token ids, messages).
    pub prompt: Value,
    /// Raw answers (log-likelihoods, generated text, judge text).
    pub output: Value,
    pub score: Option<f64>,
    /// Anything the metrics need beyond the score (parsed verdicts, extracted answers).
    pub detail: Value,
}

pub struct Store {
    conn: Connection,
}

fn json(v: &Value) -> String {
    v.to_string()
}

fn parse(s: String) -> Value {
    serde_json::from_str(&s).unwrap_or(Value::String(s))
}

pub fn now() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // UTC, as ISO 8601, from the civil-from-days algorithm (no time crate needed).
    let (days, secs) = (t / 86400, t % 86400);
    let z = days as i64 + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let conn = Connection::open(path)?;
        // WAL: readers (a report) do not block the running evaluation; FULL sync so that a
        // committed item survives a crash of the machine, not only of the process.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store { conn })
    }

    /// Creates the run, or checks that an existing run of that id is the same evaluation
    /// (same task text, model file and settings) so that resuming cannot mix two.
    pub fn begin(&self, info: &RunInfo) -> Result<bool> {
        if let Some(old) = self.run(&info.id)? {
            let same = old.task_sha256 == info.task_sha256
                && old.model_sha256 == info.model_sha256
                && old.settings == info.settings;
            if !same {
                return Err(Error::Usage(format!(
                    "run '{}' exists with a different {}: choose another --run-id",
                    info.id,
                    if old.task_sha256 != info.task_sha256 {
                        "task file"
                    } else if old.model_sha256 != info.model_sha256 {
                        "model file"
                    } else {
                        "set of settings"
                    }
                )));
            }
            return Ok(false);
        }
        self.conn.execute(
            "INSERT INTO runs (id, task, task_version, kind, task_sha256, task_text, model, model_sha256, backend, settings, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                info.id,
                info.task,
                info.task_version,
                info.kind,
                info.task_sha256,
                info.task_text,
                info.model,
                info.model_sha256,
                info.backend,
                json(&info.settings),
                info.created
            ],
        )?;
        Ok(true)
    }

    pub fn run(&self, id: &str) -> Result<Option<RunInfo>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, task, task_version, kind, task_sha256, task_text, model, model_sha256, backend, settings, created, finished, summary FROM runs WHERE id = ?1",
                params![id],
                row_to_run,
            )
            .optional()?)
    }

    /// Every run, oldest first.
    pub fn runs(&self) -> Result<Vec<RunInfo>> {
        let mut st = self.conn.prepare(
            "SELECT id, task, task_version, kind, task_sha256, task_text, model, model_sha256, backend, settings, created, finished, summary FROM runs ORDER BY created, id",
        )?;
        let rows = st.query_map([], row_to_run)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Keys of the items already done.
    pub fn done(&self, run: &str) -> Result<HashSet<String>> {
        let mut st = self
            .conn
            .prepare("SELECT key FROM items WHERE run_id = ?1")?;
        let rows = st.query_map(params![run], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Writes finished items, each in its own transaction.
    pub fn put(&mut self, run: &str, items: &[ItemRow]) -> Result<()> {
        for it in items {
            let tx = self.conn.transaction()?;
            tx.execute(
                "INSERT INTO items (run_id, key, seq, category, prompt, output, score, detail, written)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    run,
                    it.key,
                    it.seq,
                    it.category,
                    json(&it.prompt),
                    json(&it.output),
                    it.score,
                    json(&it.detail),
                    now()
                ],
            )?;
            tx.commit()?;
        }
        Ok(())
    }

    pub fn items(&self, run: &str) -> Result<Vec<ItemRow>> {
        let mut st = self.conn.prepare(
            "SELECT key, seq, category, prompt, output, score, detail FROM items WHERE run_id = ?1 ORDER BY seq, key",
        )?;
        let rows = st.query_map(params![run], |r| {
            Ok(ItemRow {
                key: r.get(0)?,
                seq: r.get(1)?,
                category: r.get(2)?,
                prompt: parse(r.get(3)?),
                output: parse(r.get(4)?),
                score: r.get(5)?,
                detail: parse(r.get(6)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn finish(&self, run: &str, summary: &Value) -> Result<()> {
        self.conn.execute(
            "UPDATE runs SET finished = ?2, summary = ?3 WHERE id = ?1",
            params![run, now(), json(summary)],
        )?;
        Ok(())
    }
}

fn row_to_run(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunInfo> {
    Ok(RunInfo {
        id: r.get(0)?,
        task: r.get(1)?,
        task_version: r.get(2)?,
        kind: r.get(3)?,
        task_sha256: r.get(4)?,
        task_text: r.get(5)?,
        model: r.get(6)?,
        model_sha256: r.get(7)?,
        backend: r.get(8)?,
        settings: parse(r.get(9)?),
        created: r.get(10)?,
        finished: r.get(11)?,
        summary: r.get::<_, Option<String>>(12)?.map(parse),
    })
}

/// Hex sha256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a model: the file, or for a folder the files that define the model (config,
/// tokenizer, weights), each name and content hashed in name order.
pub fn model_sha256(path: &Path) -> Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut files = vec![];
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        for e in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
            let p = e.map_err(|e| Error::io(path, e))?.path();
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string();
            let keep = name.ends_with(".safetensors")
                || name.ends_with(".json") && !name.starts_with("golden")
                || name.ends_with(".jinja")
                || name.ends_with(".model");
            if keep {
                files.push((name, p));
            }
        }
        files.sort();
    } else {
        files.push((String::new(), path.to_path_buf()));
    }
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for (name, p) in files {
        h.update(name.as_bytes());
        let mut f = std::fs::File::open(&p).map_err(|e| Error::io(&p, e))?;
        loop {
            let n = f.read(&mut buf).map_err(|e| Error::io(&p, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
