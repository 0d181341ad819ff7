//! Errors from reading and writing safetensors directories; each names the file that failed.

use crate::one_line;
use std::path::PathBuf;

/// A safetensors model directory or file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    #[error("{}: cannot read: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: no model.safetensors or model.safetensors.index.json", dir.display())]
    NoWeights { dir: PathBuf },
    #[error("{}: invalid safetensors header: {source}", path.display())]
    Header { path: PathBuf, source: ::safetensors::SafeTensorError },
    #[error("{}: invalid JSON: {source}", path.display())]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{}: {}: {}", path.display(), one_line(field), one_line(problem))]
    Invalid { path: PathBuf, field: String, problem: String },
    #[error("{}: weight_map names shard '{}', which does not exist", index.display(), one_line(shard))]
    MissingShard { index: PathBuf, shard: String },
    #[error("{}: weight_map puts tensor '{}' in {}, which does not contain it", index.display(), one_line(tensor), shard.display())]
    TensorNotInShard { index: PathBuf, tensor: String, shard: PathBuf },
    #[error("{}: no tensor named '{}'", dir.display(), one_line(name))]
    TensorNotFound { dir: PathBuf, name: String },
    #[error("{}: tensor '{}' has dtype {}, which hearth does not support (F32, F16, BF16 only)", path.display(), one_line(name), one_line(dtype))]
    UnsupportedDtype { path: PathBuf, name: String, dtype: String },
    #[error("{}: tensor '{}': {}", path.display(), one_line(name), one_line(problem))]
    BadTensor { path: PathBuf, name: String, problem: String },
}
