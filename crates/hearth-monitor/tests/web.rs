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
