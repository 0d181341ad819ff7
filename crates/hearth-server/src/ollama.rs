//! Ollama-compatible routes: `/`, `/api/version`, `/api/tags`, `/api/ps`, `/api/show`, `/api/generate`,
//! `/api/chat`, `/api/delete`, `/api/copy`; NDJSON streaming by default, one object with `stream: false`.

use crate::error::{Api, ApiError, ApiResult, ErrorKind};
use crate::generation::{self, Batch};
use crate::ollama_types::{refuse_format, ChatRequest, CopyRequest, GenerateRequest, ModelRef};
use crate::registry::{file_size, Lease};
use crate::{parse_json, AppState};
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_engine::sampling::SamplingParams;
use hearth_engine::{GenerationEvent, GenerationStats};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Wraps a handler's result in Ollama's error format.
fn ollama(result: ApiResult<Response>) -> Response {
    result.unwrap_or_else(|e| e.for_api(Api::Ollama).into_response())
}

pub async fn root() -> &'static str {
    // The exact text Ollama answers with: some clients probe for it.
    "Ollama is running"
}

pub async fn version() -> Json<Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION")}))
}

pub async fn not_implemented() -> Response {
    ApiError::new(ErrorKind::NotImplemented, "not implemented yet in hearth (pulling models and embeddings come later)")
        .for_api(Api::Ollama)
        .into_response()
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{}M", (n as f64 / 1e6).round()),
        n => format!("{}K", (n as f64 / 1e3).round()),
    }
}

/// A model's `details`, read from its header without loading weights.
fn details(path: &Path) -> ApiResult<(Value, hearth_models::ModelFiles)> {
    let files = hearth_models::open(path).map_err(|e| ApiError::internal(format!("reading {}: {e}", path.display())))?;
    let i = &files.info;
    let d = json!({"parent_model": "", "format": i.format, "family": i.architecture, "families": [i.architecture],
        "parameter_size": human_count(i.parameters), "quantization_level": i.quantization});
    Ok((d, files))
}

/// A stable identifier of a model file (its path, size and modification time, hashed): hashing the
/// whole file on every listing would be too slow for large models.
fn pseudo_digest(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok().map(rfc3339).unwrap_or_default();
    let h = Sha256::digest(format!("{}|{}|{modified}", path.display(), file_size(path)).as_bytes());
    h.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn tags(State(state): State<AppState>) -> Response {
    let registry = state.registry.clone();
    let listed = tokio::task::spawn_blocking(move || {
        registry
            .list()
            .into_iter()
            .filter_map(|(name, path)| {
                let (details, _) = details(&path).ok()?;
                let modified = std::fs::metadata(&path).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
                Some(json!({"name": name, "model": name, "modified_at": rfc3339(modified), "size": file_size(&path),
                    "digest": pseudo_digest(&path), "details": details}))
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    Json(json!({"models": listed})).into_response()
}

pub async fn ps(State(state): State<AppState>) -> Response {
    let on_cpu = state.device == "cpu";
    let models: Vec<Value> = state
        .registry
        .loaded()
        .into_iter()
        .map(|m| {
            let info = &m.entry.engine.context().info;
            let expires = m.expires_at.unwrap_or(SystemTime::now() + Duration::from_secs(100 * 365 * 86400));
            json!({"name": m.name, "model": m.name, "size": m.entry.size, "digest": pseudo_digest(&m.path),
                "details": {"parent_model": "", "format": info.format, "family": info.architecture, "families": [info.architecture],
                    "parameter_size": human_count(info.parameters), "quantization_level": info.quantization},
                "expires_at": rfc3339(expires), "size_vram": if on_cpu { 0 } else { m.entry.vram.unwrap_or(m.entry.size) },
                "context_length": m.entry.engine.context().context_length})
        })
        .collect();
    Json(json!({"models": models})).into_response()
}

pub async fn show(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    ollama(async {
        let r: ModelRef = parse_json(body)?;
        let name = r.get()?;
        let path = state.registry.resolve(name).ok_or_else(|| ApiError::model_not_found(name))?;
        let (details, files) = tokio::task::spawn_blocking(move || details(&path))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))??;
        let i = &files.info;
        let arch = &i.architecture;
        let model_info = json!({"general.architecture": arch, "general.parameter_count": i.parameters,
            format!("{arch}.context_length"): i.context_length, format!("{arch}.vocab_size"): i.vocab_size});
        let template = files.chat_template.clone().unwrap_or_default();
        Ok(Json(json!({"modelfile": format!("FROM {}\n", i.path.display()), "parameters": "", "template": template,
            "details": details, "model_info": model_info, "capabilities": ["completion"]}))
        .into_response())
    }
    .await)
}

pub async fn delete(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    ollama(async {
        let r: ModelRef = parse_json(body)?;
        state.registry.delete(r.get()?)?;
        Ok(Json(json!({})).into_response())
    }
    .await)
}

pub async fn copy(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    ollama(async {
        let r: CopyRequest = parse_json(body)?;
        state.registry.copy(&r.source, &r.destination)?;
        Ok(Json(json!({})).into_response())
    }
    .await)
}

pub async fn generate(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    ollama(generate_inner(state, body).await)
}

pub async fn chat(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    ollama(chat_inner(state, body).await)
}

async fn generate_inner(state: AppState, body: Result<Bytes, BytesRejection>) -> ApiResult<Response> {
    let started = Instant::now();
    let req: GenerateRequest = parse_json(body)?;
    refuse_format(&req.format)?;
    let keep_alive = req.keep_alive.as_ref().map(|k| k.parse()).transpose()?;
    if req.prompt.is_empty() {
        return load_or_unload(&state, &req.model, keep_alive, Kind::Generate).await;
    }
    let params = req.options.params()?;
    let lease = state.registry.acquire(&req.model, keep_alive).await?;
    let load_duration = started.elapsed();
    let model = &lease.model;
    let ctx = model.engine.context();
    let prompt = if req.raw {
        hearth_engine::prompt::raw_tokens(ctx, &req.prompt).map_err(|e| ApiError::bad_param("prompt", e.to_string()))?
    } else {
        let mut messages: Vec<Value> = req.system.iter().map(|s| json!({"role": "system", "content": s})).collect();
        messages.push(json!({"role": "user", "content": req.prompt}));
        model.prompt.tokens(ctx, &messages).map_err(|e| ApiError::bad_param("prompt", e.to_string()))?
    };
    run(state, lease, prompt, params, Kind::Generate, req.stream, (started, load_duration))
}

async fn chat_inner(state: AppState, body: Result<Bytes, BytesRejection>) -> ApiResult<Response> {
    let started = Instant::now();
    let req: ChatRequest = parse_json(body)?;
    refuse_format(&req.format)?;
    let keep_alive = req.keep_alive.as_ref().map(|k| k.parse()).transpose()?;
    if req.messages.is_empty() {
        return load_or_unload(&state, &req.model, keep_alive, Kind::Chat).await;
    }
    let params = req.options.params()?;
    let lease = state.registry.acquire(&req.model, keep_alive).await?;
    let load_duration = started.elapsed();
    let messages: Vec<Value> = req.messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
    let prompt = lease.model.prompt.tokens(lease.model.engine.context(), &messages).map_err(|e| ApiError::bad_param("messages", e.to_string()))?;
    run(state, lease, prompt, params, Kind::Chat, req.stream, (started, load_duration))
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Generate,
    Chat,
}

/// An empty prompt loads the model (or, with `keep_alive: 0`, unloads it) and generates nothing.
async fn load_or_unload(state: &AppState, model: &str, keep_alive: Option<crate::config::KeepAlive>, kind: Kind) -> ApiResult<Response> {
    let reason = if keep_alive.is_some_and(|k| k.is_zero()) {
        state.registry.resolve(model).ok_or_else(|| ApiError::model_not_found(model))?;
        state.registry.unload_if_idle(model);
        "unload"
    } else {
        drop(state.registry.acquire(model, keep_alive).await?);
        "load"
    };
    let mut body = json!({"model": model, "created_at": rfc3339(SystemTime::now()), "done": true, "done_reason": reason});
    set_text(&mut body, kind, "");
    Ok(Json(body).into_response())
}

fn set_text(obj: &mut Value, kind: Kind, text: &str) {
    match kind {
        Kind::Generate => obj["response"] = json!(text),
        Kind::Chat => obj["message"] = json!({"role": "assistant", "content": text}),
    }
}

fn run(state: AppState, lease: Lease, prompt: Vec<u32>, params: SamplingParams, kind: Kind, stream: bool, timing: (Instant, Duration)) -> ApiResult<Response> {
    let name = lease.name().to_string();
    let request = hearth_engine::GenerateRequest { prompt, params };
    let batch = generation::start(Arc::new(lease), vec![request], state.metrics.clone()).map_err(|e| e.with_param("prompt"))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(drive(batch, name, kind, stream, timing, tx));
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, std::convert::Infallible>(b), rx)) });
    let content_type = if stream { "application/x-ndjson" } else { "application/json; charset=utf-8" };
    Ok(([(header::CONTENT_TYPE, content_type)], Body::from_stream(chunks)).into_response())
}

/// Produce the response body: one NDJSON line per text piece then the final line with timings, or
/// (not streaming) one object with everything.
async fn drive(mut batch: Batch, model: String, kind: Kind, stream: bool, timing: (Instant, Duration), tx: tokio::sync::mpsc::Sender<Bytes>) {
    let line = |v: Value| Bytes::from(format!("{v}\n"));
    let mut text = String::new();
    loop {
        let next = tokio::select! {
            _ = tx.closed() => return, // client gone: dropping the batch cancels the sequence
            next = batch.next() => next,
        };
        let Some((_, event)) = next else { return };
        match event {
            GenerationEvent::Token(t) if stream => {
                if t.text.is_empty() {
                    continue;
                }
                let mut chunk = json!({"model": model, "created_at": rfc3339(SystemTime::now()), "done": false});
                set_text(&mut chunk, kind, &t.text);
                if tx.send(line(chunk)).await.is_err() {
                    return;
                }
            }
            GenerationEvent::Token(t) => text.push_str(&t.text),
            GenerationEvent::Done { reason, tail, stats } => {
                text.push_str(&tail);
                let shown = if stream { tail.as_str() } else { text.as_str() };
                let _ = tx.send(line(final_chunk(&model, kind, shown, reason.as_str(), &stats, timing))).await;
                return;
            }
            GenerationEvent::Error(e) => {
                let _ = tx.send(line(json!({"error": format!("generation failed: {e}")}))).await;
                return;
            }
        }
    }
}

fn final_chunk(model: &str, kind: Kind, text: &str, reason: &str, s: &GenerationStats, timing: (Instant, Duration)) -> Value {
    let ns = |d: Duration| d.as_nanos() as u64;
    let mut v = json!({"model": model, "created_at": rfc3339(SystemTime::now()), "done": true, "done_reason": reason,
        "total_duration": ns(timing.0.elapsed()), "load_duration": ns(timing.1),
        "prompt_eval_count": s.prompt_tokens, "prompt_eval_duration": ns(s.prompt_eval_duration),
        "eval_count": s.generated_tokens, "eval_duration": ns(s.eval_duration)});
    set_text(&mut v, kind, text);
    v
}
