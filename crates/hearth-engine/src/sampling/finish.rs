//! Why a sequence finished.

use serde::{Deserialize, Serialize};

/// Why generation of a sequence ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FinishReason {
    /// The model or the client ended it.
    Stop(StopReason),
    /// `max_tokens` or the context limit was reached.
    Length,
}

/// What stopped a sequence before its length limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    /// The model sampled an end-of-sequence token.
    Eos { token: u32 },
    /// Generated text contained `SamplingParams::stop[index]`.
    StopString { index: usize },
}

impl FinishReason {
    /// The wire name used by both OpenAI (`finish_reason`) and Ollama (`done_reason`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Stop(_) => "stop",
            Self::Length => "length",
        }
    }
}
