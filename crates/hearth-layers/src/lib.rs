//! Shared building blocks of decoder-only transformers on candle: the device switch (the one place that
//! knows about `cuda` / `metal` features), a linear layer that is dense or quantized by load-time choice,
//! RMSNorm, rotary embeddings with their scaling variants, and attention over a paged KV cache.
//!
//! Nothing here knows about files, tokenizers or HTTP: layers take tensors and return tensors.

pub mod attention;
pub mod cpu;
pub mod device;
pub mod kv_cache;
pub mod linear;
pub mod norm;
pub mod quant;
pub mod rope;

pub use attention::{first_visible_position, paged_attention, AttentionParams, SeqContext};
pub use device::{select_device, DeviceSpec};
pub use kv_cache::{KvCacheConfig, PagedKvCache};
pub use linear::Linear;
pub use norm::RmsNorm;
pub use rope::{RopeConfig, RopeScaling, RopeStyle, RotaryEmbedding};

/// Errors from layer construction and evaluation.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("device '{spec}' is not available: {reason}")]
    Device { spec: String, reason: String },
    #[error("invalid shape for {what}: {detail}")]
    Shape { what: String, detail: String },
}

pub type Result<T> = std::result::Result<T, LayerError>;
