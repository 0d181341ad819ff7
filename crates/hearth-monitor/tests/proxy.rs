//! The metering proxy in front of an Ollama-API server: responses pass through byte for byte, and its
//! recorded tok/s agrees with the final chunk's `eval_count / eval_duration`; in front of a real llama-server,
//! its sessions carry the server process's peak memory.

mod common;

use common::FakeOllama;
use futures_util::StreamExt;
use hearth_monitor::history::History;
use hearth_monitor::proxy::{self, ProxyState, StreamRecord};
use hearth_monitor::source::{ServerKind, Source};
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn start_proxy(upstream: &str, history: Option<Arc<Mutex<History>>>) -> String {
    common::serve(proxy::router(ProxyState::new(upstream, history).unwrap())).await
}

async fn streams(proxy: &str) -> Vec<StreamRecord> {
    reqwest::get(format!("{proxy}/_hearth/streams")).await.unwrap().json().await.unwrap()
}

/// The recorded streams, once the proxy has seen the response body dropped.
async fn wait_for_streams(proxy: &str, n: usize) -> Vec<StreamRecord> {
    for _ in 0..100 {
        let s = streams(proxy).await;
        if s.len() >= n {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the proxy recorded fewer than {n} streams");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_bytes_pass_through_and_tok_s_matches_eval_fields() {
    let fake = FakeOllama::new(40, Duration::from_millis(15));
    let sent = fake.sent.clone();
    let upstream = common::serve(fake.router()).await;
    let dir = tempfile::tempdir().unwrap();
    let history = Arc::new(Mutex::new(History::open(&dir.path().join("h.db")).unwrap()));
    let proxy = start_proxy(&upstream, Some(history.clone())).await;

    let body = serde_json::json!({"model": "fake:1b", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let resp = reqwest::Client::new().post(format!("{proxy}/api/chat")).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    assert_eq!(resp.headers()["x-fake"], "yes");
    let mut received = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        received.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(received, sent.lock().unwrap().concat(), "the proxy changed the response bytes");

    let records = wait_for_streams(&proxy, 1).await;
    let r = &records[0];
    assert!(r.complete);
    assert_eq!((r.path.as_str(), r.model.as_str(), r.chunks, r.tokens), ("/api/chat", "fake:1b", 40, 40));
    let last: serde_json::Value = serde_json::from_slice(sent.lock().unwrap().last().unwrap()).unwrap();
    let eval_tok_s = last["eval_count"].as_f64().unwrap() / (last["eval_duration"].as_f64().unwrap() / 1e9);
    assert!((r.server_tok_s.unwrap() - eval_tok_s).abs() < 1e-6 * eval_tok_s);
    let measured = r.measured_tok_s.unwrap();
    assert!((measured - eval_tok_s).abs() <= 0.10 * eval_tok_s, "proxy measured {measured:.1} tok/s vs eval fields {eval_tok_s:.1}");

    let metrics = reqwest::get(format!("{proxy}/_hearth/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("hearth_proxy:generation_tokens_total{model=\"fake:1b\"} 40"), "{metrics}");
    assert!(metrics.contains("hearth_proxy:num_requests_running 0"), "{metrics}");
    let sessions = history.lock().unwrap().sessions(0).unwrap();
    assert_eq!((sessions.len(), sessions[0].tokens, sessions[0].source.as_str()), (1, 40, "proxy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_requests_statuses_and_errors_pass_through() {
    let upstream = common::serve(FakeOllama::new(3, Duration::from_millis(1)).router()).await;
    let proxy = start_proxy(&upstream, None).await;
    let direct = reqwest::get(format!("{upstream}/api/tags")).await.unwrap().bytes().await.unwrap();
    let via = reqwest::get(format!("{proxy}/api/tags")).await.unwrap().bytes().await.unwrap();
    assert_eq!(direct, via);
    let missing = reqwest::get(format!("{proxy}/no/such/path?x=1")).await.unwrap();
    assert_eq!(missing.status(), 404);
    // Non-streaming generation through the proxy is metered too (one chunk carries the whole answer).
    let generate = serde_json::json!({"model": "fake:1b", "prompt": "x"});
    let text = reqwest::Client::new().post(format!("{proxy}/api/generate")).json(&generate).send().await.unwrap().text().await.unwrap();
    assert_eq!(text.lines().count(), 4);
    assert_eq!(wait_for_streams(&proxy, 1).await[0].tokens, 3);

    // A non-streamed OpenAI answer without a final newline is metered from its usage.
    let openai = axum::Router::new().route("/v1/chat/completions", axum::routing::post(|| async { r#"{"object":"chat.completion","model":"m","choices":[{"message":{"role":"assistant","content":"Hi there"},"finish_reason":"stop"}],"usage":{"completion_tokens":3,"prompt_tokens":5}}"# }));
    let openai_proxy = start_proxy(&common::serve(openai).await, None).await;
    let answer = reqwest::Client::new().post(format!("{openai_proxy}/v1/chat/completions")).body("{\"model\":\"m\"}").send().await.unwrap().text().await.unwrap();
    assert!(answer.ends_with("}}"));
    let r = &wait_for_streams(&openai_proxy, 1).await[0];
    assert_eq!((r.tokens, r.chunks, r.complete, r.model.as_str()), (3, 1, true, "m"));

    // The monitor recognises the proxy and reads the models through it.
    let source = Source::probe(&proxy).await.unwrap();
    assert_eq!(source.kind, ServerKind::Proxy);
    let reading = source.read().await.unwrap();
    assert_eq!(reading.models[0].name, "fake:1b");
    assert_eq!(reading.models[0].size_bytes, Some(123456789));
    assert_eq!(reading.generated_tokens, Some(3.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_a_502_with_the_reason_and_cut_streams_are_marked() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let proxy = start_proxy(&dead, None).await;
    let resp = reqwest::get(format!("{proxy}/api/tags")).await.unwrap();
    assert_eq!(resp.status(), 502);
    let msg = resp.text().await.unwrap();
    assert!(msg.contains("cannot reach") && msg.contains(&dead), "{msg}");

    let mut fake = FakeOllama::new(10, Duration::from_millis(2));
    fake.cut_after = Some(4);
    let upstream = common::serve(fake.router()).await;
    let proxy = start_proxy(&upstream, None).await;
    let body = serde_json::json!({"model": "fake:1b", "messages": [], "stream": true});
    let text = reqwest::Client::new().post(format!("{proxy}/api/chat")).json(&body).send().await.unwrap().text().await.unwrap();
    assert_eq!(text.lines().count(), 4);
    let r = &wait_for_streams(&proxy, 1).await[0];
    assert!(!r.complete);
    assert_eq!((r.chunks, r.tokens), (4, 4));
}

/// RSS of a process as the kernel reports it (`VmRSS`), independently of the proxy's sampler.
fn vm_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_sessions_carry_the_upstream_server_peak_memory() {
    if !cfg!(target_os = "linux") {
        eprintln!("skipped: the port → process lookup reads Linux /proc");
        return;
    }
    let _serial = common::LLAMA_LOCK.lock().await;
    let server = common::start_llama_server();
    let dir = tempfile::tempdir().unwrap();
    let history = Arc::new(Mutex::new(History::open(&dir.path().join("h.db")).unwrap()));
    let state = ProxyState::new(&server.url, Some(history.clone())).unwrap();
    assert_eq!(state.upstream_pid(), Some(server.pid()), "the proxy found llama-server by its port");
    let proxy = common::serve(proxy::router(state)).await;

    let body = serde_json::json!({"model": "smollm2", "messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 64, "ignore_eos": true, "stream": true});
    let text = reqwest::Client::new().post(format!("{proxy}/v1/chat/completions")).json(&body).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("data: [DONE]"), "{text}");
    let rss_after = vm_rss(server.pid());
    let r = &wait_for_streams(&proxy, 1).await[0];
    assert!(r.complete && r.tokens == 64, "{r:?}");
    let peak = r.peak_memory_bytes.expect("a local upstream has a peak");
    // The server's own RSS, not the proxy's (this process): at least what it holds once the answer is
    // done (KV cache and weights stay), and not wildly more.
    let mine = vm_rss(std::process::id());
    eprintln!("peak {} MiB, llama-server RSS after {} MiB, this process {} MiB", peak >> 20, rss_after >> 20, mine >> 20);
    assert!(peak as f64 >= 0.95 * rss_after as f64 && (peak as f64) <= 1.5 * rss_after as f64, "peak {peak} vs llama-server RSS {rss_after} (this process: {mine})");
    let sessions = history.lock().unwrap().sessions(0).unwrap();
    assert_eq!((sessions.len(), sessions[0].source.as_str(), sessions[0].peak_memory_bytes), (1, "proxy", Some(peak)));
}
