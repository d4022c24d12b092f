//! GGUF, llama.cpp's model file format: a header of typed key/value metadata and tensor
//! descriptions, then the tensor data, aligned.
//!
//! Layout (little-endian): magic `GGUF`, `u32` version, `u64` tensor count, `u64` metadata
//! count, the metadata, the tensor infos (name, `u32` n_dims, `u64` dims innermost first,
//! `u32` ggml type, `u64` offset into the data section), padding to `general.alignment`
//! (32 by default), the data. Version 1 used `u32` counts and lengths; it is refused.

mod read;
mod value;
mod write;

pub use read::{GgufFile, GgufTensorInfo};
pub use value::{Value, ValueType};
pub use write::GgufWriter;

pub const MAGIC: &[u8; 4] = b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
