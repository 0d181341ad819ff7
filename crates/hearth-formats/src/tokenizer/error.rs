//! Errors of tokenizer construction, encoding and export.

use std::path::PathBuf;

/// Why a tokenizer could not be built or used. Each variant names the metadata key, file or id at fault.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("GGUF metadata key `{key}` is missing")]
    MissingKey { key: &'static str },
    #[error("GGUF metadata key `{key}` has the wrong type (expected {expected})")]
    WrongType {
        key: &'static str,
        expected: &'static str,
    },
    #[error("GGUF metadata key `{key}` has {found} entries, expected at least {expected}")]
    TooShort {
        key: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("unsupported tokenizer model `{0}` (supported: gpt2, llama)")]
    UnsupportedModel(String),
    #[error("unsupported BPE pre-tokenizer `{0}`")]
    UnsupportedPre(String),
    #[error("the model asks for a BOS token but `tokenizer.ggml.bos_token_id` is missing or out of range")]
    MissingBos,
    #[error("the model asks for an EOS token but `tokenizer.ggml.eos_token_id` is missing or out of range")]
    MissingEos,
    #[error("the vocabulary has no token for byte 0x{byte:02X}")]
    MissingByteToken { byte: u8 },
    #[error("token id {id} is outside the vocabulary of {vocab_size} tokens")]
    InvalidTokenId { id: u32, vocab_size: usize },
    #[error("pre-tokenizer regex `{pattern}` does not compile: {message}")]
    Regex { pattern: String, message: String },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("Hugging Face tokenizer failed while {context}: {message}")]
    Hf {
        context: &'static str,
        message: String,
    },
}

impl TokenizerError {
    pub(crate) fn hf(context: &'static str, err: impl std::fmt::Display) -> Self {
        TokenizerError::Hf {
            context,
            message: err.to_string(),
        }
    }
}
