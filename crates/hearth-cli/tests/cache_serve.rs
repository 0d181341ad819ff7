//! `hearth serve` resolves model names through the model store: a model added with `hearth cache add`
//! is served by its store name and alias with no `--model` flag, the use is recorded, and a name the
//! store does not know is an Ollama-style 404.

mod cache_common;
mod common;
#[path = "serve/harness.rs"]
mod harness;

use cache_common::*;
use std::process::Command;

/// POST `body` to `url`; returns (HTTP status, body).
fn post(url: &str, body: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "120", "-w", "\n%{http_code}", "-H", "content-type: application/json", "-d", body, url])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("status code"), body.to_string())
}

#[test]
fn serve_answers_store_names_and_404s_unknown_ones() {
    let home = Home::new();
    let model = common::real_model("SmolLM2-135M-Instruct.Q4_1.gguf");
    let add = home.hearth(&["cache", "add", &format!("file://{}", model.display()), "--name", "smolstore"]);
    assert!(add.status.success(), "cache add: {}", text(&add));
    assert!(home.status()["models"][0]["last_used"].is_null(), "not used before serving");
    let mut serve = home.command();
    serve.args(["serve", "--port", "0", "--threads", "2", "--kv-cache", "48M"]);
    let server = harness::start_command(serve);
    let url = server.url.clone();
    for name in ["smolstore", "SmolLM2-135M-Instruct.Q4_1"] {
        let body = format!(r#"{{"model": "{name}", "prompt": "Say hi.", "stream": false, "options": {{"num_predict": 3, "temperature": 0}}}}"#);
        let (code, answer) = post(&format!("{url}/api/generate"), &body);
        assert_eq!(code, 200, "{name}: {answer}");
        let v: serde_json::Value = serde_json::from_str(&answer).expect("json");
        assert_eq!(v["done"], true, "{answer}");
        assert_eq!(v["eval_count"], 3, "{answer}");
    }
    let model = &home.status()["models"][0];
    assert!(!model["last_used"].is_null(), "serving records a use: {model}");
    assert!(model["used_by"].to_string().contains("hearth"), "the served model counts as used by hearth: {model}");
    let (code, answer) = post(&format!("{url}/api/generate"), r#"{"model": "no-such-model", "prompt": "x", "stream": false}"#);
    assert_eq!(code, 404, "{answer}");
    assert!(answer.contains("not found"), "{answer}");
}
