//! One monitored server: what kind it is (found by probing its HTTP API), and one reading of its running
//! models, token counters and in-flight tokens.

use crate::prom::{self, Role};
use crate::{MonitorError, Result};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The path where `hearth proxy` exports its own counters (never forwarded).
pub const PROXY_METRICS_PATH: &str = "/_hearth/metrics";

/// Default ports probed by `hearth dash` when no endpoint is given: hearth, Ollama, llama.cpp, vLLM, the proxy.
pub const DEFAULT_ENDPOINTS: &[&str] = &[
    "http://127.0.0.1:8337",
    "http://127.0.0.1:11434",
    "http://127.0.0.1:8080",
    "http://127.0.0.1:8000",
    "http://127.0.0.1:11435",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    Hearth,
    #[serde(rename = "llama.cpp")]
    LlamaCpp,
    Vllm,
    Ollama,
    /// `hearth proxy` in front of another server.
    Proxy,
    /// Answers the OpenAI API but exports no metrics we know.
    OpenAi,
}

impl ServerKind {
    pub fn label(self) -> &'static str {
        match self {
            ServerKind::Hearth => "hearth",
            ServerKind::LlamaCpp => "llama.cpp",
            ServerKind::Vllm => "vLLM",
            ServerKind::Ollama => "Ollama",
            ServerKind::Proxy => "proxy",
            ServerKind::OpenAi => "OpenAI API",
        }
    }

    fn metrics_path(self) -> Option<&'static str> {
        match self {
            ServerKind::Hearth | ServerKind::LlamaCpp | ServerKind::Vllm => Some("/metrics"),
            ServerKind::Proxy => Some(PROXY_METRICS_PATH),
            ServerKind::Ollama | ServerKind::OpenAi => None,
        }
    }

    /// Whether `/api/ps` answers (Ollama itself, or a proxy forwarding to it).
    fn ollama_api(self) -> bool {
        matches!(self, ServerKind::Ollama | ServerKind::Proxy)
    }
}

/// A model the server holds in memory now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningModel {
    pub name: String,
    /// Bytes in memory as the server reports them (Ollama `size`), when it does.
    pub size_bytes: Option<u64>,
    pub vram_bytes: Option<u64>,
}

/// One poll of one server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub models: Vec<RunningModel>,
    /// Generated tokens so far: finished requests' counter plus tokens of requests still running.
    pub generated_tokens: Option<f64>,
    /// Seconds spent generating so far (only llama.cpp exports it).
    pub generation_seconds: Option<f64>,
    pub requests_running: Option<f64>,
}

/// A probed endpoint and the HTTP client that reads it.
#[derive(Debug, Clone)]
pub struct Source {
    pub url: String,
    pub kind: ServerKind,
    /// Model names from `/v1/models` or `/api/tags` at probe time (for servers without `/api/ps`).
    pub served_models: Vec<String>,
    client: reqwest::Client,
}

/// Strips a trailing `/` and `/v1` so paths can be appended.
pub fn base_url(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    trimmed.strip_suffix("/v1").unwrap_or(trimmed).to_string()
}

pub fn client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(2)))
        .build()
        .map_err(|e| MonitorError::Invalid { field: "http client", reason: e.to_string() })
}

/// GET `url`; the body as text when the status is 2xx.
pub async fn get_text(client: &reqwest::Client, url: &str) -> Result<String> {
    let resp = client.get(url).send().await.map_err(|e| MonitorError::from_reqwest(url, &e))?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| MonitorError::from_reqwest(url, &e))?;
    if !status.is_success() {
        let body: String = body.chars().take(200).collect();
        return Err(MonitorError::Status { url: url.to_string(), status: status.as_u16(), body });
    }
    Ok(body)
}

pub async fn get_json(client: &reqwest::Client, url: &str) -> Result<serde_json::Value> {
    let text = get_text(client, url).await?;
    serde_json::from_str(&text).map_err(|e| MonitorError::Garbage { url: url.to_string(), expected: "JSON", detail: e.to_string() })
}

impl Source {
    /// Finds what answers at `url`: Prometheus `/metrics` (by name prefix), the proxy's metrics, Ollama's
    /// `/api/version`, or an OpenAI `/v1/models`.
    pub async fn probe(url: &str) -> Result<Source> {
        Source::probe_as(url, None).await
    }

    /// [`Source::probe`], or, when the kind is known (from the monitor config), no detection: the server
    /// need only answer its model list.
    pub async fn probe_as(url: &str, kind: Option<ServerKind>) -> Result<Source> {
        let base = base_url(url);
        let client = client(Duration::from_secs(2))?;
        let detected = match kind {
            Some(kind) => kind,
            None => detect_kind(&client, &base).await?,
        };
        let mut source = Source { url: base, kind: detected, served_models: Vec::new(), client };
        source.served_models = match (kind, source.list_models().await) {
            (_, Ok(models)) => models,
            // Without detection, the model list is what shows the server is there at all.
            (Some(_), Err(e)) => return Err(e),
            (None, Err(_)) => Vec::new(),
        };
        Ok(source)
    }

    /// One reading. Errors only when the server itself cannot be read; optional extras (`/slots`) that
    /// fail are left out.
    pub async fn read(&self) -> Result<Reading> {
        let mut reading = Reading::default();
        if let Some(path) = self.kind.metrics_path() {
            let url = format!("{}{path}", self.url);
            let text = get_text(&self.client, &url).await?;
            let samples = prom::parse(&text).map_err(|detail| MonitorError::Garbage { url, expected: "Prometheus metrics", detail })?;
            reading.generated_tokens = prom::sum(&samples, Role::GeneratedTokens);
            reading.generation_seconds = prom::sum(&samples, Role::GenerationSeconds);
            reading.requests_running = prom::sum(&samples, Role::RequestsRunning);
            reading.models = prom::by_model(&samples, Role::GeneratedTokens)
                .into_iter()
                .map(|(name, _)| RunningModel { name, size_bytes: None, vram_bytes: None })
                .collect();
        }
        if self.kind == ServerKind::LlamaCpp {
            // llama.cpp adds to its counters only when a request ends; the live part is in /slots.
            if let Ok(inflight) = self.slots_decoded().await {
                reading.generated_tokens = Some(reading.generated_tokens.unwrap_or(0.0) + inflight);
            }
        }
        if self.kind.ollama_api() {
            reading.models = self.ollama_ps().await?;
        }
        if reading.models.is_empty() {
            reading.models = self.served_models.iter().map(|name| RunningModel { name: name.clone(), size_bytes: None, vram_bytes: None }).collect();
        }
        Ok(reading)
    }

    /// Tokens decoded so far by llama.cpp slots that are processing a request now.
    async fn slots_decoded(&self) -> Result<f64> {
        let url = format!("{}/slots", self.url);
        let slots = get_json(&self.client, &url).await?;
        let slots = slots.as_array().ok_or(MonitorError::Garbage { url, expected: "a list of slots", detail: "not an array".into() })?;
        Ok(slots
            .iter()
            .filter(|s| s["is_processing"].as_bool().unwrap_or(false))
            .filter_map(|s| s["next_token"].as_array().and_then(|a| a.first()).and_then(|t| t["n_decoded"].as_f64()))
            .sum())
    }

    async fn ollama_ps(&self) -> Result<Vec<RunningModel>> {
        let url = format!("{}/api/ps", self.url);
        let ps: OllamaPs = serde_json::from_value(get_json(&self.client, &url).await?)
            .map_err(|e| MonitorError::Garbage { url, expected: "an Ollama /api/ps answer", detail: e.to_string() })?;
        Ok(ps.models.into_iter().map(|m| RunningModel { name: m.name, size_bytes: m.size, vram_bytes: m.size_vram }).collect())
    }

    async fn list_models(&self) -> Result<Vec<String>> {
        if self.kind.ollama_api() {
            let tags = get_json(&self.client, &format!("{}/api/tags", self.url)).await?;
            return Ok(names(&tags["models"], "name"));
        }
        let models = get_json(&self.client, &format!("{}/v1/models", self.url)).await?;
        Ok(names(&models["data"], "id"))
    }
}

fn names(list: &serde_json::Value, key: &str) -> Vec<String> {
    list.as_array().map(|a| a.iter().filter_map(|m| m[key].as_str().map(str::to_string)).collect()).unwrap_or_default()
}

#[derive(Deserialize)]
struct OllamaPs {
    #[serde(default)]
    models: Vec<OllamaPsModel>,
}

#[derive(Deserialize)]
struct OllamaPsModel {
    name: String,
    size: Option<u64>,
    size_vram: Option<u64>,
}

async fn detect_kind(client: &reqwest::Client, base: &str) -> Result<ServerKind> {
    let metrics_url = format!("{base}/metrics");
    match get_text(client, &metrics_url).await {
        Ok(text) => {
            if let Some(kind) = kind_from_metrics(&text) {
                return Ok(kind);
            }
        }
        // Nothing listens: no point probing further paths.
        Err(e @ MonitorError::Unreachable { .. }) => return Err(e),
        Err(_) => {}
    }
    if get_text(client, &format!("{base}{PROXY_METRICS_PATH}")).await.is_ok() {
        return Ok(ServerKind::Proxy);
    }
    if let Ok(v) = get_json(client, &format!("{base}/api/version")).await {
        if v["version"].is_string() {
            return Ok(ServerKind::Ollama);
        }
    }
    match get_json(client, &format!("{base}/v1/models")).await {
        Ok(v) if v["data"].is_array() => Ok(ServerKind::OpenAi),
        Ok(_) => Err(MonitorError::Garbage { url: base.to_string(), expected: "an LLM server", detail: "no /metrics, /api/version or /v1/models".into() }),
        Err(e) => Err(e),
    }
}

/// The server kind from the prefix of its metric names.
pub fn kind_from_metrics(text: &str) -> Option<ServerKind> {
    let samples = prom::parse(text).ok()?;
    samples.iter().find_map(|s| match prom::prefix(&s.name)? {
        "llamacpp" => Some(ServerKind::LlamaCpp),
        "vllm" => Some(ServerKind::Vllm),
        "hearth" => Some(ServerKind::Hearth),
        "hearth_proxy" => Some(ServerKind::Proxy),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_strips_v1_and_slashes() {
        assert_eq!(base_url("http://h:1/v1/"), "http://h:1");
        assert_eq!(base_url("http://h:1/"), "http://h:1");
    }

    #[test]
    fn kind_from_metric_prefix() {
        assert_eq!(kind_from_metrics("hearth:num_requests_running 0\n"), Some(ServerKind::Hearth));
        assert_eq!(kind_from_metrics("vllm:num_requests_running{model_name=\"m\"} 0\n"), Some(ServerKind::Vllm));
        assert_eq!(kind_from_metrics("process_cpu_seconds_total 3\n"), None);
    }
}
