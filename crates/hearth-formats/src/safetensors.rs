//! Hugging Face safetensors directories.
