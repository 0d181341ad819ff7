//! `hearth serve` through the real `openai` Python package: chat and completions, streaming and not,
//! the usage chunk, stop strings, seeds, logprobs, n, and errors (the server keeps serving after them).

mod common;
#[path = "serve/harness.rs"]
mod harness;

use std::time::Duration;

#[test]
fn openai_client_round_trips() {
    let server = harness::start(&["--body-limit", "64K"]);
    let out = harness::run_script("openai_api.py", &[&server.url], Duration::from_secs(300));
    assert!(out.contains("all checks passed"), "{out}");
}
