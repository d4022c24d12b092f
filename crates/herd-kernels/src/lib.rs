//! herd's CPU kernels: ggml's block formats, their dequantisation and quantisation, dot
//! products of quantised weights with quantised activations, matrix products over a persistent
//! thread pool.
//!
//! Every fast kernel has a scalar reference beside it and a test that the two agree. This crate
//! knows nothing of models: it sees byte slices, element types and shapes.
//!
//! Layout: [`dot`] (scalar reference dot products), [`simd`] (run-time dispatch and the AVX2
//! row kernels, `simd::x86`), [`interleave`] (Q4_K rows grouped for decode), `gemm` (tiled
//! kernels for many tokens), [`mod@matmul`] (chooses
//! between them and splits the work over the [`pool`]). `examples/kernels.rs` times them on
//! real model shapes.

pub mod attention;
pub mod dequant;
pub mod dot;
mod gemm;
pub mod interleave;
pub mod matmul;
pub mod pool;
pub mod quantize;
pub mod simd;
pub mod types;
pub mod vec;

pub use dequant::dequantize_row;
pub use interleave::Layout;
pub use matmul::{SharedMut, WeightRef, matmul};
pub use pool::ThreadPool;
pub use quantize::quantize_row;
pub use simd::Isa;
pub use types::{GgmlType, QK_K};
