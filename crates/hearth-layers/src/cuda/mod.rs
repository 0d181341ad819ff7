//! hearth's own CUDA kernels, as candle custom ops. Compiled to PTX by build.rs; reached only through
//! `crate::device`, which holds the one `cfg(feature = "cuda")`.

use crate::attention::AttentionParams;
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaView, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDType, CudaStorage, WrapErr};
use candle_core::{CustomOp3, DType, Layout, Result, Shape, Storage, Tensor};

mod dequant;
mod quant_gemv;
mod top_rows;
pub use dequant::{dequantize_f16, silu_mul};
pub use quant_gemv::{quant_gemv, quant_gemv_takes};
pub use top_rows::{top_rows, top_rows_takes, TOP_ROWS_MAX};

const DECODE_ATTENTION_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/decode_attention.ptx"));

/// Query heads one decode-attention block serves (GROUP in decode_attention.cu).
const DECODE_GROUP: usize = 4;

/// Blocks a decode-attention launch aims for (four per SM of an H100-class GPU, as many as fit at once):
/// fewer (sequence, head) blocks than this split their keys, up to DECODE_MAX_SPLITS ways.
const DECODE_TARGET_BLOCKS: usize = 528;
const DECODE_MAX_SPLITS: usize = 16;

/// Decode attention over the paged cache for every sequence at once (see decode_attention.cu).
struct DecodeAttention {
    slots: Tensor,
    offsets: Tensor,
    params: AttentionParams,
    out: DType,
}

/// Start and end of the contiguous storage `layout` describes; kernels index plain buffers.
fn range(layout: &Layout, what: &str) -> Result<(usize, usize)> {
    layout.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg(format!("{what} must be contiguous")))
}

/// The part of `storage` that `layout` describes, as a typed view.
fn view<'a, T: CudaDType>(storage: &'a CudaStorage, layout: &Layout, what: &str) -> Result<CudaView<'a, T>> {
    let (a, b) = range(layout, what)?;
    Ok(storage.as_cuda_slice::<T>()?.slice(a..b))
}

/// The distance in elements between the rows (first-dim entries) of a layout whose rows are each
/// packed but may be spaced apart, as a column range of a wider matrix is; `None` for other layouts.
fn row_stride(layout: &Layout) -> Option<usize> {
    let (dims, strides) = (layout.dims(), layout.stride());
    let (&rows, inner) = dims.split_first()?;
    let packed = inner.iter().rev().zip(strides.iter().rev()).try_fold(1usize, |want, (&d, &st)| (d <= 1 || st == want).then_some(want * d))?;
    match rows {
        0 | 1 => Some(packed),
        _ => (strides[0] >= packed).then_some(strides[0]),
    }
}

/// A row-strided f32 view ([`row_stride`]): the storage from its first row to the end of its last,
/// and the row stride.
fn rows_view<'a>(storage: &'a CudaStorage, layout: &Layout, what: &str) -> Result<(CudaView<'a, f32>, usize)> {
    let stride = row_stride(layout).ok_or_else(|| candle_core::Error::Msg(format!("{what}: rows must each be packed")))?;
    let (rows, packed) = (layout.dims().first().copied().unwrap_or(0), layout.dims().iter().skip(1).product::<usize>());
    let start = layout.start_offset();
    let end = start + rows.saturating_sub(1) * stride + packed;
    Ok((storage.as_cuda_slice::<f32>()?.slice(start..end), stride))
}

/// `t` as f32 with packed rows, copied only when it is not already that (a column range of a
/// matmul output is kept as it is, for kernels that read rows at a stride).
fn f32_rows(t: &Tensor) -> Result<Tensor> {
    if t.dtype() == DType::F32 && row_stride(t.layout()).is_some() {
        return Ok(t.clone());
    }
    t.to_dtype(DType::F32)?.contiguous()
}

/// A u32 index tensor held by an op (slot lists), read as a view of its CUDA storage.
fn u32_view<'a>(t: &Tensor, storage: &'a Storage, what: &str) -> Result<CudaView<'a, u32>> {
    match storage {
        Storage::Cuda(s) => view(s, t.layout(), what),
        _ => candle_core::bail!("{what} must live on the CUDA device"),
    }
}

impl CustomOp3 for DecodeAttention {
    fn name(&self) -> &'static str {
        "hearth-decode-attention"
    }

    fn cpu_fwd(&self, _: &candle_core::CpuStorage, _: &Layout, _: &candle_core::CpuStorage, _: &Layout, _: &candle_core::CpuStorage, _: &Layout) -> Result<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("hearth-decode-attention runs on CUDA only (the CPU has its own kernel)")
    }

    fn cuda_fwd(&self, q: &CudaStorage, q_l: &Layout, k: &CudaStorage, k_l: &Layout, v: &CudaStorage, v_l: &Layout) -> Result<(CudaStorage, Shape)> {
        let p = &self.params;
        let (seqs, heads, head_dim) = q_l.shape().dims3()?;
        if heads != p.n_heads || head_dim != p.head_dim || head_dim > 256 || p.n_heads % p.n_kv_heads != 0 {
            candle_core::bail!("decode attention: q {:?} does not fit {} heads of {} (head_dim at most 256)", q_l.shape(), p.n_heads, p.head_dim);
        }
        if k_l.shape() != v_l.shape() || k_l.shape().dims2()?.1 != p.n_kv_heads * p.head_dim {
            candle_core::bail!("decode attention: caches {:?} / {:?} for {} kv heads", k_l.shape(), v_l.shape(), p.n_kv_heads);
        }
        let elem = k.dtype().size_in_bytes();
        let Some(layout) = decode_attention_layout(head_dim, elem) else {
            candle_core::bail!("decode attention: head_dim {head_dim} of {:?} rows is not a whole number of 16-byte loads", k.dtype());
        };
        let (k0, _) = range(k_l, "decode attention: k cache")?;
        let (v0, _) = range(v_l, "decode attention: v cache")?;
        if (k0 * elem) % 16 != 0 || (v0 * elem) % 16 != 0 {
            candle_core::bail!("decode attention: cache views must start 16-byte aligned");
        }
        let dev = q.device().clone();
        let q = view::<f32>(q, q_l, "decode attention: q")?;
        let (slots_guard, _) = self.slots.storage_and_layout();
        let (offsets_guard, _) = self.offsets.storage_and_layout();
        let slots = u32_view(&self.slots, &slots_guard, "decode attention: slots")?;
        let offsets = u32_view(&self.offsets, &offsets_guard, "decode attention: offsets")?;
        if self.offsets.elem_count() != seqs + 1 {
            candle_core::bail!("decode attention: {} offsets for {seqs} sequences", self.offsets.elem_count());
        }
        // One block per sequence, KV head and run of up to DECODE_GROUP query heads sharing it, and
        // the keys split over enough blocks to fill the GPU when the batch alone does not.
        let runs = (p.n_heads / p.n_kv_heads).div_ceil(DECODE_GROUP);
        let blocks = seqs * p.n_kv_heads * runs;
        let splits = (DECODE_TARGET_BLOCKS / blocks.max(1)).clamp(1, DECODE_MAX_SPLITS);
        // SAFETY (this and `out`): the kernels write every element before anything reads it.
        let parts = if splits > 1 { Some(unsafe { dev.alloc::<f32>(seqs * heads * splits * (head_dim + 2))? }) } else { None };
        let cfg = LaunchConfig { grid_dim: (seqs as u32, (p.n_kv_heads * runs) as u32, splits as u32), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
        let (nh, nkv, hd, sp) = (p.n_heads as i32, p.n_kv_heads as i32, p.head_dim as i32, splits as i32);
        let softcap = p.softcap.unwrap_or(0.0);
        // `run!(element type, its OUT_* code in decode_attention.cu)` launches into a result of that type.
        macro_rules! run {
            ($oty:ty, $kind:literal) => {{
                let out_kind: i32 = $kind;
                let out = unsafe { dev.alloc::<$oty>(seqs * heads * head_dim)? };
                macro_rules! launch {
                    ($ty:ty, $name:literal) => {{
                        let func = dev.get_or_load_custom_func(&format!(concat!($name, "_{}"), layout), "hearth_decode_attention", DECODE_ATTENTION_PTX)?;
                        let k = view::<$ty>(k, k_l, "decode attention: k cache")?;
                        let v = view::<$ty>(v, v_l, "decode attention: v cache")?;
                        let mut b = func.builder();
                        b.arg(&q).arg(&k).arg(&v).arg(&slots).arg(&offsets);
                        match &parts {
                            Some(parts) => b.arg(parts),
                            None => b.arg(&out),
                        };
                        b.arg(&nh).arg(&nkv).arg(&hd).arg(&p.scale).arg(&softcap).arg(&sp).arg(&out_kind);
                        // SAFETY: argument types and order match the kernel's signature in decode_attention.cu,
                        // every buffer was checked above to hold what the kernel indexes.
                        unsafe { b.launch(cfg) }.w()?;
                    }};
                }
                match k.dtype() {
                    DType::F32 => launch!(f32, "decode_attention_f32"),
                    DType::F16 => launch!(half::f16, "decode_attention_f16"),
                    DType::BF16 => launch!(half::bf16, "decode_attention_bf16"),
                    other => candle_core::bail!("decode attention: cache dtype {other:?} is not supported"),
                }
                if let Some(parts) = &parts {
                    let func = dev.get_or_load_custom_func("decode_attention_merge", "hearth_decode_attention", DECODE_ATTENTION_PTX)?;
                    let merge = LaunchConfig { grid_dim: ((seqs * heads) as u32, 1, 1), block_dim: (head_dim.clamp(32, 256) as u32, 1, 1), shared_mem_bytes: 0 };
                    let mut b = func.builder();
                    b.arg(parts).arg(&out).arg(&hd).arg(&sp).arg(&out_kind);
                    // SAFETY: argument order and types match decode_attention_merge; `parts` holds `splits`
                    // partials of head_dim + 2 floats for each of the seqs * heads rows.
                    unsafe { b.launch(merge) }.w()?;
                }
                CudaStorage::wrap_cuda_slice(out, dev.clone())
            }};
        }
        let out = match self.out {
            DType::F32 => run!(f32, 0),
            DType::F16 => run!(half::f16, 1),
            DType::BF16 => run!(half::bf16, 2),
            other => candle_core::bail!("decode attention: output dtype {other:?} is not supported"),
        };
        Ok((out, Shape::from((seqs, heads, head_dim))))
    }
}

/// The lane layout of a decode-attention entry point ("LPKxNV" in decode_attention.cu): LPK lanes per
/// K/V row, each with NV 16-byte loads, the fewest that cover `head_dim` elements of `elem` bytes.
fn decode_attention_layout(head_dim: usize, elem: usize) -> Option<&'static str> {
    let per_load = 16 / elem;
    if head_dim == 0 || head_dim > 256 || head_dim % per_load != 0 {
        return None;
    }
    Some(match head_dim / per_load {
        0..=4 => "4x1",
        5..=8 => "8x1",
        9..=16 => "16x1",
        17..=32 => "32x1",
        _ => "32x2",
    })
}

/// `q` `[seqs, n_heads, head_dim]` f32, one decode token per sequence; `slots` the visible cache slots
/// of all sequences concatenated, `offsets` `[seqs + 1]` where each sequence's slots start (both u32);
/// the result in `out` (f32, or the bf16/f16 of the matmul that reads it next).
pub fn decode_attention(q: &Tensor, k_cache: &Tensor, v_cache: &Tensor, slots: Tensor, offsets: Tensor, params: &AttentionParams, out: DType) -> Result<Tensor> {
    let q = q.to_dtype(DType::F32)?.contiguous()?;
    q.apply_op3_no_bwd(k_cache, v_cache, &DecodeAttention { slots, offsets, params: *params, out })
}

const KV_WRITE_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/kv_write.ptx"));

/// Stores f32 K and V rows into the cache rows named by `slots` (see kv_write.cu): an in-place op on
/// the K cache that holds the V rows and V cache (a distinct tensor) and writes both in one launch.
struct KvWrite {
    slots: Tensor,
    v_rows: Tensor,
    v_cache: Tensor,
}

impl candle_core::InplaceOp2 for KvWrite {
    fn name(&self) -> &'static str {
        "hearth-kv-write"
    }

    fn cpu_fwd(&self, _: &mut candle_core::CpuStorage, _: &Layout, _: &candle_core::CpuStorage, _: &Layout) -> Result<()> {
        candle_core::bail!("hearth-kv-write runs on CUDA only (host caches are written directly)")
    }

    fn cuda_fwd(&self, cache: &mut CudaStorage, cache_l: &Layout, rows: &CudaStorage, rows_l: &Layout) -> Result<()> {
        let (tokens, width) = rows_l.shape().dims2()?;
        let (_, cache_width) = cache_l.shape().dims2()?;
        if width != cache_width || self.slots.elem_count() != tokens || tokens == 0 || self.v_rows.dims() != rows_l.dims() || self.v_cache.dims() != cache_l.dims() {
            candle_core::bail!("kv write: {tokens} rows of {width} into a cache of width {cache_width} with {} slots", self.slots.elem_count());
        }
        let (c0, c1) = range(cache_l, "kv write: cache")?;
        let dev = rows.device().clone();
        let (rows, k_stride) = rows_view(rows, rows_l, "kv write: rows")?;
        let (slots_guard, _) = self.slots.storage_and_layout();
        let slots = u32_view(&self.slots, &slots_guard, "kv write: slots")?;
        let (vr_guard, vr_l) = self.v_rows.storage_and_layout();
        let (vc_guard, vc_l) = self.v_cache.storage_and_layout();
        let (Storage::Cuda(vr), Storage::Cuda(vc)) = (&*vr_guard, &*vc_guard) else { candle_core::bail!("kv write: V must live on the CUDA device") };
        let (v_rows, v_stride) = rows_view(vr, vr_l, "kv write: v rows")?;
        let cfg = LaunchConfig { grid_dim: (tokens as u32, 2, 1), block_dim: (width.clamp(32, 256) as u32, 1, 1), shared_mem_bytes: 0 };
        let (width, k_stride, v_stride) = (width as i32, k_stride as i64, v_stride as i64);
        macro_rules! launch {
            ($ty:ty, $name:literal) => {{
                let func = dev.get_or_load_custom_func($name, "hearth_kv_write", KV_WRITE_PTX)?;
                let mut k_cache = cache.as_cuda_slice_mut::<$ty>()?.slice_mut(c0..c1);
                // Written through the kernel: the V cache is another tensor than the K cache (the
                // caller's contract), so this read-locked view aliases nothing the op writes else.
                let v_cache = view::<$ty>(vc, vc_l, "kv write: v cache")?;
                let mut b = func.builder();
                b.arg(&rows).arg(&v_rows).arg(&slots).arg(&mut k_cache).arg(&v_cache).arg(&width).arg(&k_stride).arg(&v_stride);
                // SAFETY: argument order and types match kv_write.cu; every slot indexes a cache row
                // (checked by PagedKvCache::write_indexed before calling).
                unsafe { b.launch(cfg) }.w()?;
            }};
        }
        match cache.dtype() {
            DType::F32 => launch!(f32, "kv_write_f32"),
            DType::F16 => launch!(half::f16, "kv_write_f16"),
            DType::BF16 => launch!(half::bf16, "kv_write_bf16"),
            other => candle_core::bail!("kv write: cache dtype {other:?} is not supported"),
        }
        Ok(())
    }
}

/// Writes `k` and `v` rows (`[tokens, width]`, each row packed, rows at any stride) into the distinct
/// caches `k_cache` and `v_cache` (`[slots, width]`, one dtype) at `slots` (u32, one per row), in one launch.
pub fn kv_write(k_cache: &Tensor, v_cache: &Tensor, k: &Tensor, v: &Tensor, slots: Tensor) -> Result<()> {
    if k_cache.id() == v_cache.id() || k_cache.dtype() != v_cache.dtype() {
        candle_core::bail!("kv write: the K and V caches must be distinct tensors of one dtype");
    }
    let (k, v_rows) = (f32_rows(k)?, f32_rows(v)?);
    k_cache.inplace_op2(&k, &KvWrite { slots, v_rows, v_cache: v_cache.clone() })
}

const ROPE_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/rope.ptx"));

/// Rotary embedding of `[tokens, heads, head_dim]` f32 rows (see rope.cu); cos/sin are the op's inputs.
struct RopeRows {
    interleaved: bool,
}

impl CustomOp3 for RopeRows {
    fn name(&self) -> &'static str {
        "hearth-rope-rows"
    }

    fn cpu_fwd(&self, _: &candle_core::CpuStorage, _: &Layout, _: &candle_core::CpuStorage, _: &Layout, _: &candle_core::CpuStorage, _: &Layout) -> Result<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("hearth-rope-rows runs on CUDA only")
    }

    fn cuda_fwd(&self, x: &CudaStorage, x_l: &Layout, cos: &CudaStorage, cos_l: &Layout, sin: &CudaStorage, sin_l: &Layout) -> Result<(CudaStorage, Shape)> {
        let (tokens, heads, head_dim) = x_l.shape().dims3()?;
        if head_dim % 2 != 0 || cos_l.shape().dims2()? != (tokens, head_dim / 2) || sin_l.shape() != cos_l.shape() {
            candle_core::bail!("rope: x {:?} with cos {:?} / sin {:?}", x_l.shape(), cos_l.shape(), sin_l.shape());
        }
        let (xs, cs, ss) = (view::<f32>(x, x_l, "rope: x")?, view::<f32>(cos, cos_l, "rope: cos")?, view::<f32>(sin, sin_l, "rope: sin")?);
        let dev = x.device().clone();
        let out = dev.alloc_zeros::<f32>(tokens * heads * head_dim)?;
        let func = dev.get_or_load_custom_func("rope_rows", "hearth_rope", ROPE_PTX)?;
        let cfg = LaunchConfig { grid_dim: (tokens as u32, heads as u32, 1), block_dim: ((head_dim / 2).clamp(32, 256) as u32, 1, 1), shared_mem_bytes: 0 };
        let (h, d, inter) = (heads as i32, head_dim as i32, self.interleaved as i32);
        let mut b = func.builder();
        b.arg(&xs).arg(&cs).arg(&ss).arg(&out).arg(&h).arg(&d).arg(&inter);
        // SAFETY: argument order and types match rope.cu; shapes were checked above.
        unsafe { b.launch(cfg) }.w()?;
        Ok((CudaStorage::wrap_cuda_slice(out, dev), Shape::from((tokens, heads, head_dim))))
    }
}

/// Rotates `x` (`[tokens, heads, head_dim]`) by per-token `cos`/`sin` rows (`[tokens, head_dim / 2]`).
pub fn rope_rows(x: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool) -> Result<Tensor> {
    let x = x.to_dtype(DType::F32)?.contiguous()?;
    x.apply_op3_no_bwd(&cos.contiguous()?, &sin.contiguous()?, &RopeRows { interleaved })
}

/// [`RopeRows`] for q and k (the op's extra tensor) in one launch: the output holds q then k.
struct RopePair {
    k: Tensor,
    interleaved: bool,
}

impl CustomOp3 for RopePair {
    fn name(&self) -> &'static str {
        "hearth-rope-pair"
    }

    fn cpu_fwd(&self, _: &candle_core::CpuStorage, _: &Layout, _: &candle_core::CpuStorage, _: &Layout, _: &candle_core::CpuStorage, _: &Layout) -> Result<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("hearth-rope-pair runs on CUDA only")
    }

    fn cuda_fwd(&self, q: &CudaStorage, q_l: &Layout, cos: &CudaStorage, cos_l: &Layout, sin: &CudaStorage, sin_l: &Layout) -> Result<(CudaStorage, Shape)> {
        let (tokens, q_heads, head_dim) = q_l.shape().dims3()?;
        let (k_tokens, k_heads, k_dim) = self.k.dims3()?;
        if head_dim % 2 != 0 || k_tokens != tokens || k_dim != head_dim || cos_l.shape().dims2()? != (tokens, head_dim / 2) || sin_l.shape() != cos_l.shape() {
            candle_core::bail!("rope pair: q {:?}, k {:?} with cos {:?} / sin {:?}", q_l.shape(), self.k.shape(), cos_l.shape(), sin_l.shape());
        }
        let (k_guard, k_l) = self.k.storage_and_layout();
        let Storage::Cuda(k) = &*k_guard else { candle_core::bail!("rope pair: k must live on the CUDA device") };
        let ((qs, q_stride), (ks, k_stride)) = (rows_view(q, q_l, "rope: q")?, rows_view(k, k_l, "rope: k")?);
        let (cs, ss) = (view::<f32>(cos, cos_l, "rope: cos")?, view::<f32>(sin, sin_l, "rope: sin")?);
        let dev = q.device().clone();
        let total = tokens * (q_heads + k_heads) * head_dim;
        // SAFETY: the kernel writes every rotated element of q and k (head_dim is even).
        let out = unsafe { dev.alloc::<f32>(total)? };
        let func = dev.get_or_load_custom_func("rope_rows_pair", "hearth_rope", ROPE_PTX)?;
        let cfg = LaunchConfig { grid_dim: (tokens as u32, (q_heads + k_heads) as u32, 1), block_dim: ((head_dim / 2).clamp(32, 256) as u32, 1, 1), shared_mem_bytes: 0 };
        let (hq, hk, d, inter) = (q_heads as i32, k_heads as i32, head_dim as i32, self.interleaved as i32);
        let (q_stride, k_stride) = (q_stride as i64, k_stride as i64);
        let mut b = func.builder();
        b.arg(&qs).arg(&ks).arg(&cs).arg(&ss).arg(&out).arg(&hq).arg(&hk).arg(&d).arg(&q_stride).arg(&k_stride).arg(&inter);
        // SAFETY: argument order and types match rope.cu; shapes were checked above.
        unsafe { b.launch(cfg) }.w()?;
        Ok((CudaStorage::wrap_cuda_slice(out, dev), Shape::from(total)))
    }
}

/// Rotates `q` and `k` (`[tokens, heads, head_dim]` each, their own head counts; a token's heads
/// packed, tokens at any stride) by per-token `cos`/`sin` rows in one launch; the results are packed.
pub fn rope_rows_pair(q: &Tensor, k: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool) -> Result<(Tensor, Tensor)> {
    let (q, k) = (f32_rows(q)?, f32_rows(k)?);
    let both = q.apply_op3_no_bwd(&cos.contiguous()?, &sin.contiguous()?, &RopePair { k: k.clone(), interleaved })?;
    let (nq, nk) = (q.elem_count(), k.elem_count());
    Ok((both.narrow(0, 0, nq)?.reshape(q.dims())?, both.narrow(0, nq, nk)?.reshape(k.dims())?))
}

const DENSE_GEMV_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/dense_gemv.ptx"));

/// Most activation rows one [`DenseGemv`] launch serves (the kernel keeps one accumulator per row).
/// Measured on the H100 (1B bf16, decode): 8 rows took 5.0 ms a step through this kernel and 9 rows
/// 4.1 ms through cuBLAS; at 4 rows the kernel took 3.2 ms. Past 6 rows cuBLAS is faster.
pub const DENSE_GEMV_MAX_ROWS: usize = 6;

/// `x` (f32 `[rows, k]`) times up to three bf16/f16 weights `[n_i, k]` transposed, in f32, one output
/// after the other in one buffer (see dense_gemv.cu); or, with `swiglu`, silu(x gate^T) * (x up^T).
struct DenseGemv {
    weights: Vec<Tensor>,
    swiglu: bool,
}

impl candle_core::CustomOp1 for DenseGemv {
    fn name(&self) -> &'static str {
        "hearth-dense-gemv"
    }

    fn cpu_fwd(&self, _: &candle_core::CpuStorage, _: &Layout) -> Result<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("hearth-dense-gemv runs on CUDA only")
    }

    fn cuda_fwd(&self, x: &CudaStorage, x_l: &Layout) -> Result<(CudaStorage, Shape)> {
        let (rows, k) = x_l.shape().dims2()?;
        let (x0, _) = range(x_l, "dense gemv: x")?;
        let mut ns = [0usize; 3];
        for (i, w) in self.weights.iter().enumerate() {
            let (n, wk) = w.dims2()?;
            let aligned = w.is_contiguous() && w.layout().start_offset() % 8 == 0 && w.dtype() == self.weights[0].dtype();
            if i >= 3 || wk != k || !aligned {
                candle_core::bail!("dense gemv: weight {:?} for x {:?} (at most 3, same dtype, aligned)", w.shape(), x_l.shape());
            }
            ns[i] = n;
        }
        if self.weights.is_empty() || (self.swiglu && (self.weights.len() != 2 || ns[0] != ns[1])) {
            candle_core::bail!("dense gemv: {} weights (swiglu: {})", self.weights.len(), self.swiglu);
        }
        if k % 8 != 0 || x0 % 4 != 0 || rows == 0 || rows > DENSE_GEMV_MAX_ROWS {
            candle_core::bail!("dense gemv: x {:?} (k a multiple of 8, aligned, 1..=DENSE_GEMV_MAX_ROWS rows)", x_l.shape());
        }
        let dev = x.device().clone();
        let xs = view::<f32>(x, x_l, "dense gemv: x")?;
        let total = if self.swiglu { ns[0] } else { ns.iter().sum() };
        // SAFETY: the kernel writes every one of the rows * total outputs before anything reads them.
        let out = unsafe { dev.alloc::<f32>(rows * total)? };
        // One warp per output row (a gate/up pair in the SwiGLU form), four warps per block. (Two or
        // four warps per row for the 2048-row matrices, to even out the SMs' blocks, measured no
        // faster on the H100: a launch's fixed cost, not its balance, dominates at these sizes.)
        let cfg = LaunchConfig { grid_dim: (total.div_ceil(4) as u32, 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
        let (n0, n1, n2, k_i) = (ns[0] as i32, ns[1] as i32, ns[2] as i32, k as i32);
        let guards: Vec<_> = self.weights.iter().map(|w| w.storage_and_layout()).collect();
        macro_rules! launch {
            ($ty:ty, $suffix:literal) => {{
                let mut ws = Vec::with_capacity(3);
                for (w, (storage, layout)) in self.weights.iter().zip(&guards) {
                    match &**storage {
                        Storage::Cuda(s) => ws.push(view::<$ty>(s, layout, "dense gemv: weight")?),
                        _ => candle_core::bail!("dense gemv: weight {:?} must live on the CUDA device", w.shape()),
                    }
                }
                // Unused weight slots repeat the first one; their row counts are 0.
                let w = |i: usize| ws.get(i).unwrap_or(&ws[0]);
                let kind = if self.swiglu { "dense_swiglu" } else { "dense_gemv" };
                let func = dev.get_or_load_custom_func(&format!("{kind}_{}_{rows}", $suffix), "hearth_dense_gemv", DENSE_GEMV_PTX)?;
                let mut b = func.builder();
                if self.swiglu {
                    b.arg(&xs).arg(w(0)).arg(w(1)).arg(&out).arg(&n0).arg(&k_i);
                } else {
                    b.arg(&xs).arg(w(0)).arg(w(1)).arg(w(2)).arg(&out).arg(&n0).arg(&n1).arg(&n2).arg(&k_i);
                }
                // SAFETY: argument order and types match dense_gemv.cu; shapes and alignment checked above.
                unsafe { b.launch(cfg) }.w()?;
            }};
        }
        match self.weights[0].dtype() {
            DType::BF16 => launch!(half::bf16, "bf16"),
            DType::F16 => launch!(half::f16, "f16"),
            other => candle_core::bail!("dense gemv: weight dtype {other:?} is not supported"),
        }
        Ok((CudaStorage::wrap_cuda_slice(out, dev), Shape::from(rows * total)))
    }
}

/// `x` `[rows, k]` (f32, 1..=DENSE_GEMV_MAX_ROWS rows) times `w^T` for each of up to three bf16/f16
/// weights `[n_i, k]` of one dtype: `[rows, n_i]` f32 each, from one launch.
pub fn dense_gemv_many(x: &Tensor, weights: &[&Tensor]) -> Result<Vec<Tensor>> {
    let rows = x.dim(0)?;
    let op = DenseGemv { weights: weights.iter().map(|w| (*w).clone()).collect(), swiglu: false };
    let flat = x.contiguous()?.apply_op1_no_bwd(&op)?;
    let ns = weights.iter().map(|w| w.dim(0)).collect::<Result<Vec<_>>>()?;
    split_products(&flat, rows, &ns)
}

/// A GEMV launch's flat output (`[rows, n_0]`, then `[rows, n_1]`, ...) as one tensor per weight.
fn split_products(flat: &Tensor, rows: usize, ns: &[usize]) -> Result<Vec<Tensor>> {
    let mut at = 0;
    let mut outs = Vec::with_capacity(ns.len());
    for &n in ns {
        outs.push(flat.narrow(0, at, rows * n)?.reshape((rows, n))?);
        at += rows * n;
    }
    Ok(outs)
}

/// silu(x gate^T) * (x up^T) for bf16/f16 `gate` and `up` `[n, k]` and f32 `x` `[rows, k]`
/// (1..=DENSE_GEMV_MAX_ROWS rows), in one launch: `[rows, n]` f32.
pub fn dense_swiglu(x: &Tensor, gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    let (rows, n) = (x.dim(0)?, gate.dim(0)?);
    let op = DenseGemv { weights: vec![gate.clone(), up.clone()], swiglu: true };
    x.contiguous()?.apply_op1_no_bwd(&op)?.reshape((rows, n))
}

const ADD_NORM_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/add_norm.ptx"));

/// A device tensor of `shape` over a freshly written buffer (kernel outputs that are not one op's).
fn fresh<T: CudaDType>(slice: candle_core::cuda_backend::cudarc::driver::CudaSlice<T>, dev: &candle_core::CudaDevice, shape: &[usize]) -> Tensor {
    let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(slice, dev.clone()));
    Tensor::from_storage(storage, shape, candle_core::op::BackpropOp::none(), false)
}

/// The longest rows add + RMSNorm writes as the k-quant GEMV's 8-bit rows (its entry points hold 4 or 8
/// values a thread). Measured on the H100 (tg128, against a separate quantize launch): 1B Q4_K_M
/// (2048) 998/975/979 -> 1,015/1,005/992 tok/s; 8B Q4_K_M (4096) 306/308 -> 301/300.
pub const NORM_Q8_MAX_DIM: usize = 2048;

/// `(x + r, rms_norm(x + r) * w)` for f32 `x`, `r` (same shape) and `w` (the last dim's length), the
/// norm written in `out` (f32, or the bf16/f16 a matmul reads next, or U8: the k-quant GEMV's 8-bit
/// rows, `[.., q8 row bytes]`; see add_norm.cu).
pub fn add_rms_norm(x: &Tensor, r: &Tensor, w: &Tensor, eps: f32, out: DType) -> Result<(Tensor, Tensor)> {
    let (x, r, w) = (x.contiguous()?, r.contiguous()?, w.contiguous()?);
    let dim = x.dims().last().copied().unwrap_or(0);
    if x.dims() != r.dims() || w.elem_count() != dim || dim == 0 {
        candle_core::bail!("add rms norm: x {:?}, residual {:?}, weight {:?}", x.shape(), r.shape(), w.shape());
    }
    let ((xg, xl), (rg, rl), (wg, wl)) = (x.storage_and_layout(), r.storage_and_layout(), w.storage_and_layout());
    let (Storage::Cuda(xs), Storage::Cuda(rs), Storage::Cuda(ws)) = (&*xg, &*rg, &*wg) else { candle_core::bail!("add rms norm: tensors must live on the CUDA device") };
    let (xv, rv, wv) = (view::<f32>(xs, xl, "add norm: x")?, view::<f32>(rs, rl, "add norm: r")?, view::<f32>(ws, wl, "add norm: w")?);
    let dev = xs.device().clone();
    let n = x.elem_count();
    // SAFETY (both): block per row, each writes every sum and normed value of its row.
    let mut sums = unsafe { dev.alloc::<f32>(n)? };
    let cfg = LaunchConfig { grid_dim: ((n / dim) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    let d = dim as i32;
    // Values a thread holds in registers (add_norm.cu's PER): the fewest that cover a row; 0, for rows
    // longer than 32 * 256, loops instead.
    let per = [4usize, 8, 16, 32].into_iter().find(|p| dim <= p * 256).unwrap_or(0);
    macro_rules! launch {
        ($ty:ty, $name:literal) => {{
            let mut normed = unsafe { dev.alloc::<$ty>(n)? };
            let func = dev.get_or_load_custom_func(&format!(concat!($name, "_{}"), per), "hearth_add_norm", ADD_NORM_PTX)?;
            let mut b = func.builder();
            b.arg(&xv).arg(&rv).arg(&wv).arg(&mut sums).arg(&mut normed).arg(&d).arg(&eps);
            // SAFETY: argument order and types match add_norm.cu; shapes were checked above.
            unsafe { b.launch(cfg) }.w()?;
            fresh(normed, &dev, x.dims())
        }};
    }
    if out == DType::U8 {
        // The k-quant GEMV's 8-bit rows (q8.cuh): rows of 32-value runs, held in registers.
        if dim > NORM_Q8_MAX_DIM || dim % 32 != 0 {
            candle_core::bail!("add rms norm: 8-bit rows of {dim} values (a multiple of 32, at most {NORM_Q8_MAX_DIM})");
        }
        let bytes = quant_gemv::q8_row_bytes(dim);
        let mut q = unsafe { dev.alloc::<u8>(n / dim * bytes)? };
        let func = dev.get_or_load_custom_func(&format!("add_rms_norm_q8_{per}"), "hearth_add_norm", ADD_NORM_PTX)?;
        let mut b = func.builder();
        b.arg(&xv).arg(&rv).arg(&wv).arg(&mut sums).arg(&mut q).arg(&d).arg(&eps);
        // SAFETY: argument order and types match add_norm.cu; each block writes its row's sums and all
        // `bytes` of its 8-bit row (dim / 32 whole runs).
        unsafe { b.launch(cfg) }.w()?;
        let mut dims = x.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = bytes;
        }
        return Ok((fresh(sums, &dev, x.dims()), fresh(q, &dev, &dims)));
    }
    let normed = match out {
        DType::F32 => launch!(f32, "add_rms_norm"),
        DType::F16 => launch!(half::f16, "add_rms_norm_f16"),
        DType::BF16 => launch!(half::bf16, "add_rms_norm_bf16"),
        other => candle_core::bail!("add rms norm: output dtype {other:?} is not supported"),
    };
    Ok((fresh(sums, &dev, x.dims()), normed))
}

const ARGMAX_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/argmax.ptx"));

/// The greedy token of every row of an f32 `[rows, cols]` tensor, as u32 (see argmax.cu).
struct ArgmaxRows;

impl candle_core::CustomOp1 for ArgmaxRows {
    fn name(&self) -> &'static str {
        "hearth-argmax-rows"
    }

    fn cpu_fwd(&self, _: &candle_core::CpuStorage, _: &Layout) -> Result<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("hearth-argmax-rows runs on CUDA only")
    }

    fn cuda_fwd(&self, x: &CudaStorage, x_l: &Layout) -> Result<(CudaStorage, Shape)> {
        let (rows, cols) = x_l.shape().dims2()?;
        if rows == 0 || cols == 0 || cols > i32::MAX as usize {
            candle_core::bail!("argmax rows: {rows} rows of {cols} values");
        }
        let xs = view::<f32>(x, x_l, "argmax: logits")?;
        let dev = x.device().clone();
        // SAFETY: block r writes out[r], every one of the `rows` values.
        let mut out = unsafe { dev.alloc::<u32>(rows)? };
        let func = dev.get_or_load_custom_func("argmax_rows", "hearth_argmax", ARGMAX_PTX)?;
        let cfg = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (1024, 1, 1), shared_mem_bytes: 0 };
        let c = cols as i32;
        let mut b = func.builder();
        b.arg(&xs).arg(&mut out).arg(&c);
        // SAFETY: argument order and types match argmax.cu; the shape was checked above.
        unsafe { b.launch(cfg) }.w()?;
        Ok((CudaStorage::wrap_cuda_slice(out, dev), Shape::from(rows)))
    }
}

/// Each row's greedy token (`u32::MAX` for a row the host must sample: see argmax.cu), copied back.
pub fn argmax_rows(x: &Tensor) -> Result<Vec<u32>> {
    x.to_dtype(DType::F32)?.contiguous()?.apply_op1_no_bwd(&ArgmaxRows)?.to_vec1::<u32>()
}

/// `x` (bf16/f16 `[m, k]`) times `w^T` (same dtype, `[n, k]`) by cuBLAS with f32 accumulation and
/// an f32 result: candle's matmul returns the weight's dtype, and casting its result back to f32
/// was a launch per linear layer and, at 64 sequences, more GPU time than the matmuls' own.
struct GemmF32Out;

impl candle_core::CustomOp2 for GemmF32Out {
    fn name(&self) -> &'static str {
        "hearth-gemm-f32-out"
    }

    fn cpu_fwd(&self, _: &candle_core::CpuStorage, _: &Layout, _: &candle_core::CpuStorage, _: &Layout) -> Result<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("hearth-gemm-f32-out runs on CUDA only")
    }

    fn cuda_fwd(&self, x: &CudaStorage, x_l: &Layout, w: &CudaStorage, w_l: &Layout) -> Result<(CudaStorage, Shape)> {
        use candle_core::cuda_backend::cudarc::cublas::{result::gemm_ex, sys};
        use candle_core::cuda_backend::cudarc::driver::{DevicePtr, DevicePtrMut};
        let ((m, k), (n, wk)) = (x_l.shape().dims2()?, w_l.shape().dims2()?);
        if wk != k || x.dtype() != w.dtype() || m == 0 || n == 0 || k == 0 {
            candle_core::bail!("gemm: x {:?} {:?} by weight {:?} {:?}", x_l.shape(), x.dtype(), w_l.shape(), w.dtype());
        }
        let dev = x.device().clone();
        // SAFETY: cuBLAS writes all m * n outputs (beta = 0) before anything reads them.
        let mut out = unsafe { dev.alloc::<f32>(m * n)? };
        let blas = dev.cublas_handle();
        let stream = dev.cuda_stream();
        let (one, zero) = (1f32, 0f32);
        macro_rules! run {
            ($ty:ty, $cuda:expr) => {{
                let (xs, ws) = (view::<$ty>(x, x_l, "gemm: x")?, view::<$ty>(w, w_l, "gemm: weight")?);
                let (xp, _gx) = xs.device_ptr(&stream);
                let (wp, _gw) = ws.device_ptr(&stream);
                let (yp, _gy) = out.device_ptr_mut(&stream);
                // Row-major y[m, n] = x[m, k] w[n, k]^T is column-major y^T = w^T x^T: A = w read
                // transposed (k x n, lda k), B = x (k x m, ldb k), C = y^T (n x m, ldc n).
                // SAFETY: the pointers are live views of the checked shapes, on the handle's stream;
                // alpha/beta are f32 as CUBLAS_COMPUTE_32F requires.
                unsafe {
                    gemm_ex(
                        *blas.handle(),
                        sys::cublasOperation_t::CUBLAS_OP_T,
                        sys::cublasOperation_t::CUBLAS_OP_N,
                        n as i32,
                        m as i32,
                        k as i32,
                        (&one as *const f32).cast(),
                        wp as *const _,
                        $cuda,
                        k as i32,
                        xp as *const _,
                        $cuda,
                        k as i32,
                        (&zero as *const f32).cast(),
                        yp as *mut _,
                        sys::cudaDataType_t::CUDA_R_32F,
                        n as i32,
                        sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                        sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT_TENSOR_OP,
                    )
                }
                .map_err(|e| candle_core::Error::Msg(format!("gemm: {e:?}")))?;
            }};
        }
        match w.dtype() {
            DType::BF16 => run!(half::bf16, sys::cudaDataType_t::CUDA_R_16BF),
            DType::F16 => run!(half::f16, sys::cudaDataType_t::CUDA_R_16F),
            other => candle_core::bail!("gemm: weight dtype {other:?} is not supported"),
        }
        Ok((CudaStorage::wrap_cuda_slice(out, dev), Shape::from((m, n))))
    }
}

/// `x` `[m, k]` (any float dtype, cast to the weight's) times `w^T` for a bf16/f16 weight `[n, k]`:
/// `[m, n]` f32 from one cuBLAS call.
pub fn gemm_f32_out(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.to_dtype(w.dtype())?.contiguous()?.apply_op2_no_bwd(&w.contiguous()?, &GemmF32Out)
}
