//! One error type for the store, each variant naming the path, model, URL or field that failed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("registry {path}: {source}")]
    Registry { path: PathBuf, source: rusqlite::Error },
    #[error("config {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("unknown source `{0}`: expected hf://org/repo[@revision][/file-or-glob], ollama://name[:tag] or file:///path")]
    UnknownScheme(String),
    #[error("invalid source `{source_text}`: {reason}")]
    BadSource { source_text: String, reason: String },
    #[error("unsafe file name `{name}` from {origin}: {reason}")]
    UnsafeName { name: String, origin: String, reason: String },
    #[error("{path}: symlink points outside {root}")]
    SymlinkEscape { path: PathBuf, root: PathBuf },
    #[error("model `{0}` not found in the store — try `hearth cache add hf://{0}` (or ollama://NAME:TAG, file:///PATH)")]
    NotFound(String),
    #[error("model name `{name}` is ambiguous: {candidates}")]
    Ambiguous { name: String, candidates: String },
    #[error("a different model is already stored as `{name}` (from {existing}); add this one under another name with --name")]
    NameTaken { name: String, existing: String },
    #[error("model `{model}` is used by {apps}; unlink it there first or pass --force")]
    InUse { model: String, apps: String },
    #[error("{url}: HTTP {status}{hint}")]
    Http { url: String, status: u16, hint: String },
    #[error("{url}: {message}")]
    Network { url: String, message: String },
    #[error("{what}: checksum mismatch: expected sha256 {expected}, got {actual}")]
    ChecksumMismatch { what: String, expected: String, actual: String },
    #[error("{what}: size mismatch: the manifest says {expected} bytes, got {actual}")]
    SizeMismatch { what: String, expected: u64, actual: u64 },
    #[error("{what}: bad response: {message}")]
    BadResponse { what: String, message: String },
    #[error("no file to fetch in {repo}: {reason}")]
    NothingToFetch { repo: String, reason: String },
    #[error("{path}: not a model (expected a .gguf file or a directory with config.json and *.safetensors)")]
    NotAModel { path: PathBuf },
    #[error("model `{model}`: {reason}")]
    Unsupported { model: String, reason: String },
    #[error("app `{0}` is not linked")]
    AppNotLinked(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attaches a path to an I/O error.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| StoreError::Io { path: path.into(), source })
    }
}
