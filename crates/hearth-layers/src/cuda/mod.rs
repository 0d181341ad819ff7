//! hearth's own CUDA kernels, as candle custom ops. Compiled to PTX by build.rs; reached only through
//! `crate::device`, which holds the one `cfg(feature = "cuda")`.

use crate::attention::AttentionParams;
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorage, WrapErr};
use candle_core::{CustomOp3, DType, Layout, Result, Shape, Storage, Tensor};

const DECODE_ATTENTION_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/decode_attention.ptx"));

/// Decode attention over the paged cache for every sequence at once (see decode_attention.cu).
struct DecodeAttention {
    slots: Tensor,
    offsets: Tensor,
    params: AttentionParams,
}

fn u32_slice<'a>(t: &Tensor, what: &str, storage: &'a Storage) -> Result<candle_core::cuda_backend::cudarc::driver::CudaView<'a, u32>> {
    match storage {
        Storage::Cuda(s) => {
            let (o1, o2) = t.layout().contiguous_offsets().ok_or_else(|| candle_core::Error::Msg(format!("{what} must be contiguous")))?;
            Ok(s.as_cuda_slice::<u32>()?.slice(o1..o2))
        }
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
        let contiguous = |l: &Layout, what: &str| l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg(format!("decode attention: {what} must be contiguous")));
        let (q0, q1) = contiguous(q_l, "q")?;
        let q = q.as_cuda_slice::<f32>()?.slice(q0..q1);
        let (slots_guard, _) = self.slots.storage_and_layout();
        let (offsets_guard, _) = self.offsets.storage_and_layout();
        let slots = u32_slice(&self.slots, "slots", &*slots_guard)?;
        let offsets = u32_slice(&self.offsets, "offsets", &*offsets_guard)?;
        if self.offsets.elem_count() != seqs + 1 {
            candle_core::bail!("decode attention: {} offsets for {seqs} sequences", self.offsets.elem_count());
        }
        let out = dev.alloc_zeros::<f32>(seqs * heads * head_dim)?;
        let cfg = LaunchConfig { grid_dim: (seqs as u32, heads as u32, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
        let (k0, k1) = contiguous(k_l, "k cache")?;
        let (v0, v1) = contiguous(v_l, "v cache")?;
        let (nh, nkv, hd) = (p.n_heads as i32, p.n_kv_heads as i32, p.head_dim as i32);
        let softcap = p.softcap.unwrap_or(0.0);
        macro_rules! launch {
            ($ty:ty, $name:literal) => {{
                let func = dev.get_or_load_custom_func($name, "hearth_decode_attention", DECODE_ATTENTION_PTX)?;
                let k = k.as_cuda_slice::<$ty>()?.slice(k0..k1);
                let v = v.as_cuda_slice::<$ty>()?.slice(v0..v1);
                let mut b = func.builder();
                b.arg(&q).arg(&k).arg(&v).arg(&slots).arg(&offsets).arg(&out);
                b.arg(&nh).arg(&nkv).arg(&hd).arg(&p.scale).arg(&softcap);
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
        Ok((CudaStorage::wrap_cuda_slice(out, dev), Shape::from((seqs, heads, head_dim))))
    }
}

/// `q` `[seqs, n_heads, head_dim]` f32, one decode token per sequence; `slots` the visible cache slots
/// of all sequences concatenated, `offsets` `[seqs + 1]` where each sequence's slots start (both u32).
pub fn decode_attention(q: &Tensor, k_cache: &Tensor, v_cache: &Tensor, slots: Tensor, offsets: Tensor, params: &AttentionParams) -> Result<Tensor> {
    let q = q.to_dtype(DType::F32)?.contiguous()?;
    q.apply_op3_no_bwd(k_cache, v_cache, &DecodeAttention { slots, offsets, params: *params })
}
