//! Helpers shared by herd-eval's tests: where `../shared` and the repository's task files are.
#![allow(dead_code)]

use std::path::PathBuf;

pub mod fake_server;

/// The read-only data folder beside the repository (`../shared`), or `$HERD_SHARED`.
pub fn shared() -> PathBuf {
    match std::env::var_os("HERD_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

/// A task file of the repository's `tasks/` folder (its data paths lead to `../shared`).
pub fn task(name: &str) -> herd_eval::task::Task {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tasks")
        .join(name);
    herd_eval::task::Task::load(&path, None).unwrap()
}

pub fn fixture(name: &str) -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}
