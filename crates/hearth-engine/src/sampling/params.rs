//! Sampling parameters of one request, and their validation.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Largest number of alternatives `logprobs` may ask for (OpenAI's `top_logprobs` limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// How one sequence picks its next tokens and when it stops.
///
/// The defaults are deterministic and neutral: greedy decoding (`temperature = 0`) with every filter
/// and penalty disabled. API layers fill in their own defaults (OpenAI `temperature = 1`; Ollama
/// `temperature = 0.8, top_k = 40, top_p = 0.9, repeat_penalty = 1.1`) before building a
/// [`Sampler`](super::Sampler). Missing fields in serialized form take these defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// Softmax temperature. `0` means greedy: argmax, ties broken by the lowest token id.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; `0` disables.
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest set of most likely tokens whose probability mass
    /// reaches `top_p`; in `(0, 1]`, `1` disables.
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the best token's; in `[0, 1]`, `0` disables.
    pub min_p: f32,
    /// llama.cpp-style repetition penalty over the last `repeat_last_n` history tokens: a positive
    /// logit is divided by it, a negative one multiplied. `1` disables.
    pub repeat_penalty: f32,
    /// How many of the most recent history tokens `repeat_penalty` looks at; `0` disables.
    pub repeat_last_n: usize,
    /// OpenAI presence penalty, subtracted once from every token present in the history; in `[-2, 2]`.
    pub presence_penalty: f32,
    /// OpenAI frequency penalty, subtracted once per occurrence in the history; in `[-2, 2]`.
    pub frequency_penalty: f32,
    /// Seed of the sequence's random generator; `None` draws one from the OS.
    pub seed: Option<u64>,
    /// Most tokens to generate; `None` means until a stop condition or the context limit.
    pub max_tokens: Option<usize>,
    /// Strings that end generation; the stop string itself is not emitted.
    pub stop: Vec<String>,
    /// Return this many most likely alternatives (at most 20) with each token, plus the chosen
    /// token's log-probability; `None` computes no log-probabilities at all.
    pub logprobs: Option<usize>,
    /// Never sample an end-of-sequence token (their logits are masked), so generation runs to
    /// `max_tokens` or a stop string.
    pub ignore_eos: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
            max_tokens: None,
            stop: Vec::new(),
            logprobs: None,
            ignore_eos: false,
        }
    }
}

/// A sampling parameter outside its allowed range.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SamplingParamsError {
    #[error("sampling parameter `{field}` is {value}, expected {expected}")]
    OutOfRange {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("sampling parameter `stop[{index}]` is an empty string")]
    EmptyStop { index: usize },
}

impl SamplingParamsError {
    /// The name of the offending field, e.g. `top_p` or `stop`.
    pub fn field(&self) -> &'static str {
        match self {
            Self::OutOfRange { field, .. } => field,
            Self::EmptyStop { .. } => "stop",
        }
    }
}

impl SamplingParams {
    /// True when decoding is greedy (argmax), so the random generator is never used.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// True when any penalty would change a logit.
    pub(crate) fn has_penalties(&self) -> bool {
        (self.repeat_penalty != 1.0 && self.repeat_last_n > 0)
            || self.presence_penalty != 0.0
            || self.frequency_penalty != 0.0
    }

    /// True when no penalty can raise a logit (a repeat penalty of at least 1, presence and frequency
    /// penalties of at least 0): a token's penalised logit is then at most its raw one.
    pub(crate) fn penalties_only_lower(&self) -> bool {
        self.repeat_penalty >= 1.0 && self.presence_penalty >= 0.0 && self.frequency_penalty >= 0.0
    }

    /// Checks every field's range; the error names the first offending field.
    pub fn validate(&self) -> Result<(), SamplingParamsError> {
        check_f32(
            "temperature",
            self.temperature,
            "a finite value >= 0",
            |v| v >= 0.0,
        )?;
        check_f32("top_p", self.top_p, "a value in (0, 1]", |v| {
            v > 0.0 && v <= 1.0
        })?;
        check_f32("min_p", self.min_p, "a value in [0, 1]", |v| {
            (0.0..=1.0).contains(&v)
        })?;
        check_f32(
            "repeat_penalty",
            self.repeat_penalty,
            "a finite value > 0",
            |v| v > 0.0,
        )?;
        let openai_penalty = |v: f32| (-2.0..=2.0).contains(&v);
        check_f32(
            "presence_penalty",
            self.presence_penalty,
            "a value in [-2, 2]",
            openai_penalty,
        )?;
        check_f32(
            "frequency_penalty",
            self.frequency_penalty,
            "a value in [-2, 2]",
            openai_penalty,
        )?;
        if self.max_tokens == Some(0) {
            return Err(out_of_range("max_tokens", "0", "at least 1"));
        }
        if let Some(n) = self.logprobs.filter(|&n| n > MAX_TOP_LOGPROBS) {
            return Err(out_of_range("logprobs", &n.to_string(), "at most 20"));
        }
        match self.stop.iter().position(String::is_empty) {
            Some(index) => Err(SamplingParamsError::EmptyStop { index }),
            None => Ok(()),
        }
    }
}

fn check_f32(
    field: &'static str,
    value: f32,
    expected: &'static str,
    in_range: impl Fn(f32) -> bool,
) -> Result<(), SamplingParamsError> {
    // NaN fails every comparison, so `in_range` alone would already reject it; infinity is
    // rejected explicitly because open-ended ranges would accept it.
    if value.is_finite() && in_range(value) {
        Ok(())
    } else {
        Err(out_of_range(field, &value.to_string(), expected))
    }
}

fn out_of_range(field: &'static str, value: &str, expected: &'static str) -> SamplingParamsError {
    SamplingParamsError::OutOfRange {
        field,
        value: value.to_owned(),
        expected,
    }
}
