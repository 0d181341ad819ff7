//! A GGUF writer: builds files in memory for tests and small conversions.
//!
//! Besides valid files it can write deliberately wrong ones (raw value types, raw tensor type ids,
//! forced offsets, forced counts, another magic or version), so validation tests need no Python.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::types::GgmlType;
use super::value::{GgufArray, GgufValue};
use super::DEFAULT_ALIGNMENT;

/// A metadata entry to write: a proper value, or raw bytes under any type id.
#[derive(Debug, Clone)]
enum MetadataEntry {
    Value(GgufValue),
    Raw { type_id: u32, payload: Vec<u8> },
}

/// A tensor to write. Fields are raw so tests can describe tensors no valid file would contain.
#[derive(Debug, Clone)]
pub struct RawTensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub type_id: u32,
    /// Bytes to store in the data section.
    pub data: Vec<u8>,
    /// Offset to record in the tensor info instead of where `data` really lands (relative to the data
    /// section), to produce overlapping, unaligned or out-of-range tensors.
    pub offset_override: Option<u64>,
}

/// Builds a GGUF file: header, metadata, tensor infos, aligned data.
#[derive(Debug, Clone)]
pub struct GgufWriter {
    magic: [u8; 4],
    version: u32,
    alignment: u64,
    metadata: Vec<(String, MetadataEntry)>,
    tensors: Vec<RawTensor>,
    tensor_count_override: Option<u64>,
    kv_count_override: Option<u64>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        GgufWriter {
            magic: *b"GGUF",
            version: 3,
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            tensors: Vec::new(),
            tensor_count_override: None,
            kv_count_override: None,
        }
    }
}

impl GgufWriter {
    /// A GGUF v3 writer with the default alignment of 32.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_magic(&mut self, magic: [u8; 4]) -> &mut Self {
        self.magic = magic;
        self
    }

    pub fn set_version(&mut self, version: u32) -> &mut Self {
        self.version = version;
        self
    }

    /// Pads the data section to `alignment` and records it as `general.alignment`.
    pub fn set_alignment(&mut self, alignment: u32) -> &mut Self {
        self.alignment = u64::from(alignment.max(1));
        self.add_metadata("general.alignment", GgufValue::U32(alignment))
    }

    /// Writes this tensor count in the header instead of the real one.
    pub fn override_tensor_count(&mut self, count: u64) -> &mut Self {
        self.tensor_count_override = Some(count);
        self
    }

    /// Writes this metadata count in the header instead of the real one.
    pub fn override_kv_count(&mut self, count: u64) -> &mut Self {
        self.kv_count_override = Some(count);
        self
    }

    pub fn add_metadata(&mut self, key: &str, value: GgufValue) -> &mut Self {
        self.metadata.push((key.into(), MetadataEntry::Value(value)));
        self
    }

    /// A metadata entry with type id `type_id` followed by `payload` verbatim.
    pub fn add_raw_metadata(&mut self, key: &str, type_id: u32, payload: Vec<u8>) -> &mut Self {
        self.metadata.push((key.into(), MetadataEntry::Raw { type_id, payload }));
        self
    }

    pub fn add_tensor(&mut self, name: &str, dims: &[u64], ggml_type: GgmlType, data: Vec<u8>) -> &mut Self {
        self.add_raw_tensor(RawTensor {
            name: name.into(),
            dims: dims.to_vec(),
            type_id: ggml_type.id(),
            data,
            offset_override: None,
        })
    }

    pub fn add_raw_tensor(&mut self, tensor: RawTensor) -> &mut Self {
        self.tensors.push(tensor);
        self
    }

    /// The encoded file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.magic);
        put_u32(&mut out, self.version);
        put_u64(&mut out, self.tensor_count_override.unwrap_or(self.tensors.len() as u64));
        put_u64(&mut out, self.kv_count_override.unwrap_or(self.metadata.len() as u64));
        for (key, entry) in &self.metadata {
            put_string(&mut out, key);
            put_entry(&mut out, entry);
        }
        let offsets = self.data_offsets();
        for (tensor, &offset) in self.tensors.iter().zip(&offsets) {
            put_tensor_info(&mut out, tensor, tensor.offset_override.unwrap_or(offset));
        }
        pad_to(&mut out, self.alignment);
        let data_start = out.len() as u64;
        for (tensor, offset) in self.tensors.iter().zip(offsets) {
            out.resize((data_start + offset) as usize, 0);
            out.extend_from_slice(&tensor.data);
        }
        out
    }

    /// Writes the file to `path`, atomically (a temporary file in the same directory, then a rename).
    pub fn write_to(&self, path: &Path) -> std::io::Result<()> {
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("gguf");
        // Unique per process and call, so concurrent writers never share a temp file.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = path.with_file_name(format!(".{file_name}.{}.{n}.tmp", std::process::id()));
        let result = std::fs::File::create(&temp)
            .and_then(|mut f| f.write_all(&self.to_bytes()).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&temp, path));
        if result.is_err() {
            // Best effort: the temp file is garbage whether or not removing it works.
            let _ = std::fs::remove_file(&temp);
        }
        result
    }

    /// Where each tensor's data lands, relative to the data section: packed, each start aligned.
    fn data_offsets(&self) -> Vec<u64> {
        let mut next = 0u64;
        self.tensors
            .iter()
            .map(|t| {
                let offset = next.div_ceil(self.alignment) * self.alignment;
                next = offset + t.data.len() as u64;
                offset
            })
            .collect()
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn pad_to(out: &mut Vec<u8>, alignment: u64) {
    let len = out.len() as u64;
    out.resize((len.div_ceil(alignment) * alignment) as usize, 0);
}

fn put_entry(out: &mut Vec<u8>, entry: &MetadataEntry) {
    match entry {
        MetadataEntry::Value(value) => {
            put_u32(out, value.type_id());
            put_value(out, value);
        }
        MetadataEntry::Raw { type_id, payload } => {
            put_u32(out, *type_id);
            out.extend_from_slice(payload);
        }
    }
}

fn put_value(out: &mut Vec<u8>, value: &GgufValue) {
    match value {
        GgufValue::U8(v) => out.push(*v),
        GgufValue::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::U32(v) => put_u32(out, *v),
        GgufValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::U64(v) => put_u64(out, *v),
        GgufValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        GgufValue::Bool(v) => out.push(u8::from(*v)),
        GgufValue::String(s) => put_string(out, s),
        GgufValue::Array(array) => put_array(out, array),
    }
}

fn put_array(out: &mut Vec<u8>, array: &GgufArray) {
    put_u32(out, array.element_type_id());
    put_u64(out, array.len() as u64);
    match array {
        GgufArray::U8(v) => out.extend_from_slice(v),
        GgufArray::I8(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        GgufArray::U16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        GgufArray::I16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        GgufArray::U32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        GgufArray::I32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        GgufArray::U64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        GgufArray::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        GgufArray::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        GgufArray::F64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        GgufArray::Bool(v) => v.iter().for_each(|&x| out.push(u8::from(x))),
        GgufArray::String(v) => v.iter().for_each(|s| put_string(out, s)),
        GgufArray::Array(v) => v.iter().for_each(|a| put_array(out, a)),
    }
}

fn put_tensor_info(out: &mut Vec<u8>, tensor: &RawTensor, offset: u64) {
    put_string(out, &tensor.name);
    put_u32(out, tensor.dims.len() as u32);
    tensor.dims.iter().for_each(|&d| put_u64(out, d));
    put_u32(out, tensor.type_id);
    put_u64(out, offset);
}
