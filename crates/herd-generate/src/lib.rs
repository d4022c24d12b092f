//! Turning a model's logits into text: samplers, stop conditions, streaming generation.
//!
//! Not the model maths (that is `herd-model`), not HTTP (that is `herd-server`).

pub mod generate;
pub mod json;
pub use herd_model::rng;
pub mod sampler;
pub mod stop;

pub use generate::{FinishReason, GenerateOptions, Generated, Session, Truncation, generate};
pub use sampler::{Sampler, SamplerConfig};
pub use stop::StopMatcher;
