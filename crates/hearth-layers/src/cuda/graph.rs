//! CUDA graphs and host transfers: a decode step recorded once and replayed with one launch, so the ~30 kernels per
//! layer stop costing a host round of candle bookkeeping and a driver launch each; with them, the
//! in-place input writes replays need, the memory-pool setting that keeps per-step allocations
//! cheap, and the page-locked logits copy back. Reached only through `crate::device`.

use candle_core::cuda_backend::cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use candle_core::cuda_backend::cudarc::driver::{CudaGraph, PinnedHostSlice};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::{CudaDevice, CudaStorage, WrapErr};
use candle_core::{Layout, Result, Tensor};

/// A recorded graph. Its memory (the intermediates and the output it leaves allocated) sits at
/// addresses fixed for the graph's lifetime, so an output tensor captured with it stays valid across
/// replays; `AUTO_FREE_ON_LAUNCH` lets a replay reuse that output allocation.
pub struct Graph(CudaGraph);

// SAFETY: the exec handle is only launched through `&self` while the caller holds it (hearth keeps
// graphs behind a mutex); launching binds the owning context to the calling thread first.
unsafe impl Send for Graph {}

impl Graph {
    pub fn replay(&self) -> Result<()> {
        self.0.launch().w()
    }
}

/// Runs `f` with candle's host-upload cache on, so the small parameter vectors its kernels upload
/// (shapes, strides) are cached: a warm-up like this must precede [`record`] of the same work.
pub fn with_upload_cache<T>(dev: &CudaDevice, f: impl FnOnce() -> T) -> T {
    let _cache = dev.enable_cuda_graph_htod_cache();
    f()
}

/// Records everything `f` enqueues on the device's stream instead of running it. The capture is
/// always ended, also when `f` fails, so the stream stays usable; `Ok(None)` means the driver
/// produced no graph.
pub fn record<T, E: From<candle_core::Error>>(
    dev: &CudaDevice,
    f: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<Option<(Graph, T)>, E> {
    let stream = dev.cuda_stream();
    let _cache = dev.enable_cuda_graph_htod_cache();
    stream.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL).w()?;
    let out = f();
    let graph = stream.end_capture(CUgraphInstantiate_flags::CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH).w();
    let out = out?;
    Ok(graph?.map(|g| (Graph(g), out)))
}

/// Overwrites a u32 device tensor in place with host data (the graph's inputs between replays).
struct HostWrite<'a> {
    data: &'a [u32],
}

impl candle_core::InplaceOp1 for HostWrite<'_> {
    fn name(&self) -> &'static str {
        "hearth-host-write"
    }

    fn cpu_fwd(&self, _: &mut candle_core::CpuStorage, _: &Layout) -> Result<()> {
        candle_core::bail!("hearth-host-write writes CUDA tensors only")
    }

    fn cuda_fwd(&self, storage: &mut CudaStorage, layout: &Layout) -> Result<()> {
        let (a, b) = layout.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("host write: tensor must be contiguous".into()))?;
        if b - a != self.data.len() {
            candle_core::bail!("host write: {} values into a tensor of {}", self.data.len(), b - a);
        }
        let stream = storage.device().cuda_stream();
        let mut dst = storage.as_cuda_slice_mut::<u32>()?.slice_mut(a..b);
        stream.memcpy_htod(self.data, &mut dst).w()
    }
}

/// Copies `data` into the u32 tensor `dst` (same element count), ordered on the device's stream.
pub fn write_u32(dst: &Tensor, data: &[u32]) -> Result<()> {
    dst.inplace_op1(&HostWrite { data })
}

/// Keeps memory freed into the device's default pool reserved for reuse instead of handing it back
/// to the driver at every synchronisation (the pool's default release threshold is 0). Every step
/// allocates and frees its activations and logits; with the default, each step re-maps them.
pub fn keep_freed_memory(dev: &CudaDevice) -> Result<()> {
    use candle_core::cuda_backend::cudarc::driver::sys;
    let ctx = dev.cuda_stream().context().clone();
    ctx.bind_to_thread().w()?;
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    let mut threshold = u64::MAX;
    // SAFETY: `pool` receives the device's default pool handle, then one of its attributes is set
    // from a live u64 as the driver expects for RELEASE_THRESHOLD.
    unsafe {
        sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()).result().w()?;
        let value = (&mut threshold as *mut u64).cast::<std::ffi::c_void>();
        sys::cuMemPoolSetAttribute(pool, sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, value).result().w()?;
    }
    Ok(())
}

/// The page-locked buffer the last [`copy_rows`] result gave back, kept for the next copy:
/// allocating one costs milliseconds, and a copy into pageable memory goes through the driver's
/// staging at a fraction of the bus's speed (a step's logits are 33 MB at 64 sequences of 128k).
static STAGING: std::sync::Mutex<Option<PinnedHostSlice<f32>>> = std::sync::Mutex::new(None);

/// f32 values copied from the device into page-locked host memory; the buffer goes back to the
/// staging slot when this is dropped.
pub struct PinnedRows {
    buf: Option<PinnedHostSlice<f32>>,
    len: usize,
}

impl PinnedRows {
    pub fn as_slice(&self) -> &[f32] {
        // The copy was waited for in `copy_rows` (the buffer's own event is never pending).
        self.buf.as_ref().and_then(|b| b.as_slice().ok()).map_or(&[][..], |s| &s[..self.len])
    }
}

impl Drop for PinnedRows {
    fn drop(&mut self) {
        if let (Some(buf), Ok(mut slot)) = (self.buf.take(), STAGING.lock()) {
            if slot.as_ref().is_none_or(|kept| kept.len() < buf.len()) {
                *slot = Some(buf);
            }
        }
    }
}

/// Copies the contiguous f32 CUDA tensor `t` to the host through a reused page-locked buffer and
/// waits for it.
pub fn copy_rows(t: &Tensor) -> Result<PinnedRows> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cuda(s) = &*storage else { candle_core::bail!("copy_rows: the tensor must live on a CUDA device") };
    let (a, b) = layout.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("copy_rows: tensor must be contiguous".into()))?;
    let src = s.as_cuda_slice::<f32>()?.slice(a..b);
    let stream = s.device().cuda_stream();
    let kept = STAGING.lock().ok().and_then(|mut slot| slot.take());
    let mut buf = match kept {
        Some(buf) if buf.len() >= b - a && std::sync::Arc::ptr_eq(buf.context(), stream.context()) => buf,
        _ => {
            // SAFETY: the buffer is written by the copy below before anything reads it. No flags:
            // write-combined memory (cudarc's default) is very slow for the host to read.
            unsafe { stream.context().alloc_pinned_with_flags::<f32>((b - a).max(1), 0) }.w()?
        }
    };
    // Into the first b - a values only: a copy into the whole PinnedHostSlice would copy its full
    // length. The stream is waited on explicitly: with candle's event tracking off, the buffer's
    // own event is never recorded.
    stream.memcpy_dtoh(&src, &mut buf.as_mut_slice().w()?[..b - a]).w()?;
    stream.synchronize().w()?;
    Ok(PinnedRows { buf: Some(buf), len: b - a })
}
