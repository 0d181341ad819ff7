//! Which servers the monitor watches: `--endpoint` flags, the user's monitor config file (YAML, a list of
//! name / URL / kind), and — only when no flag names one — the default ports of hearth, Ollama, llama.cpp,
//! vLLM and the proxy. The caller finds the file (this crate reads no environment variables).
//!
//! ```yaml
//! endpoints:
//!   - name: workstation llama.cpp
//!     url: http://127.0.0.1:9090
//!     kind: llama.cpp   # optional: hearth, llama.cpp, vllm, ollama, proxy, openai; probed when absent
//! ```

use crate::source::{base_url, ServerKind, DEFAULT_ENDPOINTS};
use crate::{MonitorError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One server to watch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// Shown beside the URL in the dashboards.
    #[serde(default)]
    pub name: Option<String>,
    pub url: String,
    /// What the server is; found by probing when absent. Given, it skips detection (a server whose
    /// metrics are off still reads as llama.cpp, say).
    #[serde(default)]
    pub kind: Option<ServerKind>,
    /// Found on a default port rather than asked for: hidden while down.
    #[serde(skip)]
    pub optional: bool,
}

impl EndpointSpec {
    pub fn new(url: &str) -> EndpointSpec {
        EndpointSpec { name: None, url: url.to_string(), kind: None, optional: false }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MonitorFile {
    #[serde(default)]
    endpoints: Vec<EndpointSpec>,
}

/// The endpoints listed in the config file at `path`; a missing or empty file lists none.
pub fn load(path: &Path) -> Result<Vec<EndpointSpec>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(MonitorError::Io { path: path.to_path_buf(), source }),
    };
    parse(&text).map_err(|reason| MonitorError::Config { path: path.to_path_buf(), reason })
}

/// Parses and checks the file's text: every URL must be an absolute http(s) URL.
fn parse(text: &str) -> std::result::Result<Vec<EndpointSpec>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let file: MonitorFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    for (i, e) in file.endpoints.iter().enumerate() {
        let ok = reqwest::Url::parse(&e.url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !ok {
            return Err(format!("endpoints[{i}].url {:?} is not an http:// or https:// URL", e.url));
        }
    }
    Ok(file.endpoints)
}

/// Flags first, then the file's entries, then (only when no flag was given) the default ports; one entry
/// per server (by base URL), a later duplicate lending the earlier one its name and kind.
pub fn resolve(flags: &[String], file: Vec<EndpointSpec>) -> Vec<EndpointSpec> {
    let defaults = DEFAULT_ENDPOINTS.iter().filter(|_| flags.is_empty()).map(|url| EndpointSpec { optional: true, ..EndpointSpec::new(url) });
    let mut out: Vec<EndpointSpec> = Vec::new();
    for spec in flags.iter().map(|url| EndpointSpec::new(url)).chain(file).chain(defaults) {
        match out.iter_mut().find(|e| base_url(&e.url) == base_url(&spec.url)) {
            Some(seen) => {
                seen.name = seen.name.take().or(spec.name);
                seen.kind = seen.kind.or(spec.kind);
            }
            None => out.push(spec),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_entries_join_flags_and_defaults_only_without_flags() {
        let file = parse("endpoints:\n  - name: box\n    url: http://127.0.0.1:9090/v1\n    kind: llama.cpp\n  - url: http://127.0.0.1:8337\n").unwrap();
        assert_eq!(file[0], EndpointSpec { name: Some("box".into()), url: "http://127.0.0.1:9090/v1".into(), kind: Some(ServerKind::LlamaCpp), optional: false });
        let with_defaults = resolve(&[], file.clone());
        assert_eq!(with_defaults[0].name.as_deref(), Some("box"));
        // The hearth default port is listed once, as the file's (required) entry, not as an optional one.
        let hearth: Vec<_> = with_defaults.iter().filter(|e| base_url(&e.url) == "http://127.0.0.1:8337").collect();
        assert_eq!((hearth.len(), hearth[0].optional), (1, false));
        assert_eq!(with_defaults.len(), 1 + DEFAULT_ENDPOINTS.len());
        // A flag naming the file's server gets its name and kind; no default ports then.
        let flagged = resolve(&["http://127.0.0.1:9090".into()], file);
        assert_eq!(flagged.len(), 2);
        assert_eq!((flagged[0].url.as_str(), flagged[0].name.as_deref(), flagged[0].kind), ("http://127.0.0.1:9090", Some("box"), Some(ServerKind::LlamaCpp)));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        assert!(parse("").unwrap().is_empty());
        assert!(parse("endpoints: []\n").unwrap().is_empty());
        assert!(parse("endpoints:\n  - url: ftp://x\n").unwrap_err().contains("endpoints[0].url"));
        assert!(parse("endpoints:\n  - url: http://x:1\n    kind: tgi\n").unwrap_err().contains("unknown variant"));
        assert!(parse("endpoint:\n  - url: http://x:1\n").unwrap_err().contains("unknown field"));
        let dir = tempfile::tempdir().unwrap();
        assert!(load(&dir.path().join("missing.yaml")).unwrap().is_empty());
        let bad = dir.path().join("monitor.yaml");
        std::fs::write(&bad, "endpoints: [").unwrap();
        let err = load(&bad).unwrap_err().to_string();
        assert!(err.contains("monitor.yaml"), "{err}");
    }
}
