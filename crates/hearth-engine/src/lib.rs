//! The inference engine: requests, sequences, a continuous-batching scheduler over a paged KV cache,
//! sampling, and the engine thread with its cloneable [`EngineHandle`].
//!
//! It can fail only on model, tensor and device errors or bad requests; it never opens a socket and
//! knows nothing of the model store's layout (callers hand it a loaded model).

mod blocks;
mod core;
mod events;
mod handle;
mod metrics;
pub mod prompt;
pub mod sampling;
mod score;
mod sequence;

pub use blocks::{block_hash, BlockAllocator, BlockHash};
pub use core::{EngineConfig, EngineCore, GenerateRequest, RequestLimits};
pub use events::{GenerationEvent, GenerationStats, TokenEvent};
pub use handle::{CancelGuard, EngineHandle, Generation, ModelContext};
pub use metrics::{EngineMetrics, MetricsSnapshot};
pub use score::{score_like_generation, score_tokens};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("the prompt has {prompt} tokens but at most {limit} fit (context length {context}, KV cache {capacity} tokens)")]
    PromptTooLong { prompt: usize, limit: usize, context: usize, capacity: usize },
    #[error("engine configuration: {0}")]
    Config(String),
    #[error("the engine has stopped")]
    Stopped,
    #[error(transparent)]
    Model(#[from] hearth_models::ModelError),
    #[error(transparent)]
    Layer(#[from] hearth_layers::LayerError),
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, EngineError>;
