//! `hearth serve` under load: 32 concurrent greedy streams match solo runs (batch invariance, with
//! prefix-cache hits), a disconnecting client frees its KV blocks (seen in /metrics), /metrics passes
//! promtool, and overload returns 503 with Retry-After and then recovers.

mod common;
#[path = "serve/harness.rs"]
mod harness;

use std::time::Duration;

#[test]
fn concurrent_streams_disconnects_and_metrics() {
    let server = harness::start(&["--kv-cache", "96M"]);
    let out = harness::run_script("concurrency.py", &[&server.url], Duration::from_secs(600));
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn overload_is_refused_with_503_and_recovers() {
    let server = harness::start(&["--max-running", "2", "--max-queue", "1"]);
    let out = harness::run_script("overload.py", &[&server.url], Duration::from_secs(300));
    assert!(out.contains("all checks passed"), "{out}");
}
