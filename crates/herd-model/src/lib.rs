//! herd's models: reading GGUF files and Hugging Face folders into one [`ModelSpec`] plus
//! memory-mapped tensors, and the decoder-only transformer forward pass over them: a clear
//! reference on candle tensors (which autograd runs through, for training) and a fast engine
//! over herd's own kernels (for inference), tested against each other and against
//! transformers' and llama.cpp's outputs.

pub mod engine;
pub mod error;
pub mod export;
pub mod gguf;
mod gguf_model;
pub mod hf;
pub mod io;
pub mod model;
pub mod qlinear;
pub mod reference;
pub mod rng;
pub mod spec;
pub mod template;
pub mod tensor;
pub mod tokenizer;
pub mod weights;

pub use error::{Error, Result};
pub use model::{Model, ModelTensors};
pub use spec::{Arch, ModelSpec};
pub use tensor::StoredTensor;
