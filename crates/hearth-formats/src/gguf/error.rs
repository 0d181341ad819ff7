//! Errors from reading GGUF files; each names the file and the field that failed.

use crate::one_line;
use std::path::PathBuf;

/// A GGUF file could not be read. Displays as one line: `<path>: <what failed>`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}", path.display(), one_line(&kind.to_string()))]
pub struct GgufError {
    pub path: PathBuf,
    pub kind: GgufErrorKind,
}

/// What went wrong, with the field (metadata key, tensor name, header field) that holds the bad value.
#[derive(Debug, thiserror::Error)]
pub enum GgufErrorKind {
    #[error("cannot read file: {0}")]
    Io(#[source] std::io::Error),
    #[error("bad magic {found:02x?}, expected \"GGUF\" (is this a GGUF file?)")]
    BadMagic { found: Vec<u8> },
    #[error("GGUF version {version} is not supported (hearth reads versions 2 and 3)")]
    UnsupportedVersion { version: u32 },
    #[error("big-endian GGUF files are not supported")]
    BigEndian,
    #[error("{field}: file truncated at byte {offset} (needs {needed} bytes, {available} left)")]
    Truncated { field: String, offset: u64, needed: u64, available: u64 },
    #[error("{field} = {count} cannot fit in the {remaining} bytes left in the file")]
    AbsurdCount { field: String, count: u64, remaining: u64 },
    #[error("{field}: string at byte {offset} is not valid UTF-8")]
    InvalidUtf8 { field: String, offset: u64 },
    #[error("{field}: unknown value type {type_id}")]
    UnknownValueType { field: String, type_id: u32 },
    #[error("{field}: arrays nested more than {max_depth} deep")]
    NestingTooDeep { field: String, max_depth: usize },
    #[error("duplicate metadata key '{key}'")]
    DuplicateKey { key: String },
    #[error("general.alignment = {value} must be a power of two that fits in u32")]
    BadAlignment { value: String },
    #[error("tensor '{name}': {n_dims} dimensions, at most 4 are supported")]
    TooManyDims { name: String, n_dims: u32 },
    #[error("tensor '{name}': dimension {index} is zero")]
    ZeroDim { name: String, index: usize },
    #[error("tensor '{name}': dims {dims:?} overflow the element count")]
    DimsOverflow { name: String, dims: Vec<u64> },
    #[error("tensor '{name}': unknown ggml type id {type_id}")]
    UnknownTensorType { name: String, type_id: u32 },
    #[error(
        "tensor '{name}': row length ne[0] = {row_len} is not a multiple of {ggml_type}'s block size {block_size}"
    )]
    PartialBlock { name: String, row_len: u64, ggml_type: String, block_size: u64 },
    #[error("tensor '{name}': data offset {offset} is not a multiple of the alignment {alignment}")]
    UnalignedOffset { name: String, offset: u64, alignment: u64 },
    #[error("tensor '{name}' data [offset {start}..{end}] extends past end of file ({file_size} bytes)")]
    TensorOutOfRange { name: String, start: u64, end: u64, file_size: u64 },
    #[error("tensor '{second}' data [offset {second_start}..] overlaps tensor '{first}' [offset ..{first_end}]")]
    OverlappingTensors { first: String, first_end: u64, second: String, second_start: u64 },
    #[error("duplicate tensor name '{name}'")]
    DuplicateTensor { name: String },
    #[error("tensor {name} has type {ggml_type} ({type_id}), which hearth does not support")]
    UnsupportedTensorType { name: String, ggml_type: String, type_id: u32 },
    #[error("no tensor named '{name}'")]
    TensorNotFound { name: String },
}
