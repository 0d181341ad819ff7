//! GGUF v2/v3 reader: a memory-mapped file whose header, metadata and tensor table are fully validated
//! on open, so later code can slice tensor data without further checks.
//!
//! Format: magic `GGUF`, version, tensor count, metadata count, metadata key/values, tensor infos, then
//! the data section, which starts at the next multiple of `general.alignment` (default 32).

mod error;
mod reader;
mod tensor_info;
mod types;
mod value;
pub mod write;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

pub use error::{GgufError, GgufErrorKind};
pub use tensor_info::{TensorInfo, MAX_DIMS};
pub use types::{file_type_label, GgmlType};
pub use value::{value_type, GgufArray, GgufMetadata, GgufValue};
pub use write::GgufWriter;

use reader::Cursor;
use tensor_info::DataLayout;

/// Data-section alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// An open, validated GGUF file. Tensor data stays in the memory map; nothing is copied on open.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    mmap: memmap2::Mmap,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: GgufMetadata,
    tensors: Vec<TensorInfo>,
    index_by_name: HashMap<String, usize>,
}

/// Everything parsed from the bytes, before it is tied to a path.
struct Parsed {
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: GgufMetadata,
    tensors: Vec<TensorInfo>,
}

impl GgufFile {
    /// Memory-maps and validates the GGUF file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref().to_path_buf();
        let error = |kind| GgufError { path: path.clone(), kind };
        let file = File::open(&path).map_err(|e| error(GgufErrorKind::Io(e)))?;
        // SAFETY: the map is read-only. Like every mmap-based model loader we accept that another
        // process truncating or rewriting the file while it is mapped is undefined behaviour; hearth's
        // own store never rewrites a published file in place.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| error(GgufErrorKind::Io(e)))?;
        let parsed = parse(&mmap).map_err(error)?;
        let index_by_name = parsed.tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        Ok(GgufFile {
            path,
            mmap,
            version: parsed.version,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
            index_by_name,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the file in bytes.
    pub fn file_size(&self) -> u64 {
        self.mmap.len() as u64
    }

    /// GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Data-section alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    pub fn metadata(&self) -> &GgufMetadata {
        &self.metadata
    }

    /// `general.architecture`, e.g. `llama` or `gemma3`.
    pub fn architecture(&self) -> Option<&str> {
        self.metadata.architecture()
    }

    /// All tensors, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor named `name`, if the file has one.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.index_by_name.get(name).and_then(|&i| self.tensors.get(i))
    }

    /// The tensor named `name`, or an error naming this file and the tensor.
    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.tensor(name).ok_or_else(|| self.error(GgufErrorKind::TensorNotFound { name: name.into() }))
    }

    /// The bytes of a tensor, sliced from the memory map (no copy). `info` must come from this file's
    /// [`tensors`](Self::tensors); an info whose range lies outside this file gives an empty slice.
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        let end = info.offset.checked_add(info.n_bytes);
        let range = usize::try_from(info.offset).ok().zip(end.and_then(|e| usize::try_from(e).ok()));
        range.and_then(|(start, end)| self.mmap.get(start..end)).unwrap_or_default()
    }

    /// Errors (naming the tensor and its type) unless hearth can compute with the tensor's type.
    pub fn check_supported(&self, info: &TensorInfo) -> Result<(), GgufError> {
        if info.ggml_type.is_supported() {
            return Ok(());
        }
        Err(self.error(GgufErrorKind::UnsupportedTensorType {
            name: info.name.clone(),
            ggml_type: info.ggml_type.name().into(),
            type_id: info.ggml_type.id(),
        }))
    }

    /// The quantization name llama.cpp and Ollama show, e.g. `Q4_K_M`: from `general.file_type`, else
    /// the most common type among 2-D (weight matrix) tensors. `None` for a file with neither.
    pub fn quantization_label(&self) -> Option<&'static str> {
        let from_file_type = self.metadata.get_u64("general.file_type").and_then(file_type_label);
        from_file_type.or_else(|| self.dominant_matrix_type().map(GgmlType::name))
    }

    fn dominant_matrix_type(&self) -> Option<GgmlType> {
        let mut counts: BTreeMap<GgmlType, usize> = BTreeMap::new();
        for tensor in self.tensors.iter().filter(|t| t.dims.len() == 2) {
            *counts.entry(tensor.ggml_type).or_default() += 1;
        }
        counts.into_iter().max_by_key(|&(_, count)| count).map(|(ggml_type, _)| ggml_type)
    }

    fn error(&self, kind: GgufErrorKind) -> GgufError {
        GgufError { path: self.path.clone(), kind }
    }
}

fn parse(bytes: &[u8]) -> Result<Parsed, GgufErrorKind> {
    let mut cur = Cursor::new(bytes);
    let header = reader::read_header(&mut cur)?;
    let metadata = reader::read_metadata(&mut cur, header.kv_count)?;
    let alignment = alignment_of(&metadata)?;
    let raw_tensors = tensor_info::read_tensor_infos(&mut cur, header.tensor_count)?;
    // The alignment is a power of two <= u32::MAX, so rounding up cannot overflow a u64 position.
    let data_offset = cur.pos().div_ceil(alignment) * alignment;
    let layout = DataLayout { data_start: data_offset, alignment, file_size: bytes.len() as u64 };
    let tensors = tensor_info::resolve_tensors(raw_tensors, &layout)?;
    Ok(Parsed { version: header.version, alignment, data_offset, metadata, tensors })
}

fn alignment_of(metadata: &GgufMetadata) -> Result<u64, GgufErrorKind> {
    let Some(value) = metadata.get("general.alignment") else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    match value.as_i64().and_then(|v| u32::try_from(v).ok()) {
        Some(a) if a.is_power_of_two() => Ok(u64::from(a)),
        _ => Err(GgufErrorKind::BadAlignment { value: format!("{value:?}") }),
    }
}
