//! What the engine tells a request's owner while it runs.

use crate::sampling::FinishReason;
use std::time::Duration;

/// One generated token and the text it makes safe to show.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEvent {
    pub id: u32,
    /// New text (may be empty while a multi-byte character or a possible stop string is incomplete).
    pub text: String,
    pub logprob: Option<f32>,
    pub top_logprobs: Vec<(u32, f32)>,
}

/// Timings in the shape Ollama reports them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Waiting before the first prefill step.
    pub queue_duration: Duration,
    /// From the first prefill step to the first sampled token.
    pub prompt_eval_duration: Duration,
    /// From the first to the last sampled token.
    pub eval_duration: Duration,
    pub time_to_first_token: Duration,
    pub total_duration: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GenerationEvent {
    Token(TokenEvent),
    /// The end; `tail` is text held back until now (never part of a stop string).
    Done { reason: FinishReason, tail: String, stats: GenerationStats },
    Error(String),
}
