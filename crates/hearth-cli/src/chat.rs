//! Turning a conversation into prompt tokens with the model's own chat template.

use anyhow::{Context, Result};
use hearth_engine::ModelContext;
use hearth_formats::chat_template::ChatTemplate;
use serde_json::{json, Value};

/// How a prompt reaches the model.
pub enum PromptMode {
    /// Rendered through the chat template (the model's, or ChatML for chat use of a model without one).
    Chat(ChatTemplate),
    /// Sent as plain text (base models without a template).
    Raw,
}

impl PromptMode {
    pub fn for_model(ctx: &ModelContext, raw: bool) -> Result<Self> {
        if raw {
            return Ok(PromptMode::Raw);
        }
        let Some(source) = &ctx.chat_template else { return Ok(PromptMode::Raw) };
        let bos = ctx.bos_token.as_deref().unwrap_or("");
        let eos = ctx.eos_token.as_deref().unwrap_or("");
        let template = ChatTemplate::new(source, bos, eos).context("the model's chat template does not compile")?;
        Ok(PromptMode::Chat(template))
    }

    /// Prompt token ids for `messages` (role/content objects), ending where the assistant speaks next.
    pub fn tokens(&self, ctx: &ModelContext, messages: &[Value]) -> Result<Vec<u32>> {
        match self {
            PromptMode::Chat(t) => {
                let text = t.render(messages, true, &json!({})).context("rendering the chat template")?;
                // The template writes BOS itself where the model wants it; parse special tokens it emits.
                Ok(ctx.tokenizer.encode(&text, false, true)?)
            }
            PromptMode::Raw => {
                let text: String = messages.iter().filter_map(|m| m.get("content").and_then(Value::as_str)).collect::<Vec<_>>().join("\n");
                Ok(ctx.tokenizer.encode(&text, true, false)?)
            }
        }
    }
}
