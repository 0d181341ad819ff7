//! Device selection: the only place in hearth that mentions the `cuda` and `metal` features.

use crate::attention::AttentionParams;
use crate::{LayerError, Result};
use candle_core::{Device, Tensor};

#[cfg(feature = "cuda")]
#[path = "cuda/mod.rs"]
mod cuda_kernels;

#[cfg(feature = "cuda")]
#[path = "cuda/graph.rs"]
mod cuda_graph;

/// A parsed `--device` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
    Metal(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = LayerError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| LayerError::Device { spec: s.to_string(), reason: reason.to_string() };
        let (kind, index) = match s.split_once(':') {
            Some((k, i)) => (k, i.parse::<usize>().map_err(|_| bad("the index after ':' must be a number"))?),
            None => (s, 0),
        };
        match kind {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(index)),
            "metal" => Ok(DeviceSpec::Metal(index)),
            _ => Err(bad("expected cpu, cuda[:N] or metal[:N]")),
        }
    }
}

/// Open the requested device, with an error that says which build feature is missing.
pub fn select_device(spec: DeviceSpec) -> Result<Device> {
    let unavailable = |name: &str, reason: String| LayerError::Device { spec: name.to_string(), reason };
    match spec {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(i) => {
            if cfg!(feature = "cuda") {
                let device = Device::new_cuda(i).map_err(|e| unavailable(&format!("cuda:{i}"), e.to_string()))?;
                #[cfg(feature = "cuda")]
                if let Device::Cuda(cuda) = &device {
                    // SAFETY: hearth uses the device's one stream only, so the per-tensor events candle
                    // records for cross-stream safety (an event per op) are pure overhead.
                    unsafe { cuda.disable_event_tracking() };
                    // Best effort: without it every step re-maps the memory it frees (only slower).
                    let _ = cuda_graph::keep_freed_memory(cuda);
                }
                Ok(device)
            } else {
                Err(unavailable(&format!("cuda:{i}"), "this hearth was built without the `cuda` feature".into()))
            }
        }
        DeviceSpec::Metal(i) => {
            if cfg!(feature = "metal") {
                Device::new_metal(i).map_err(|e| unavailable(&format!("metal:{i}"), e.to_string()))
            } else {
                Err(unavailable(&format!("metal:{i}"), "this hearth was built without the `metal` feature".into()))
            }
        }
    }
}

/// Human-readable name of the compiled-in accelerator backends, for `--help` and `hearth show`.
pub fn compiled_backends() -> &'static [&'static str] {
    match (cfg!(feature = "cuda"), cfg!(feature = "metal")) {
        (true, true) => &["cpu", "cuda", "metal"],
        (true, false) => &["cpu", "cuda"],
        (false, true) => &["cpu", "metal"],
        (false, false) => &["cpu"],
    }
}

/// Decode attention (one query token per sequence, all sequences in one launch) by an accelerator
/// kernel over the paged cache rows `k_cache`/`v_cache`, when the device has one; `None` means the
/// caller takes the portable path. `slots` (u32, on the device) are every sequence's visible cache
/// slots concatenated, sequence `i` owning `slots[offsets[i]..offsets[i + 1]]`.
pub fn decode_attention(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    slots: &Tensor,
    offsets: &Tensor,
    params: &AttentionParams,
) -> Result<Option<Tensor>> {
    #[cfg(feature = "cuda")]
    if q.device().is_cuda() {
        return Ok(Some(cuda_kernels::decode_attention(q, k_cache, v_cache, slots.clone(), offsets.clone(), params)?));
    }
    let _ = (q, k_cache, v_cache, slots, offsets, params);
    Ok(None)
}

/// Writes new K and V rows (`[tokens, width]`, any float dtype) into the device cache tensors at
/// `slots` (u32, on the device), one kernel each for the whole batch, when the device has such
/// kernels; `false` means the caller copies.
pub fn kv_write(keys: &Tensor, values: &Tensor, k: &Tensor, v: &Tensor, slots: &Tensor) -> Result<bool> {
    #[cfg(feature = "cuda")]
    if keys.device().is_cuda() {
        cuda_kernels::kv_write(keys, k, slots.clone())?;
        cuda_kernels::kv_write(values, v, slots.clone())?;
        return Ok(true);
    }
    let _ = (keys, values, k, v, slots);
    Ok(false)
}

/// Rotary embedding of `x` (`[tokens, heads, head_dim]`) by per-token `cos`/`sin` (`[tokens,
/// head_dim / 2]`) in one kernel, when the device has one; `None` means the portable path.
pub fn rope_rows(x: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool) -> Result<Option<Tensor>> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        return Ok(Some(cuda_kernels::rope_rows(x, cos, sin, interleaved)?.to_dtype(x.dtype())?));
    }
    let _ = (x, cos, sin, interleaved);
    Ok(None)
}

/// A recorded sequence of device work that one call replays (a CUDA graph). Tensors the work read
/// when it was recorded are read again at the same addresses, so callers change inputs by writing
/// into them ([`write_u32`]) and keep every such tensor alive as long as the graph.
pub struct DeviceGraph {
    #[cfg(feature = "cuda")]
    inner: cuda_graph::Graph,
}

impl DeviceGraph {
    pub fn replay(&self) -> Result<()> {
        #[cfg(feature = "cuda")]
        self.inner.replay()?;
        Ok(())
    }
}

/// Whether `device` can record work into a [`DeviceGraph`].
pub fn graphs_supported(device: &Device) -> bool {
    cfg!(feature = "cuda") && device.is_cuda()
}

/// Runs `f` once for real in the mode that [`record`] needs beforehand (candle's small host
/// uploads cached), so recording the same work afterwards uploads nothing.
pub fn warm_up<T>(device: &Device, f: impl FnOnce() -> T) -> T {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(dev) = device {
        return cuda_graph::with_upload_cache(dev, f);
    }
    let _ = device;
    f()
}

/// Records what `f` enqueues on `device` instead of running it, for replay; `Ok(None)` where the
/// device cannot record (see [`graphs_supported`]) or the driver made no graph. `f` must run work
/// already warmed up by [`warm_up`], and must not read results back to the host.
pub fn record<T, E: From<LayerError>>(device: &Device, f: impl FnOnce() -> std::result::Result<T, E>) -> std::result::Result<Option<(DeviceGraph, T)>, E> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(dev) = device {
        let recorded = cuda_graph::record(dev, || f().map_err(Recorded::Caller)).map_err(|e| match e {
            Recorded::Caller(e) => e,
            Recorded::Device(e) => E::from(LayerError::Candle(e)),
        })?;
        return Ok(recorded.map(|(inner, out)| (DeviceGraph { inner }, out)));
    }
    let _ = (device, f);
    Ok(None)
}

/// The caller's error or the driver's, while recording.
#[cfg(feature = "cuda")]
enum Recorded<E> {
    Caller(E),
    Device(candle_core::Error),
}

#[cfg(feature = "cuda")]
impl<E> From<candle_core::Error> for Recorded<E> {
    fn from(e: candle_core::Error) -> Self {
        Recorded::Device(e)
    }
}

/// Overwrites the u32 device tensor `dst` with `data` (same element count), in stream order.
pub fn write_u32(dst: &Tensor, data: &[u32]) -> Result<()> {
    #[cfg(feature = "cuda")]
    if dst.device().is_cuda() {
        return Ok(cuda_graph::write_u32(dst, data)?);
    }
    let _ = data;
    Err(LayerError::Shape { what: "device write".into(), detail: format!("{:?} tensors are written by value, not in place", dst.device().location()) })
}

/// Bytes of device memory in use on `device` (all processes, as the driver counts them), or `None`
/// for the CPU. A difference of two readings around a load is what that load really took.
pub fn memory_in_use(device: &Device) -> Option<u64> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(dev) = device {
        let _ = device.synchronize();
        return dev.cuda_stream().context().mem_get_info().ok().map(|(free, total)| total.saturating_sub(free) as u64);
    }
    let _ = device;
    None
}

/// `x` (`[.., k]`, f32) times `w^T` for a bf16/f16 weight `w` (`[n, k]`) in one kernel that reads
/// the weight once for up to 8 activation rows (decode) and needs no casts, when the device has one;
/// `None` means the caller takes the library path.
pub fn dense_gemv(x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() && x.dtype() == candle_core::DType::F32 && matches!(w.dtype(), candle_core::DType::BF16 | candle_core::DType::F16) {
        let (n, k) = w.dims2()?;
        let rows = x.elem_count() / k.max(1);
        let aligned = w.is_contiguous() && w.layout().start_offset() % 8 == 0;
        if x.dims().last() == Some(&k) && k % 8 == 0 && (1..=cuda_kernels::DENSE_GEMV_MAX_ROWS).contains(&rows) && aligned {
            let flat = x.reshape((rows, k))?.contiguous()?;
            if flat.layout().start_offset() % 4 == 0 {
                let mut dims = x.dims().to_vec();
                if let Some(last) = dims.last_mut() {
                    *last = n;
                }
                return Ok(Some(cuda_kernels::dense_gemv(&flat, w)?.reshape(dims)?));
            }
        }
    }
    let _ = (x, w);
    Ok(None)
}
