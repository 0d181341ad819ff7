//! The user's YAML config (`config get|set|edit`) and the resolved locations the store works on.
//! This crate reads no environment variables: the CLI layers defaults < config file < env < flags and hands
//! the result in.

use crate::error::{IoContext, Result, StoreError};
use crate::link::LinkMode;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where hearth's blob store and registry live (default: the user's cache dir, `hearth/`).
    pub cache_dir: Option<PathBuf>,
    /// Upper bound for hearth's own store; with `auto_clean`, least recently used models are evicted.
    pub max_cache_size_gb: Option<f64>,
    /// Evict after `add` when the store is over `max_cache_size_gb`.
    pub auto_clean: bool,
    /// `clean` removes models no app uses and not used for this many days.
    pub clean_after_days: u32,
    /// Whether `sync` indexes Ollama's store.
    pub ollama_sync: bool,
    /// LM Studio's models folder (default `~/.lmstudio/models`).
    pub lmstudio_dir: Option<PathBuf>,
    /// More folders for `dedup` to look in.
    pub scan_dirs: Vec<PathBuf>,
    /// How `dedup` and `link` share bytes: auto (reflink, else hard link, else symlink), or one of them.
    pub link_mode: LinkMode,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            cache_dir: None,
            max_cache_size_gb: None,
            auto_clean: false,
            clean_after_days: 30,
            ollama_sync: true,
            lmstudio_dir: None,
            scan_dirs: Vec::new(),
            link_mode: LinkMode::Auto,
        }
    }
}

impl Config {
    /// Reads the config file; a missing file is the defaults.
    pub fn load(path: &Path) -> Result<Config> {
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim().is_empty() => Ok(Config::default()),
            Ok(text) => serde_yaml::from_str(&text).map_err(|e| StoreError::Config { path: path.to_path_buf(), message: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(StoreError::Io { path: path.to_path_buf(), source: e }),
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_yaml::to_string(self).map_err(|e| StoreError::Config { path: path.to_path_buf(), message: e.to_string() })?;
        crate::fsutil::write_atomic(path, text.as_bytes())
    }

    /// The value of one key, as YAML.
    pub fn get(&self, key: &str, path: &Path) -> Result<String> {
        let map = self.as_mapping(path)?;
        let value = map.get(key).ok_or_else(|| unknown_key(key, path))?;
        let text = serde_yaml::to_string(value).map_err(|e| StoreError::Config { path: path.to_path_buf(), message: e.to_string() })?;
        Ok(text.trim_end().to_string())
    }

    /// Sets one key from a YAML value; the result must still be a valid config.
    pub fn set(&self, key: &str, value: &str, path: &Path) -> Result<Config> {
        let mut map = self.as_mapping(path)?;
        if !map.contains_key(key) {
            return Err(unknown_key(key, path));
        }
        let parsed: serde_yaml::Value =
            serde_yaml::from_str(value).map_err(|e| StoreError::Config { path: path.to_path_buf(), message: format!("{key}: {e}") })?;
        map.insert(serde_yaml::Value::from(key), parsed);
        serde_yaml::from_value(serde_yaml::Value::Mapping(map))
            .map_err(|e| StoreError::Config { path: path.to_path_buf(), message: format!("{key}: {e}") })
    }

    fn as_mapping(&self, path: &Path) -> Result<serde_yaml::Mapping> {
        match serde_yaml::to_value(self) {
            Ok(serde_yaml::Value::Mapping(m)) => Ok(m),
            Ok(_) => Err(StoreError::Config { path: path.to_path_buf(), message: "config is not a mapping".into() }),
            Err(e) => Err(StoreError::Config { path: path.to_path_buf(), message: e.to_string() }),
        }
    }
}

fn unknown_key(key: &str, path: &Path) -> StoreError {
    let known = "cache_dir, max_cache_size_gb, auto_clean, clean_after_days, ollama_sync, lmstudio_dir, scan_dirs, link_mode";
    StoreError::Config { path: path.to_path_buf(), message: format!("unknown key `{key}` (known: {known})") }
}

/// Where everything is, resolved by the caller from flags, env and config.
#[derive(Debug, Clone)]
pub struct Locations {
    pub store_dir: PathBuf,
    pub hf_hub_cache: PathBuf,
    pub ollama_models: PathBuf,
    pub lmstudio_models: PathBuf,
    pub scan_dirs: Vec<PathBuf>,
}

/// The remote endpoints and download behaviour.
#[derive(Debug, Clone)]
pub struct Remotes {
    pub hf_endpoint: String,
    pub hf_token: Option<String>,
    pub ollama_registry: String,
    /// Attempts per request on 5xx / connection errors.
    pub attempts: u32,
    /// First backoff delay; doubles per attempt.
    pub backoff_ms: u64,
    /// Files downloaded at once.
    pub parallel: usize,
    pub progress: bool,
}

impl Default for Remotes {
    fn default() -> Remotes {
        Remotes {
            hf_endpoint: "https://huggingface.co".into(),
            hf_token: None,
            ollama_registry: "https://registry.ollama.ai".into(),
            attempts: 5,
            backoff_ms: 500,
            parallel: 4,
            progress: false,
        }
    }
}

/// Creates the directory if needed (used for the store's own folders).
pub(crate) fn ensure_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).at(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_validates_types_and_keys() {
        let p = Path::new("/nonexistent/config.yaml");
        let c = Config::default();
        let c2 = c.set("max_cache_size_gb", "12.5", p).unwrap();
        assert_eq!(c2.max_cache_size_gb, Some(12.5));
        assert_eq!(c2.get("max_cache_size_gb", p).unwrap(), "12.5");
        assert!(c.set("max_cache_size_gb", "lots", p).is_err());
        assert!(c.set("no_such_key", "1", p).is_err());
        assert!(c.set("link_mode", "teleport", p).is_err());
        assert_eq!(c.set("link_mode", "hardlink", p).unwrap().link_mode, LinkMode::Hardlink);
    }
}
