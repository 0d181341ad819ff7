//! Fetchers that pull models from the network into the store.

pub mod hf;
pub mod http;
pub mod ollama;
