//! The hearth HTTP server: OpenAI- and Ollama-compatible routes over the continuous-batching engine,
//! a model registry that loads on first use and unloads on keep-alive or memory pressure, SSE and
//! NDJSON streaming, one error → status mapping, an optional API key, and Prometheus metrics.
//!
//! [`router`] builds the routes for in-process tests; [`serve`] binds, runs until the shutdown future
//! resolves, and lets in-flight requests finish for a grace period.

pub mod config;
pub mod error;
mod generation;
pub mod metrics;
mod ollama;
mod ollama_types;
mod openai;
mod openai_types;
pub mod registry;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use config::{Listen, ServerConfig};
use error::{Api, ApiError, ApiResult, ErrorKind};
use metrics::ServerMetrics;
use registry::{Registry, RegistrySettings, Resolver};
use serde::de::DeserializeOwned;
use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub metrics: Arc<ServerMetrics>,
    pub api_key: Option<Arc<str>>,
    pub device: String,
}

impl AppState {
    /// State for `config`; `resolver` adds model names beyond the configured ones (e.g. the model store).
    pub fn new(config: &ServerConfig, resolver: Option<Resolver>) -> Self {
        let registry = Registry::new(RegistrySettings {
            models: config.models.clone(),
            models_dir: config.models_dir.clone(),
            resolver,
            engine: config.engine.clone(),
            device: config.device.clone(),
            keep_alive: config.keep_alive,
            max_queue: config.max_queue,
            memory_budget: config.memory_budget,
        });
        Self { registry, metrics: Arc::default(), api_key: config.api_key.as_deref().map(Arc::from), device: config.device.clone() }
    }
}

/// Every route, with the API key check and the body limit.
pub fn router(state: AppState, body_limit: usize) -> Router {
    Router::new()
        .route("/", get(ollama::root).head(ollama::root))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/v1/models", get(openai::list_models))
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(ollama::not_implemented))
        .route("/api/version", get(ollama::version))
        .route("/api/tags", get(ollama::tags))
        .route("/api/ps", get(ollama::ps))
        .route("/api/show", post(ollama::show))
        .route("/api/generate", post(ollama::generate))
        .route("/api/chat", post(ollama::chat))
        .route("/api/delete", delete(ollama::delete))
        .route("/api/copy", post(ollama::copy))
        .route("/api/pull", post(ollama::not_implemented))
        .route("/api/push", post(ollama::not_implemented))
        .route("/api/create", post(ollama::not_implemented))
        .route("/api/embed", post(ollama::not_implemented))
        .route("/api/embeddings", post(ollama::not_implemented))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), require_api_key))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

fn api_of(uri: &Uri) -> Api {
    if uri.path().starts_with("/v1/") { Api::OpenAi } else { Api::Ollama }
}

async fn not_found(uri: Uri) -> Response {
    ApiError::new(ErrorKind::NotFound, format!("no route for {}", uri.path())).for_api(api_of(&uri)).into_response()
}

async fn health() -> &'static str {
    "ok"
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let engines: Vec<_> = state.registry.loaded().into_iter().map(|m| (m.name, m.entry.engine.metrics().snapshot())).collect();
    let text = state.metrics.render(&engines);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// With a key configured, every route but `/health` needs `Authorization: Bearer KEY`.
async fn require_api_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(key) = &state.api_key else { return next.run(request).await };
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
        return next.run(request).await;
    }
    let api = api_of(request.uri());
    ApiError::new(ErrorKind::Unauthorized, "missing or wrong API key (send Authorization: Bearer KEY)").for_api(api).into_response()
}

/// Comparison whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The body as JSON of type `T`; malformed JSON, wrong types, invalid UTF-8 and oversized bodies are 4xx.
pub(crate) fn parse_json<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let bytes = body.map_err(|r| {
        let kind = if r.status() == StatusCode::PAYLOAD_TOO_LARGE { ErrorKind::TooLarge } else { ErrorKind::BadRequest };
        ApiError::new(kind, r.body_text())
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {address}: {source}")]
    Bind { address: String, source: std::io::Error },
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// Bind `config.listen`, call `on_listening` with the address, serve until `shutdown` resolves, then
/// let in-flight requests finish for `config.shutdown_grace` before cancelling them.
pub async fn serve(
    config: ServerConfig,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(&str),
) -> Result<(), ServeError> {
    let app = router(state.clone(), config.body_limit);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let reaper = tokio::spawn(reap_loop(state.registry.clone()));
    let served = match &config.listen {
        Listen::Tcp { host, port } => {
            let address = format!("{host}:{port}");
            let listener = tokio::net::TcpListener::bind(&address).await.map_err(|source| ServeError::Bind { address: address.clone(), source })?;
            on_listening(&format!("http://{}", listener.local_addr()?));
            let server = axum::serve(listener, app).with_graceful_shutdown(signal);
            with_grace(server.into_future(), stop_rx, config.shutdown_grace).await
        }
        Listen::Unix(path) => {
            let listener = bind_unix(path)?;
            on_listening(&format!("unix:{}", path.display()));
            let server = axum::serve(listener, app).with_graceful_shutdown(signal);
            let result = with_grace(server.into_future(), stop_rx, config.shutdown_grace).await;
            let _ = std::fs::remove_file(path);
            result
        }
    };
    reaper.abort();
    state.registry.unload_all();
    served
}

/// Run the server; once shutdown starts, give it `grace` to finish in-flight requests.
async fn with_grace(
    server: impl Future<Output = std::io::Result<()>>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    grace: Duration,
) -> Result<(), ServeError> {
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => return Ok(r?),
        _ = stopping.wait_for(|s| *s) => {}
    }
    match tokio::time::timeout(grace, server).await {
        Ok(r) => Ok(r?),
        Err(_) => {
            tracing::warn!("in-flight requests still running after {grace:?}; cancelling them");
            Ok(())
        }
    }
}

fn bind_unix(path: &std::path::Path) -> Result<tokio::net::UnixListener, ServeError> {
    use std::os::unix::fs::PermissionsExt;
    let bind_err = |source| ServeError::Bind { address: path.display().to_string(), source };
    // A stale socket from an earlier run would make bind fail; anything else at that path is left alone.
    if std::fs::symlink_metadata(path).is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type())) {
        std::fs::remove_file(path).map_err(bind_err)?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    Ok(listener)
}

async fn reap_loop(registry: Arc<Registry>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        registry.reap_expired();
    }
}
