//! hearth-layers (placeholder)
