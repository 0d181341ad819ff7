//! `hearth serve` operations: the API key guards every route but /health, the Unix socket is mode 0600,
//! and SIGTERM lets an in-flight stream finish before the process exits 0.

mod common;
#[path = "serve/harness.rs"]
mod harness;

use std::time::Duration;

#[test]
fn api_key_is_required_on_every_route_but_health() {
    let server = harness::start(&["--api-key", "s3cret"]);
    harness::run_script("security.py", &["api-key", &server.url, "s3cret"], Duration::from_secs(120));
}

#[test]
fn unix_socket_is_private_and_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("hearth.sock");
    let socket = socket.to_str().expect("utf-8 path");
    let _server = harness::start(&["--socket", socket]);
    harness::run_script("security.py", &["socket", socket], Duration::from_secs(120));
}

#[test]
fn sigterm_finishes_in_flight_streams_then_exits_cleanly() {
    let server = harness::start(&[]);
    let pid = server.pid().to_string();
    harness::run_script("shutdown.py", &[&server.url, &pid], Duration::from_secs(120));
    let status = server.wait_exit();
    assert!(status.success(), "hearth serve exited with {status}");
}
