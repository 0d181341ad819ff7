//! Block-quantized weights widened to f16 on the device (prompt-sized matmuls then run on cuBLAS),
//! and the SiLU-gated product for prompt rows: see dequant.cu and silu_mul.cu.

use super::{f32_rows, fresh, rows_view};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorage, WrapErr};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Layout, Result, Shape, Tensor};

const DEQUANT_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/dequant.ptx"));
const SILU_MUL_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/silu_mul.ptx"));

/// Values per k-quant super-block, and warps (one super-block each) per thread block.
const SUPER_BLOCK: usize = 256;
const WARPS: usize = 8;

/// An f16 `[n, k]` copy of `w`: Q4_K and Q6_K by hearth's kernels, other formats by candle's.
pub fn dequantize_f16(w: &QTensor, device: &Device) -> Result<Tensor> {
    let kernel = match w.dtype() {
        GgmlDType::Q4K => "dequant_q4k_f16",
        GgmlDType::Q6K => "dequant_q6k_f16",
        _ => return w.dequantize_f16(device),
    };
    let n = w.shape().elem_count();
    let Device::Cuda(dev) = device else { return w.dequantize_f16(device) };
    if n % SUPER_BLOCK != 0 || n == 0 {
        return w.dequantize_f16(device);
    }
    let blocks = n / SUPER_BLOCK;
    let stream = dev.cuda_stream();
    let (src, _guard) = w.device_ptr_with_guard(&stream)?;
    // SAFETY: the kernel writes all n values (32 lanes x 8 per super-block).
    let mut out = unsafe { dev.alloc::<half::f16>(n)? };
    let func = dev.get_or_load_custom_func(kernel, "hearth_dequant", DEQUANT_PTX)?;
    let cfg = LaunchConfig { grid_dim: (blocks.div_ceil(WARPS) as u32, 1, 1), block_dim: ((WARPS * 32) as u32, 1, 1), shared_mem_bytes: 0 };
    let (src, count) = (src as u64, blocks as i64);
    let mut b = func.builder();
    b.arg(&src).arg(&mut out).arg(&count);
    // SAFETY: argument order and types match dequant.cu (the source pointer passed as its address);
    // `w` holds `blocks` super-blocks of the kernel's format, alive while `_guard` is.
    unsafe { b.launch(cfg) }.w()?;
    Ok(fresh(out, dev, w.shape().dims()))
}

/// silu(gate) * up, both f32 of one shape, written in `out` (f32, bf16 or f16).
struct SiluMul {
    out: DType,
}

impl candle_core::CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "hearth-silu-mul"
    }

    fn cpu_fwd(&self, _: &candle_core::CpuStorage, _: &Layout, _: &candle_core::CpuStorage, _: &Layout) -> Result<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("hearth-silu-mul runs on CUDA only")
    }

    fn cuda_fwd(&self, g: &CudaStorage, g_l: &Layout, u: &CudaStorage, u_l: &Layout) -> Result<(CudaStorage, Shape)> {
        if g_l.shape() != u_l.shape() {
            candle_core::bail!("silu mul: gate {:?} and up {:?}", g_l.shape(), u_l.shape());
        }
        let n = g_l.shape().elem_count();
        let width = g_l.dims().iter().skip(1).product::<usize>().max(1);
        let ((gs, g_stride), (us, u_stride)) = (rows_view(g, g_l, "silu mul: gate")?, rows_view(u, u_l, "silu mul: up")?);
        let dev = g.device().clone();
        let cfg = LaunchConfig { grid_dim: (n.div_ceil(256).clamp(1, 132 * 16) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        let (count, width, g_stride, u_stride) = (n as i64, width as i64, g_stride as i64, u_stride as i64);
        macro_rules! launch {
            ($ty:ty, $name:literal) => {{
                // SAFETY: the grid-stride loop writes all n values.
                let mut out = unsafe { dev.alloc::<$ty>(n)? };
                let func = dev.get_or_load_custom_func($name, "hearth_silu_mul", SILU_MUL_PTX)?;
                let mut b = func.builder();
                b.arg(&gs).arg(&us).arg(&mut out).arg(&count).arg(&width).arg(&g_stride).arg(&u_stride);
                // SAFETY: argument order and types match silu_mul.cu; the shapes were checked above.
                unsafe { b.launch(cfg) }.w()?;
                CudaStorage::wrap_cuda_slice(out, dev.clone())
            }};
        }
        let out = match self.out {
            DType::F32 => launch!(f32, "silu_mul"),
            DType::F16 => launch!(half::f16, "silu_mul_f16"),
            DType::BF16 => launch!(half::bf16, "silu_mul_bf16"),
            other => candle_core::bail!("silu mul: output dtype {other:?} is not supported"),
        };
        Ok((out, g_l.shape().clone()))
    }
}

/// silu(gate) * up for f32 tensors of one shape (rows packed, at any stride), in one launch, the
/// product packed in `out` (f32, bf16 or f16).
pub fn silu_mul(gate: &Tensor, up: &Tensor, out: DType) -> Result<Tensor> {
    let (g, u) = (f32_rows(gate)?, f32_rows(up)?);
    g.apply_op2_no_bwd(&u, &SiluMul { out })
}
