//! Turning a conversation or a plain text into prompt tokens, with the model's own chat template:
//! shared by `hearth run` and the server so both build the same prompts.

use crate::handle::ModelContext;
use hearth_formats::chat_template::{ChatTemplate, TemplateError};
use hearth_formats::tokenizer::TokenizerError;
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("the model's chat template: {0}")]
    Template(#[from] TemplateError),
    #[error("tokenizing the prompt: {0}")]
    Tokenize(#[from] TokenizerError),
}

/// How a prompt reaches the model.
pub enum PromptMode {
    /// Rendered through the chat template (the model's, or ChatML for chat use of a model without one).
    Chat(Box<ChatTemplate>),
    /// Sent as plain text (base models without a template).
    Raw,
}

impl PromptMode {
    /// The model's template, or `Raw` when asked for or when the model has none.
    pub fn for_model(ctx: &ModelContext, raw: bool) -> Result<Self, PromptError> {
        if raw {
            return Ok(PromptMode::Raw);
        }
        let Some(source) = &ctx.chat_template else { return Ok(PromptMode::Raw) };
        let bos = ctx.bos_token.as_deref().unwrap_or("");
        let eos = ctx.eos_token.as_deref().unwrap_or("");
        Ok(PromptMode::Chat(Box::new(ChatTemplate::new(source, bos, eos)?)))
    }

    /// Prompt token ids for `messages` (role/content objects), ending where the assistant speaks next.
    pub fn tokens(&self, ctx: &ModelContext, messages: &[Value]) -> Result<Vec<u32>, PromptError> {
        match self {
            PromptMode::Chat(t) => {
                let text = t.render(messages, true, &json!({}))?;
                // The template writes BOS itself where the model wants it; parse special tokens it emits.
                Ok(ctx.tokenizer.encode(&text, false, true)?)
            }
            PromptMode::Raw => {
                let text: String = messages.iter().filter_map(|m| m.get("content").and_then(Value::as_str)).collect::<Vec<_>>().join("\n");
                Ok(raw_tokens(ctx, &text)?)
            }
        }
    }
}

/// A plain-text prompt (completions, raw mode): BOS as the model wants it, special-token text kept literal.
pub fn raw_tokens(ctx: &ModelContext, text: &str) -> Result<Vec<u32>, TokenizerError> {
    ctx.tokenizer.encode(text, true, false)
}
