//! `hearth serve` through the real `ollama` Python package: tags, show, generate and chat (NDJSON and
//! not), options, timings, /api/ps, keep_alive load/unload, copy/delete, and errors.

mod common;
#[path = "serve/harness.rs"]
mod harness;

use std::time::Duration;

#[test]
fn ollama_client_round_trips() {
    let server = harness::start(&[]);
    let out = harness::run_script("ollama_api.py", &[&server.url], Duration::from_secs(300));
    assert!(out.contains("all checks passed"), "{out}");
}
