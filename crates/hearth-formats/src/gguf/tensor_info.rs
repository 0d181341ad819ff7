//! GGUF tensor infos: parsing, and validation of each tensor's shape, type and byte range.

use std::collections::HashSet;

use super::error::GgufErrorKind;
use super::reader::{Cursor, MIN_TENSOR_INFO_BYTES};
use super::types::GgmlType;

/// ggml tensors have at most this many dimensions.
pub const MAX_DIMS: u32 = 4;

/// One tensor of a GGUF file, validated: its bytes lie inside the file and overlap no other tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in GGUF order: `dims[0]` (ggml's `ne[0]`) is the fastest-varying, i.e. the row length.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Absolute byte offset of the tensor's data in the file.
    pub offset: u64,
    /// Size of the tensor's data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of elements: the product of the dims (validated on open not to overflow; saturating for
    /// hand-built infos).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d))
    }

    /// Absolute byte range of the tensor's data in the file.
    pub fn byte_range(&self) -> std::ops::Range<u64> {
        self.offset..self.offset.saturating_add(self.n_bytes)
    }
}

/// A tensor info as stored, before validation.
pub(crate) struct RawTensorInfo {
    name: String,
    dims: Vec<u64>,
    type_id: u32,
    /// Offset relative to the start of the data section.
    relative_offset: u64,
}

pub(crate) fn read_tensor_infos(cur: &mut Cursor<'_>, tensor_count: u64) -> Result<Vec<RawTensorInfo>, GgufErrorKind> {
    // Checked again here because the metadata section has consumed bytes since the header check.
    let remaining = cur.remaining();
    if tensor_count.checked_mul(MIN_TENSOR_INFO_BYTES).is_none_or(|need| need > remaining) {
        return Err(GgufErrorKind::AbsurdCount { field: "tensor_count".into(), count: tensor_count, remaining });
    }
    (0..tensor_count).map(|index| read_one(cur, index)).collect()
}

fn read_one(cur: &mut Cursor<'_>, index: u64) -> Result<RawTensorInfo, GgufErrorKind> {
    let name = cur.string().map_err(|e| e.in_field(format!("tensor info #{index} name")))?;
    let field = |what: &str| format!("tensor '{name}' {what}");
    let n_dims = cur.u32().map_err(|e| e.in_field(field("n_dims")))?;
    if n_dims > MAX_DIMS {
        return Err(GgufErrorKind::TooManyDims { name, n_dims });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(cur.u64().map_err(|e| e.in_field(field("dims")))?);
    }
    let type_id = cur.u32().map_err(|e| e.in_field(field("type")))?;
    let relative_offset = cur.u64().map_err(|e| e.in_field(field("offset")))?;
    Ok(RawTensorInfo { name, dims, type_id, relative_offset })
}

/// Where the data section is and how big the file is, for resolving relative offsets.
pub(crate) struct DataLayout {
    pub data_start: u64,
    pub alignment: u64,
    pub file_size: u64,
}

/// Validates every tensor and turns relative offsets into absolute ones.
pub(crate) fn resolve_tensors(raw: Vec<RawTensorInfo>, layout: &DataLayout) -> Result<Vec<TensorInfo>, GgufErrorKind> {
    let mut seen = HashSet::with_capacity(raw.len());
    let mut tensors = Vec::with_capacity(raw.len());
    for info in raw {
        if !seen.insert(info.name.clone()) {
            return Err(GgufErrorKind::DuplicateTensor { name: info.name });
        }
        tensors.push(resolve_one(info, layout)?);
    }
    check_no_overlap(&tensors)?;
    Ok(tensors)
}

fn resolve_one(raw: RawTensorInfo, layout: &DataLayout) -> Result<TensorInfo, GgufErrorKind> {
    let RawTensorInfo { name, dims, type_id, relative_offset } = raw;
    let n_elements = element_count(&name, &dims)?;
    let Some(ggml_type) = GgmlType::from_id(type_id) else {
        return Err(GgufErrorKind::UnknownTensorType { name, type_id });
    };
    let block_size = ggml_type.block_size();
    // ggml quantizes row by row, so each row (ne[0] elements) must be whole blocks.
    let row_len = dims.first().copied().unwrap_or(1);
    if row_len % block_size != 0 {
        return Err(GgufErrorKind::PartialBlock { name, row_len, ggml_type: ggml_type.name().into(), block_size });
    }
    let n_bytes = (n_elements / block_size)
        .checked_mul(ggml_type.type_size())
        .ok_or_else(|| GgufErrorKind::DimsOverflow { name: name.clone(), dims: dims.clone() })?;
    if relative_offset % layout.alignment != 0 {
        return Err(GgufErrorKind::UnalignedOffset { name, offset: relative_offset, alignment: layout.alignment });
    }
    let start = layout.data_start.checked_add(relative_offset);
    let end = start.and_then(|s| s.checked_add(n_bytes));
    match (start, end) {
        (Some(start), Some(end)) if end <= layout.file_size => {
            Ok(TensorInfo { name, dims, ggml_type, offset: start, n_bytes })
        }
        _ => Err(GgufErrorKind::TensorOutOfRange {
            name,
            start: layout.data_start.saturating_add(relative_offset),
            end: layout.data_start.saturating_add(relative_offset).saturating_add(n_bytes),
            file_size: layout.file_size,
        }),
    }
}

/// The product of `dims`, rejecting zero dims and products that overflow ggml's signed 64-bit counts.
fn element_count(name: &str, dims: &[u64]) -> Result<u64, GgufErrorKind> {
    if let Some(index) = dims.iter().position(|&d| d == 0) {
        return Err(GgufErrorKind::ZeroDim { name: name.into(), index });
    }
    dims.iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| GgufErrorKind::DimsOverflow { name: name.into(), dims: dims.to_vec() })
}

fn check_no_overlap(tensors: &[TensorInfo]) -> Result<(), GgufErrorKind> {
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
    by_offset.sort_by_key(|t| t.offset);
    for pair in by_offset.windows(2) {
        if let [first, second] = pair {
            let first_end = first.offset + first.n_bytes;
            if second.offset < first_end {
                return Err(GgufErrorKind::OverlappingTensors {
                    first: first.name.clone(),
                    first_end,
                    second: second.name.clone(),
                    second_start: second.offset,
                });
            }
        }
    }
    Ok(())
}
