//! One streamed benchmark request and its timings, measured as `vllm bench serve` does: TTFT at the first
//! chunk with text, one inter-token latency per later chunk with text, E2E at the end of the stream.

use super::{Api, RequestResult};
use crate::stream::{parse_line, Chunk, LineSplitter};
use futures_util::StreamExt;
use serde_json::json;
use std::time::Instant;

/// What a request is sent with.
pub struct RequestSpec<'a> {
    pub base_url: &'a str,
    pub api: Api,
    pub model: &'a str,
    pub prompt_name: &'a str,
    pub prompt: &'a str,
    pub max_tokens: u32,
}

/// Timings collected while a stream is read.
struct Timeline {
    start: Instant,
    ttft_ms: Option<f64>,
    last_token: Option<Instant>,
    itl_ms: Vec<f64>,
    chunks_with_text: u64,
    finished: bool,
    usage_tokens: Option<u64>,
    prompt_tokens: Option<u64>,
    server_tok_s: Option<f64>,
}

impl Timeline {
    fn new(start: Instant) -> Self {
        Timeline { start, ttft_ms: None, last_token: None, itl_ms: Vec::new(), chunks_with_text: 0, finished: false, usage_tokens: None, prompt_tokens: None, server_tok_s: None }
    }

    fn observe(&mut self, chunk: &Chunk, now: Instant) {
        if !chunk.text.is_empty() {
            match self.last_token {
                None => self.ttft_ms = Some(ms(now - self.start)),
                Some(prev) => self.itl_ms.push(ms(now - prev)),
            }
            self.last_token = Some(now);
            self.chunks_with_text += 1;
        }
        self.finished |= chunk.done;
        self.usage_tokens = chunk.completion_tokens.or(chunk.eval_count).or(self.usage_tokens);
        self.prompt_tokens = chunk.prompt_tokens.or(chunk.prompt_eval_count).or(self.prompt_tokens);
        self.server_tok_s = chunk.server_tok_s().or(self.server_tok_s);
    }

    fn into_result(self, prompt: &str, error: Option<String>) -> RequestResult {
        let ok = error.is_none() && self.finished;
        let error = error.or_else(|| (!self.finished).then(|| format!("stream stopped mid-way after {} chunks (no final message)", self.chunks_with_text)));
        RequestResult {
            prompt: prompt.to_string(),
            ok,
            error,
            ttft_ms: self.ttft_ms,
            e2e_ms: ms(self.start.elapsed()),
            // The server's own count when it gives one; a chunk may carry more than one token.
            output_tokens: self.usage_tokens.unwrap_or(self.chunks_with_text),
            prompt_tokens: self.prompt_tokens,
            itl_ms: self.itl_ms,
            server_tok_s: self.server_tok_s,
        }
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn request_body(spec: &RequestSpec<'_>) -> (String, serde_json::Value) {
    match spec.api {
        Api::OpenAi => (
            format!("{}/v1/chat/completions", spec.base_url),
            json!({
                "model": spec.model,
                "messages": [{"role": "user", "content": spec.prompt}],
                "max_tokens": spec.max_tokens,
                "temperature": 0,
                "stream": true,
                "stream_options": {"include_usage": true},
            }),
        ),
        Api::Ollama => (
            format!("{}/api/chat", spec.base_url),
            json!({
                "model": spec.model,
                "messages": [{"role": "user", "content": spec.prompt}],
                "stream": true,
                "options": {"num_predict": spec.max_tokens, "temperature": 0},
            }),
        ),
    }
}

/// Sends one request and reads its stream to the end. Never fails: errors are in the result, with
/// whatever was measured before them.
pub async fn run(client: &reqwest::Client, spec: &RequestSpec<'_>) -> RequestResult {
    let (url, body) = request_body(spec);
    let mut timeline = Timeline::new(Instant::now());
    let error = read_stream(client, &url, &body, &mut timeline).await.err();
    timeline.into_result(spec.prompt_name, error)
}

async fn read_stream(client: &reqwest::Client, url: &str, body: &serde_json::Value, timeline: &mut Timeline) -> Result<(), String> {
    let resp = client.post(url).json(body).send().await.map_err(|e| crate::MonitorError::from_reqwest(url, &e).to_string())?;
    let status = resp.status();
    if !status.is_success() {
        let text: String = resp.text().await.unwrap_or_default().chars().take(200).collect();
        return Err(format!("{url} answered HTTP {}: {text}", status.as_u16()));
    }
    let mut splitter = LineSplitter::default();
    let mut stream = resp.bytes_stream();
    while let Some(bytes) = stream.next().await {
        let bytes = bytes.map_err(|e| format!("{url}: stream broke: {}", crate::MonitorError::from_reqwest(url, &e)))?;
        let now = Instant::now();
        for line in splitter.push(&bytes) {
            observe_line(url, &line, now, timeline)?;
        }
    }
    if let Some(line) = splitter.finish() {
        observe_line(url, &line, Instant::now(), timeline)?;
    }
    Ok(())
}

fn observe_line(url: &str, line: &str, now: Instant, timeline: &mut Timeline) -> Result<(), String> {
    match parse_line(line) {
        Ok(Some(chunk)) => {
            if let Some(e) = &chunk.error {
                return Err(format!("{url} reported an error mid-stream: {e}"));
            }
            timeline.observe(&chunk, now);
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(detail) => Err(format!("{url} answered garbage: {detail}")),
    }
}
