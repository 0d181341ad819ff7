//! OpenAI-compatible routes: `GET /v1/models`, `POST /v1/chat/completions`, `POST /v1/completions`,
//! as one JSON object or as SSE chunks ending in `data: [DONE]`.

use crate::error::{Api, ApiError, ApiResult};
use crate::generation::{self, Batch, Finished};
use crate::openai_types::{ChatRequest, CompletionRequest, PromptSpec, Validated};
use crate::{parse_json, AppState};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_engine::{GenerateRequest, GenerationEvent, ModelContext, TokenEvent};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub async fn list_models(State(state): State<AppState>) -> Response {
    let data: Vec<Value> = state
        .registry
        .list()
        .into_iter()
        .map(|(name, _)| json!({"id": name, "object": "model", "created": 0, "owned_by": "hearth"}))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

pub async fn chat(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    chat_inner(state, body).await.unwrap_or_else(|e| e.for_api(Api::OpenAi).into_response())
}

pub async fn completions(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    completions_inner(state, body).await.unwrap_or_else(|e| e.for_api(Api::OpenAi).into_response())
}

/// What differs between the two endpoints' outputs.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Chat,
    Text,
}

async fn chat_inner(state: AppState, body: Result<Bytes, BytesRejection>) -> ApiResult<Response> {
    let req: ChatRequest = parse_json(body)?;
    let logprobs = req.logprobs.then(|| req.top_logprobs.unwrap_or(0));
    let v = req.common.validate(logprobs)?;
    if req.messages.is_empty() {
        return Err(ApiError::bad_param("messages", "messages must not be empty"));
    }
    let messages = req
        .messages
        .iter()
        .map(|m| {
            let role = if m.role == "developer" { "system" } else { m.role.as_str() };
            let content = m.content.as_ref().map(|c| c.text()).transpose()?.unwrap_or_default();
            Ok(json!({"role": role, "content": content}))
        })
        .collect::<ApiResult<Vec<Value>>>()?;
    let lease = Arc::new(state.registry.acquire(&req.model, None).await?);
    let prompt = lease.model.prompt.tokens(lease.model.engine.context(), &messages).map_err(|e| ApiError::bad_param("messages", e.to_string()))?;
    let requests = (0..v.n).map(|i| GenerateRequest { prompt: prompt.clone(), params: v.params_for_choice(i) }).collect();
    let batch = generation::start(lease, requests, state.metrics.clone()).map_err(|e| e.with_param("messages"))?;
    respond(batch, &req.model, Kind::Chat, &v, prompt.len()).await
}

async fn completions_inner(state: AppState, body: Result<Bytes, BytesRejection>) -> ApiResult<Response> {
    let req: CompletionRequest = parse_json(body)?;
    let v = req.common.validate(req.logprobs)?;
    let lease = Arc::new(state.registry.acquire(&req.model, None).await?);
    let ctx = lease.model.engine.context();
    let encode = |t: &str| hearth_engine::prompt::raw_tokens(ctx, t).map_err(|e| ApiError::bad_param("prompt", e.to_string()));
    let prompts: Vec<Vec<u32>> = match &req.prompt {
        PromptSpec::Text(t) => vec![encode(t)?],
        PromptSpec::Texts(ts) if ts.is_empty() => return Err(ApiError::bad_param("prompt", "prompt must not be empty")),
        PromptSpec::Texts(ts) if ts.len() * v.n > crate::openai_types::MAX_N as usize => {
            return Err(ApiError::bad_param("prompt", "too many prompts times n"))
        }
        PromptSpec::Texts(ts) => ts.iter().map(|t| encode(t)).collect::<ApiResult<_>>()?,
        PromptSpec::Tokens(ids) => vec![ids.clone()],
    };
    let mut requests = Vec::new();
    for p in &prompts {
        for i in 0..v.n {
            requests.push(GenerateRequest { prompt: p.clone(), params: v.params_for_choice(i) });
        }
    }
    let prompt_tokens = prompts.iter().map(Vec::len).sum::<usize>() * v.n;
    let batch = generation::start(lease, requests, state.metrics.clone()).map_err(|e| e.with_param("prompt"))?;
    let mut v = v;
    v.n *= prompts.len();
    respond(batch, &req.model, Kind::Text, &v, prompt_tokens).await
}

async fn respond(batch: Batch, model: &str, kind: Kind, v: &Validated, prompt_tokens: usize) -> ApiResult<Response> {
    let id = response_id(kind);
    if v.stream {
        return Ok(stream(batch, model.to_string(), id, kind, v.clone(), prompt_tokens).into_response());
    }
    let lease = batch.lease.clone();
    let finished = batch.collect(v.n).await?;
    let ctx = lease.model.engine.context();
    let choices: Vec<Value> = finished.iter().enumerate().map(|(i, f)| choice_json(ctx, kind, i, f, v)).collect();
    let completion_tokens: usize = finished.iter().map(|f| f.stats.generated_tokens).sum();
    let object = if kind == Kind::Chat { "chat.completion" } else { "text_completion" };
    Ok(Json(json!({
        "id": id, "object": object, "created": now_unix(), "model": model,
        "choices": choices, "usage": usage(prompt_tokens, completion_tokens), "system_fingerprint": "hearth",
    }))
    .into_response())
}

fn choice_json(ctx: &ModelContext, kind: Kind, index: usize, f: &Finished, v: &Validated) -> Value {
    let logprobs = v.params.logprobs.map(|_| logprobs_json(ctx, kind, &f.tokens));
    match kind {
        Kind::Chat => json!({"index": index, "message": {"role": "assistant", "content": f.text}, "logprobs": logprobs, "finish_reason": f.reason}),
        Kind::Text => json!({"index": index, "text": f.text, "logprobs": logprobs, "finish_reason": f.reason}),
    }
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// The text a token stands for, and its bytes (a byte token may be part of a character).
fn token_piece(ctx: &ModelContext, id: u32) -> (String, Vec<u8>) {
    let bytes = ctx.tokenizer.token_to_piece(id, true).unwrap_or_default();
    (String::from_utf8_lossy(&bytes).into_owned(), bytes)
}

fn logprobs_json(ctx: &ModelContext, kind: Kind, tokens: &[TokenEvent]) -> Value {
    match kind {
        Kind::Chat => {
            let content: Vec<Value> = tokens
                .iter()
                .map(|t| {
                    let (text, bytes) = token_piece(ctx, t.id);
                    let top: Vec<Value> = t
                        .top_logprobs
                        .iter()
                        .map(|&(id, lp)| {
                            let (text, bytes) = token_piece(ctx, id);
                            json!({"token": text, "logprob": lp, "bytes": bytes})
                        })
                        .collect();
                    json!({"token": text, "logprob": t.logprob, "bytes": bytes, "top_logprobs": top})
                })
                .collect();
            json!({"content": content})
        }
        Kind::Text => {
            let texts: Vec<String> = tokens.iter().map(|t| token_piece(ctx, t.id).0).collect();
            let mut offset = 0;
            let offsets: Vec<usize> = texts.iter().map(|t| { let o = offset; offset += t.len(); o }).collect();
            let top: Vec<Value> = tokens
                .iter()
                .map(|t| t.top_logprobs.iter().map(|&(id, lp)| (token_piece(ctx, id).0, json!(lp))).collect::<serde_json::Map<_, _>>().into())
                .collect();
            let lps: Vec<Option<f32>> = tokens.iter().map(|t| t.logprob).collect();
            json!({"tokens": texts, "token_logprobs": lps, "top_logprobs": top, "text_offset": offsets})
        }
    }
}

/// SSE: a role delta first (chat), content deltas, a finish chunk per choice, the usage chunk if
/// asked, then `[DONE]`. A client that goes away drops the batch, which cancels its sequences.
fn stream(mut batch: Batch, model: String, id: String, kind: Kind, v: Validated, prompt_tokens: usize) -> impl IntoResponse {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let created = now_unix();
        let object = if kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" };
        let usage_field = if v.include_usage { Some(Value::Null) } else { None };
        let chunk = |choice: Value| {
            let mut c = json!({"id": id, "object": object, "created": created, "model": model, "choices": [choice], "system_fingerprint": "hearth"});
            if let Some(u) = &usage_field {
                c["usage"] = u.clone();
            }
            Event::default().data(c.to_string())
        };
        if kind == Kind::Chat {
            for i in 0..v.n {
                let first = json!({"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null});
                if tx.send(chunk(first)).await.is_err() {
                    return;
                }
            }
        }
        let ctx_lease = batch.lease.clone();
        let ctx = ctx_lease.model.engine.context();
        let mut completion_tokens = 0;
        loop {
            let next = tokio::select! {
                _ = tx.closed() => return, // client gone: dropping the batch cancels the sequences
                next = batch.next() => next,
            };
            let Some((i, event)) = next else { break };
            let payload = match event {
                GenerationEvent::Token(t) => {
                    let lp = v.params.logprobs.map(|_| logprobs_json(ctx, kind, std::slice::from_ref(&t)));
                    delta(kind, i, &t.text, lp, None)
                }
                GenerationEvent::Done { reason, tail, stats } => {
                    completion_tokens += stats.generated_tokens;
                    delta(kind, i, &tail, None, Some(reason.as_str()))
                }
                GenerationEvent::Error(e) => {
                    let err = ApiError::internal(format!("generation failed: {e}")).body();
                    let _ = tx.send(Event::default().data(err.to_string())).await;
                    return;
                }
            };
            if let Some(p) = payload {
                if tx.send(chunk(p)).await.is_err() {
                    return;
                }
            }
        }
        if v.include_usage {
            let u = json!({"id": id, "object": object, "created": created, "model": model, "choices": [],
                "usage": usage(prompt_tokens, completion_tokens), "system_fingerprint": "hearth"});
            let _ = tx.send(Event::default().data(u.to_string())).await;
        }
        let _ = tx.send(Event::default().data("[DONE]")).await;
    });
    let events = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx)) });
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// One streamed choice delta; empty text without a finish reason is skipped.
fn delta(kind: Kind, index: usize, text: &str, logprobs: Option<Value>, finish: Option<&str>) -> Option<Value> {
    if text.is_empty() && finish.is_none() {
        return None;
    }
    Some(match kind {
        Kind::Chat => {
            let d = if text.is_empty() { json!({}) } else { json!({"content": text}) };
            json!({"index": index, "delta": d, "logprobs": logprobs, "finish_reason": finish})
        }
        Kind::Text => json!({"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}),
    })
}

fn response_id(kind: Kind) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let prefix = if kind == Kind::Chat { "chatcmpl" } else { "cmpl" };
    format!("{prefix}-{:x}{n:06x}", now_unix())
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
