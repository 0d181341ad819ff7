//! The web dashboard's routes: embedded assets (no external URLs), the snapshot as JSON and over SSE,
//! benchmarks, comparisons and per-model statistics from the history.

mod common;

use futures_util::StreamExt;
use hearth_monitor::history::{History, Session};
use hearth_monitor::monitor::Snapshot;
use hearth_monitor::web::{self, WebState};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_serve_assets_live_snapshots_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(&dir.path().join("h.db")).unwrap();
    history.record_session(&Session { id: None, endpoint: "e".into(), model: "smollm2".into(), start_ms: 1, end_ms: 2, tokens: 10, avg_tok_s: 50.0, server_tok_s: None, peak_memory_bytes: None, source: "monitor".into() }).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(Snapshot::default());
    let url = common::serve(web::router(WebState { snapshots: rx, history: Some(Arc::new(Mutex::new(history))) })).await;

    for (path, kind) in [("/", "text/html"), ("/app.js", "text/javascript"), ("/style.css", "text/css")] {
        let resp = reqwest::get(format!("{url}{path}")).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with(kind));
        let body = resp.text().await.unwrap();
        assert!(!body.contains("http://") && !body.contains("https://"), "{path} refers to an external URL");
    }
    let css = reqwest::get(format!("{url}/style.css")).await.unwrap().text().await.unwrap();
    assert!(css.contains("prefers-color-scheme: dark"));

    let mut events = reqwest::get(format!("{url}/api/events")).await.unwrap().bytes_stream();
    let first = String::from_utf8(events.next().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(first.contains("event: snapshot") && first.contains("\"tok_s\":0.0"), "{first}");
    tx.send(Snapshot { tok_s: 42.5, busy: true, ..Snapshot::default() }).unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let chunk = String::from_utf8(events.next().await.unwrap().unwrap().to_vec()).unwrap();
            if chunk.contains("event: snapshot") {
                return chunk;
            }
        }
    })
    .await
    .unwrap();
    assert!(next.contains("\"tok_s\":42.5"), "{next}");
    let snap: Snapshot = reqwest::get(format!("{url}/api/snapshot")).await.unwrap().json().await.unwrap();
    assert_eq!(snap.headline(), "42.5 tok/s");

    let models: serde_json::Value = reqwest::get(format!("{url}/api/models")).await.unwrap().json().await.unwrap();
    assert_eq!(models[0]["model"], "smollm2");
    assert_eq!(reqwest::get(format!("{url}/api/benchmarks")).await.unwrap().json::<Vec<serde_json::Value>>().await.unwrap().len(), 0);
    let missing = reqwest::get(format!("{url}/api/compare?a=1&b=2")).await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(reqwest::get(format!("{url}/api/compare?a=x")).await.unwrap().status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_endpoint_serves_chart_series_and_recent_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(&dir.path().join("h.db")).unwrap();
    let now = hearth_monitor::now_ms();
    for i in 0..30i64 {
        let ts = now - (40 - i) * 60_000;
        history.record_samples(ts, "http://127.0.0.1:8080", &[("tok_s", 500.0 + i as f64)]).unwrap();
        history.record_samples(ts, "system", &[("memory_used_bytes", (2u64 << 30) as f64)]).unwrap();
    }
    // Older than the hour asked for: not in the charts.
    history.record_samples(now - 3 * 3600 * 1000, "system", &[("memory_used_bytes", 1.0)]).unwrap();
    let session = |model: &str, peak: Option<u64>, source: &str| Session { id: None, endpoint: "e".into(), model: model.into(), start_ms: now - 60_000, end_ms: now, tokens: 10, avg_tok_s: 50.0, server_tok_s: None, peak_memory_bytes: peak, source: source.into() };
    history.record_session(&session("smollm2", Some(150 << 20), "monitor")).unwrap();
    history.record_session(&session("remote:7b", None, "proxy")).unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(Snapshot::default());
    let url = common::serve(web::router(WebState { snapshots: rx, history: Some(Arc::new(Mutex::new(history))) })).await;

    let view: web::HistoryView = reqwest::get(format!("{url}/api/history?minutes=60")).await.unwrap().json().await.unwrap();
    assert_eq!(view.tok_s.len(), 30);
    assert_eq!(view.tok_s.iter().map(|p| p.1).fold(0.0, f64::max), 529.0);
    assert!(view.memory_used_bytes.iter().all(|p| p.1 == (2u64 << 30) as f64) && view.memory_used_bytes.len() == 30);
    assert_eq!(view.sessions.iter().map(|s| (s.model.as_str(), s.peak_memory_bytes)).collect::<Vec<_>>(), vec![("remote:7b", None), ("smollm2", Some(150 << 20))]);
    let day: web::HistoryView = reqwest::get(format!("{url}/api/history?minutes=1440")).await.unwrap().json().await.unwrap();
    // A day in 600 buckets of 144 s: the old sample is there, and the minute samples share buckets.
    assert_eq!(day.memory_used_bytes[0], (now - 3 * 3600 * 1000, 1.0));
    assert!(day.memory_used_bytes.len() < 20, "{:?}", day.memory_used_bytes);
    // The page has the charts' and the sessions table's places, and the script fills them from here.
    let page = reqwest::get(format!("{url}/")).await.unwrap().text().await.unwrap();
    assert!(["tok-history", "mem-history", "sessions", "bench-chart"].iter().all(|id| page.contains(&format!("id=\"{id}\""))), "{page}");
    let js = reqwest::get(format!("{url}/app.js")).await.unwrap().text().await.unwrap();
    assert!(js.contains("/api/history"));
}
