//! hearth-engine (placeholder)
