//! Server settings: the resolved [`ServerConfig`] the server runs with, the YAML file layer
//! ([`FileConfig`]) the CLI merges under its flags and environment, and keep-alive durations.

use hearth_engine::EngineConfig;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default port: clear of Ollama (11434), LM Studio / mistral.rs (1234), vLLM (8000) and llama.cpp (8080).
pub const DEFAULT_PORT: u16 = 8337;

/// Where the server listens.
#[derive(Debug, Clone, PartialEq)]
pub enum Listen {
    /// Host and port; port 0 picks a free one (printed on startup).
    Tcp { host: String, port: u16 },
    /// A Unix socket, created with mode 0600.
    Unix(PathBuf),
}

/// How long a model stays loaded after its last request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    Forever,
    For(Duration),
}

impl KeepAlive {
    /// Ollama's forms: a duration string (`"5m"`, `"1h30m"`, `"300ms"`, `"-1"`) or a number of seconds;
    /// zero unloads right after the request, a negative value keeps the model forever.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if let Ok(seconds) = t.parse::<f64>() {
            return Self::from_seconds(seconds);
        }
        if let Some(negative) = t.strip_prefix('-') {
            return parse_go_duration(negative).map(|_| KeepAlive::Forever);
        }
        parse_go_duration(t).map(KeepAlive::For)
    }

    pub fn from_seconds(seconds: f64) -> Result<Self, String> {
        if !seconds.is_finite() {
            return Err(format!("keep_alive {seconds} is not a finite number"));
        }
        if seconds < 0.0 {
            return Ok(KeepAlive::Forever);
        }
        Duration::try_from_secs_f64(seconds).map(KeepAlive::For).map_err(|e| format!("keep_alive {seconds}: {e}"))
    }

    pub fn is_zero(&self) -> bool {
        *self == KeepAlive::For(Duration::ZERO)
    }
}

/// Go-style durations as Ollama writes them: a sequence of `<number><unit>` with units
/// ns, us, µs, ms, s, m, h (e.g. `1h30m`, `2.5s`).
fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("'{text}' is not a duration (e.g. 30s, 5m, 1h30m, or seconds)");
    if text.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// Everything the server runs with, already resolved from flags, environment, file and defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Listen,
    /// Required as `Authorization: Bearer KEY` on every route but `/health` when set.
    pub api_key: Option<String>,
    /// Models by name (`NAME=PATH` options).
    pub models: Vec<(String, PathBuf)>,
    /// A folder whose `.gguf` files (name = file stem) and safetensors folders are served.
    pub models_dir: Option<PathBuf>,
    pub keep_alive: KeepAlive,
    /// Requests allowed to wait per model beyond those running; past it, 503.
    pub max_queue: usize,
    pub body_limit: usize,
    /// Bytes that loaded models (weights + KV cache) may take together; idle models are unloaded to make room.
    pub memory_budget: Option<u64>,
    pub engine: EngineConfig,
    /// cpu, cuda[:N] or metal[:N].
    pub device: String,
    /// How long in-flight requests may run on after SIGTERM/SIGINT before they are cancelled.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: Listen::Tcp { host: "127.0.0.1".into(), port: DEFAULT_PORT },
            api_key: None,
            models: Vec::new(),
            models_dir: None,
            keep_alive: KeepAlive::For(Duration::from_secs(300)),
            max_queue: 256,
            body_limit: 8 << 20,
            memory_budget: None,
            engine: EngineConfig::default(),
            device: "cpu".into(),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// The YAML configuration file: every field optional, same names as the long flags (with `_`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub socket: Option<PathBuf>,
    pub api_key: Option<String>,
    /// `name: path` pairs.
    pub models: Option<std::collections::BTreeMap<String, PathBuf>>,
    pub models_dir: Option<PathBuf>,
    pub keep_alive: Option<String>,
    pub max_queue: Option<usize>,
    pub max_running: Option<usize>,
    pub max_batch_tokens: Option<usize>,
    pub kv_cache: Option<Size>,
    pub block_size: Option<usize>,
    pub body_limit: Option<Size>,
    pub memory_budget: Option<Size>,
    pub device: Option<String>,
    /// Seconds.
    pub shutdown_grace: Option<u64>,
}

/// A byte size in the file: a number of bytes or a string such as `512M`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    pub fn bytes(&self) -> Result<u64, String> {
        match self {
            Size::Bytes(b) => Ok(*b),
            Size::Text(t) => parse_bytes(t),
        }
    }
}

/// `512`, `64K`, `512M`, `2G` (binary multiples; a trailing `B` or `iB` is allowed).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim().trim_end_matches("iB").trim_end_matches('B');
    let (digits, scale) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        Some((i, 'T' | 't')) => (&t[..i], 1 << 40),
        _ => (t, 1),
    };
    let n: u64 = digits.trim().parse().map_err(|_| format!("'{text}' is not a size (e.g. 512M, 2G)"))?;
    n.checked_mul(scale).ok_or_else(|| format!("'{text}' is too large"))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse { path: path.into(), message })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_accepts_ollama_forms() {
        let secs = |s| KeepAlive::For(Duration::from_secs(s));
        assert_eq!(KeepAlive::parse("5m"), Ok(secs(300)));
        assert_eq!(KeepAlive::parse("1h30m"), Ok(secs(5400)));
        assert_eq!(KeepAlive::parse("300"), Ok(secs(300)));
        assert_eq!(KeepAlive::parse("0"), Ok(secs(0)));
        assert_eq!(KeepAlive::parse("-1"), Ok(KeepAlive::Forever));
        assert_eq!(KeepAlive::parse("-1m"), Ok(KeepAlive::Forever));
        assert_eq!(KeepAlive::parse("250ms"), Ok(KeepAlive::For(Duration::from_millis(250))));
        assert!(KeepAlive::parse("5 minutes").is_err());
        assert!(KeepAlive::parse("").is_err());
        assert!(KeepAlive::parse("m").is_err());
    }

    #[test]
    fn file_config_rejects_unknown_keys_and_reads_models() {
        let c = FileConfig::parse("port: 9000\nkv_cache: 512M\nbody_limit: 1000\nmodels:\n  smol: /m/smol.gguf\n").expect("valid");
        assert_eq!(c.port, Some(9000));
        assert_eq!(c.kv_cache.expect("kv_cache").bytes(), Ok(512 << 20));
        assert_eq!(c.body_limit.expect("body_limit").bytes(), Ok(1000));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert!(parse_bytes("lots").is_err());
        assert_eq!(c.models.expect("models")["smol"], PathBuf::from("/m/smol.gguf"));
        let e = FileConfig::parse("prot: 9000\n").expect_err("typo");
        assert!(e.contains("prot"), "{e}");
    }
}
