//! hearth-monitor: a live monitor, a history and an endpoint benchmark for local LLM servers — hearth,
//! Ollama, llama.cpp, vLLM or any OpenAI-compatible server — that reaches them **only over HTTP**, so every
//! server is measured the same way.
//!
//! - [`prom`] parses Prometheus text generically (`hearth:`, `vllm:`, `llamacpp:` names alike);
//!   [`source`] probes an endpoint and reads running models, token counters and in-flight tokens.
//! - [`endpoints`] lists what to watch: `--endpoint` flags, the user's config file, the default ports.
//! - [`system`] samples memory, per-process RSS, NVIDIA GPUs (NVML, "no GPU" otherwise) and temperatures.
//! - [`monitor`] runs the samplers on their cadences into one shared [`monitor::Snapshot`] and records
//!   sessions and samples in the [`history`] (SQLite, WAL, retention with downsampling).
//! - [`bench`] is the load generator with vLLM `bench serve` definitions of TTFT, TPOT, ITL and E2E.
//! - [`proxy`] is a transparent metering proxy for servers without live counters (Ollama); [`peak`]
//!   follows its upstream process's peak memory per session.
//! - [`tui`] and [`web`] are the two dashboards over the same snapshot.

pub mod bench;
pub mod endpoints;
mod error;
pub mod history;
pub mod monitor;
pub mod peak;
pub mod prom;
pub mod proxy;
pub mod source;
pub mod stream;
pub mod system;
pub mod tui;
pub mod web;

pub use error::MonitorError;

/// Result type of this crate.
pub type Result<T, E = MonitorError> = std::result::Result<T, E>;

/// Runs a future on a fresh multi-threaded runtime: the CLI stays synchronous and needs no tokio.
pub fn block_on<F: std::future::Future>(future: F) -> Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| MonitorError::Io { path: "<tokio runtime>".into(), source })?;
    Ok(runtime.block_on(future))
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Resolves on Ctrl-C; never, where the handler cannot be installed (so nothing is cut short by it).
pub async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Binds a TCP listener (for the web dashboard and the proxy) on the runtime of [`block_on`].
pub async fn bind(addr: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|source| MonitorError::Io { path: format!("listening on {addr}").into(), source })
}

/// Sleeps on the runtime of [`block_on`].
pub async fn sleep(d: std::time::Duration) {
    tokio::time::sleep(d).await;
}
