//! Evaluating language models, reproducibly: multiple choice by log-likelihood (as
//! lm-evaluation-harness scores it), generation with answer extraction and exact match, LLM
//! judges (MT-bench single grading, pairwise comparison with a baseline in both orders),
//! Elo and Bradley–Terry ratings with bootstrap intervals, a SQLite store of every prompt and
//! raw answer, and HTML/Markdown reports.
//!
//! Not serving (that is `herd-server`) and not the model maths (that is `herd-model`): a local
//! model is reached through herd's engine, anything else through an OpenAI-compatible endpoint.

pub mod answers;
pub mod backend;
pub mod data;
pub mod error;
pub mod extract;
pub mod import;
pub mod judge;
pub mod mc;
pub mod ratings;
pub mod report;
pub mod runner;
pub mod stats;
pub mod store;
pub mod task;

pub use error::{Error, Result};
