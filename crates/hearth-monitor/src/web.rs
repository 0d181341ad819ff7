//! `hearth dash --web`: the web dashboard. One page and its script and styles are compiled into the binary
//! (no CDN: users may be offline); live values arrive over SSE (`/api/events`, one snapshot per sampler
//! tick) and history, benchmarks and comparisons are JSON endpoints.

use crate::bench::report;
use crate::history::History;
use crate::monitor::Snapshot;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");

#[derive(Clone)]
pub struct WebState {
    pub snapshots: watch::Receiver<Snapshot>,
    pub history: Option<Arc<Mutex<History>>>,
}

pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }))
        .route("/api/snapshot", get(snapshot))
        .route("/api/events", get(events))
        .route("/api/benchmarks", get(benchmarks))
        .route("/api/compare", get(compare))
        .route("/api/models", get(models))
        .route("/api/samples", get(samples))
        .route("/api/history", get(history))
        .with_state(state)
}

/// Serves until `shutdown` resolves.
pub async fn serve(listener: tokio::net::TcpListener, state: WebState, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

async fn snapshot(State(s): State<WebState>) -> Json<Snapshot> {
    Json(s.snapshots.borrow().clone())
}

async fn events(State(s): State<WebState>) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let mut rx = s.snapshots.clone();
    rx.mark_changed();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        let snap = rx.borrow_and_update().clone();
        let event = Event::default().event("snapshot").json_data(&snap).unwrap_or_else(|_| Event::default().comment("unserializable snapshot"));
        Some((Ok(event), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn with_history<T: serde::Serialize>(s: &WebState, f: impl FnOnce(&History) -> crate::Result<T>) -> Response {
    let Some(h) = &s.history else { return (StatusCode::NOT_FOUND, "no history database").into_response() };
    let Ok(h) = h.lock() else { return (StatusCode::INTERNAL_SERVER_ERROR, "history lock poisoned").into_response() };
    match f(&h) {
        Ok(v) => Json(v).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn benchmarks(State(s): State<WebState>) -> Response {
    with_history(&s, |h| h.benchmarks(50))
}

async fn models(State(s): State<WebState>) -> Response {
    with_history(&s, History::model_stats)
}

#[derive(Deserialize)]
struct CompareQuery {
    a: i64,
    b: i64,
}

async fn compare(State(s): State<WebState>, Query(q): Query<CompareQuery>) -> Response {
    let Some(h) = &s.history else { return (StatusCode::NOT_FOUND, "no history database").into_response() };
    let Ok(h) = h.lock() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    match (h.benchmark(q.a), h.benchmark(q.b)) {
        (Ok(Some(a)), Ok(Some(b))) => Json(report::compare(&a, &b)).into_response(),
        (Err(e), _) | (_, Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        _ => (StatusCode::NOT_FOUND, format!("no benchmark #{} or #{}", q.a, q.b)).into_response(),
    }
}

#[derive(Deserialize)]
struct SamplesQuery {
    metric: String,
    #[serde(default = "default_minutes")]
    minutes: i64,
}

fn default_minutes() -> i64 {
    60
}

async fn samples(State(s): State<WebState>, Query(q): Query<SamplesQuery>) -> Response {
    let since = crate::now_ms() - q.minutes.clamp(1, 60 * 24 * 90) * 60_000;
    with_history(&s, |h| h.samples(Some(&q.metric), since))
}

/// Points per history chart: about one per pixel column of a wide chart.
const HISTORY_POINTS: usize = 600;
const RECENT_SESSIONS: usize = 20;

/// What the history charts and the sessions table show, over the last `minutes`.
#[derive(Debug, Serialize, Deserialize)]
pub struct HistoryView {
    pub since_ms: i64,
    pub until_ms: i64,
    /// (ms, tok/s summed over servers), bucket means.
    pub tok_s: Vec<(i64, f64)>,
    /// (ms, bytes of system memory in use), bucket means.
    pub memory_used_bytes: Vec<(i64, f64)>,
    /// The newest sessions of the span, newest first.
    pub sessions: Vec<crate::history::Session>,
}

#[derive(Deserialize)]
struct HistoryQuery {
    #[serde(default = "default_minutes")]
    minutes: i64,
}

async fn history(State(s): State<WebState>, Query(q): Query<HistoryQuery>) -> Response {
    let until_ms = crate::now_ms();
    let since_ms = until_ms - q.minutes.clamp(1, 60 * 24 * 90) * 60_000;
    with_history(&s, |h| {
        let mut sessions = h.sessions(since_ms)?;
        sessions.reverse();
        sessions.truncate(RECENT_SESSIONS);
        Ok(HistoryView {
            since_ms,
            until_ms,
            tok_s: h.series("tok_s", since_ms, until_ms, HISTORY_POINTS)?,
            memory_used_bytes: h.series("memory_used_bytes", since_ms, until_ms, HISTORY_POINTS)?,
            sessions,
        })
    })
}
