//! Wire types of the Ollama API requests hearth accepts, and their translation into sampling parameters
//! with Ollama's defaults.

use crate::config::KeepAlive;
use crate::error::{ApiError, ApiResult};
use hearth_engine::sampling::SamplingParams;
use serde::Deserialize;
use serde_json::Value;

/// `keep_alive`: a duration string or a number of seconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum KeepAliveSpec {
    Seconds(f64),
    Text(String),
}

impl KeepAliveSpec {
    pub fn parse(&self) -> ApiResult<KeepAlive> {
        match self {
            Self::Seconds(s) => KeepAlive::from_seconds(*s),
            Self::Text(t) => KeepAlive::parse(t),
        }
        .map_err(|e| ApiError::bad_param("keep_alive", e))
    }
}

/// `stop` may be one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StopSpec {
    One(String),
    Many(Vec<String>),
}

/// Model options; unknown ones (mirostat, num_thread, ...) are accepted and ignored, as Ollama does
/// for options a runner does not use.
#[derive(Debug, Default, Deserialize)]
pub struct Options {
    pub num_predict: Option<i64>,
    pub temperature: Option<f32>,
    pub top_k: Option<i64>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<StopSpec>,
    pub repeat_penalty: Option<f32>,
    pub repeat_last_n: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub num_ctx: Option<i64>,
}

impl Options {
    /// Ollama's defaults: temperature 0.8, top_k 40, top_p 0.9, repeat_penalty 1.1 over the last 64 tokens.
    pub fn params(&self) -> ApiResult<SamplingParams> {
        let max_tokens = match self.num_predict {
            // -1: until the model stops; -2: until the context is full. Both are the engine's default.
            None | Some(-1) | Some(-2) => None,
            Some(n) if n < 1 => return Err(ApiError::bad_param("num_predict", format!("num_predict must be positive, -1 or -2, got {n}"))),
            Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        };
        let non_negative = |field: &str, v: Option<i64>, default: usize| match v {
            Some(x) if x < 0 => Err(ApiError::bad_param(field, format!("{field} must not be negative, got {x}"))),
            Some(x) => Ok(x as usize),
            None => Ok(default),
        };
        if let Some(c) = self.num_ctx.filter(|&c| c < 1) {
            return Err(ApiError::bad_param("num_ctx", format!("num_ctx must be positive, got {c}")));
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(StopSpec::One(s)) => vec![s.clone()],
            Some(StopSpec::Many(v)) => v.clone(),
        };
        let params = SamplingParams {
            temperature: self.temperature.unwrap_or(0.8),
            top_k: non_negative("top_k", self.top_k, 40)?,
            top_p: self.top_p.unwrap_or(0.9),
            min_p: self.min_p.unwrap_or(0.0),
            repeat_penalty: self.repeat_penalty.unwrap_or(1.1),
            repeat_last_n: non_negative("repeat_last_n", self.repeat_last_n, 64)?,
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            seed: self.seed.filter(|&s| s >= 0).map(|s| s as u64),
            max_tokens,
            stop,
            ..SamplingParams::default()
        };
        params.validate().map_err(|e| ApiError::bad_param(e.field(), e.to_string()))?;
        Ok(params)
    }
}

fn default_stream() -> bool {
    true
}

#[derive(Debug, Deserialize)]
pub struct GenerateRequest {
    pub model: String,
    #[serde(default)]
    pub prompt: String,
    pub system: Option<String>,
    #[serde(default)]
    pub raw: bool,
    #[serde(default = "default_stream")]
    pub stream: bool,
    #[serde(default)]
    pub options: Options,
    pub keep_alive: Option<KeepAliveSpec>,
    /// Accepted for compatibility; structured output is not implemented (a non-empty value is refused).
    pub format: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: String,
}

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    #[serde(default)]
    pub messages: Vec<Message>,
    #[serde(default = "default_stream")]
    pub stream: bool,
    #[serde(default)]
    pub options: Options,
    pub keep_alive: Option<KeepAliveSpec>,
    pub format: Option<Value>,
}

/// `/api/show` and `/api/delete` name the model as `model` (or the older `name`).
#[derive(Debug, Deserialize)]
pub struct ModelRef {
    pub model: Option<String>,
    pub name: Option<String>,
}

impl ModelRef {
    pub fn get(&self) -> ApiResult<&str> {
        self.model.as_deref().or(self.name.as_deref()).ok_or_else(|| ApiError::bad_param("model", "missing field `model`"))
    }
}

#[derive(Debug, Deserialize)]
pub struct CopyRequest {
    pub source: String,
    pub destination: String,
}

/// Structured output (`format`) is not implemented: refuse it rather than silently ignore it.
pub fn refuse_format(format: &Option<Value>) -> ApiResult<()> {
    match format {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s.is_empty() => Ok(()),
        Some(_) => Err(ApiError::new(crate::error::ErrorKind::NotImplemented, "`format` (structured output) is not supported yet")),
    }
}
