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
/// slots concatenated, sequence `i` owning `slots[offsets[i]..offsets[i + 1]]`. The result is written
/// in `out` (f32, or the bf16/f16 of the matmul that reads it next, [`crate::Linear::input_dtype`]).
pub fn decode_attention(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    slots: &Tensor,
    offsets: &Tensor,
    params: &AttentionParams,
    out: candle_core::DType,
) -> Result<Option<Tensor>> {
    #[cfg(feature = "cuda")]
    if q.device().is_cuda() {
        return Ok(Some(cuda_kernels::decode_attention(q, k_cache, v_cache, slots.clone(), offsets.clone(), params, out)?));
    }
    let _ = (q, k_cache, v_cache, slots, offsets, params, out);
    Ok(None)
}

/// Writes new K and V rows (`[tokens, width]`, any float dtype; each row packed, the rows at any
/// stride, as in a column range of a matmul output) into the device cache tensors at
/// `slots` (u32, on the device), one kernel for both and the whole batch, when the device has such
/// a kernel; `false` means the caller copies. `keys` and `values` are distinct cache tensors.
pub fn kv_write(keys: &Tensor, values: &Tensor, k: &Tensor, v: &Tensor, slots: &Tensor) -> Result<bool> {
    #[cfg(feature = "cuda")]
    if keys.device().is_cuda() {
        cuda_kernels::kv_write(keys, values, k, v, slots.clone())?;
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

/// [`rope_rows`] for `q` and `k` (same tokens and head_dim) in one kernel, when the device has one.
pub fn rope_rows_pair(q: &Tensor, k: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool) -> Result<Option<(Tensor, Tensor)>> {
    #[cfg(feature = "cuda")]
    if q.device().is_cuda() {
        let (q2, k2) = cuda_kernels::rope_rows_pair(q, k, cos, sin, interleaved)?;
        return Ok(Some((q2.to_dtype(q.dtype())?, k2.to_dtype(k.dtype())?)));
    }
    let _ = (q, k, cos, sin, interleaved);
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
/// the weight once for up to 6 activation rows (decode) and needs no casts, when the device has one;
/// `None` means the caller takes the library path.
pub fn dense_gemv(x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    Ok(dense_gemv_many(x, &[w])?.and_then(|mut ys| ys.pop()))
}

/// [`dense_gemv`] for several weights over the same `x` (q/k/v), up to three per launch.
pub fn dense_gemv_many(x: &Tensor, ws: &[&Tensor]) -> Result<Option<Vec<Tensor>>> {
    #[cfg(feature = "cuda")]
    if let Some((flat, dims)) = gemv_input(x, ws)? {
        return Ok(Some(by_threes(ws, &dims, |chunk| cuda_kernels::dense_gemv_many(&flat, chunk))?));
    }
    let _ = (x, ws);
    Ok(None)
}

/// A GEMV's products for weights `ws` taken three to a launch (`launch` gives `[rows, n]` per weight),
/// each reshaped to the input's leading `dims` and its own width.
#[cfg(feature = "cuda")]
fn by_threes<W>(ws: &[W], dims: &[usize], mut launch: impl FnMut(&[W]) -> candle_core::Result<Vec<Tensor>>) -> Result<Vec<Tensor>> {
    let mut outs = Vec::with_capacity(ws.len());
    for chunk in ws.chunks(3) {
        for y in launch(chunk)? {
            let mut d = dims.to_vec();
            d.push(y.dim(1)?);
            outs.push(y.reshape(d)?);
        }
    }
    Ok(outs)
}

/// silu(x gate^T) * (x up^T) in one kernel for bf16/f16 `gate`/`up` (`[n, k]`) and a few f32 rows
/// `x` (`[.., k]`), when the device has one; `None` means the caller multiplies and activates itself.
pub fn dense_swiglu(x: &Tensor, gate: &Tensor, up: &Tensor) -> Result<Option<Tensor>> {
    #[cfg(feature = "cuda")]
    if gate.dims() == up.dims() {
        if let Some((flat, mut dims)) = gemv_input(x, &[gate, up])? {
            dims.push(gate.dim(0)?);
            return Ok(Some(cuda_kernels::dense_swiglu(&flat, gate, up)?.reshape(dims)?));
        }
    }
    let _ = (x, gate, up);
    Ok(None)
}

/// `x` as the GEMV kernels take it (`[rows, k]`, contiguous, aligned) and its leading dims, when
/// `x` and every weight of `ws` suit them: f32 rows, 1..=6 of them, bf16/f16 weights of one dtype.
#[cfg(feature = "cuda")]
fn gemv_input(x: &Tensor, ws: &[&Tensor]) -> Result<Option<(Tensor, Vec<usize>)>> {
    use candle_core::DType;
    let Some(first) = ws.first() else { return Ok(None) };
    if !x.device().is_cuda() || x.dtype() != DType::F32 || !matches!(first.dtype(), DType::BF16 | DType::F16) {
        return Ok(None);
    }
    let k = first.dims2()?.1;
    let rows = x.elem_count() / k.max(1);
    let suits = |w: &&Tensor| {
        w.dtype() == first.dtype() && w.dims2().is_ok_and(|(_, wk)| wk == k) && w.is_contiguous() && w.layout().start_offset() % 8 == 0
    };
    if x.dims().last() != Some(&k) || k % 8 != 0 || !(1..=cuda_kernels::DENSE_GEMV_MAX_ROWS).contains(&rows) || !ws.iter().all(suits) {
        return Ok(None);
    }
    let flat = x.reshape((rows, k))?.contiguous()?;
    if flat.layout().start_offset() % 4 != 0 {
        return Ok(None);
    }
    let dims = x.dims()[..x.rank() - 1].to_vec();
    Ok(Some((flat, dims)))
}

static QUANT_GEMV: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns hearth's k-quant decode GEMV on or off (off: candle's kernels take those calls), for
/// comparisons; the binary reads it from `HEARTH_CUDA_QUANT_GEMV`.
pub fn set_quant_gemv(on: bool) {
    QUANT_GEMV.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// `x` (`[.., k]`) times `w^T` for a block-quantized `w` (`[n, k]`) by hearth's decode GEMV, which
/// reads Q4_K and Q6_K as stored for 1..=8 rows of `x`; `None` means candle's kernels take it.
pub fn quant_gemv(x: &Tensor, w: &candle_core::quantized::QTensor) -> Result<Option<Tensor>> {
    Ok(quant_gemv_many(x, &[w])?.and_then(|mut ys| ys.pop()))
}

/// [`quant_gemv`] for several weights over the same `x` (q/k/v): `x` quantized to 8 bits once, up to
/// three weights (of any of the formats) per launch.
pub fn quant_gemv_many(x: &Tensor, ws: &[&candle_core::quantized::QTensor]) -> Result<Option<Vec<Tensor>>> {
    #[cfg(feature = "cuda")]
    if let Some((flat, dims)) = quant_gemv_input(x, ws)? {
        return Ok(Some(by_threes(ws, &dims, |chunk| cuda_kernels::quant_gemv(&flat, chunk, false))?));
    }
    let _ = (x, ws);
    Ok(None)
}

/// silu(x gate^T) * (x up^T) in one launch for block-quantized `gate`/`up` of one shape, where
/// [`quant_gemv`] would take them; `None` means the caller multiplies and activates itself.
pub fn quant_swiglu(x: &Tensor, gate: &candle_core::quantized::QTensor, up: &candle_core::quantized::QTensor) -> Result<Option<Tensor>> {
    #[cfg(feature = "cuda")]
    if gate.shape() == up.shape() {
        if let Some((flat, mut dims)) = quant_gemv_input(x, &[gate, up])? {
            dims.push(gate.shape().dims2()?.0);
            let y = cuda_kernels::quant_gemv(&flat, &[gate, up], true)?.pop();
            return Ok(y.map(|y| y.reshape(dims)).transpose()?);
        }
    }
    let _ = (x, gate, up);
    Ok(None)
}

/// Whether add + RMSNorm should write its rows for `rows` rows of input to all of `ws` in the k-quant
/// GEMV's 8-bit layout (U8, see [`add_rms_norm`]): the GEMV takes every weight, and rows are no longer
/// than the norm writes that way (`cuda_kernels::NORM_Q8_MAX_DIM`, which says why).
pub fn quant_gemv_reads_q8(ws: &[&candle_core::quantized::QTensor], rows: usize) -> bool {
    #[cfg(feature = "cuda")]
    {
        let k = ws.first().and_then(|w| w.shape().dims2().ok()).map_or(0, |(_, k)| k);
        k <= cuda_kernels::NORM_Q8_MAX_DIM && quant_gemv_takes_all(ws, rows, k)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (ws, rows);
        false
    }
}

/// Whether the k-quant GEMV is on and takes every one of `ws` (at least one) for `rows` rows of `k` values.
#[cfg(feature = "cuda")]
fn quant_gemv_takes_all(ws: &[&candle_core::quantized::QTensor], rows: usize, k: usize) -> bool {
    QUANT_GEMV.load(std::sync::atomic::Ordering::Relaxed)
        && !ws.is_empty()
        && ws.iter().all(|w| w.device().is_cuda() && cuda_kernels::quant_gemv_takes(w, rows, k))
}

/// `x` as `[rows, width]` and its leading dims, when the k-quant GEMV is on and takes `x` with every
/// weight. `x` is f32 rows of k values, or U8 rows already in the GEMV's 8-bit layout.
#[cfg(feature = "cuda")]
fn quant_gemv_input(x: &Tensor, ws: &[&candle_core::quantized::QTensor]) -> Result<Option<(Tensor, Vec<usize>)>> {
    let width = x.dims().last().copied().unwrap_or(0);
    if !x.device().is_cuda() || width == 0 || ws.is_empty() {
        return Ok(None);
    }
    let k = match x.dtype() {
        candle_core::DType::U8 => ws[0].shape().dims2()?.1,
        _ => width,
    };
    let rows = x.elem_count() / width;
    if !quant_gemv_takes_all(ws, rows, k) {
        if x.dtype() == candle_core::DType::U8 {
            // Only this GEMV reads 8-bit rows: whoever asked the norm for them checked it would take them.
            return Err(LayerError::Shape { what: "k-quant gemv input".into(), detail: format!("8-bit rows {:?} for weights of {k} columns", x.dims()) });
        }
        return Ok(None);
    }
    Ok(Some((x.reshape((rows, width))?, x.dims()[..x.rank() - 1].to_vec())))
}

/// A 2-D f32 tensor's rows on the host (a step's logits), read one row at a time.
pub struct HostRows {
    cols: usize,
    data: HostData,
}

enum HostData {
    Vec(Vec<f32>),
    #[cfg(feature = "cuda")]
    Pinned(cuda_graph::PinnedRows),
}

impl HostRows {
    /// Row `i`, or an empty slice past the last row.
    pub fn row(&self, i: usize) -> &[f32] {
        let all = match &self.data {
            HostData::Vec(v) => v.as_slice(),
            #[cfg(feature = "cuda")]
            HostData::Pinned(p) => p.as_slice(),
        };
        all.get(i * self.cols..(i + 1) * self.cols).unwrap_or(&[])
    }

    pub fn rows(&self) -> usize {
        let len = match &self.data {
            HostData::Vec(v) => v.len(),
            #[cfg(feature = "cuda")]
            HostData::Pinned(p) => p.as_slice().len(),
        };
        len / self.cols.max(1)
    }
}

/// Calls `f` with the rows of `[rows, cols]` `t` (any float dtype, as f32) on the host: a CPU f32
/// tensor's rows read in place (a step's logits are 67 MB at 64 sequences of a 262k vocabulary),
/// a device tensor's through [`rows_to_host`].
pub fn with_host_rows<R>(t: &Tensor, f: impl FnOnce(&[&[f32]]) -> R) -> Result<R> {
    let (_, cols) = t.dims2()?;
    if t.device().is_cpu() {
        let t = t.to_dtype(candle_core::DType::F32)?.contiguous()?;
        let (storage, layout) = t.storage_and_layout();
        if let (candle_core::Storage::Cpu(host), Some((start, end))) = (&*storage, layout.contiguous_offsets()) {
            let rows: Vec<&[f32]> = host.as_slice::<f32>()?[start..end].chunks_exact(cols.max(1)).collect();
            return Ok(f(&rows));
        }
    }
    let host = rows_to_host(t)?;
    let rows: Vec<&[f32]> = (0..host.rows()).map(|r| host.row(r)).collect();
    Ok(f(&rows))
}

/// Each row's greedy token (the largest value's index, the lowest on ties) of `[rows, cols]` `t`,
/// computed on the device when it has a kernel for it, so only one u32 per row crosses the bus;
/// `None` means the caller reads the rows. `u32::MAX` marks a row the host must sample itself: a
/// NaN or +inf in it, or nothing above -inf.
pub fn argmax_rows(t: &Tensor) -> Result<Option<Vec<u32>>> {
    #[cfg(feature = "cuda")]
    if t.device().is_cuda() {
        return Ok(Some(cuda_kernels::argmax_rows(t)?));
    }
    let _ = t;
    Ok(None)
}

/// Each row's `count` largest values with their ids, best first and the lowest id first among equal
/// values (as the host sampler orders them), picked on the device: see [`top_rows`].
pub struct TopRows {
    count: usize,
    ids: Vec<u32>,
    values: Vec<f32>,
    bad: Vec<bool>,
}

impl TopRows {
    pub fn rows(&self) -> usize {
        self.bad.len()
    }

    /// Row `i`'s ids, best first; empty past the last row.
    pub fn ids(&self, i: usize) -> &[u32] {
        self.ids.get(i * self.count..(i + 1) * self.count).unwrap_or_default()
    }

    /// Row `i`'s values, in the order of [`Self::ids`].
    pub fn values(&self, i: usize) -> &[f32] {
        self.values.get(i * self.count..(i + 1) * self.count).unwrap_or_default()
    }

    /// Whether row `i` holds a NaN or +inf (its list then means nothing: read the row itself).
    pub fn holds_non_finite(&self, i: usize) -> bool {
        self.bad.get(i).copied().unwrap_or(true)
    }
}

/// The largest `count` [`top_rows`] serves on `device`: 0 where it has no kernel for it.
pub fn top_rows_max(device: &Device) -> usize {
    #[cfg(feature = "cuda")]
    if device.is_cuda() {
        return cuda_kernels::TOP_ROWS_MAX;
    }
    let _ = device;
    0
}

/// The `count` largest values of each row of f32 `[rows, cols]` `t` and their ids, picked on the
/// device, so that only they cross the bus (a step whose sequences sample from their top k); `None`
/// where the device has no kernel for it, or none for this count and row length (past
/// [`top_rows_max`], the row length, or 512k values at a count of 256).
pub fn top_rows(t: &Tensor, count: usize) -> Result<Option<TopRows>> {
    #[cfg(feature = "cuda")]
    if t.device().is_cuda() && cuda_kernels::top_rows_takes(t.dims2()?.1, count) {
        let (ids, values, bad) = cuda_kernels::top_rows(t, count)?;
        return Ok(Some(TopRows { count, ids, values, bad }));
    }
    let _ = (t, count);
    Ok(None)
}

/// Copies `[rows, cols]` `t` (any float dtype, as f32) to the host: on CUDA into a reused
/// page-locked buffer (several times faster than a pageable copy, and no per-row vectors).
pub fn rows_to_host(t: &Tensor) -> Result<HostRows> {
    let (_, cols) = t.dims2()?;
    let t = t.to_dtype(candle_core::DType::F32)?.contiguous()?;
    #[cfg(feature = "cuda")]
    if t.device().is_cuda() {
        return Ok(HostRows { cols, data: HostData::Pinned(cuda_graph::copy_rows(&t)?) });
    }
    Ok(HostRows { cols, data: HostData::Vec(t.flatten_all()?.to_vec1::<f32>()?) })
}

/// `(x + r, RMSNorm(x + r) · w)` in one kernel for f32 tensors on a device that has one, the norm
/// written in `out` (f32, or the bf16/f16 of the matmul that reads it next); `None` means the caller
/// adds and normalises itself.
pub fn add_rms_norm(x: &Tensor, r: &Tensor, w: &Tensor, eps: f32, out: candle_core::DType) -> Result<Option<(Tensor, Tensor)>> {
    use candle_core::DType;
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() && [x.dtype(), r.dtype(), w.dtype()] == [DType::F32; 3] && x.dims() == r.dims() {
        return Ok(Some(cuda_kernels::add_rms_norm(x, r, w, eps, out)?));
    }
    let _ = (x, r, w, eps, out, DType::F32);
    Ok(None)
}

/// [`dense_gemm`] for several weights of one dtype over the same `x` (q/k/v, gate/up): `x` is cast to
/// the weights' dtype once instead of once per weight (not at all when it comes in that dtype).
pub fn dense_gemm_many(x: &Tensor, ws: &[&Tensor]) -> Result<Option<Vec<Tensor>>> {
    #[cfg(feature = "cuda")]
    if let Some(first) = ws.first().filter(|w| {
        x.device().is_cuda() && matches!(w.dtype(), candle_core::DType::BF16 | candle_core::DType::F16) && (x.dtype() == candle_core::DType::F32 || x.dtype() == w.dtype())
    }) {
        let k = first.dims2()?.1;
        let same = ws.iter().all(|w| w.dtype() == first.dtype() && w.dims2().is_ok_and(|(_, wk)| wk == k));
        if same && x.dims().last() == Some(&k) && x.elem_count() > 0 {
            let lead = x.dims()[..x.rank() - 1].to_vec();
            let xc = x.reshape((x.elem_count() / k.max(1), k))?.to_dtype(first.dtype())?;
            let mut outs = Vec::with_capacity(ws.len());
            for w in ws {
                let mut dims = lead.clone();
                dims.push(w.dim(0)?);
                outs.push(cuda_kernels::gemm_f32_out(&xc, w)?.reshape(dims)?);
            }
            return Ok(Some(outs));
        }
    }
    let _ = (x, ws);
    Ok(None)
}

/// Rows up to which dense weights over one input (q/k/v) are one GEMV launch on `device`, reading
/// each weight as stored; more rows take the library matmul, which a stacked weight
/// ([`crate::linear::Linear::stack`]) serves in one call. 0 where the device has no such GEMV.
pub fn dense_gemv_max_rows(device: &candle_core::Device) -> usize {
    #[cfg(feature = "cuda")]
    if device.is_cuda() {
        return cuda_kernels::DENSE_GEMV_MAX_ROWS;
    }
    let _ = device;
    0
}

/// Rows from which a block-quantized matmul on CUDA dequantizes the weight to f16 and runs the
/// library's tensor-core matmul instead of candle's integer kernels. Measured on the H100 (1B
/// Q4_K_M, decode at 512-token contexts): at 128 rows it wins (15.5k -> 23.1k tok/s), at 64 it is a
/// wash (11.8-12.1k vs 12.1-12.6k), at 32 it loses (9.8k -> 8.1k). [`set_dequant_gemm_rows`]
/// changes it.
pub const DEQUANT_GEMM_ROWS: usize = 128;

static DEQUANT_ROWS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(DEQUANT_GEMM_ROWS);

/// Sets the row count from which [`dequant_gemm`] takes a call (for comparisons; the binary reads
/// it from `HEARTH_CUDA_DEQUANT_ROWS`).
pub fn set_dequant_gemm_rows(rows: usize) {
    DEQUANT_ROWS.store(rows.max(1), std::sync::atomic::Ordering::Relaxed);
}

/// `x` `[..., k]` f32 times the block-quantized `w^T` (`[n, k]`) through an f16 copy of `w` and
/// one library matmul, when the device has one and `x` has at least [`DEQUANT_GEMM_ROWS`] rows (or
/// what [`set_dequant_gemm_rows`] set);
/// `None` means the caller uses the quantized kernels. The copy is freed when the call returns.
pub fn dequant_gemm(x: &Tensor, w: &candle_core::quantized::QTensor) -> Result<Option<Tensor>> {
    Ok(dequant_gemm_many(x, &[w])?.and_then(|mut ys| ys.pop()))
}

/// [`dequant_gemm`] for several weights over the same `x` (q/k/v, gate/up): the input is cast once.
pub fn dequant_gemm_many(x: &Tensor, ws: &[&candle_core::quantized::QTensor]) -> Result<Option<Vec<Tensor>>> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() && !ws.is_empty() {
        let min_rows = DEQUANT_ROWS.load(std::sync::atomic::Ordering::Relaxed);
        let k = x.dims().last().copied().unwrap_or(0);
        if k > 0 && x.elem_count() / k >= min_rows {
            let wide: Vec<Tensor> = ws.iter().map(|w| cuda_kernels::dequantize_f16(w, x.device())).collect::<candle_core::Result<_>>()?;
            return dense_gemm_many(x, &wide.iter().collect::<Vec<_>>());
        }
    }
    let _ = (x, ws);
    Ok(None)
}

/// silu(gate) * up in one device kernel (prompt rows; decode rows fuse it into their GEMV), written
/// in `out` (f32, or the bf16/f16 of the matmul that reads it next), or `None` where the device has no
/// such kernel.
pub fn silu_mul(gate: &Tensor, up: &Tensor, out: candle_core::DType) -> Result<Option<Tensor>> {
    #[cfg(feature = "cuda")]
    if gate.device().is_cuda() && gate.dims() == up.dims() {
        return Ok(Some(cuda_kernels::silu_mul(gate, up, out)?));
    }
    let _ = (gate, up, out);
    Ok(None)
}

/// `x` (`[.., k]`, f32 or `w`'s dtype) times `w^T` for a bf16/f16 weight `w` (`[n, k]`) by the device's matmul
/// library with an f32 result (no cast of the output), when the device has one; `None` means the
/// caller casts around a plain matmul.
pub fn dense_gemm(x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    Ok(dense_gemm_many(x, &[w])?.and_then(|mut ys| ys.pop()))
}
