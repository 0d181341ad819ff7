//! A bounded soak of `hearth serve`: 2,000 chat requests at concurrency 32 (streaming and not, every
//! 50th client hanging up mid-stream) end with 0 errors, a server RSS that does not grow with the request
//! count (the log shows it at start and end), and an idle engine with no KV blocks held.
// The script reads the server's resident set from /proc/PID/status.
#![cfg(target_os = "linux")]

mod common;
#[path = "serve/harness.rs"]
mod harness;

use std::time::Duration;

#[test]
fn soak_2000_requests_at_concurrency_32() {
    // 96M holds the 32 in-flight sequences without preemption, as in serve_concurrency.
    let server = harness::start(&["--kv-cache", "96M"]);
    let pid = server.pid().to_string();
    let out = harness::run_script("soak.py", &[&server.url, &pid], Duration::from_secs(900));
    println!("{out}");
    assert!(out.contains("all checks passed"), "{out}");
}
