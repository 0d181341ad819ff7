//! Errors from reading and writing safetensors directories; each names the file that failed.

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
    #[error("{}: {field}: {problem}", path.display())]
    Invalid { path: PathBuf, field: String, problem: String },
    #[error("{}: weight_map names shard '{shard}', which does not exist", index.display())]
    MissingShard { index: PathBuf, shard: String },
    #[error("{}: weight_map puts tensor '{tensor}' in {}, which does not contain it", index.display(), shard.display())]
    TensorNotInShard { index: PathBuf, tensor: String, shard: PathBuf },
    #[error("{}: no tensor named '{name}'", dir.display())]
    TensorNotFound { dir: PathBuf, name: String },
    #[error("{}: tensor '{name}' has dtype {dtype}, which hearth does not support (F32, F16, BF16 only)", path.display())]
    UnsupportedDtype { path: PathBuf, name: String, dtype: String },
    #[error("{}: tensor '{name}': {problem}", path.display())]
    BadTensor { path: PathBuf, name: String, problem: String },
}
