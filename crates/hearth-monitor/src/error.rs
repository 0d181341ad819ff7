//! The one error type of the crate; every variant names what failed (URL, path or field).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} answered HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("{url} answered something that is not {expected}: {detail}")]
    Garbage { url: String, expected: &'static str, detail: String },
    #[error("{url} stopped mid-stream after {tokens} tokens: {reason}")]
    Truncated { url: String, tokens: u64, reason: String },
    #[error("history database {path}: {source}")]
    History { path: PathBuf, #[source] source: rusqlite::Error },
    #[error("history database {path}: {reason}")]
    HistoryData { path: PathBuf, reason: String },
    #[error("prompt file {path}: {reason}")]
    Prompts { path: PathBuf, reason: String },
    #[error("monitor config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, #[source] source: std::io::Error },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl MonitorError {
    /// Maps a reqwest failure on `url` to `Unreachable`, keeping the innermost cause (it says "connection
    /// refused" where reqwest's own message says only "error sending request").
    pub fn from_reqwest(url: &str, e: &reqwest::Error) -> Self {
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(inner) = source {
            reason = inner.to_string();
            source = inner.source();
        }
        if e.is_timeout() {
            reason = format!("timed out ({reason})");
        }
        MonitorError::Unreachable { url: url.to_string(), reason }
    }
}
