//! A bounds-checked little-endian cursor over GGUF bytes, and the header and metadata parsers built on it.
//!
//! Every count read from the file is checked against the bytes left *before* anything is allocated for
//! it, so a hostile header cannot make us reserve more memory than a small multiple of the file size.

use super::error::GgufErrorKind;
use super::value::{value_type as type_id, GgufArray, GgufMetadata, GgufValue};

/// Arrays of arrays deeper than this are rejected; real files nest at most once, and the limit keeps
/// recursion (and the stack) bounded on hostile input.
pub(crate) const MAX_ARRAY_DEPTH: usize = 8;

/// A read failure, before the caller has said which field was being read.
#[derive(Debug)]
pub(crate) enum RawError {
    Truncated { offset: u64, needed: u64, available: u64 },
    Count { what: &'static str, count: u64, remaining: u64 },
    Utf8 { offset: u64 },
    UnknownType(u32),
    TooDeep,
}

impl RawError {
    /// Attaches the field being read, e.g. `metadata 'general.name'`.
    pub(crate) fn in_field(self, field: impl Into<String>) -> GgufErrorKind {
        let field = field.into();
        match self {
            RawError::Truncated { offset, needed, available } => {
                GgufErrorKind::Truncated { field, offset, needed, available }
            }
            RawError::Count { what, count, remaining } => {
                GgufErrorKind::AbsurdCount { field: format!("{field} {what}"), count, remaining }
            }
            RawError::Utf8 { offset } => GgufErrorKind::InvalidUtf8 { field, offset },
            RawError::UnknownType(type_id) => GgufErrorKind::UnknownValueType { field, type_id },
            RawError::TooDeep => GgufErrorKind::NestingTooDeep { field, max_depth: MAX_ARRAY_DEPTH },
        }
    }
}

/// A position in the file's bytes; every read is bounds-checked.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    pub(crate) fn pos(&self) -> u64 {
        self.pos as u64
    }

    pub(crate) fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    pub(crate) fn take(&mut self, n: u64) -> Result<&'a [u8], RawError> {
        let available = self.remaining();
        let truncated = RawError::Truncated { offset: self.pos(), needed: n, available };
        if n > available {
            return Err(truncated);
        }
        // n <= remaining, so the cast and the addition cannot overflow.
        let end = self.pos + n as usize;
        let slice = self.bytes.get(self.pos..end).ok_or(truncated)?;
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RawError> {
        let slice = self.take(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, RawError> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, RawError> {
        self.array().map(u64::from_le_bytes)
    }

    /// Reads a u64 count of items each at least `min_item_size` bytes, and rejects it if that many
    /// items cannot fit in the rest of the file.
    pub(crate) fn count(&mut self, what: &'static str, min_item_size: u64) -> Result<usize, RawError> {
        let count = self.u64()?;
        let remaining = self.remaining();
        let fits = count.checked_mul(min_item_size).is_some_and(|need| need <= remaining);
        match usize::try_from(count) {
            Ok(n) if fits => Ok(n),
            _ => Err(RawError::Count { what, count, remaining }),
        }
    }

    /// A GGUF string: u64 byte length, then UTF-8 bytes (no terminator).
    pub(crate) fn string(&mut self) -> Result<String, RawError> {
        let len = self.count("string length", 1)?;
        let offset = self.pos();
        let bytes = self.take(len as u64)?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| RawError::Utf8 { offset })
    }
}

/// The fixed GGUF header: magic, version, tensor count, metadata count.
#[derive(Debug)]
pub(crate) struct Header {
    pub version: u32,
    pub tensor_count: u64,
    pub kv_count: u64,
}

/// Smallest possible encoded metadata entry: empty key (8) + type (4) + one-byte value.
const MIN_KV_BYTES: u64 = 13;
/// Smallest possible encoded tensor info: empty name (8) + n_dims (4) + type (4) + offset (8).
pub(crate) const MIN_TENSOR_INFO_BYTES: u64 = 24;

pub(crate) fn read_header(cur: &mut Cursor<'_>) -> Result<Header, GgufErrorKind> {
    let magic = cur.take(4).map_err(|e| e.in_field("magic"))?;
    if magic != b"GGUF" {
        return Err(GgufErrorKind::BadMagic { found: magic.to_vec() });
    }
    let version = cur.u32().map_err(|e| e.in_field("version"))?;
    if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
        return Err(GgufErrorKind::BigEndian);
    }
    if version != 2 && version != 3 {
        return Err(GgufErrorKind::UnsupportedVersion { version });
    }
    let tensor_count = cur.u64().map_err(|e| e.in_field("tensor_count"))?;
    let kv_count = cur.u64().map_err(|e| e.in_field("kv_count"))?;
    let remaining = cur.remaining();
    let absurd = |field: &str, count| GgufErrorKind::AbsurdCount { field: field.into(), count, remaining };
    let kv_bytes = kv_count.checked_mul(MIN_KV_BYTES).ok_or_else(|| absurd("kv_count", kv_count))?;
    if kv_bytes > remaining {
        return Err(absurd("kv_count", kv_count));
    }
    let tensor_bytes = tensor_count.checked_mul(MIN_TENSOR_INFO_BYTES);
    if tensor_bytes.is_none_or(|t| t > remaining - kv_bytes) {
        return Err(absurd("tensor_count", tensor_count));
    }
    Ok(Header { version, tensor_count, kv_count })
}

/// Reads `kv_count` key/value pairs; keys must be unique.
pub(crate) fn read_metadata(cur: &mut Cursor<'_>, kv_count: u64) -> Result<GgufMetadata, GgufErrorKind> {
    let mut metadata = GgufMetadata::default();
    for index in 0..kv_count {
        let key = cur.string().map_err(|e| e.in_field(format!("metadata key #{index}")))?;
        let field = || format!("metadata '{key}'");
        let value_type = cur.u32().map_err(|e| e.in_field(field()))?;
        let value = read_value(cur, value_type, 0).map_err(|e| e.in_field(field()))?;
        if metadata.entries.contains_key(&key) {
            return Err(GgufErrorKind::DuplicateKey { key });
        }
        metadata.entries.insert(key, value);
    }
    Ok(metadata)
}

fn read_value(cur: &mut Cursor<'_>, value_type: u32, depth: usize) -> Result<GgufValue, RawError> {
    Ok(match value_type {
        type_id::U8 => GgufValue::U8(cur.array::<1>()?[0]),
        type_id::I8 => GgufValue::I8(i8::from_le_bytes(cur.array()?)),
        type_id::U16 => GgufValue::U16(u16::from_le_bytes(cur.array()?)),
        type_id::I16 => GgufValue::I16(i16::from_le_bytes(cur.array()?)),
        type_id::U32 => GgufValue::U32(cur.u32()?),
        type_id::I32 => GgufValue::I32(i32::from_le_bytes(cur.array()?)),
        type_id::U64 => GgufValue::U64(cur.u64()?),
        type_id::I64 => GgufValue::I64(i64::from_le_bytes(cur.array()?)),
        type_id::F32 => GgufValue::F32(f32::from_le_bytes(cur.array()?)),
        type_id::F64 => GgufValue::F64(f64::from_le_bytes(cur.array()?)),
        type_id::BOOL => GgufValue::Bool(cur.array::<1>()?[0] != 0),
        type_id::STRING => GgufValue::String(cur.string()?),
        type_id::ARRAY => GgufValue::Array(read_array(cur, depth + 1)?),
        other => return Err(RawError::UnknownType(other)),
    })
}

/// Encoded size of one array element of type `element_type`, at least (strings and arrays vary).
fn min_element_size(element_type: u32) -> Result<u64, RawError> {
    Ok(match element_type {
        type_id::U8 | type_id::I8 | type_id::BOOL => 1,
        type_id::U16 | type_id::I16 => 2,
        type_id::U32 | type_id::I32 | type_id::F32 => 4,
        type_id::U64 | type_id::I64 | type_id::F64 | type_id::STRING => 8,
        type_id::ARRAY => 12,
        other => return Err(RawError::UnknownType(other)),
    })
}

fn read_array(cur: &mut Cursor<'_>, depth: usize) -> Result<GgufArray, RawError> {
    if depth > MAX_ARRAY_DEPTH {
        return Err(RawError::TooDeep);
    }
    let element_type = cur.u32()?;
    let len = cur.count("array length", min_element_size(element_type)?)?;
    Ok(match element_type {
        type_id::U8 => GgufArray::U8(fixed::<1, _>(cur, len, |b| b[0])?),
        type_id::I8 => GgufArray::I8(fixed(cur, len, i8::from_le_bytes)?),
        type_id::U16 => GgufArray::U16(fixed(cur, len, u16::from_le_bytes)?),
        type_id::I16 => GgufArray::I16(fixed(cur, len, i16::from_le_bytes)?),
        type_id::U32 => GgufArray::U32(fixed(cur, len, u32::from_le_bytes)?),
        type_id::I32 => GgufArray::I32(fixed(cur, len, i32::from_le_bytes)?),
        type_id::U64 => GgufArray::U64(fixed(cur, len, u64::from_le_bytes)?),
        type_id::I64 => GgufArray::I64(fixed(cur, len, i64::from_le_bytes)?),
        type_id::F32 => GgufArray::F32(fixed(cur, len, f32::from_le_bytes)?),
        type_id::F64 => GgufArray::F64(fixed(cur, len, f64::from_le_bytes)?),
        type_id::BOOL => GgufArray::Bool(fixed::<1, _>(cur, len, |b| b[0] != 0)?),
        type_id::STRING => GgufArray::String(repeated(cur, len, Cursor::string)?),
        _ => GgufArray::Array(repeated(cur, len, |c| read_array(c, depth + 1))?),
    })
}

/// `len` fixed-size little-endian elements, decoded from one bounds-checked slice.
fn fixed<const N: usize, T>(
    cur: &mut Cursor<'_>,
    len: usize,
    decode: impl Fn([u8; N]) -> T,
) -> Result<Vec<T>, RawError> {
    let bytes = cur.take(len as u64 * N as u64)?;
    Ok(bytes
        .chunks_exact(N)
        .map(|chunk| {
            let mut raw = [0u8; N];
            raw.copy_from_slice(chunk);
            decode(raw)
        })
        .collect())
}

fn repeated<'a, T>(
    cur: &mut Cursor<'a>,
    len: usize,
    mut read_one: impl FnMut(&mut Cursor<'a>) -> Result<T, RawError>,
) -> Result<Vec<T>, RawError> {
    // `len` was bounded by the bytes left, so this reservation is at most a few times the file size.
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        out.push(read_one(cur)?);
    }
    Ok(out)
}
