//! Model file formats, read without candle: GGUF (memory-mapped, validated headers), Hugging Face
//! safetensors directories, tokenizers (from `tokenizer.json` or built from GGUF metadata) and chat
//! templates rendered the way Hugging Face's `apply_chat_template` does.
//!
//! Everything here returns typed errors naming the file and field that failed; nothing panics on bad input.

pub mod chat_template;
pub mod gguf;
pub mod safetensors;
pub mod tokenizer;

/// Names and keys come from the files being read and may hold control characters; error messages
/// show those escaped, so a message stays one line and cannot forge log lines.
pub(crate) fn one_line(text: &str) -> String {
    text.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect()
}
