//! Decoder-only transformer architectures on hearth's shared layers.
//!
//! One implementation ([`transformer::Transformer`]) serves every family; [`config::ModelConfig`] holds
//! what differs (llama, mistral, qwen2, qwen3, gemma3). [`loader::load`] opens a `.gguf` file or a
//! Hugging Face safetensors directory and returns the model with its tokenizer and chat template.
//! Adding an architecture = a family entry in `config.rs` (+ a name mapping in `weights.rs` if its
//! tensors are named differently).

pub mod config;
pub mod loader;
pub mod transformer;
pub mod weights;

pub use config::{Family, ModelConfig};
pub use loader::{load, load_dense, open, LoadedModel, ModelFiles, ModelInfo};
pub use transformer::{set_device_graphs_default, SeqBatch, Transformer};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown architecture '{0}' (hearth supports llama, mistral, qwen2, qwen3, gemma3)")]
    UnknownArchitecture(String),
    #[error("missing model field '{0}'")]
    MissingField(String),
    #[error("bad model field '{field}': {reason}")]
    BadConfig { field: String, reason: String },
    #[error("missing tensor '{0}'")]
    MissingTensor(String),
    #[error("{0}")]
    Format(String),
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("needs {needed} positions but the model's context length is {context_length}")]
    ContextOverflow { needed: usize, context_length: usize },
    #[error("invalid batch: {0}")]
    BadBatch(String),
    #[error(transparent)]
    Layer(#[from] hearth_layers::LayerError),
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, ModelError>;
