//! Warming L2 with the weights a decode step reads next (l2_prefetch.cu): one launch issues the
//! prefetches and ends, and the memory system fills L2 while the step's small kernels run.

use candle_core::cuda_backend::cudarc::driver::sys::CUdevice_attribute;
use candle_core::cuda_backend::cudarc::driver::{CudaStream, DevicePtr, LaunchConfig, PushKernelArg};
use std::sync::{Arc, Mutex};
use candle_core::cuda_backend::WrapErr;
use crate::device::DeviceWeight;
use candle_core::{DType, Result, Storage};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/l2_prefetch.ptx"));

/// Ranges one launch takes (MAX_RANGES in l2_prefetch.cu).
pub const MAX_RANGES: usize = 8;

/// How the kernel prefetches (MODE_* in l2_prefetch.cu).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefetchMode {
    /// Hopper's bulk prefetch: one instruction per 32 KB chunk.
    Bulk = 1,
    /// One prefetch instruction per 128-byte line.
    Line = 2,
}

/// Bytes a thread's share of a launch aims at (one bulk chunk, or four lines).
const THREAD_SHARE: [usize; 3] = [0, 16 * 1024, 4 * 128];
/// Threads a block: one warp for bulk chunks (so every SM's copy engine takes some), more for lines.
const BLOCK: [usize; 3] = [0, 32, 128];

/// The second stream prefetches run on when they should overlap the step's kernels instead of
/// taking their turn in its one stream; made once per context, outside any graph recording.
static SIDE: Mutex<Option<Arc<CudaStream>>> = Mutex::new(None);

/// The side stream of `main`'s context.
fn side_stream(main: &Arc<CudaStream>) -> Result<Arc<CudaStream>> {
    let mut slot = SIDE.lock().map_err(|_| candle_core::Error::Msg("l2 prefetch: side stream lock poisoned".into()))?;
    match &*slot {
        Some(s) if Arc::ptr_eq(s.context(), main.context()) => Ok(s.clone()),
        _ => {
            let s = main.context().new_stream().w()?;
            *slot = Some(s.clone());
            Ok(s)
        }
    }
}

/// Makes `dev`'s stream wait for the prefetches on the side stream, so a graph recording that forked
/// into it joins again before it ends; nothing when no side stream was made.
pub fn l2_prefetch_join(dev: &candle_core::CudaDevice) -> Result<()> {
    let main = dev.cuda_stream();
    let side = SIDE.lock().ok().and_then(|s| s.clone());
    match side {
        Some(side) if Arc::ptr_eq(side.context(), main.context()) => main.join(&side).w(),
        _ => Ok(()),
    }
}

/// The L2 cache's size in bytes on `dev`'s GPU.
pub fn l2_bytes(dev: &candle_core::CudaDevice) -> Result<usize> {
    let attr = dev.cuda_stream().context().attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE).w()?;
    Ok(attr.max(0) as usize)
}

/// `(address, bytes)` of `w` on the device.
fn range(w: &DeviceWeight, dev: &candle_core::CudaDevice) -> Result<(u64, u64)> {
    let stream = dev.cuda_stream();
    match w {
        DeviceWeight::Quantized(q) => {
            let (p, _guard) = q.device_ptr_with_guard(&stream)?;
            Ok((p as u64, q.storage_size_in_bytes() as u64))
        }
        DeviceWeight::Dense(t) => {
            let (storage, layout) = t.storage_and_layout();
            let Storage::Cuda(s) = &*storage else { candle_core::bail!("l2 prefetch: weight must live on the CUDA device") };
            let (a, b) = super::range(layout, "l2 prefetch: weight")?;
            let bytes = ((b - a) * t.dtype().size_in_bytes()) as u64;
            let p = match t.dtype() {
                DType::BF16 => s.as_cuda_slice::<half::bf16>()?.slice(a..b).device_ptr(&stream).0,
                DType::F16 => s.as_cuda_slice::<half::f16>()?.slice(a..b).device_ptr(&stream).0,
                DType::F32 => s.as_cuda_slice::<f32>()?.slice(a..b).device_ptr(&stream).0,
                other => candle_core::bail!("l2 prefetch: weight dtype {other:?}"),
            };
            Ok((p, bytes))
        }
    }
}

/// Prefetches `weights` into L2 in order, the last one cut short where `budget` bytes run out; up to
/// [`MAX_RANGES`] weights, one launch. The weights outlive the step (the model holds them), and a
/// prefetch reads nothing back, so nothing waits on it.
/// With `side`, the launch goes to a second stream that first waits for everything enqueued so far,
/// and [`l2_prefetch_join`] must follow before the step's results are read (or its recording ends).
pub fn l2_prefetch(dev: &candle_core::CudaDevice, weights: &[DeviceWeight], budget: usize, mode: PrefetchMode, side: bool) -> Result<()> {
    let mut ranges = [(0u64, 0u64); MAX_RANGES];
    let mut left = budget as u64;
    for (slot, w) in ranges.iter_mut().zip(weights) {
        let (p, n) = range(w, dev)?;
        *slot = (p, n.min(left));
        left -= slot.1;
    }
    let total = budget as u64 - left;
    if total == 0 {
        return Ok(());
    }
    let (threads, block) = ((total as usize).div_ceil(THREAD_SHARE[mode as usize]), BLOCK[mode as usize]);
    let cfg = LaunchConfig { grid_dim: (threads.div_ceil(block).clamp(1, 1024) as u32, 1, 1), block_dim: (block as u32, 1, 1), shared_mem_bytes: 0 };
    let func = dev.get_or_load_custom_func("l2_prefetch", "hearth_l2_prefetch", PTX)?.into_cuda_function();
    let stream = match side {
        true => {
            let main = dev.cuda_stream();
            let s = side_stream(&main)?;
            s.join(&main).w()?;
            s
        }
        false => dev.cuda_stream(),
    };
    let mode_i = mode as i32;
    let mut b = stream.launch_builder(&func);
    for (p, _) in &ranges {
        b.arg(p);
    }
    for (_, n) in &ranges {
        b.arg(n);
    }
    b.arg(&mode_i);
    // SAFETY: argument order and types match l2_prefetch (eight addresses, eight byte counts, the
    // mode); each range lies inside a live weight's allocation, and prefetches write nothing.
    unsafe { b.launch(cfg) }.w()?;
    Ok(())
}
