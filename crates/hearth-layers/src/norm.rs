//! RMSNorm, with the weight offset that Gemma's Hugging Face checkpoints use (`x * (1 + w)`).

use crate::Result;
use candle_core::Tensor;

#[derive(Debug, Clone)]
pub struct RmsNorm {
    /// The effective scale (offset already folded in at load time, so forward does one multiply).
    scale: Tensor,
    eps: f32,
}

impl RmsNorm {
    /// `weight_offset` is 1.0 for Gemma HF checkpoints (GGUF files have it folded in already), else 0.
    pub fn new(weight: Tensor, eps: f32, weight_offset: f32) -> Result<Self> {
        let weight = weight.to_dtype(candle_core::DType::F32)?;
        let scale = if weight_offset != 0.0 { (weight + weight_offset as f64)? } else { weight };
        Ok(Self { scale, eps })
    }

    /// Normalises over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(&x.contiguous()?, &self.scale, self.eps)?)
    }
}
