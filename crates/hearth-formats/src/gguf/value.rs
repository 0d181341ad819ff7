//! GGUF metadata values and typed lookups.

use std::collections::BTreeMap;

/// One metadata value as stored in a GGUF file.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(GgufArray),
}

/// A typed GGUF array; kept typed so a 262k-entry vocabulary is one `Vec<String>`, not 262k enums.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    String(Vec<String>),
    Array(Vec<GgufArray>),
}

impl GgufArray {
    pub fn len(&self) -> usize {
        match self {
            GgufArray::U8(v) => v.len(),
            GgufArray::I8(v) => v.len(),
            GgufArray::U16(v) => v.len(),
            GgufArray::I16(v) => v.len(),
            GgufArray::U32(v) => v.len(),
            GgufArray::I32(v) => v.len(),
            GgufArray::U64(v) => v.len(),
            GgufArray::I64(v) => v.len(),
            GgufArray::F32(v) => v.len(),
            GgufArray::F64(v) => v.len(),
            GgufArray::Bool(v) => v.len(),
            GgufArray::String(v) => v.len(),
            GgufArray::Array(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Integer arrays of any width as i64 (token ids, token types, layer patterns).
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        Some(match self {
            GgufArray::U8(v) => v.iter().map(|&x| x as i64).collect(),
            GgufArray::I8(v) => v.iter().map(|&x| x as i64).collect(),
            GgufArray::U16(v) => v.iter().map(|&x| x as i64).collect(),
            GgufArray::I16(v) => v.iter().map(|&x| x as i64).collect(),
            GgufArray::U32(v) => v.iter().map(|&x| x as i64).collect(),
            GgufArray::I32(v) => v.iter().map(|&x| x as i64).collect(),
            GgufArray::U64(v) => v.iter().map(|&x| x as i64).collect(),
            GgufArray::I64(v) => v.clone(),
            GgufArray::Bool(v) => v.iter().map(|&x| x as i64).collect(),
            _ => return None,
        })
    }

    /// Float arrays (f32 or f64) as f32, e.g. token scores.
    pub fn to_f32_vec(&self) -> Option<Vec<f32>> {
        match self {
            GgufArray::F32(v) => Some(v.clone()),
            GgufArray::F64(v) => Some(v.iter().map(|&x| x as f32).collect()),
            _ => None,
        }
    }
}

impl GgufValue {
    /// Any integer (or bool) value widened to i64.
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            GgufValue::U8(x) => x as i64,
            GgufValue::I8(x) => x as i64,
            GgufValue::U16(x) => x as i64,
            GgufValue::I16(x) => x as i64,
            GgufValue::U32(x) => x as i64,
            GgufValue::I32(x) => x as i64,
            GgufValue::U64(x) => i64::try_from(x).ok()?,
            GgufValue::I64(x) => x,
            GgufValue::Bool(x) => x as i64,
            _ => return None,
        })
    }

    /// Any non-negative integer (or bool) value as u64; unlike `as_i64`, keeps u64 values above i64::MAX.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U64(x) => Some(x),
            _ => u64::try_from(self.as_i64()?).ok(),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(x) => Some(x as f64),
            GgufValue::F64(x) => Some(x),
            _ => self.as_i64().map(|x| x as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => self.as_i64().map(|x| x != 0),
        }
    }

    pub fn as_array(&self) -> Option<&GgufArray> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// The key/value metadata section of a GGUF file, in key order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GgufMetadata {
    pub entries: BTreeMap<String, GgufValue>,
}

impl GgufMetadata {
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.entries.get(key)
    }
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.get(key)?.as_i64()
    }
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_u64()
    }
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key)?.as_f64()
    }
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.as_bool()
    }
    pub fn get_array(&self, key: &str) -> Option<&GgufArray> {
        self.get(key)?.as_array()
    }
    pub fn get_str_array(&self, key: &str) -> Option<&[String]> {
        match self.get_array(key)? {
            GgufArray::String(v) => Some(v),
            _ => None,
        }
    }
    /// `general.architecture`, the prefix of the model's hyper-parameter keys.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }
}

/// GGUF's metadata value type ids (`enum gguf_type`), shared by the reader and the writer.
pub mod value_type {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

impl GgufValue {
    /// The GGUF type id this value is stored with.
    pub fn type_id(&self) -> u32 {
        match self {
            GgufValue::U8(_) => value_type::U8,
            GgufValue::I8(_) => value_type::I8,
            GgufValue::U16(_) => value_type::U16,
            GgufValue::I16(_) => value_type::I16,
            GgufValue::U32(_) => value_type::U32,
            GgufValue::I32(_) => value_type::I32,
            GgufValue::U64(_) => value_type::U64,
            GgufValue::I64(_) => value_type::I64,
            GgufValue::F32(_) => value_type::F32,
            GgufValue::F64(_) => value_type::F64,
            GgufValue::Bool(_) => value_type::BOOL,
            GgufValue::String(_) => value_type::STRING,
            GgufValue::Array(_) => value_type::ARRAY,
        }
    }
}

impl GgufArray {
    /// The GGUF type id of this array's elements.
    pub fn element_type_id(&self) -> u32 {
        match self {
            GgufArray::U8(_) => value_type::U8,
            GgufArray::I8(_) => value_type::I8,
            GgufArray::U16(_) => value_type::U16,
            GgufArray::I16(_) => value_type::I16,
            GgufArray::U32(_) => value_type::U32,
            GgufArray::I32(_) => value_type::I32,
            GgufArray::U64(_) => value_type::U64,
            GgufArray::I64(_) => value_type::I64,
            GgufArray::F32(_) => value_type::F32,
            GgufArray::F64(_) => value_type::F64,
            GgufArray::Bool(_) => value_type::BOOL,
            GgufArray::String(_) => value_type::STRING,
            GgufArray::Array(_) => value_type::ARRAY,
        }
    }
}
