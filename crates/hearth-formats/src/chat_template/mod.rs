//! Chat templates rendered the way Hugging Face's `apply_chat_template` renders them: a Jinja
//! environment with `trim_blocks`, `lstrip_blocks`, loop controls and Python string methods, plus
//! HF's globals `raise_exception` and `strftime_now` and its `tojson` (Python `json.dumps`).
//!
//! The context holds `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, `tools` and
//! `documents` (both `none` unless given) and any extra variables the caller passes.

mod pyjson;

use chrono::NaiveDateTime;
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State};

const TEMPLATE_NAME: &str = "chat_template";

/// ChatML, the conventional template for chat models that ship none.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// For base models: the message contents joined by blank lines, with BOS text left to the tokenizer.
pub const PLAIN_TEMPLATE: &str = "{% for message in messages %}{{ message['content'] }}{% if not loop.last %}{{ '\\n\\n' }}{% endif %}{% endfor %}";

/// Why a template could not be compiled or rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("chat template does not compile (line {line}): {message}")]
    Syntax { line: usize, message: String },
    /// The template called `raise_exception(message)`, e.g. on a bad role order.
    #[error("chat template raised: {0}")]
    Raised(String),
    #[error("rendering the chat template failed{}: {message}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Render {
        line: Option<usize>,
        message: String,
    },
    #[error("invalid chat template input: {0}")]
    InvalidInput(String),
}

/// A compiled chat template. Rendering takes `&self`, so one template serves concurrent requests.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

/// The error a `raise_exception` call carries, so rendering can tell it from other failures.
#[derive(Debug)]
struct Raised(String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Raised {}

impl ChatTemplate {
    /// Compiles `source`; `bos_token`/`eos_token` are the texts templates see as `bos_token` and
    /// `eos_token`.
    pub fn new(
        source: &str,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<ChatTemplate, TemplateError> {
        let mut env = hf_environment()?;
        env.add_template_owned(TEMPLATE_NAME, source.to_string())
            .map_err(|e| TemplateError::Syntax {
                line: e.line().unwrap_or(0),
                message: e.detail().unwrap_or("syntax error").to_string(),
            })?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// [`CHATML_TEMPLATE`], for chat models without a template of their own.
    pub fn fallback() -> ChatTemplate {
        Self::new(CHATML_TEMPLATE, "", "")
            .unwrap_or_else(|_| unreachable!("the built-in ChatML template compiles"))
    }

    /// [`PLAIN_TEMPLATE`], for base models: contents joined by blank lines, no role markup.
    pub fn plain() -> ChatTemplate {
        Self::new(PLAIN_TEMPLATE, "", "")
            .unwrap_or_else(|_| unreachable!("the built-in plain template compiles"))
    }

    /// Makes `strftime_now` report `now` instead of the local time (reproducible renders, tests).
    pub fn with_fixed_time(mut self, now: NaiveDateTime) -> ChatTemplate {
        self.env
            .add_function("strftime_now", move |fmt: String| strftime(&now, &fmt));
        self
    }

    /// Renders `messages` (objects with `role`, `content` and optionally `tool_calls`, ...).
    /// `extra_context` (an object or null) adds variables such as `tools` or `enable_thinking`.
    pub fn render(
        &self,
        messages: &[serde_json::Value],
        add_generation_prompt: bool,
        extra_context: &serde_json::Value,
    ) -> Result<String, TemplateError> {
        let ctx = self.context(messages, add_generation_prompt, extra_context)?;
        let template = self.env.get_template(TEMPLATE_NAME).map_err(render_error)?;
        template.render(ctx).map_err(render_error)
    }

    fn context(
        &self,
        messages: &[serde_json::Value],
        add_generation_prompt: bool,
        extra: &serde_json::Value,
    ) -> Result<Value, TemplateError> {
        let mut ctx = serde_json::Map::new();
        let messages = messages.iter().map(alias_reasoning).collect();
        ctx.insert("messages".into(), serde_json::Value::Array(messages));
        ctx.insert("add_generation_prompt".into(), add_generation_prompt.into());
        ctx.insert("bos_token".into(), self.bos_token.clone().into());
        ctx.insert("eos_token".into(), self.eos_token.clone().into());
        // HF always passes these two, as None when absent: templates test `tools is not none`.
        ctx.insert("tools".into(), serde_json::Value::Null);
        ctx.insert("documents".into(), serde_json::Value::Null);
        match extra {
            serde_json::Value::Null => {}
            serde_json::Value::Object(map) => ctx.extend(map.clone()),
            other => {
                return Err(TemplateError::InvalidInput(format!(
                    "extra context must be an object, got {other}"
                )))
            }
        }
        Ok(Value::from(minijinja::value::Serde(
            serde_json::Value::Object(ctx),
        )))
    }
}

/// Field names a message's reasoning arrives under; templates read the first (or `thinking`).
const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "thinking", "reasoning"];

/// transformers copies a message's reasoning to both `thinking` (inserted first) and
/// `reasoning_content` (last), so templates reading either name see it.
fn alias_reasoning(message: &serde_json::Value) -> serde_json::Value {
    let serde_json::Value::Object(map) = message else {
        return message.clone();
    };
    let Some(reasoning) = REASONING_FIELDS
        .iter()
        .find_map(|k| map.get(*k).filter(|v| !v.is_null()))
    else {
        return message.clone();
    };
    let mut out = serde_json::Map::new();
    out.insert("thinking".into(), reasoning.clone());
    out.extend(map.iter().map(|(k, v)| (k.clone(), v.clone())));
    out.insert("reasoning_content".into(), reasoning.clone());
    serde_json::Value::Object(out)
}

/// The environment HF builds: trim_blocks, lstrip_blocks, no kept trailing newline, loop controls,
/// Python methods, and HF's extra filter and globals.
fn hf_environment() -> Result<Environment<'static>, TemplateError> {
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(false)
        .build()
        .map_err(|e| TemplateError::Syntax {
            line: 0,
            message: e.to_string(),
        })?;
    env.set_syntax(syntax);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(python_formatter);
    env.add_filter("tojson", tojson);
    env.add_function(
        "raise_exception",
        |message: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message.clone())
                .with_source(Raised(message)))
        },
    );
    env.add_function("strftime_now", |fmt: String| {
        strftime(&chrono::Local::now().naive_local(), &fmt)
    });
    Ok(env)
}

/// Jinja2 prints Python values: `None`, `True`, `False`; undefined prints nothing.
fn python_formatter(
    out: &mut minijinja::Output,
    state: &mut State,
    value: &Value,
) -> Result<(), Error> {
    let text = match value.kind() {
        ValueKind::None => "None",
        ValueKind::Bool if value.is_true() => "True",
        ValueKind::Bool => "False",
        _ => return minijinja::escape_formatter(out, state, value),
    };
    out.write_str(text)
        .map_err(|e| Error::new(ErrorKind::WriteFailure, e.to_string()))
}

/// HF's `tojson`: `json.dumps(x, ensure_ascii=False, indent=indent, separators=separators,
/// sort_keys=sort_keys)`.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_i64() {
            Some(n) => Some(" ".repeat(usize::try_from(n).unwrap_or(0))),
            None => Some(v.as_str().unwrap_or_default().to_string()),
        },
    };
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let (item_separator, key_separator) = match separators.as_deref() {
        Some([item, key]) => (Some(item.clone()), Some(key.clone())),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson separators must be a pair",
            ))
        }
        None => (None, None),
    };
    let opts = pyjson::DumpOptions {
        indent,
        item_separator,
        key_separator,
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(&value)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    Ok(Value::from_safe_string(pyjson::dumps(&json, &opts)))
}

/// `datetime.strftime`; an invalid format is a template error, not a panic.
fn strftime(now: &NaiveDateTime, fmt: &str) -> Result<String, Error> {
    use std::fmt::Write;
    let mut out = String::new();
    write!(out, "{}", now.format(fmt)).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("invalid strftime format {fmt:?}"),
        )
    })?;
    Ok(out)
}

fn render_error(err: Error) -> TemplateError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(raised) = e.downcast_ref::<Raised>() {
            return TemplateError::Raised(raised.0.clone());
        }
        source = e.source();
    }
    TemplateError::Render {
        line: err.line(),
        message: err
            .detail()
            .map(str::to_string)
            .unwrap_or_else(|| err.to_string()),
    }
}
