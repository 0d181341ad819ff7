//! A linear layer whose weight is dense or quantized, chosen when the model is loaded.
//!
//! This is the seam where hearth's own quantized kernels plug in: callers only see `Linear::forward`.

use crate::Result;
use crate::quant::QuantMatrix;
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Module, Tensor};
use std::sync::Arc;

#[derive(Debug, Clone)]
enum Weight {
    /// `[out, in]` dense weight (f32/f16/bf16).
    Dense(Tensor),
    /// Block-quantized weight on an accelerator: decode rows over Q4_K/Q6_K through hearth's GEMV
    /// ([`crate::device::quant_gemv`]), prompt batches through an f16 copy and the library matmul
    /// ([`crate::device::dequant_gemm`]), the rest through candle's kernels.
    Quantized(Arc<QTensor>, QMatMul),
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
        let weight = match QMatMul::from_arc(weight.clone())? {
            QMatMul::Tensor(t) | QMatMul::TensorF16(t) => Weight::Dense(t),
            q => Weight::Quantized(weight, q),
        };
        Ok(Self { weight, bias, out_features })
    }

    /// A block-quantized CPU weight read in place.
    pub fn blocks(weight: QuantMatrix, bias: Option<Tensor>) -> Self {
        let out_features = weight.shape().0;
        Self { weight: Weight::Blocks(weight), bias, out_features }
    }

    /// Dense accelerator layers over one input (q/k/v, gate/up) stacked into one weight, their rows one part
    /// after the other: returns the parts as views of the stacked weight's rows (no second copy) and
    /// the stacked layer, whose one library matmul then serves an input of many rows where the parts
    /// took one each (H100, 64 rows: k and v took 7 us each for 2.4 MB). The parts come back as
    /// they were, with `None`, unless every one is a dense device weight without bias, of one dtype
    /// and input width.
    pub fn stack(parts: Vec<Linear>) -> Result<(Vec<Linear>, Option<Linear>)> {
        let dense: Option<Vec<&Tensor>> = parts
            .iter()
            .map(|l| match (&l.weight, &l.bias) {
                (Weight::Dense(w), None) if !w.device().is_cpu() => Some(w),
                _ => None,
            })
            .collect();
        let Some(ws) = dense.filter(|ws| ws.len() > 1) else { return Ok((parts, None)) };
        let (dtype, k) = (ws[0].dtype(), ws[0].dims2()?.1);
        if ws.iter().any(|w| w.dtype() != dtype || w.dims2().map_or(true, |(_, wk)| wk != k)) {
            return Ok((parts, None));
        }
        let all = Tensor::cat(&ws, 0)?;
        let mut views = Vec::with_capacity(parts.len());
        let mut row = 0;
        for part in &parts {
            views.push(Linear::dense(all.narrow(0, row, part.out_features)?, None)?);
            row += part.out_features;
        }
        Ok((views, Some(Linear::dense(all, None)?)))
    }

    /// The dtype this layer takes an input of `rows` rows in with the least work: a dense bf16/f16
    /// CUDA weight without bias, past the rows its GEMV serves (which reads f32), goes to cuBLAS with an
    /// f32 result ([`crate::device::dense_gemm`]), which would cast an f32 input to the weight's dtype
    /// first — so a kernel that produces the input writes that dtype directly. f32 everywhere else
    /// (other accelerators' matmuls would answer in the input's dtype).
    pub fn input_dtype(&self, rows: usize) -> DType {
        match (&self.weight, &self.bias) {
            (Weight::Dense(w), None) if Self::is_half(w.dtype()) && w.device().is_cuda() && rows > crate::device::dense_gemv_max_rows(w.device()) => w.dtype(),
            _ => DType::F32,
        }
    }

    /// The dtype a norm writes for `rows` rows that all of `layers` read (q/k/v, gate/up): U8 where
    /// hearth's k-quant GEMV takes every one of them, meaning its 8-bit activation rows, which the
    /// norm then writes itself instead of a separate quantize launch; else the first layer's
    /// [`Self::input_dtype`].
    pub fn input_dtype_many(layers: &[&Linear], rows: usize) -> DType {
        if Self::quantized_weights(layers).is_some_and(|ws| crate::device::quant_gemv_reads_q8(&ws, rows)) {
            return DType::U8;
        }
        layers.first().map_or(DType::F32, |l| l.input_dtype(rows))
    }

    /// The weights of `layers` when every one is candle-quantized without bias.
    fn quantized_weights<'a>(layers: &[&'a Linear]) -> Option<Vec<&'a QTensor>> {
        layers
            .iter()
            .map(|l| match (&l.weight, &l.bias) {
                (Weight::Quantized(w, _), None) => Some(&**w),
                _ => None,
            })
            .collect()
    }

    fn is_half(dtype: DType) -> bool {
        matches!(dtype, DType::BF16 | DType::F16)
    }

    pub fn out_features(&self) -> usize {
        self.out_features
    }

    pub fn is_quantized(&self) -> bool {
        matches!(self.weight, Weight::Quantized(..) | Weight::Blocks(_))
    }

    /// Several layers over the same input (q/k/v, gate/up). CPU block-quantized weights share one
    /// activation quantization and one parallel pass; other weights run one by one. `batching` says
    /// how llama.cpp would have batched each input row ([`crate::quant::RowBatch`]).
    pub fn forward_many(layers: &[&Linear], x: &Tensor, batching: &[crate::quant::RowBatch]) -> Result<Vec<Tensor>> {
        let blocks: Option<Vec<&QuantMatrix>> =
            layers.iter().map(|l| if let Weight::Blocks(m) = &l.weight { Some(m) } else { None }).collect();
        let Some(mats) = blocks.filter(|m| m.len() > 1) else {
            if let Some(ys) = Self::device_gemv_many(layers, x)? {
                return Ok(ys);
            }
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

    /// Dense device weights without bias: one GEMV launch for all of them over a few rows, or one
    /// input cast for their library matmuls over more (the same arithmetic as one by one); quantized
    /// ones over a prompt batch: their f16 copies' matmuls, the input cast once; else `None`.
    fn device_gemv_many(layers: &[&Linear], x: &Tensor) -> Result<Option<Vec<Tensor>>> {
        if let Some(ws) = Self::quantized_weights(layers).filter(|ws| ws.len() > 1) {
            if let Some(ys) = crate::device::quant_gemv_many(x, &ws)? {
                return Ok(Some(ys));
            }
            return crate::device::dequant_gemm_many(x, &ws);
        }
        let dense: Option<Vec<&Tensor>> = layers
            .iter()
            .map(|l| match (&l.weight, &l.bias) {
                (Weight::Dense(w), None) if !w.device().is_cpu() && w.dtype() != x.dtype() => Some(w),
                _ => None,
            })
            .collect();
        match dense {
            Some(ws) if ws.len() > 1 => match crate::device::dense_gemv_many(x, &ws)? {
                Some(ys) => Ok(Some(ys)),
                // More rows than the GEMV serves: the library matmul, the input cast once for all.
                None => crate::device::dense_gemm_many(x, &ws),
            },
            _ => Ok(None),
        }
    }

    /// silu(gate(x)) * up(x) in one device kernel where there is one (dense bf16/f16 or Q4_K/Q6_K weights
    /// without bias, decode-sized `x`); `None` means the caller runs the two layers and the activation.
    pub fn forward_swiglu(gate: &Linear, up: &Linear, x: &Tensor) -> Result<Option<Tensor>> {
        match (&gate.weight, &up.weight, &gate.bias, &up.bias) {
            (Weight::Dense(g), Weight::Dense(u), None, None) if !g.device().is_cpu() && g.dtype() != x.dtype() => {
                crate::device::dense_swiglu(x, g, u)
            }
            (Weight::Quantized(g, _), Weight::Quantized(u, _), None, None) => crate::device::quant_swiglu(x, g, u),
            _ => Ok(None),
        }
    }

    /// `x`: `[..., in]` → `[..., out]`, every row multiplied as llama.cpp multiplies a row alone.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_batched(x, &[])
    }

    /// As [`Self::forward`], with how llama.cpp would have batched each row.
    pub fn forward_batched(&self, x: &Tensor, batching: &[crate::quant::RowBatch]) -> Result<Tensor> {
        let y = match &self.weight {
            Weight::Quantized(w, q) => match crate::device::quant_gemv(x, w)? {
                // A few rows (decode): hearth's GEMV over the weight as stored.
                Some(y) => y,
                None => match crate::device::dequant_gemm(x, w)? {
                    Some(y) => y,
                    None => q.forward(x)?,
                },
            },
            Weight::Blocks(m) => m.forward_batched(x, batching)?,
            // An accelerator's bf16/f16 weight with an input already in its dtype goes to the library
            // matmul below, for an f32 result like every other input's.
            Weight::Dense(w) if w.dtype() == x.dtype() && (w.device().is_cpu() || !Self::is_half(x.dtype())) => x.broadcast_matmul(&w.t()?)?,
            // On an accelerator the (bf16/f16) weight stays as loaded: the activation is cast to it,
            // the library matmul accumulates in f32, and the result comes back in the caller's dtype.
            // Casting the weight instead would copy every weight on every call.
            Weight::Dense(w) if !w.device().is_cpu() => match crate::device::dense_gemv(x, w)? {
                // A few rows (decode): one kernel reads the weight as stored, no casts.
                Some(y) => y,
                // More rows: the library matmul, its result in f32 directly where the device can.
                None => match crate::device::dense_gemm(x, w)? {
                    Some(y) => y,
                    None => x.to_dtype(w.dtype())?.broadcast_matmul(&w.t()?)?.to_dtype(x.dtype())?,
                },
            },
            Weight::Dense(w) => x.broadcast_matmul(&w.to_dtype(x.dtype())?.t()?)?,
        };
        match &self.bias {
            Some(b) => Ok(y.broadcast_add(b)?),
            None => Ok(y),
        }
    }
}
