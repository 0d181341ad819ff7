//! Where a model's tensors come from: a GGUF file (quantized blocks stay quantized) or a safetensors
//! directory (dense). Tensors are asked for by their GGUF names; Hugging Face names are mapped here, so
//! the decoder is written once.

use crate::config::Family;
use crate::{ModelError, Result};
use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use hearth_formats::gguf::{GgmlType, GgufFile, TensorInfo};
use hearth_layers::quant::{ByteSource, QuantMatrix};
use hearth_formats::safetensors::{SafetensorsModel, StDtype};
use std::sync::Arc;

/// One loaded tensor: block-quantized (any GGUF tensor) or a dense candle tensor.
#[derive(Debug, Clone)]
pub enum Weight {
    /// Quantized for an accelerator (candle's kernels).
    Quantized(Arc<QTensor>),
    /// Quantized on the CPU, read in place from the memory-mapped file.
    Blocks(QuantMatrix),
    Dense(Tensor),
}

impl Weight {
    /// Dense f32 copy, for small tensors (norms, biases) and for conversion.
    pub fn to_f32(&self, device: &Device) -> Result<Tensor> {
        Ok(match self {
            Weight::Quantized(q) => q.dequantize(device)?,
            Weight::Blocks(m) => m.to_f32(device)?,
            Weight::Dense(t) => t.to_dtype(DType::F32)?,
        })
    }
}

/// The files a model's tensors are read from.
pub enum WeightFiles {
    Gguf(Arc<GgufFile>),
    /// A GGUF file whose quantized tensors are dequantized to dense f32 at load: the exact reference
    /// path (`hearth bench devices --dense`), at 4-8x the memory.
    GgufDense(Arc<GgufFile>),
    Safetensors(SafetensorsModel),
}

impl WeightFiles {
    /// The tensor with GGUF name `name` (e.g. `blk.3.attn_q.weight`), or `None` if the model has none.
    pub fn get(&self, name: &str, family: Family, device: &Device) -> Result<Option<Weight>> {
        match self {
            WeightFiles::Gguf(file) => gguf_tensor(file, name, device),
            WeightFiles::GgufDense(file) => gguf_tensor(file, name, device)?.map(|w| w.to_f32(device).map(Weight::Dense)).transpose(),
            WeightFiles::Safetensors(model) => {
                let Some(hf) = hf_name(name, family) else { return Ok(None) };
                if !model.contains(&hf) {
                    return Ok(None);
                }
                let view = model.tensor(&hf).map_err(|e| ModelError::Format(e.to_string()))?;
                let dtype = match view.dtype {
                    StDtype::F32 => DType::F32,
                    StDtype::F16 => DType::F16,
                    StDtype::BF16 => DType::BF16,
                };
                Ok(Some(dense(view.data, dtype, &view.shape, device)?))
            }
        }
    }

    pub fn require(&self, name: &str, family: Family, device: &Device) -> Result<Weight> {
        self.get(name, family, device)?.ok_or_else(|| ModelError::MissingTensor(name.to_string()))
    }
}

/// One tensor's bytes inside a shared memory-mapped GGUF file.
struct MappedTensor {
    file: Arc<GgufFile>,
    info: TensorInfo,
}

impl ByteSource for MappedTensor {
    fn bytes(&self) -> &[u8] {
        self.file.tensor_bytes(&self.info)
    }
}

/// A float tensor from its bytes: f32 on the CPU (its fastest, most exact matmul), the file's own
/// dtype on an accelerator (f16/bf16: half the bytes per token).
fn dense(bytes: &[u8], dtype: DType, dims: &[usize], device: &Device) -> Result<Weight> {
    let t = Tensor::from_raw_buffer(bytes, dtype, dims, device)?;
    Ok(Weight::Dense(if device.is_cpu() { t.to_dtype(DType::F32)? } else { t }))
}

fn gguf_tensor(file: &Arc<GgufFile>, name: &str, device: &Device) -> Result<Option<Weight>> {
    let Some(info) = file.tensor(name) else { return Ok(None) };
    file.check_supported(info).map_err(|e| ModelError::Format(e.to_string()))?;
    let dtype = candle_dtype(info.ggml_type).ok_or_else(|| {
        ModelError::Format(format!("{}: tensor '{}' has type {}, which hearth does not support", file.path().display(), info.name, info.ggml_type.name()))
    })?;
    // GGUF lists the fastest-varying dimension first; candle shapes are row-major.
    let dims: Vec<usize> = info.dims.iter().rev().map(|&d| d as usize).collect();
    let float = match dtype {
        GgmlDType::F32 => Some(DType::F32),
        GgmlDType::F16 => Some(DType::F16),
        GgmlDType::BF16 => Some(DType::BF16),
        _ => None,
    };
    if let Some(float) = float {
        return Ok(Some(dense(file.tensor_bytes(info), float, &dims, device)?));
    }
    if device.is_cpu() && dims.len() == 2 {
        let source = Arc::new(MappedTensor { file: file.clone(), info: info.clone() });
        let m = QuantMatrix::new(dtype, dims[0], dims[1], source)?;
        return Ok(Some(Weight::Blocks(m)));
    }
    let q = qtensor_from_ggml(dtype, file.tensor_bytes(info), dims, device)?;
    Ok(Some(Weight::Quantized(Arc::new(q))))
}

fn candle_dtype(t: GgmlType) -> Option<GgmlDType> {
    Some(match t {
        GgmlType::F32 => GgmlDType::F32,
        GgmlType::F16 => GgmlDType::F16,
        GgmlType::BF16 => GgmlDType::BF16,
        GgmlType::Q4_0 => GgmlDType::Q4_0,
        GgmlType::Q4_1 => GgmlDType::Q4_1,
        GgmlType::Q5_0 => GgmlDType::Q5_0,
        GgmlType::Q5_1 => GgmlDType::Q5_1,
        GgmlType::Q8_0 => GgmlDType::Q8_0,
        GgmlType::Q8_1 => GgmlDType::Q8_1,
        GgmlType::Q2_K => GgmlDType::Q2K,
        GgmlType::Q3_K => GgmlDType::Q3K,
        GgmlType::Q4_K => GgmlDType::Q4K,
        GgmlType::Q5_K => GgmlDType::Q5K,
        GgmlType::Q6_K => GgmlDType::Q6K,
        GgmlType::Q8_K => GgmlDType::Q8K,
        _ => return None,
    })
}

/// The Hugging Face name of a GGUF tensor name, for `family`.
pub fn hf_name(gguf: &str, family: Family) -> Option<String> {
    let global = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(g) = global {
        return Some(g.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, tail) = rest.split_once('.')?;
    let (base, suffix) = tail.rsplit_once('.')?;
    let gemma = family == Family::Gemma3;
    let hf = match base {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "post_attention_norm" => "post_attention_layernorm",
        "ffn_norm" if gemma => "pre_feedforward_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "post_ffw_norm" => "post_feedforward_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma_and_llama_map_the_ffn_norm_differently() {
        assert_eq!(hf_name("blk.2.ffn_norm.weight", Family::Llama).as_deref(), Some("model.layers.2.post_attention_layernorm.weight"));
        assert_eq!(hf_name("blk.2.ffn_norm.weight", Family::Gemma3).as_deref(), Some("model.layers.2.pre_feedforward_layernorm.weight"));
        assert_eq!(hf_name("blk.0.attn_q.bias", Family::Qwen2).as_deref(), Some("model.layers.0.self_attn.q_proj.bias"));
        assert_eq!(hf_name("rope_freqs.weight", Family::Llama), None);
    }
}
