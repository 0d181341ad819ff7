//! RMSNorm, with the weight offset that Gemma's Hugging Face checkpoints use (`x * (1 + w)`).
//!
//! On the CPU the arithmetic is llama.cpp's, step for step: the sum of squares of f32 products
//! accumulated in f64, `scale = 1 / sqrt(mean + eps)` in f32, then `(x · scale) · w`. The quantized
//! linear layers round their input to 8 bits, so a last-bit difference here flips a rounding and
//! moves the model's log-probabilities by tenths of a nat (issue 2); matching the order keeps hearth's
//! quantized path next to llama.cpp's. Other devices use candle's op.

use crate::Result;
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

#[derive(Debug, Clone)]
pub struct RmsNorm {
    /// The effective scale (offset already folded in at load time, so forward does one multiply).
    scale: Tensor,
    /// The same scale on the host, for the CPU path.
    host_scale: Vec<f32>,
    eps: f32,
}

impl RmsNorm {
    /// `weight_offset` is 1.0 for Gemma HF checkpoints (GGUF files have it folded in already), else 0.
    pub fn new(weight: Tensor, eps: f32, weight_offset: f32) -> Result<Self> {
        let weight = weight.to_dtype(DType::F32)?;
        let scale = if weight_offset != 0.0 { (weight + weight_offset as f64)? } else { weight };
        let host_scale = scale.flatten_all()?.to_vec1::<f32>()?;
        Ok(Self { scale, host_scale, eps })
    }

    /// `(x + r, forward(x + r))`: the residual stream and its normalised rows, in one device kernel
    /// where there is one; elsewhere exactly the add, then [`Self::forward`].
    pub fn forward_residual(&self, x: &Tensor, r: &Tensor) -> Result<(Tensor, Tensor)> {
        self.forward_residual_as(x, r, DType::F32)
    }

    /// [`Self::forward_residual`] with the normalised rows in `out` (the dtype the next matmul reads,
    /// [`crate::Linear::input_dtype_many`]; U8 on CUDA: the k-quant GEMV's 8-bit rows); the sum stays
    /// in `x`'s dtype.
    pub fn forward_residual_as(&self, x: &Tensor, r: &Tensor, out: DType) -> Result<(Tensor, Tensor)> {
        if let Some(both) = crate::device::add_rms_norm(x, r, &self.scale, self.eps, out)? {
            return Ok(both);
        }
        if out == DType::U8 {
            // The k-quant GEMV's 8-bit rows come only from the device kernel (Linear::input_dtype_many).
            return Err(crate::LayerError::Shape { what: "add rms norm".into(), detail: format!("8-bit rows need the CUDA kernel, x {:?} on {:?}", x.shape(), x.device()) });
        }
        let s = (x + r)?;
        let h = self.forward(&s)?.to_dtype(out)?;
        Ok((s, h))
    }

    /// Normalises over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        if !matches!(x.device(), Device::Cpu) || x.dtype() != DType::F32 {
            return Ok(candle_nn::ops::rms_norm(&x, &self.scale, self.eps)?);
        }
        let width = self.host_scale.len();
        let mut v = x.flatten_all()?.to_vec1::<f32>()?;
        if width == 0 || v.len() % width != 0 {
            // Let candle report the shape mismatch.
            return Ok(candle_nn::ops::rms_norm(&x, &self.scale, self.eps)?);
        }
        v.par_chunks_mut(width).for_each(|row| rms_norm_row(row, &self.host_scale, self.eps));
        Ok(Tensor::from_vec(v, x.dims(), x.device())?)
    }
}

/// One row in place, in llama.cpp's order of operations (see the module doc).
pub fn rms_norm_row(row: &mut [f32], weight: &[f32], eps: f32) {
    let sum: f64 = row.iter().map(|&x| f64::from(x * x)).sum();
    let mean = (sum / row.len() as f64) as f32;
    let scale = 1.0f32 / (mean + eps).sqrt();
    for (x, &w) in row.iter_mut().zip(weight) {
        *x = *x * scale * w;
    }
}
