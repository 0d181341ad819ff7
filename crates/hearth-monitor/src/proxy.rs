//! `hearth proxy`: a transparent metering proxy for servers that export no live counters (Ollama). Every
//! request is forwarded as is; responses come back with the same status, headers and body bytes, while
//! streamed completions (NDJSON or SSE) are read on the side to count tokens. Its own counters are at
//! [`PROXY_METRICS_PATH`] (Prometheus text, `hearth_proxy:` names) and the recent streams at
//! `/_hearth/streams` (JSON); both paths are never forwarded.

use crate::history::{History, Session};
use crate::peak::{PeakSpan, PeakWatch};
use crate::source::PROXY_METRICS_PATH;
use crate::stream::{parse_line, LineSplitter};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

pub const STREAMS_PATH: &str = "/_hearth/streams";
/// Largest request body forwarded (prompts with images can be large).
const MAX_REQUEST_BYTES: usize = 256 << 20;
const KEPT_STREAMS: usize = 100;
/// Paths whose responses are completions worth metering.
const GENERATION_PATHS: &[&str] = &["/api/generate", "/api/chat", "/v1/chat/completions", "/v1/completions", "/completion"];

/// One metered response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamRecord {
    pub path: String,
    pub model: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Chunks that carried text.
    pub chunks: u64,
    /// The server's token count when it gives one (`eval_count`, `usage.completion_tokens`), else `chunks`.
    pub tokens: u64,
    /// Measured decode speed: (chunks − 1) / (last chunk − first chunk).
    pub measured_tok_s: Option<f64>,
    /// What the server reports (`eval_count / eval_duration`, llama.cpp `timings`).
    pub server_tok_s: Option<f64>,
    /// The stream reached its final message.
    pub complete: bool,
    /// Time from the request to the first chunk with text.
    pub ttft_ms: Option<f64>,
    /// Peak RSS of the upstream server process during the response; None when its process is unknown
    /// (a remote upstream, or none found listening on its port).
    #[serde(default)]
    pub peak_memory_bytes: Option<u64>,
}

pub struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    history: Option<Arc<Mutex<History>>>,
    generated: Mutex<BTreeMap<String, u64>>,
    running: AtomicI64,
    requests: AtomicU64,
    streams: Mutex<VecDeque<StreamRecord>>,
    memory: Arc<PeakWatch>,
}

impl ProxyState {
    pub fn new(upstream: &str, history: Option<Arc<Mutex<History>>>) -> crate::Result<Arc<ProxyState>> {
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| crate::MonitorError::Invalid { field: "http client", reason: e.to_string() })?;
        reqwest::Url::parse(upstream).map_err(|e| crate::MonitorError::Invalid { field: "--upstream", reason: format!("{upstream:?}: {e}") })?;
        Ok(Arc::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_string(),
            client,
            history,
            generated: Mutex::default(),
            running: AtomicI64::new(0),
            requests: AtomicU64::new(0),
            streams: Mutex::default(),
            memory: PeakWatch::new(upstream),
        }))
    }

    /// The pid of the upstream server process, when it is local and found (looked up now if not yet).
    pub fn upstream_pid(&self) -> Option<u32> {
        self.memory.pid()
    }

    /// The most recent metered streams, oldest first.
    pub fn streams(&self) -> Vec<StreamRecord> {
        self.streams.lock().map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    fn add_tokens(&self, model: &str, n: i64) {
        if let Ok(mut g) = self.generated.lock() {
            let v = g.entry(model.to_string()).or_default();
            *v = (*v as i64 + n).max(0) as u64;
        }
    }

    /// Prometheus text of the proxy's counters.
    pub fn metrics_text(&self) -> String {
        let mut s = String::from("# TYPE hearth_proxy:generation_tokens_total counter\n");
        let generated = self.generated.lock().map(|g| g.clone()).unwrap_or_default();
        if generated.is_empty() {
            s.push_str("hearth_proxy:generation_tokens_total 0\n");
        }
        for (model, n) in &generated {
            s.push_str(&format!("hearth_proxy:generation_tokens_total{{model=\"{}\"}} {n}\n", model.replace('\\', "\\\\").replace('"', "\\\"")));
        }
        s.push_str(&format!("# TYPE hearth_proxy:num_requests_running gauge\nhearth_proxy:num_requests_running {}\n", self.running.load(Ordering::Relaxed).max(0)));
        s.push_str(&format!("# TYPE hearth_proxy:requests_total counter\nhearth_proxy:requests_total {}\n", self.requests.load(Ordering::Relaxed)));
        s
    }

    fn finish(&self, record: StreamRecord) {
        if let Some(h) = &self.history {
            let session = Session {
                id: None,
                endpoint: self.upstream.clone(),
                model: record.model.clone(),
                start_ms: record.start_ms,
                end_ms: record.end_ms,
                tokens: record.tokens,
                avg_tok_s: record.measured_tok_s.unwrap_or(0.0),
                server_tok_s: record.server_tok_s,
                peak_memory_bytes: record.peak_memory_bytes,
                source: "proxy".into(),
            };
            if let Err(e) = h.lock().map_err(|_| "history lock poisoned".to_string()).and_then(|h| h.record_session(&session).map_err(|e| e.to_string())) {
                tracing::warn!("recording a proxied session: {e}");
            }
        }
        if let Ok(mut streams) = self.streams.lock() {
            streams.push_back(record);
            while streams.len() > KEPT_STREAMS {
                streams.pop_front();
            }
        }
    }
}

/// The proxy as a router: own paths first, everything else forwarded.
pub fn router(state: Arc<ProxyState>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(state)
}

/// Serves until `shutdown` resolves.
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<ProxyState>, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

async fn handle(State(state): State<Arc<ProxyState>>, req: Request) -> Response {
    match req.uri().path() {
        PROXY_METRICS_PATH => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics_text()).into_response(),
        STREAMS_PATH => axum::Json(state.streams()).into_response(),
        _ => forward(state, req).await.unwrap_or_else(|(status, msg)| (status, msg).into_response()),
    }
}

/// Headers that describe one hop's connection, not the message (RFC 9110 §7.6.1).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(name.as_str(), "connection" | "keep-alive" | "proxy-connection" | "te" | "trailer" | "transfer-encoding" | "upgrade" | "host" | "content-length")
}

fn copy_headers(from: &HeaderMap, keep_length: bool) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(from.len());
    for (k, v) in from {
        if !is_hop_by_hop(k) || (keep_length && k == header::CONTENT_LENGTH) {
            out.append(k.clone(), v.clone());
        }
    }
    out
}

async fn forward(state: Arc<ProxyState>, req: Request) -> Result<Response, (StatusCode, String)> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let url = format!("{}{}", state.upstream, parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let body = axum::body::to_bytes(body, MAX_REQUEST_BYTES).await.map_err(|e| (StatusCode::PAYLOAD_TOO_LARGE, format!("hearth proxy: reading the request: {e}")))?;
    let metered = parts.method == axum::http::Method::POST && GENERATION_PATHS.contains(&path.as_str());
    let model = metered.then(|| serde_json::from_slice::<serde_json::Value>(&body).ok()).flatten().and_then(|v| v["model"].as_str().map(str::to_string)).unwrap_or_default();
    let upstream = state
        .client
        .request(parts.method.clone(), &url)
        .headers(copy_headers(&parts.headers, false))
        .body(body)
        .send()
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, format!("hearth proxy: {}", crate::MonitorError::from_reqwest(&url, &e))))?;
    let mut builder = Response::builder().status(upstream.status());
    if let Some(h) = builder.headers_mut() {
        *h = copy_headers(upstream.headers(), true);
    }
    let stream = upstream.bytes_stream();
    let body = if metered {
        state.requests.fetch_add(1, Ordering::Relaxed);
        state.running.fetch_add(1, Ordering::Relaxed);
        Body::from_stream(Tap { inner: Box::pin(stream), meter: Meter::new(state, path, model, started) })
    } else {
        Body::from_stream(stream)
    };
    builder.body(body).map_err(|e| (StatusCode::BAD_GATEWAY, format!("hearth proxy: {e}")))
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// Passes the upstream body through untouched and meters it; records the stream when dropped (finished or
/// abandoned by the client).
struct Tap {
    inner: ByteStream,
    meter: Meter,
}

impl Stream for Tap {
    type Item = reqwest::Result<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(Ok(bytes))) = &polled {
            self.meter.observe(bytes);
        }
        polled
    }
}

struct Meter {
    state: Arc<ProxyState>,
    path: String,
    model: String,
    requested: Instant,
    start_ms: i64,
    lines: LineSplitter,
    chunks: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    complete: bool,
    server_count: Option<u64>,
    server_tok_s: Option<f64>,
    /// Taken on drop (Option only for that).
    peak: Option<PeakSpan>,
}

impl Meter {
    fn new(state: Arc<ProxyState>, path: String, model: String, requested: Instant) -> Self {
        let peak = Some(state.memory.open());
        Meter { state, path, model, requested, start_ms: crate::now_ms(), lines: LineSplitter::default(), chunks: 0, first: None, last: None, complete: false, server_count: None, server_tok_s: None, peak }
    }

    fn observe(&mut self, bytes: &[u8]) {
        let now = Instant::now();
        for line in self.lines.push(bytes) {
            self.observe_line(&line, now);
        }
    }

    fn observe_line(&mut self, line: &str, now: Instant) {
        // A line the proxy cannot read is the client's business, not ours: it is passed on untouched.
        let Ok(Some(chunk)) = parse_line(line) else { return };
        if self.model.is_empty() {
            self.model = chunk.model.clone().unwrap_or_default();
        }
        if !chunk.text.is_empty() {
            self.chunks += 1;
            self.first.get_or_insert(now);
            self.last = Some(now);
            self.state.add_tokens(&self.model, 1);
        }
        self.complete |= chunk.done;
        self.server_count = chunk.eval_count.or(chunk.completion_tokens).or(self.server_count);
        self.server_tok_s = chunk.server_tok_s().or(self.server_tok_s);
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        // A body without a final newline (a non-streamed JSON answer) is one last line.
        if let Some(rest) = self.lines.finish() {
            self.observe_line(&rest, Instant::now());
        }
        self.state.running.fetch_sub(1, Ordering::Relaxed);
        let tokens = self.server_count.unwrap_or(self.chunks);
        // Chunks may hold several tokens: settle the live counter on the server's count.
        self.state.add_tokens(&self.model, tokens as i64 - self.chunks as i64);
        let measured_tok_s = match (self.first, self.last) {
            (Some(a), Some(b)) if self.chunks > 1 && b > a => Some((self.chunks - 1) as f64 / (b - a).as_secs_f64()),
            _ => None,
        };
        let mut record = StreamRecord {
            path: std::mem::take(&mut self.path),
            model: std::mem::take(&mut self.model),
            start_ms: self.start_ms,
            end_ms: crate::now_ms(),
            chunks: self.chunks,
            tokens,
            measured_tok_s,
            server_tok_s: self.server_tok_s,
            complete: self.complete,
            ttft_ms: self.first.map(|f| (f - self.requested).as_secs_f64() * 1000.0),
            peak_memory_bytes: None,
        };
        // The last memory reading (and a /proc scan if the server restarted) and the history write block:
        // off the thread that is still finishing the response, where there is a runtime.
        let (state, span) = (self.state.clone(), self.peak.take());
        let finish = move || {
            record.peak_memory_bytes = span.and_then(|span| state.memory.close(span));
            state.finish(record);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(finish)),
            Err(_) => finish(),
        }
    }
}
