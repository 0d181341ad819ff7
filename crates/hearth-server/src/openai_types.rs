//! Wire types of the OpenAI API requests hearth accepts, and their translation into engine requests
//! ("parse, don't validate": a [`Validated`] request has every field checked and defaulted).

use crate::error::{ApiError, ApiResult};
use hearth_engine::sampling::{SamplingParams, MAX_TOP_LOGPROBS};
use serde::Deserialize;
use serde_json::Value;

/// Most choices one request may ask for.
pub const MAX_N: i64 = 16;
/// Most stop strings one request may give.
pub const MAX_STOPS: usize = 16;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StopSpec {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Sampling fields shared by chat and text completions (plus vLLM's common extras).
#[derive(Debug, Default, Deserialize)]
pub struct CommonParams {
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub n: Option<i64>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub stop: Option<StopSpec>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    #[serde(default)]
    pub ignore_eos: bool,
}

#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<MessageContent>,
}

/// A message's content: a string, or a list of parts of which the text ones count.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<Value>),
}

impl MessageContent {
    pub fn text(&self) -> ApiResult<String> {
        match self {
            Self::Text(t) => Ok(t.clone()),
            Self::Parts(parts) => parts
                .iter()
                .map(|p| match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => Ok(t.to_string()),
                    (kind, _) => Err(ApiError::bad_param("messages", format!("content part of type {kind:?} is not supported (text only)"))),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub logprobs: bool,
    pub top_logprobs: Option<i64>,
    #[serde(flatten)]
    pub common: CommonParams,
}

/// A completions prompt: text, several texts, or token ids.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PromptSpec {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
}

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: PromptSpec,
    pub logprobs: Option<i64>,
    #[serde(flatten)]
    pub common: CommonParams,
}

/// The checked, defaulted form of the shared fields.
#[derive(Debug, Clone)]
pub struct Validated {
    pub params: SamplingParams,
    pub n: usize,
    pub stream: bool,
    pub include_usage: bool,
}

impl CommonParams {
    /// Apply OpenAI's defaults and ranges; `logprobs` is the number of alternatives asked for, if any.
    pub fn validate(&self, logprobs: Option<i64>) -> ApiResult<Validated> {
        let max_tokens = match self.max_completion_tokens.or(self.max_tokens) {
            Some(m) if m < 1 => return Err(ApiError::bad_param("max_tokens", format!("max_tokens must be at least 1, got {m}"))),
            Some(m) => Some(usize::try_from(m).unwrap_or(usize::MAX)),
            None => None,
        };
        let n = self.n.unwrap_or(1);
        if !(1..=MAX_N).contains(&n) {
            return Err(ApiError::bad_param("n", format!("n must be between 1 and {MAX_N}, got {n}")));
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(StopSpec::One(s)) => vec![s.clone()],
            Some(StopSpec::Many(v)) => v.clone(),
        };
        if stop.len() > MAX_STOPS {
            return Err(ApiError::bad_param("stop", format!("at most {MAX_STOPS} stop strings, got {}", stop.len())));
        }
        let top_k = match self.top_k {
            Some(k) if k < -1 => return Err(ApiError::bad_param("top_k", format!("top_k must be -1, 0 or positive, got {k}"))),
            Some(k) => usize::try_from(k).unwrap_or(0),
            None => 0,
        };
        let logprobs = match logprobs {
            Some(k) if !(0..=MAX_TOP_LOGPROBS as i64).contains(&k) => {
                return Err(ApiError::bad_param("top_logprobs", format!("top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}, got {k}")))
            }
            Some(k) => Some(k as usize),
            None => None,
        };
        let temperature = self.temperature.unwrap_or(1.0);
        if temperature > 2.0 {
            return Err(ApiError::bad_param("temperature", format!("temperature must be between 0 and 2, got {temperature}")));
        }
        let params = SamplingParams {
            temperature,
            top_k,
            top_p: self.top_p.unwrap_or(1.0),
            min_p: self.min_p.unwrap_or(0.0),
            repeat_penalty: self.repetition_penalty.unwrap_or(1.0),
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            seed: self.seed.map(|s| s as u64),
            max_tokens,
            stop,
            logprobs,
            ignore_eos: self.ignore_eos,
            ..SamplingParams::default()
        };
        params.validate().map_err(|e| ApiError::bad_param(e.field(), e.to_string()))?;
        let include_usage = self.stream_options.as_ref().is_some_and(|o| o.include_usage);
        Ok(Validated { params, n: n as usize, stream: self.stream, include_usage })
    }
}

impl Validated {
    /// The sampling parameters of choice `i`: choices differ by seed, so a seeded request stays reproducible.
    pub fn params_for_choice(&self, i: usize) -> SamplingParams {
        let mut p = self.params.clone();
        p.seed = p.seed.map(|s| s.wrapping_add(i as u64));
        p
    }
}
