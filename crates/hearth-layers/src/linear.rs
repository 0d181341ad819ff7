//! A linear layer whose weight is dense or quantized, chosen when the model is loaded.
//!
//! This is the seam where hearth's own quantized kernels plug in: callers only see `Linear::forward`.

use crate::Result;
use crate::quant::QuantMatrix;
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Module, Tensor};
use std::sync::Arc;

#[derive(Debug, Clone)]
enum Weight {
    /// `[out, in]` dense weight (f32/f16/bf16).
    Dense(Tensor),
    /// Block-quantized weight on an accelerator, through candle's kernels.
    Quantized(QMatMul),
    /// Block-quantized weight on the CPU, read in place, multiplied with llama.cpp's numerics.
    Blocks(QuantMatrix),
}

/// `y = x W^T + b` with `W` of shape `[out_features, in_features]`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
    out_features: usize,
}

impl Linear {
    pub fn dense(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (out_features, _) = weight.dims2()?;
        Ok(Self { weight: Weight::Dense(weight), bias, out_features })
    }

    /// A block-quantized weight for candle's kernels (float tensors come as [`Linear::dense`]).
    pub fn quantized(weight: Arc<QTensor>, bias: Option<Tensor>) -> Result<Self> {
        let (out_features, _) = weight.shape().dims2()?;
        let weight = match QMatMul::from_arc(weight)? {
            QMatMul::Tensor(t) | QMatMul::TensorF16(t) => Weight::Dense(t),
            q => Weight::Quantized(q),
        };
        Ok(Self { weight, bias, out_features })
    }

    /// A block-quantized CPU weight read in place.
    pub fn blocks(weight: QuantMatrix, bias: Option<Tensor>) -> Self {
        let out_features = weight.shape().0;
        Self { weight: Weight::Blocks(weight), bias, out_features }
    }

    pub fn out_features(&self) -> usize {
        self.out_features
    }

    pub fn is_quantized(&self) -> bool {
        matches!(self.weight, Weight::Quantized(_) | Weight::Blocks(_))
    }

    /// Several layers over the same input (q/k/v, gate/up). CPU block-quantized weights share one
    /// activation quantization and one parallel pass; other weights run one by one. `batching` says
    /// how llama.cpp would have batched each input row ([`crate::quant::RowBatch`]).
    pub fn forward_many(layers: &[&Linear], x: &Tensor, batching: &[crate::quant::RowBatch]) -> Result<Vec<Tensor>> {
        let blocks: Option<Vec<&QuantMatrix>> =
            layers.iter().map(|l| if let Weight::Blocks(m) = &l.weight { Some(m) } else { None }).collect();
        let Some(mats) = blocks.filter(|m| m.len() > 1) else {
            return layers.iter().map(|l| l.forward_batched(x, batching)).collect();
        };
        let mut dims = x.dims().to_vec();
        let k = dims.pop().unwrap_or(0);
        if mats.iter().any(|q| q.shape().1 != k) {
            return layers.iter().map(|l| l.forward(x)).collect(); // the single path reports the mismatch
        }
        let xs = x.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let outs = crate::quant::matmul_many(&mats, &xs, xs.len() / k.max(1), batching);
        layers
            .iter()
            .zip(outs)
            .map(|(l, y)| {
                let mut d = dims.clone();
                d.push(l.out_features);
                let y = Tensor::from_vec(y, d, x.device())?;
                match &l.bias {
                    Some(b) => Ok(y.broadcast_add(b)?),
                    None => Ok(y),
                }
            })
            .collect()
    }

    /// `x`: `[..., in]` → `[..., out]`, every row multiplied as llama.cpp multiplies a row alone.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_batched(x, &[])
    }

    /// As [`Self::forward`], with how llama.cpp would have batched each row.
    pub fn forward_batched(&self, x: &Tensor, batching: &[crate::quant::RowBatch]) -> Result<Tensor> {
        let y = match &self.weight {
            Weight::Quantized(q) => q.forward(x)?,
            Weight::Blocks(m) => m.forward_batched(x, batching)?,
            Weight::Dense(w) if w.dtype() == x.dtype() => x.broadcast_matmul(&w.t()?)?,
            // On an accelerator the (bf16/f16) weight stays as loaded: the activation is cast to it,
            // the library matmul accumulates in f32, and the result comes back in the caller's dtype.
            // Casting the weight instead would copy every weight on every call.
            Weight::Dense(w) if !w.device().is_cpu() => match crate::device::dense_gemv(x, w)? {
                // A few rows (decode): one kernel reads the weight as stored, no casts.
                Some(y) => y,
                None => x.to_dtype(w.dtype())?.broadcast_matmul(&w.t()?)?.to_dtype(x.dtype())?,
            },
            Weight::Dense(w) => x.broadcast_matmul(&w.to_dtype(x.dtype())?.t()?)?,
        };
        match &self.bias {
            Some(b) => Ok(y.broadcast_add(b)?),
            None => Ok(y),
        }
    }
}
