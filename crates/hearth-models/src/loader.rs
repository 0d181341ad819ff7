//! Opening a model: a `.gguf` file or a Hugging Face safetensors directory, with its tokenizer, chat
//! template and stop tokens. The path is given by the caller; this crate knows no store layout.

use crate::config::ModelConfig;
use crate::transformer::Transformer;
use crate::weights::WeightFiles;
use crate::{ModelError, Result};
use candle_core::Device;
use hearth_formats::gguf::GgufFile;
use hearth_formats::safetensors::SafetensorsModel;
use hearth_formats::tokenizer::Tokenizer;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Facts about a model for `hearth show` and the server's model listings.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub format: &'static str,
    pub architecture: String,
    pub parameters: u64,
    pub quantization: String,
    pub context_length: usize,
    pub vocab_size: usize,
    pub file_size: u64,
}

/// Everything needed to generate with a model.
pub struct LoadedModel {
    pub model: Transformer,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<String>,
    pub eos_ids: Vec<u32>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub info: ModelInfo,
}

/// A model opened far enough to describe it, before any weights are copied.
pub struct ModelFiles {
    pub files: WeightFiles,
    pub config: ModelConfig,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<String>,
    pub eos_ids: Vec<u32>,
    pub info: ModelInfo,
}

/// Open `path` (a `.gguf` file or a safetensors directory) and read its configuration and tokenizer.
pub fn open(path: &Path) -> Result<ModelFiles> {
    if path.is_dir() {
        open_safetensors(path)
    } else if path.is_file() {
        open_gguf(path)
    } else {
        Err(ModelError::Io { path: path.display().to_string(), reason: "no such file or directory".into() })
    }
}

/// Open and load onto `device`.
pub fn load(path: &Path, device: &Device) -> Result<LoadedModel> {
    load_files(path, open(path)?, device)
}

/// Open and load onto `device` with every quantized weight dequantized to dense f32 (a reference
/// for checking quantized and accelerator paths; safetensors models are dense already).
pub fn load_dense(path: &Path, device: &Device) -> Result<LoadedModel> {
    let mut m = open(path)?;
    if let WeightFiles::Gguf(file) = m.files {
        m.files = WeightFiles::GgufDense(file);
    }
    load_files(path, m, device)
}

fn load_files(path: &Path, m: ModelFiles, device: &Device) -> Result<LoadedModel> {
    let model = Transformer::load(m.config, &m.files, device).map_err(|e| name_file(path, e))?;
    let bos_token = m.tokenizer.bos_id().and_then(|id| m.tokenizer.id_to_token(id)).map(str::to_string);
    let eos_token = m.eos_ids.first().and_then(|&id| m.tokenizer.id_to_token(id)).map(str::to_string);
    Ok(LoadedModel { model, tokenizer: m.tokenizer, chat_template: m.chat_template, eos_ids: m.eos_ids, bos_token, eos_token, info: m.info })
}

/// Format errors already name their file; they are kept as they are.
fn format_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Format(e.to_string())
}

fn open_gguf(path: &Path) -> Result<ModelFiles> {
    let file = GgufFile::open(path).map_err(format_err)?;
    let md = file.metadata();
    // Checked before the config, whose vocabulary size would otherwise be reported missing instead.
    if md.get("tokenizer.ggml.model").is_none() && md.get("tokenizer.ggml.tokens").is_none() {
        return Err(ModelError::Format(format!("{}: missing tokenizer (no tokenizer.ggml.* metadata)", path.display())));
    }
    let freq_factors = match file.tensor("rope_freqs.weight") {
        Some(info) => Some(f32_values(&file, info, path)?),
        None => None,
    };
    let config = ModelConfig::from_gguf(md, freq_factors).map_err(|e| in_file(path, e))?;
    let tokenizer = Tokenizer::from_gguf(md).map_err(|e| ModelError::Format(format!("{}: {e}", path.display())))?;
    let chat_template = md.get_str("tokenizer.chat_template").map(str::to_string);
    let eos_ids = tokenizer.eos_ids();
    let info = ModelInfo {
        path: path.to_path_buf(),
        format: "gguf",
        architecture: config.architecture.clone(),
        parameters: file.tensors().iter().map(|t| t.n_elements()).sum(),
        quantization: file.quantization_label().unwrap_or("unknown").to_string(),
        context_length: config.context_length,
        vocab_size: config.vocab_size,
        file_size: file.file_size(),
    };
    Ok(ModelFiles { files: WeightFiles::Gguf(std::sync::Arc::new(file)), config, tokenizer, chat_template, eos_ids, info })
}

fn f32_values(file: &GgufFile, info: &hearth_formats::gguf::TensorInfo, path: &Path) -> Result<Vec<f32>> {
    if info.ggml_type != hearth_formats::gguf::GgmlType::F32 {
        return Err(ModelError::Format(format!("{}: tensor '{}' must be F32", path.display(), info.name)));
    }
    Ok(file.tensor_bytes(info).chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

fn in_file(path: &Path, e: ModelError) -> ModelError {
    ModelError::Format(format!("{}: {e}", path.display()))
}

/// `e` prefixed with the model's path unless it already names its file (format and I/O errors do).
fn name_file(path: &Path, e: ModelError) -> ModelError {
    match e {
        ModelError::Format(_) | ModelError::Io { .. } => e,
        other => in_file(path, other),
    }
}

fn open_safetensors(dir: &Path) -> Result<ModelFiles> {
    let model = SafetensorsModel::open(dir).map_err(format_err)?;
    let config_path = dir.join("config.json");
    let config = ModelConfig::from_hf_config(model.config()).map_err(|e| in_file(&config_path, e))?;
    let tokenizer_json = dir.join("tokenizer.json");
    if !tokenizer_json.is_file() {
        return Err(ModelError::Io { path: tokenizer_json.display().to_string(), reason: "missing tokenizer (tokenizer.json)".into() });
    }
    let tok_config = dir.join("tokenizer_config.json");
    let tokenizer = Tokenizer::from_hf_files(&tokenizer_json, tok_config.is_file().then_some(tok_config.as_path()))
        .map_err(|e| ModelError::Format(format!("{}: {e}", tokenizer_json.display())))?;
    let chat_template = model.tokenizer_config().and_then(template_of);
    let mut eos_ids = tokenizer.eos_ids();
    for id in model.generation_config().map(generation_eos).unwrap_or_default() {
        if !eos_ids.contains(&id) {
            eos_ids.push(id);
        }
    }
    let info = ModelInfo {
        path: dir.to_path_buf(),
        format: "safetensors",
        architecture: config.architecture.clone(),
        parameters: parameter_count(&model),
        quantization: dominant_dtype(&model),
        context_length: config.context_length,
        vocab_size: config.vocab_size,
        file_size: model.shard_paths().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum(),
    };
    Ok(ModelFiles { files: WeightFiles::Safetensors(model), config, tokenizer, chat_template, eos_ids, info })
}

/// `chat_template` of a tokenizer_config.json: a string, or a list of named templates ("default" wins).
fn template_of(cfg: &Value) -> Option<String> {
    match cfg.get("chat_template")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => {
            let named = |n: &str| list.iter().find(|t| t.get("name").and_then(Value::as_str) == Some(n));
            named("default").or(list.first())?.get("template")?.as_str().map(str::to_string)
        }
        _ => None,
    }
}

fn generation_eos(cfg: &Value) -> Vec<u32> {
    match cfg.get("eos_token_id") {
        Some(Value::Number(n)) => n.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_u64).map(|v| v as u32).collect(),
        _ => Vec::new(),
    }
}

fn parameter_count(model: &SafetensorsModel) -> u64 {
    model.tensor_names().filter_map(|n| model.tensor(n).ok()).map(|t| t.shape.iter().product::<usize>() as u64).sum()
}

/// The dtype holding most parameters, named like a quantization (`F32`, `F16`, `BF16`).
fn dominant_dtype(model: &SafetensorsModel) -> String {
    let mut counts = std::collections::HashMap::new();
    for t in model.tensor_names().filter_map(|n| model.tensor(n).ok()) {
        *counts.entry(t.dtype.name()).or_insert(0u64) += t.shape.iter().product::<usize>() as u64;
    }
    counts.into_iter().max_by_key(|&(_, n)| n).map_or_else(|| "unknown".into(), |(d, _)| d.to_string())
}
