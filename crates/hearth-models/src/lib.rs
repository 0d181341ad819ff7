//! hearth-models (placeholder)
