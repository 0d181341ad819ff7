//! GGUF v2/v3 reader.
mod value;
pub use value::{GgufArray, GgufMetadata, GgufValue};
