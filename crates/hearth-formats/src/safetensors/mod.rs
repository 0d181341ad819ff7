//! Hugging Face safetensors model directories: `config.json` plus `model.safetensors` or shards listed
//! in `model.safetensors.index.json`. Shards are memory-mapped and their headers validated on open
//! (with the `safetensors` crate); tensor data is sliced from the maps, never copied.

mod error;
mod write;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use ::safetensors::tensor::Metadata;
use ::safetensors::{Dtype, SafeTensors};
use serde_json::Value;

pub use error::SafetensorsError;
pub use write::{write_safetensors, TensorToWrite};

/// The weights of an unsharded model.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The index of a sharded model: `weight_map` maps each tensor name to its shard file.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
pub const CONFIG_FILE: &str = "config.json";
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// The safetensors element types hearth computes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StDtype {
    F32,
    F16,
    BF16,
}

impl StDtype {
    pub fn size_in_bytes(self) -> usize {
        match self {
            StDtype::F32 => 4,
            StDtype::F16 | StDtype::BF16 => 2,
        }
    }

    /// The name safetensors headers use, e.g. `BF16`.
    pub fn name(self) -> &'static str {
        match self {
            StDtype::F32 => "F32",
            StDtype::F16 => "F16",
            StDtype::BF16 => "BF16",
        }
    }

    fn from_crate(dtype: Dtype) -> Option<StDtype> {
        match dtype {
            Dtype::F32 => Some(StDtype::F32),
            Dtype::F16 => Some(StDtype::F16),
            Dtype::BF16 => Some(StDtype::BF16),
            _ => None,
        }
    }

    pub(crate) fn to_crate(self) -> Dtype {
        match self {
            StDtype::F32 => Dtype::F32,
            StDtype::F16 => Dtype::F16,
            StDtype::BF16 => Dtype::BF16,
        }
    }
}

/// One tensor's dtype, shape (outermost first, as in PyTorch) and bytes in the memory map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorView<'a> {
    pub dtype: StDtype,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

/// One memory-mapped `.safetensors` file and its parsed header.
#[derive(Debug)]
struct Shard {
    path: PathBuf,
    mmap: memmap2::Mmap,
    /// Byte offset of the data section: the 8-byte length plus the JSON header.
    data_start: usize,
    header: Metadata,
}

/// An open model directory with validated weights and its JSON configuration files.
#[derive(Debug)]
pub struct SafetensorsModel {
    dir: PathBuf,
    shards: Vec<Shard>,
    /// Tensor name -> index into `shards`; sorted so listings are stable.
    shard_of_tensor: BTreeMap<String, usize>,
    config: Value,
    generation_config: Option<Value>,
    tokenizer_config: Option<Value>,
}

impl SafetensorsModel {
    /// Opens the model directory `dir`: reads `config.json` (required), the optional generation and
    /// tokenizer configs, and maps and validates every weight file.
    pub fn open(dir: impl AsRef<Path>) -> Result<SafetensorsModel, SafetensorsError> {
        let dir = dir.as_ref().to_path_buf();
        let config = read_json(&dir.join(CONFIG_FILE))?;
        if !config.is_object() {
            return Err(invalid(&dir.join(CONFIG_FILE), "top level", "is not a JSON object"));
        }
        let generation_config = read_optional_json(&dir.join(GENERATION_CONFIG_FILE))?;
        let tokenizer_config = read_optional_json(&dir.join(TOKENIZER_CONFIG_FILE))?;
        let (shards, shard_of_tensor) = open_weights(&dir)?;
        Ok(SafetensorsModel { dir, shards, shard_of_tensor, config, generation_config, tokenizer_config })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `config.json`.
    pub fn config(&self) -> &Value {
        &self.config
    }

    /// `generation_config.json`, if the directory has one.
    pub fn generation_config(&self) -> Option<&Value> {
        self.generation_config.as_ref()
    }

    /// `tokenizer_config.json`, if the directory has one.
    pub fn tokenizer_config(&self) -> Option<&Value> {
        self.tokenizer_config.as_ref()
    }

    /// The weight files, in name order.
    pub fn shard_paths(&self) -> impl Iterator<Item = &Path> {
        self.shards.iter().map(|s| s.path.as_path())
    }

    /// Tensor names in sorted order.
    pub fn tensor_names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.shard_of_tensor.keys().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.shard_of_tensor.contains_key(name)
    }

    /// The file holding tensor `name`.
    pub fn shard_of(&self, name: &str) -> Option<&Path> {
        let &index = self.shard_of_tensor.get(name)?;
        self.shards.get(index).map(|s| s.path.as_path())
    }

    /// The tensor `name`; errors if it is missing or its dtype is not F32/F16/BF16.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>, SafetensorsError> {
        let shard = self
            .shard_of_tensor
            .get(name)
            .and_then(|&i| self.shards.get(i))
            .ok_or_else(|| SafetensorsError::TensorNotFound { dir: self.dir.clone(), name: name.into() })?;
        let bad_tensor = |problem: &str| SafetensorsError::BadTensor {
            path: shard.path.clone(),
            name: name.into(),
            problem: problem.into(),
        };
        let info = shard.header.info(name).ok_or_else(|| bad_tensor("missing from its shard's header"))?;
        let dtype = StDtype::from_crate(info.dtype).ok_or_else(|| SafetensorsError::UnsupportedDtype {
            path: shard.path.clone(),
            name: name.into(),
            dtype: info.dtype.to_string(),
        })?;
        let (start, end) = info.data_offsets;
        let range = shard.data_start.checked_add(start).zip(shard.data_start.checked_add(end));
        let data = range
            .and_then(|(s, e)| shard.mmap.get(s..e))
            .ok_or_else(|| bad_tensor("data offsets lie outside the file"))?;
        Ok(TensorView { dtype, shape: info.shape.clone(), data })
    }
}

type Weights = (Vec<Shard>, BTreeMap<String, usize>);

fn open_weights(dir: &Path) -> Result<Weights, SafetensorsError> {
    let single = dir.join(SINGLE_FILE);
    let index = dir.join(INDEX_FILE);
    if single.is_file() {
        let shard = open_shard(&single)?;
        let names = shard.header.offset_keys().into_iter().map(|name| (name, 0)).collect();
        Ok((vec![shard], names))
    } else if index.is_file() {
        open_sharded(dir, &index)
    } else {
        Err(SafetensorsError::NoWeights { dir: dir.to_path_buf() })
    }
}

fn open_sharded(dir: &Path, index_path: &Path) -> Result<Weights, SafetensorsError> {
    let weight_map = read_weight_map(index_path)?;
    let mut shard_names: Vec<&str> = weight_map.values().map(String::as_str).collect();
    shard_names.sort_unstable();
    shard_names.dedup();
    let mut shards = Vec::with_capacity(shard_names.len());
    for shard_name in &shard_names {
        let path = dir.join(shard_name);
        if !path.is_file() {
            return Err(SafetensorsError::MissingShard { index: index_path.into(), shard: (*shard_name).into() });
        }
        shards.push(open_shard(&path)?);
    }
    let mut shard_of_tensor = BTreeMap::new();
    for (tensor, shard_name) in &weight_map {
        let position = shard_names.binary_search(&shard_name.as_str()).ok();
        let shard_index = position.filter(|&i| shards.get(i).is_some_and(|s| s.header.info(tensor).is_some()));
        let Some(shard_index) = shard_index else {
            return Err(SafetensorsError::TensorNotInShard {
                index: index_path.into(),
                tensor: tensor.clone(),
                shard: dir.join(shard_name),
            });
        };
        shard_of_tensor.insert(tensor.clone(), shard_index);
    }
    Ok((shards, shard_of_tensor))
}

/// The index's `weight_map`, with every shard a plain file name (no path into other directories).
fn read_weight_map(index_path: &Path) -> Result<BTreeMap<String, String>, SafetensorsError> {
    let index = read_json(index_path)?;
    let Some(map) = index.get("weight_map").and_then(Value::as_object) else {
        return Err(invalid(index_path, "weight_map", "is missing or not an object"));
    };
    let mut weight_map = BTreeMap::new();
    for (tensor, shard) in map {
        let field = || format!("weight_map.\"{tensor}\"");
        let Some(shard) = shard.as_str() else {
            return Err(invalid(index_path, &field(), "is not a string"));
        };
        if !is_plain_file_name(shard) {
            return Err(invalid(index_path, &field(), &format!("'{shard}' is not a file name in the model directory")));
        }
        weight_map.insert(tensor.clone(), shard.to_owned());
    }
    Ok(weight_map)
}

fn is_plain_file_name(name: &str) -> bool {
    let path = Path::new(name);
    path.file_name().and_then(|n| n.to_str()) == Some(name) && name != ".." && name != "."
}

fn open_shard(path: &Path) -> Result<Shard, SafetensorsError> {
    let io_error = |source| SafetensorsError::Io { path: path.into(), source };
    let file = File::open(path).map_err(io_error)?;
    // SAFETY: read-only map; as with every mmap loader, another process truncating the file while it is
    // mapped is undefined behaviour we accept (hearth never rewrites a published file in place).
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(io_error)?;
    let (header_len, header) =
        SafeTensors::read_metadata(&mmap).map_err(|source| SafetensorsError::Header { path: path.into(), source })?;
    // read_metadata checked that 8 + header_len + data == file length, so this cannot overflow.
    let data_start = 8 + header_len;
    Ok(Shard { path: path.into(), mmap, data_start, header })
}

fn read_json(path: &Path) -> Result<Value, SafetensorsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SafetensorsError::Io { path: path.into(), source })?;
    serde_json::from_str(&text).map_err(|source| SafetensorsError::Json { path: path.into(), source })
}

fn read_optional_json(path: &Path) -> Result<Option<Value>, SafetensorsError> {
    if path.exists() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

fn invalid(path: &Path, field: &str, problem: &str) -> SafetensorsError {
    SafetensorsError::Invalid { path: path.into(), field: field.into(), problem: problem.into() }
}
