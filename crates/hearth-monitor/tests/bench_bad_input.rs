//! Bad input to `hearth bench run`: an unreachable endpoint, a server answering garbage, one stopping
//! mid-stream, an interrupted run. Each gives a clear message, keeps and marks partial results, and
//! never panics.

mod common;

use common::FakeOllama;
use hearth_monitor::bench::{self, Api, BenchConfig, RunStatus};
use std::time::Duration;

fn config(endpoint: &str, api: Api, requests: usize) -> BenchConfig {
    BenchConfig {
        endpoint: endpoint.to_string(),
        api,
        model: "fake:1b".into(),
        prompts_label: "standard".into(),
        prompts: bench::prompts::standard(),
        concurrency: 1,
        requests: Some(requests),
        max_tokens: 16,
        request_timeout: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn unreachable_endpoint_fails_every_request_with_the_reason() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let r = bench::run(&config(&url, Api::OpenAi, 2), std::future::pending()).await.unwrap();
    assert_eq!((r.status, r.completed, r.failed), (RunStatus::Failed, 0, 2));
    let err = r.per_request[0].error.as_deref().unwrap();
    assert!(err.contains("cannot reach") && err.contains(&url) && err.to_lowercase().contains("refused"), "{err}");
    assert!(r.note.unwrap().contains("2 of 2 requests failed"));
    assert_eq!(r.output_tok_s, 0.0);
}

#[tokio::test]
async fn garbage_answers_are_named_as_such() {
    let url = common::serve(common::garbage_router()).await;
    for api in [Api::OpenAi, Api::Ollama] {
        let r = bench::run(&config(&url, api, 1), std::future::pending()).await.unwrap();
        assert_eq!(r.status, RunStatus::Failed);
        let err = r.per_request[0].error.as_deref().unwrap();
        assert!(err.contains("garbage") && err.contains("<html>"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_mid_way_keeps_its_tokens_and_marks_the_run_partial() {
    let mut fake = FakeOllama::new(12, Duration::from_millis(2));
    fake.cut_after = Some(5);
    fake.cut_every_other = true;
    let url = common::serve(fake.router()).await;
    let r = bench::run(&config(&url, Api::Ollama, 2), std::future::pending()).await.unwrap();
    assert_eq!((r.status, r.completed, r.failed), (RunStatus::Partial, 1, 1));
    let cut = r.per_request.iter().find(|q| !q.ok).unwrap();
    assert_eq!(cut.output_tokens, 5);
    assert!(cut.error.as_deref().unwrap().contains("stopped mid-way"), "{:?}", cut.error);
    // Only the complete request counts in the latency statistics.
    assert_eq!((r.e2e_ms.n, r.output_tokens), (1, 12));
    let ok = r.per_request.iter().find(|q| q.ok).unwrap();
    assert!(ok.server_tok_s.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_is_saved_as_partial() {
    let url = common::serve(FakeOllama::new(20, Duration::from_millis(20)).router()).await;
    let stop = tokio::time::sleep(Duration::from_millis(700));
    let r = bench::run(&config(&url, Api::Ollama, 10), stop).await.unwrap();
    assert!(r.completed >= 1 && r.completed < 10, "{} completed", r.completed);
    assert_eq!(r.status, RunStatus::Partial);
    assert!(r.note.as_deref().unwrap().contains("interrupted"), "{:?}", r.note);
}

#[tokio::test]
async fn invalid_settings_are_errors_not_panics() {
    let mut c = config("http://127.0.0.1:9", Api::OpenAi, 1);
    c.concurrency = 0;
    assert!(bench::run(&c, std::future::pending()).await.unwrap_err().to_string().contains("--concurrency"));
    let mut c = config("not a url", Api::OpenAi, 1);
    c.concurrency = 1;
    assert!(bench::run(&c, std::future::pending()).await.unwrap_err().to_string().contains("--endpoint"));
    let mut c = config("http://127.0.0.1:9", Api::OpenAi, 1);
    c.prompts.clear();
    assert!(bench::run(&c, std::future::pending()).await.is_err());
}
