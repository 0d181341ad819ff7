//! Turning a conversation into prompt tokens with the model's own chat template (shared with the
//! server, so it lives in the engine crate).

pub use hearth_engine::prompt::PromptMode;
