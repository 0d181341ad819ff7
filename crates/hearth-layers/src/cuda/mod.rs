//! hearth's own CUDA kernels, as candle custom ops. Compiled to PTX by build.rs; reached only through
//! `crate::device`, which holds the one `cfg(feature = "cuda")`.

use crate::attention::AttentionParams;
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaView, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDType, CudaStorage, WrapErr};
use candle_core::{CustomOp3, DType, Layout, Result, Shape, Storage, Tensor};

const DECODE_ATTENTION_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/decode_attention.ptx"));

/// Query heads one decode-attention block serves (GROUP in decode_attention.cu).
const DECODE_GROUP: usize = 4;

/// Blocks a decode-attention launch aims for (two per SM of an H100-class GPU): fewer (sequence, head)
/// blocks than this split their keys, up to DECODE_MAX_SPLITS ways.
const DECODE_TARGET_BLOCKS: usize = 264;
const DECODE_MAX_SPLITS: usize = 16;

/// Decode attention over the paged cache for every sequence at once (see decode_attention.cu).
struct DecodeAttention {
    slots: Tensor,
    offsets: Tensor,
    params: AttentionParams,
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
        let dev = q.device().clone();
        let q = view::<f32>(q, q_l, "decode attention: q")?;
        let (slots_guard, _) = self.slots.storage_and_layout();
        let (offsets_guard, _) = self.offsets.storage_and_layout();
        let slots = u32_view(&self.slots, &slots_guard, "decode attention: slots")?;
        let offsets = u32_view(&self.offsets, &offsets_guard, "decode attention: offsets")?;
        if self.offsets.elem_count() != seqs + 1 {
            candle_core::bail!("decode attention: {} offsets for {seqs} sequences", self.offsets.elem_count());
        }
        // SAFETY (both buffers): the kernels write every element before anything reads it.
        let out = unsafe { dev.alloc::<f32>(seqs * heads * head_dim)? };
        // One block per sequence, KV head and run of up to DECODE_GROUP query heads sharing it, and
        // the keys split over enough blocks to fill the GPU when the batch alone does not.
        let runs = (p.n_heads / p.n_kv_heads).div_ceil(DECODE_GROUP);
        let blocks = seqs * p.n_kv_heads * runs;
        let splits = (DECODE_TARGET_BLOCKS / blocks.max(1)).clamp(1, DECODE_MAX_SPLITS);
        let parts = if splits > 1 { Some(unsafe { dev.alloc::<f32>(seqs * heads * splits * (head_dim + 2))? }) } else { None };
        let cfg = LaunchConfig { grid_dim: (seqs as u32, (p.n_kv_heads * runs) as u32, splits as u32), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
        let (nh, nkv, hd, sp) = (p.n_heads as i32, p.n_kv_heads as i32, p.head_dim as i32, splits as i32);
        let softcap = p.softcap.unwrap_or(0.0);
        macro_rules! launch {
            ($ty:ty, $name:literal) => {{
                let func = dev.get_or_load_custom_func($name, "hearth_decode_attention", DECODE_ATTENTION_PTX)?;
                let k = view::<$ty>(k, k_l, "decode attention: k cache")?;
                let v = view::<$ty>(v, v_l, "decode attention: v cache")?;
                let mut b = func.builder();
                b.arg(&q).arg(&k).arg(&v).arg(&slots).arg(&offsets).arg(parts.as_ref().unwrap_or(&out));
                b.arg(&nh).arg(&nkv).arg(&hd).arg(&p.scale).arg(&softcap).arg(&sp);
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
            b.arg(parts).arg(&out).arg(&hd).arg(&sp);
            // SAFETY: argument order and types match decode_attention_merge; `parts` holds `splits`
            // partials of head_dim + 2 floats for each of the seqs * heads rows.
            unsafe { b.launch(merge) }.w()?;
        }
        Ok((CudaStorage::wrap_cuda_slice(out, dev), Shape::from((seqs, heads, head_dim))))
    }
}

/// `q` `[seqs, n_heads, head_dim]` f32, one decode token per sequence; `slots` the visible cache slots
/// of all sequences concatenated, `offsets` `[seqs + 1]` where each sequence's slots start (both u32).
pub fn decode_attention(q: &Tensor, k_cache: &Tensor, v_cache: &Tensor, slots: Tensor, offsets: Tensor, params: &AttentionParams) -> Result<Tensor> {
    let q = q.to_dtype(DType::F32)?.contiguous()?;
    q.apply_op3_no_bwd(k_cache, v_cache, &DecodeAttention { slots, offsets, params: *params })
}

const KV_WRITE_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/kv_write.ptx"));

/// Stores f32 rows into the cache rows named by `slots` (see kv_write.cu).
struct KvWrite {
    slots: Tensor,
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
        if width != cache_width || self.slots.elem_count() != tokens || tokens == 0 {
            candle_core::bail!("kv write: {tokens} rows of {width} into a cache of width {cache_width} with {} slots", self.slots.elem_count());
        }
        let (c0, c1) = range(cache_l, "kv write: cache")?;
        let dev = rows.device().clone();
        let rows = view::<f32>(rows, rows_l, "kv write: rows")?;
        let (slots_guard, _) = self.slots.storage_and_layout();
        let slots = u32_view(&self.slots, &slots_guard, "kv write: slots")?;
        let cfg = LaunchConfig { grid_dim: (tokens as u32, 1, 1), block_dim: (width.clamp(32, 256) as u32, 1, 1), shared_mem_bytes: 0 };
        let width = width as i32;
        macro_rules! launch {
            ($ty:ty, $name:literal) => {{
                let func = dev.get_or_load_custom_func($name, "hearth_kv_write", KV_WRITE_PTX)?;
                let mut cache = cache.as_cuda_slice_mut::<$ty>()?.slice_mut(c0..c1);
                let mut b = func.builder();
                b.arg(&rows).arg(&slots).arg(&mut cache).arg(&width);
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

/// Writes `rows` (`[tokens, width]`) into `cache` (`[slots, width]`) at `slots` (u32, one per row).
pub fn kv_write(cache: &Tensor, rows: &Tensor, slots: Tensor) -> Result<()> {
    let rows = rows.to_dtype(DType::F32)?.contiguous()?;
    cache.inplace_op2(&rows, &KvWrite { slots })
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

const DENSE_GEMV_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/dense_gemv.ptx"));

/// Most activation rows one [`DenseGemv`] launch serves (the kernel keeps one accumulator per row).
/// Measured on the H100 (1B bf16, decode): 8 rows took 5.0 ms a step through this kernel and 9 rows
/// 4.1 ms through cuBLAS; at 4 rows the kernel took 3.2 ms. Past 6 rows cuBLAS is faster.
pub const DENSE_GEMV_MAX_ROWS: usize = 6;

/// `x` (f32 `[rows, k]`) times a bf16/f16 weight `[n, k]` transposed, in f32 (see dense_gemv.cu).
struct DenseGemv;

impl candle_core::CustomOp2 for DenseGemv {
    fn name(&self) -> &'static str {
        "hearth-dense-gemv"
    }

    fn cpu_fwd(&self, _: &candle_core::CpuStorage, _: &Layout, _: &candle_core::CpuStorage, _: &Layout) -> Result<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("hearth-dense-gemv runs on CUDA only")
    }

    fn cuda_fwd(&self, x: &CudaStorage, x_l: &Layout, w: &CudaStorage, w_l: &Layout) -> Result<(CudaStorage, Shape)> {
        let (rows, k) = x_l.shape().dims2()?;
        let (n, wk) = w_l.shape().dims2()?;
        let (w0, _) = range(w_l, "dense gemv: weight")?;
        let (x0, _) = range(x_l, "dense gemv: x")?;
        if wk != k || k % 8 != 0 || w0 % 8 != 0 || x0 % 4 != 0 || rows == 0 || rows > DENSE_GEMV_MAX_ROWS {
            candle_core::bail!(
                "dense gemv: x {:?} by weight {:?} (k a multiple of 8, aligned, 1..=DENSE_GEMV_MAX_ROWS rows)",
                x_l.shape(),
                w_l.shape()
            );
        }
        let dev = x.device().clone();
        let xs = view::<f32>(x, x_l, "dense gemv: x")?;
        // SAFETY: the kernel writes every one of the rows * n outputs before anything reads them.
        let out = unsafe { dev.alloc::<f32>(rows * n)? };
        let cfg = LaunchConfig { grid_dim: (n.div_ceil(4) as u32, 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
        let (n_i, k_i) = (n as i32, k as i32);
        macro_rules! launch {
            ($ty:ty, $suffix:literal) => {{
                let name = format!(concat!("dense_gemv_", $suffix, "_{}"), rows);
                let func = dev.get_or_load_custom_func(&name, "hearth_dense_gemv", DENSE_GEMV_PTX)?;
                let ws = view::<$ty>(w, w_l, "dense gemv: weight")?;
                let mut b = func.builder();
                b.arg(&xs).arg(&ws).arg(&out).arg(&n_i).arg(&k_i);
                // SAFETY: argument order and types match dense_gemv.cu; shapes and alignment checked above.
                unsafe { b.launch(cfg) }.w()?;
            }};
        }
        match w.dtype() {
            DType::BF16 => launch!(half::bf16, "bf16"),
            DType::F16 => launch!(half::f16, "f16"),
            other => candle_core::bail!("dense gemv: weight dtype {other:?} is not supported"),
        }
        Ok((CudaStorage::wrap_cuda_slice(out, dev), Shape::from((rows, n))))
    }
}

/// `x` `[rows, k]` (f32, 1..=DENSE_GEMV_MAX_ROWS rows) times `w^T` for a bf16/f16 weight `[n, k]`: `[rows, n]` f32.
pub fn dense_gemv(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op2_no_bwd(&w.contiguous()?, &DenseGemv)
}
