//! Decode-sized matmuls over k-quant weights read as stored (quant_gemv.cu): the activation rows
//! quantized to 8 bits once, then one launch for up to three weights over them (q/k/v), or for a
//! gate/up pair with SiLU x up.

use super::{f32_rows, fresh, rows_view, split_products};
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Result, Storage, Tensor};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/quant_gemv.ptx"));

/// Values per k-quant super-block; a weight's rows must hold whole ones.
const SUPER_BLOCK: usize = 256;

/// Activation rows the GEMV serves (its entry points quant_gemv_1..8); more go to candle's matmul, or
/// from DEQUANT_GEMM_ROWS to cuBLAS over an f16 copy. candle's MMVQ also stops at 8.
pub const QUANT_GEMV_MAX_ROWS: usize = 8;

/// Warps a block of the GEMV (WARPS in quant_gemv.cu).
const WARPS: usize = 4;

/// The kernel's code for a weight format it reads (FORMAT_* in quant_gemv.cu).
fn format_code(dtype: GgmlDType) -> Option<i32> {
    match dtype {
        GgmlDType::Q4K => Some(0),
        GgmlDType::Q6K => Some(1),
        _ => None,
    }
}

/// Bytes of one activation row of `k` values in the 8-bit layout the GEMV reads (q8.cuh).
pub fn q8_row_bytes(k: usize) -> usize {
    k + k / 4
}

/// Whether the kernel takes weight `w` (`[n, k]`) for an input of `rows` rows of `k` values.
pub fn quant_gemv_takes(w: &QTensor, rows: usize, k: usize) -> bool {
    let shape_fits = w.shape().dims2().is_ok_and(|(n, wk)| n > 0 && wk == k);
    format_code(w.dtype()).is_some() && shape_fits && k % SUPER_BLOCK == 0 && k > 0 && (1..=QUANT_GEMV_MAX_ROWS).contains(&rows)
}

/// `x` `[rows, k]` f32 times `w^T` for up to three k-quant weights `[n_i, k]` (any mix of formats):
/// `[rows, n_i]` f32 each, from one quantization of `x` and one launch; with `swiglu` (two weights of
/// one shape), silu(x gate^T) * (x up^T) `[rows, n]`. `x` may also come quantized already (U8
/// `[rows, q8_row_bytes(k)]`, as add + RMSNorm writes it). The caller checked [`quant_gemv_takes`].
pub fn quant_gemv(x: &Tensor, weights: &[&QTensor], swiglu: bool) -> Result<Vec<Tensor>> {
    let (rows, width) = x.dims2()?;
    let k = match x.dtype() {
        DType::U8 => weights.first().map_or(Ok(0), |w| w.shape().dims2().map(|(_, k)| k))?,
        _ => width,
    };
    if x.dtype() == DType::U8 && width != q8_row_bytes(k) {
        candle_core::bail!("quant gemv: 8-bit rows of {width} bytes for weights of {k} columns");
    }
    let ns: Vec<usize> = weights.iter().map(|w| w.shape().dims2().map(|(n, _)| n)).collect::<Result<_>>()?;
    if weights.is_empty() || weights.len() > 3 || (swiglu && (weights.len() != 2 || ns[0] != ns[1])) {
        candle_core::bail!("quant gemv: {} weights (swiglu: {swiglu})", weights.len());
    }
    if let Some(w) = weights.iter().find(|w| !quant_gemv_takes(w, rows, k)) {
        candle_core::bail!("quant gemv: weight {:?} {:?} for x {:?}", w.dtype(), w.shape(), x.shape());
    }
    let candle_core::Device::Cuda(dev) = x.device() else { candle_core::bail!("quant gemv: x must live on the CUDA device") };
    let x = if x.dtype() == DType::U8 { x.contiguous()? } else { quantize_rows(&f32_rows(x)?, dev, rows, k)? };
    let (x_storage, x_layout) = x.storage_and_layout();
    let Storage::Cuda(x_storage) = &*x_storage else { candle_core::bail!("quant gemv: x must live on the CUDA device") };
    let (x0, x1) = x_layout.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("quant gemv: x must be contiguous".into()))?;
    let xq = x_storage.as_cuda_slice::<u8>()?.slice(x0..x1);
    let k_i = k as i32;
    let stream = dev.cuda_stream();
    let ptrs: Vec<_> = weights.iter().map(|w| w.device_ptr_with_guard(&stream)).collect::<Result<_>>()?;
    let ptr = |i: usize| ptrs.get(i).unwrap_or(&ptrs[0]).0 as u64;
    let code = |i: usize| weights.get(i).and_then(|w| format_code(w.dtype())).unwrap_or(0);
    let total = if swiglu { ns[0] } else { ns.iter().sum() };
    // SAFETY: the kernel writes every one of the rows * total outputs.
    let mut out = unsafe { dev.alloc::<f32>(rows * total)? };
    let kind = if swiglu { "quant_swiglu" } else { "quant_gemv" };
    let func = dev.get_or_load_custom_func(&format!("{kind}_{rows}"), "hearth_quant_gemv", PTX)?;
    // One warp per output row (a gate/up pair in the SwiGLU form), four warps per block; a row of more
    // than 2048 values takes two warps, of more than 4096 four (a divisor of the block's warps, so a
    // row's warps share a block), so a lane has about 2 chunks of 32 values: one warp per 8192-value
    // row read the 1B shape's down projection at 0.7 TB/s (H100, ncu).
    let wpr = match k {
        0..=2048 => 1,
        2049..=4096 => 2,
        _ => WARPS,
    };
    let cfg = LaunchConfig { grid_dim: ((total * wpr).div_ceil(WARPS) as u32, 1, 1), block_dim: (32 * WARPS as u32, 1, 1), shared_mem_bytes: 0 };
    let wpr_i = wpr as i32;
    let n_at = |i: usize| ns.get(i).copied().unwrap_or(0) as i32;
    let (w0, w1, w2, f0, f1, f2, n0, n1, n2) = (ptr(0), ptr(1), ptr(2), code(0), code(1), code(2), n_at(0), n_at(1), n_at(2));
    let mut b = func.builder();
    if swiglu {
        b.arg(&xq).arg(&w0).arg(&w1).arg(&f0).arg(&f1).arg(&mut out).arg(&n0).arg(&k_i).arg(&wpr_i);
    } else {
        b.arg(&xq).arg(&w0).arg(&w1).arg(&w2).arg(&f0).arg(&f1).arg(&f2).arg(&mut out).arg(&n0).arg(&n1).arg(&n2).arg(&k_i).arg(&wpr_i);
    }
    // SAFETY: argument order and types match quant_gemv.cu (weights passed as their addresses, alive
    // while `ptrs` holds their guards); formats and shapes were checked above.
    unsafe { b.launch(cfg) }.w()?;
    drop(ptrs);
    let flat = fresh(out, dev, &[rows * total]);
    if swiglu {
        return Ok(vec![flat.reshape((rows, total))?]);
    }
    split_products(&flat, rows, &ns)
}

/// f32 rows (packed, at any row stride) in the GEMV's 8-bit layout: U8 `[rows, q8_row_bytes(k)]`.
fn quantize_rows(x: &Tensor, dev: &candle_core::CudaDevice, rows: usize, k: usize) -> Result<Tensor> {
    let (storage, layout) = x.storage_and_layout();
    let Storage::Cuda(storage) = &*storage else { candle_core::bail!("quant gemv: x must live on the CUDA device") };
    let (xs, stride) = rows_view(storage, layout, "quant gemv: x")?;
    // SAFETY: quantize_q8 writes every byte of the rows: k values and k / 32 scale pairs each.
    let mut q = unsafe { dev.alloc::<u8>(rows * q8_row_bytes(k))? };
    let func = dev.get_or_load_custom_func("quantize_q8", "hearth_quant_gemv", PTX)?;
    let warps = rows * (k / 32);
    let cfg = LaunchConfig { grid_dim: (warps.div_ceil(8) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    let (rows_i, k_i, stride_i) = (rows as i32, k as i32, stride as i64);
    let mut b = func.builder();
    b.arg(&xs).arg(&mut q).arg(&rows_i).arg(&k_i).arg(&stride_i);
    // SAFETY: argument order and types match quantize_q8; `xs` spans rows at `stride`, k values each.
    unsafe { b.launch(cfg) }.w()?;
    Ok(fresh(q, dev, &[rows, q8_row_bytes(k)]))
}
