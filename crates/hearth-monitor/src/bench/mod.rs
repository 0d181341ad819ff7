//! `hearth bench run`: a load generator against an OpenAI- or Ollama-API endpoint with the metrics of
//! `vllm bench serve`, so numbers compare:
//! - **TTFT**: request sent → first chunk with text;
//! - **TPOT**: per request `(E2E − TTFT) / (output tokens − 1)` (requests of one token have none);
//! - **ITL**: the gaps between successive chunks with text, pooled over all requests;
//! - **E2E**: request sent → stream ended;
//! - output throughput = output tokens / run duration; request throughput = completed / duration.
//!
//! Failed and cut-off requests are kept in the result and marked; the run is `partial` when some failed
//! or it was interrupted, `failed` when none completed.

mod client;
pub mod prompts;
pub mod report;
pub mod stats;

use crate::system::{local_port, pid_listening_on, SystemSampler};
use crate::{source, MonitorError, Result};
use prompts::Prompt;
use serde::{Deserialize, Serialize};
use stats::Summary;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    OpenAi,
    Ollama,
}

impl std::str::FromStr for Api {
    type Err = MonitorError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "openai" => Ok(Api::OpenAi),
            "ollama" => Ok(Api::Ollama),
            other => Err(MonitorError::Invalid { field: "--api", reason: format!("{other:?} (expected openai or ollama)") }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Complete,
    Partial,
    Failed,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub endpoint: String,
    pub api: Api,
    pub model: String,
    /// How the prompts were chosen (`standard`, `random:N`, a path), kept in the history.
    pub prompts_label: String,
    pub prompts: Vec<Prompt>,
    pub concurrency: usize,
    /// Requests in all; prompts are used in turn. Defaults to one per prompt.
    pub requests: Option<usize>,
    pub max_tokens: u32,
    /// Per-request limit (connect to end of stream).
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestResult {
    pub prompt: String,
    pub ok: bool,
    pub error: Option<String>,
    pub ttft_ms: Option<f64>,
    pub e2e_ms: f64,
    pub output_tokens: u64,
    pub prompt_tokens: Option<u64>,
    pub itl_ms: Vec<f64>,
    /// Decode speed the server reported for this request (llama.cpp `timings`, Ollama `eval_*`).
    pub server_tok_s: Option<f64>,
}

impl RequestResult {
    pub fn tpot_ms(&self) -> Option<f64> {
        let ttft = self.ttft_ms?;
        (self.output_tokens > 1).then(|| (self.e2e_ms - ttft) / (self.output_tokens - 1) as f64)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// Row id once saved in the history.
    pub id: Option<i64>,
    pub created_ms: i64,
    pub endpoint: String,
    pub api: Api,
    pub model: String,
    pub prompts: String,
    pub prompt_count: usize,
    pub concurrency: usize,
    pub max_tokens: u32,
    pub status: RunStatus,
    /// Why the run is partial or failed.
    pub note: Option<String>,
    pub duration_s: f64,
    pub requests: usize,
    pub completed: usize,
    pub failed: usize,
    pub output_tokens: u64,
    pub output_tok_s: f64,
    pub request_throughput: f64,
    /// Mean per-request decode speed, 1000 / TPOT.
    pub avg_tok_s: f64,
    /// Mean of the server's own per-request decode speed, where it reports one.
    pub server_tok_s: Option<f64>,
    pub ttft_ms: Summary,
    pub tpot_ms: Summary,
    pub itl_ms: Summary,
    pub e2e_ms: Summary,
    /// Peak RSS of the local server process during the run (None for remote endpoints).
    pub peak_memory_bytes: Option<u64>,
    pub per_request: Vec<RequestResult>,
}

/// Runs the benchmark until every request is done or `stop` resolves (Ctrl-C): then the requests still
/// in flight are abandoned and the result is marked partial.
pub async fn run(config: &BenchConfig, stop: impl std::future::Future<Output = ()>) -> Result<BenchResult> {
    validate(config)?;
    let base = source::base_url(&config.endpoint);
    // A fresh connection per request: servers that close kept-alive connections after a few requests
    // (llama-server does) would otherwise fail a request that reused one.
    let client = reqwest::Client::builder()
        .timeout(config.request_timeout)
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| MonitorError::Invalid { field: "http client", reason: e.to_string() })?;
    let total = config.requests.unwrap_or(config.prompts.len());
    let peak = Arc::new(AtomicU64::new(0));
    let watcher = local_port(&base).and_then(pid_listening_on).map(|pid| tokio::spawn(watch_rss(pid, peak.clone())));
    let started = Instant::now();
    let results = Arc::new(tokio::sync::Mutex::new(Vec::with_capacity(total)));
    let work = drive(config, &base, &client, total, results.clone());
    let interrupted = tokio::select! {
        _ = work => false,
        _ = stop => true,
    };
    let duration_s = started.elapsed().as_secs_f64();
    if let Some(w) = watcher {
        w.abort();
    }
    let per_request = std::mem::take(&mut *results.lock().await);
    let peak = Some(peak.load(Ordering::Relaxed)).filter(|&p| p > 0);
    Ok(summarize(config, per_request, total, duration_s, peak, interrupted))
}

fn validate(config: &BenchConfig) -> Result<()> {
    let invalid = |field, reason: &str| Err(MonitorError::Invalid { field, reason: reason.to_string() });
    if config.prompts.is_empty() {
        return invalid("prompts", "no prompts to send");
    }
    if config.concurrency == 0 {
        return invalid("--concurrency", "must be at least 1");
    }
    if config.requests == Some(0) {
        return invalid("--requests", "must be at least 1");
    }
    if config.max_tokens == 0 {
        return invalid("--max-tokens", "must be at least 1");
    }
    reqwest::Url::parse(&config.endpoint).map(|_| ()).map_err(|e| MonitorError::Invalid { field: "--endpoint", reason: format!("{:?}: {e}", config.endpoint) })
}

/// Sends `total` requests with at most `concurrency` in flight, pushing each result as it finishes.
async fn drive(config: &BenchConfig, base: &str, client: &reqwest::Client, total: usize, results: Arc<tokio::sync::Mutex<Vec<RequestResult>>>) {
    let next = AtomicU64::new(0);
    let worker = || async {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed) as usize;
            if i >= total {
                break;
            }
            let prompt = &config.prompts[i % config.prompts.len()];
            let spec = client::RequestSpec { base_url: base, api: config.api, model: &config.model, prompt_name: &prompt.name, prompt: &prompt.prompt, max_tokens: config.max_tokens };
            let result = client::run(client, &spec).await;
            results.lock().await.push(result);
        }
    };
    futures_util::future::join_all((0..config.concurrency.min(total)).map(|_| worker())).await;
}

async fn watch_rss(pid: u32, peak: Arc<AtomicU64>) {
    let mut sampler = SystemSampler::memory_only();
    loop {
        if let Some(rss) = sampler.rss(pid) {
            peak.fetch_max(rss, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn summarize(config: &BenchConfig, per_request: Vec<RequestResult>, total: usize, duration_s: f64, peak: Option<u64>, interrupted: bool) -> BenchResult {
    let ok: Vec<&RequestResult> = per_request.iter().filter(|r| r.ok).collect();
    let failed = per_request.len() - ok.len();
    let output_tokens: u64 = ok.iter().map(|r| r.output_tokens).sum();
    let tpot: Vec<f64> = ok.iter().filter_map(|r| r.tpot_ms()).collect();
    let server: Vec<f64> = ok.iter().filter_map(|r| r.server_tok_s).collect();
    let (status, note) = run_status(&per_request, total, interrupted);
    let tpot_ms = Summary::of(&tpot);
    BenchResult {
        id: None,
        created_ms: crate::now_ms(),
        endpoint: config.endpoint.clone(),
        api: config.api,
        model: config.model.clone(),
        prompts: config.prompts_label.clone(),
        prompt_count: config.prompts.len(),
        concurrency: config.concurrency,
        max_tokens: config.max_tokens,
        status,
        note,
        duration_s,
        requests: total,
        completed: ok.len(),
        failed,
        output_tokens,
        output_tok_s: output_tokens as f64 / duration_s.max(1e-9),
        request_throughput: ok.len() as f64 / duration_s.max(1e-9),
        avg_tok_s: Summary::of(&tpot.iter().map(|t| 1000.0 / t).collect::<Vec<_>>()).mean,
        server_tok_s: (!server.is_empty()).then(|| server.iter().sum::<f64>() / server.len() as f64),
        ttft_ms: Summary::of(&ok.iter().filter_map(|r| r.ttft_ms).collect::<Vec<_>>()),
        tpot_ms,
        itl_ms: Summary::of(&ok.iter().flat_map(|r| r.itl_ms.iter().copied()).collect::<Vec<_>>()),
        e2e_ms: Summary::of(&ok.iter().map(|r| r.e2e_ms).collect::<Vec<_>>()),
        peak_memory_bytes: peak,
        per_request,
    }
}

fn run_status(per_request: &[RequestResult], total: usize, interrupted: bool) -> (RunStatus, Option<String>) {
    let ok = per_request.iter().filter(|r| r.ok).count();
    let first_error = per_request.iter().find_map(|r| r.error.clone());
    let mut notes = Vec::new();
    if interrupted {
        notes.push(format!("interrupted after {} of {total} requests", per_request.len()));
    }
    if let Some(e) = first_error {
        notes.push(format!("{} of {} requests failed; first error: {e}", per_request.len() - ok, per_request.len()));
    }
    let status = match ok {
        0 => RunStatus::Failed,
        n if n == total && !interrupted => RunStatus::Complete,
        _ => RunStatus::Partial,
    };
    (status, (!notes.is_empty()).then(|| notes.join("; ")))
}
