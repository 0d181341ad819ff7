//! Latency the metering proxy adds per streamed token: a local NDJSON server stamps each chunk with its
//! send time; a client reads the stream directly and through the proxy, and the per-chunk delays
//! (receive − send) are compared. Run: `cargo run --release -p hearth-monitor --example proxy_latency`.

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use hearth_monitor::bench::stats::percentile;
use hearth_monitor::proxy::{self, ProxyState};
use std::time::{Duration, Instant};

const CHUNKS: usize = 2000;
const GAP: Duration = Duration::from_millis(2);

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

fn stamped_server(epoch: Instant) -> axum::Router {
    axum::Router::new().route(
        "/api/generate",
        axum::routing::post(move || async move {
            let stream = futures_util::stream::unfold(0usize, move |i| async move {
                if i > CHUNKS {
                    return None;
                }
                tokio::time::sleep(GAP).await;
                let ns = epoch.elapsed().as_nanos();
                let line = if i == CHUNKS { format!("{{\"done\":true,\"eval_count\":{CHUNKS},\"t\":{ns}}}\n") } else { format!("{{\"response\":\"x\",\"done\":false,\"t\":{ns}}}\n") };
                Some((Ok::<_, std::io::Error>(Bytes::from(line)), i + 1))
            });
            Body::from_stream(stream)
        }),
    )
}

/// Per-chunk delay in microseconds, receive time minus the server's stamp.
async fn delays(url: &str, epoch: Instant) -> Vec<f64> {
    let resp = reqwest::Client::new().post(format!("{url}/api/generate")).body("{\"model\":\"m\"}").send().await.expect("request");
    let mut out = Vec::with_capacity(CHUNKS);
    let mut pending = String::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let now = epoch.elapsed().as_nanos() as f64;
        pending.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        while let Some(pos) = pending.find('\n') {
            let line: String = pending.drain(..=pos).collect();
            let v: serde_json::Value = serde_json::from_str(&line).expect("json");
            out.push((now - v["t"].as_f64().expect("t")) / 1000.0);
        }
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let epoch = Instant::now();
    let upstream = serve(stamped_server(epoch)).await;
    let proxied = serve(proxy::router(ProxyState::new(&upstream, None).expect("proxy"))).await;
    // Warm both paths once, then alternate.
    delays(&upstream, epoch).await;
    delays(&proxied, epoch).await;
    let (mut direct, mut via) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        direct.extend(delays(&upstream, epoch).await);
        via.extend(delays(&proxied, epoch).await);
    }
    direct.sort_by(f64::total_cmp);
    via.sort_by(f64::total_cmp);
    let row = |name: &str, v: &[f64]| println!("{name:<8} p50 {:7.1} µs  p99 {:7.1} µs  (n = {})", percentile(v, 50.0), percentile(v, 99.0), v.len());
    row("direct", &direct);
    row("proxied", &via);
    println!("added    p50 {:7.1} µs  p99 {:7.1} µs", percentile(&via, 50.0) - percentile(&direct, 50.0), percentile(&via, 99.0) - percentile(&direct, 99.0));
}
