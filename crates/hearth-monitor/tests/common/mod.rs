//! Shared helpers of the monitor tests: a real llama-server on 127.0.0.1 with the SmolLM2 test model,
//! and small fake servers (Ollama NDJSON, garbage, a stream cut mid-way) built on axum.
#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::routing::{get, post};
use axum::Router;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn dev_cache() -> PathBuf {
    std::env::var_os("HEARTH_DEV_CACHE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/hearth-dev"))
}

/// Tests that start llama-server run one at a time: they compare speeds, and share 2 cores.
pub static LLAMA_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A llama-server child, killed on drop.
pub struct LlamaServer {
    child: Child,
    pub url: String,
}

impl LlamaServer {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port on 127.0.0.1")
}

pub fn llama_server_bin() -> PathBuf {
    let p = std::env::var_os("HEARTH_LLAMA_SERVER").map(PathBuf::from).unwrap_or_else(|| dev_cache().join("llama.cpp-11434.0.0/build/bin/llama-server"));
    assert!(p.is_file(), "{} is missing: run scripts/build-llama-cpp.sh (scripts/test.sh does)", p.display());
    p
}

pub fn smollm2() -> PathBuf {
    let dir = std::env::var_os("HEARTH_TEST_MODELS").map(PathBuf::from).unwrap_or_else(|| dev_cache().join("models"));
    let p = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.is_file(), "{} is missing: run scripts/fetch-models.sh", p.display());
    p
}

/// Starts llama-server (2 threads, one slot, metrics on) and waits until /health says ok (≤ 60 s).
pub fn start_llama_server() -> LlamaServer {
    let port = free_port();
    let child = Command::new(llama_server_bin())
        .arg("-m")
        .arg(smollm2())
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "-t", "2", "-c", "2048", "-np", "1", "--metrics", "--slots", "-a", "smollm2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting llama-server");
    let server = LlamaServer { child, url: format!("http://127.0.0.1:{port}") };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if health_ok(port) {
            return server;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("llama-server on port {port} did not become healthy in 60 s");
}

fn health_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200")
}

/// A server on 127.0.0.1 running `router`; stops when dropped (the test's runtime ends).
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// A fake Ollama: `/api/chat` and `/api/generate` stream `tokens` NDJSON chunks `gap` apart, then a final
/// chunk with `eval_count` and the measured `eval_duration`, as Ollama does. Every byte it sent is logged.
#[derive(Clone)]
pub struct FakeOllama {
    pub tokens: usize,
    pub gap: Duration,
    pub sent: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Stop after this many chunks without a final one (a server dying mid-stream).
    pub cut_after: Option<usize>,
    /// Cut only every second request (the 2nd, 4th, …), so a run is partial.
    pub cut_every_other: bool,
    requests: Arc<std::sync::atomic::AtomicUsize>,
}

impl FakeOllama {
    pub fn new(tokens: usize, gap: Duration) -> Self {
        FakeOllama { tokens, gap, sent: Arc::default(), cut_after: None, cut_every_other: false, requests: Arc::default() }
    }

    pub fn router(self) -> Router {
        let chat = self.clone();
        let generate = self.clone();
        Router::new()
            .route("/api/version", get(|| async { axum::Json(serde_json::json!({"version": "0.0.0-fake"})) }))
            .route("/api/tags", get(|| async { axum::Json(serde_json::json!({"models": [{"name": "fake:1b"}]})) }))
            .route("/api/ps", get(|| async { axum::Json(serde_json::json!({"models": [{"name": "fake:1b", "size": 123456789, "size_vram": 0}]})) }))
            .route("/api/chat", post(move |body: Bytes| chat.clone().stream(body, true)))
            .route("/api/generate", post(move |body: Bytes| generate.clone().stream(body, false)))
    }

    async fn stream(self, _body: Bytes, chat: bool) -> axum::response::Response {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let nth = self.requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let cut = self.cut_after.filter(|_| !self.cut_every_other || nth % 2 == 1);
        tokio::spawn(async move {
            let start = Instant::now();
            for i in 0..self.tokens {
                if cut == Some(i) {
                    return;
                }
                tokio::time::sleep(self.gap).await;
                let text = format!("tok{i} ");
                let line = if chat {
                    serde_json::json!({"model": "fake:1b", "created_at": "2026-01-01T00:00:00Z", "message": {"role": "assistant", "content": text}, "done": false})
                } else {
                    serde_json::json!({"model": "fake:1b", "created_at": "2026-01-01T00:00:00Z", "response": text, "done": false})
                };
                if !self.send(&tx, line).await {
                    return;
                }
            }
            let eval_ns = start.elapsed().as_nanos() as u64;
            let done = serde_json::json!({"model": "fake:1b", "done": true, "done_reason": "stop", "eval_count": self.tokens, "eval_duration": eval_ns, "prompt_eval_count": 7, "prompt_eval_duration": 1000});
            self.send(&tx, done).await;
        });
        let body = Body::from_stream(tokio_stream_from(rx));
        axum::response::Response::builder().header("content-type", "application/x-ndjson").header("x-fake", "yes").body(body).unwrap()
    }

    async fn send(&self, tx: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>, v: serde_json::Value) -> bool {
        let mut bytes = serde_json::to_vec(&v).unwrap();
        bytes.push(b'\n');
        self.sent.lock().unwrap().push(bytes.clone());
        tx.send(Ok(Bytes::from(bytes))).await.is_ok()
    }
}

pub fn tokio_stream_from<T: Send + 'static>(rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

/// A server whose every answer is HTML.
pub fn garbage_router() -> Router {
    Router::new().fallback(|| async { "<html><body>502 from some load balancer</body></html>\n" })
}
