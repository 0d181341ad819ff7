//! Causal (optionally sliding-window) attention of one sequence's new tokens over its paged context.

use crate::kv_cache::PagedKvCache;
use crate::Result;
use candle_core::{DType, Device, Tensor};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionParams {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Multiplier of q·k (usually 1/sqrt(head_dim)).
    pub scale: f32,
    /// Keys further back than this many positions are invisible (Gemma 3 local layers, Mistral).
    pub sliding_window: Option<usize>,
    /// `tanh` soft-capping of attention logits (Gemma 2 style), when the model has it.
    pub softcap: Option<f32>,
}

/// Where one sequence's queries and keys sit.
#[derive(Debug, Clone)]
pub struct SeqContext<'a> {
    /// Position of the first query token.
    pub q_start: usize,
    /// Position of the first visible key (0 unless a sliding window cut the front).
    pub kv_start: usize,
    /// Cache slots of positions `kv_start..q_start + n_queries`, as a u32 tensor.
    pub slots: &'a Tensor,
}

/// `q`: `[n, n_heads, head_dim]` of the tokens at positions `q_start..q_start+n`, whose K/V are already
/// written to the cache. Returns `[n, n_heads * head_dim]`.
pub fn paged_attention(
    q: &Tensor,
    cache: &PagedKvCache,
    layer: usize,
    seq: &SeqContext<'_>,
    p: &AttentionParams,
) -> Result<Tensor> {
    let (n, _, _) = q.dims3()?;
    let (k, v) = cache.gather(layer, seq.slots)?;
    let m = k.dim(0)?;
    let group = p.n_heads / p.n_kv_heads;
    let to_heads = |t: Tensor| -> Result<Tensor> {
        Ok(t.to_dtype(DType::F32)?.reshape((m, p.n_kv_heads, p.head_dim))?.transpose(0, 1)?.contiguous()?)
    };
    let (k, v) = (to_heads(k)?, to_heads(v)?);
    // Query heads that share a KV head are stacked so one matmul per KV head serves the whole group.
    let q = q
        .to_dtype(DType::F32)?
        .transpose(0, 1)?
        .reshape((p.n_kv_heads, group * n, p.head_dim))?
        .contiguous()?;
    let mut scores = (q.matmul(&k.t()?)? * p.scale as f64)?;
    if let Some(cap) = p.softcap {
        scores = ((scores / cap as f64)?.tanh()? * cap as f64)?;
    }
    let scores = scores.reshape((p.n_kv_heads, group, n, m))?;
    // One query sees every gathered key (the caller gathers from its first visible position), so a
    // decode step needs no mask: no host-built tensor to copy to the device per layer.
    let scores = if n == 1 && seq.kv_start + m == seq.q_start + 1 {
        scores
    } else {
        scores.broadcast_add(&causal_mask(n, m, seq.q_start, seq.kv_start, p.sliding_window, q.device())?)?
    };
    let probs = candle_nn::ops::softmax_last_dim(&scores)?.reshape((p.n_kv_heads, group * n, m))?;
    let out = probs.matmul(&v)?; // [kv, group*n, hd]
    Ok(out.reshape((p.n_heads, n, p.head_dim))?.transpose(0, 1)?.reshape((n, p.n_heads * p.head_dim))?)
}

/// Additive mask `[n, m]`: 0 where query i may see key j, -inf elsewhere.
fn causal_mask(
    n: usize,
    m: usize,
    q_start: usize,
    kv_start: usize,
    window: Option<usize>,
    device: &Device,
) -> Result<Tensor> {
    let mut mask = vec![0f32; n * m];
    for i in 0..n {
        let qp = q_start + i;
        for j in 0..m {
            let kp = kv_start + j;
            let visible = kp <= qp && window.is_none_or(|w| qp - kp < w);
            if !visible {
                mask[i * m + j] = f32::NEG_INFINITY;
            }
        }
    }
    Ok(Tensor::from_vec(mask, (n, m), device)?)
}

/// First key position visible to a query at `q_start` (what the caller must gather from).
pub fn first_visible_position(q_start: usize, window: Option<usize>) -> usize {
    match window {
        Some(w) => (q_start + 1).saturating_sub(w),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_cache::KvCacheConfig;

    /// Plain attention over contiguous K/V, written independently of the paged path.
    fn reference(q: &[f32], k: &[f32], v: &[f32], n: usize, m: usize, p: &AttentionParams, q_start: usize) -> Vec<f32> {
        let (h, hd) = (p.n_heads, p.head_dim);
        let kvh = p.n_kv_heads;
        let mut out = vec![0f32; n * h * hd];
        for i in 0..n {
            for head in 0..h {
                let kv = head / (h / kvh);
                let qp = q_start + i;
                let scores: Vec<f32> = (0..m)
                    .map(|j| {
                        if j > qp || p.sliding_window.is_some_and(|w| qp - j >= w) {
                            return f32::NEG_INFINITY;
                        }
                        (0..hd).map(|d| q[(i * h + head) * hd + d] * k[(j * kvh + kv) * hd + d]).sum::<f32>() * p.scale
                    })
                    .collect();
                let mx = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = scores.iter().map(|s| (s - mx).exp()).collect();
                let z: f32 = e.iter().sum();
                for d in 0..hd {
                    out[(i * h + head) * hd + d] = (0..m).map(|j| e[j] / z * v[(j * kvh + kv) * hd + d]).sum();
                }
            }
        }
        out
    }

    fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 1000) as f32 / 500.0 - 1.0).collect()
    }

    #[test]
    fn paged_attention_matches_contiguous_reference_with_scattered_blocks() -> Result<()> {
        let dev = Device::Cpu;
        for window in [None, Some(3)] {
            let p = AttentionParams { n_heads: 4, n_kv_heads: 2, head_dim: 8, scale: 0.35, sliding_window: window, softcap: None };
            let cfg = KvCacheConfig { num_blocks: 6, block_size: 2, n_layers: 1, n_kv_heads: 2, head_dim: 8, dtype: DType::F32 };
            let cache = PagedKvCache::new(cfg, &dev)?;
            let m = 7; // context length; the last n are queries
            let n = 3;
            let k = pseudo_random(m * 16, 1);
            let v = pseudo_random(m * 16, 2);
            let q = pseudo_random(n * 32, 3);
            // Blocks out of order: positions 0-1 → block 4, 2-3 → block 1, 4-5 → block 5, 6 → block 0.
            let table = [4usize, 1, 5, 0];
            let slots: Vec<usize> = (0..m).map(|pos| table[pos / 2] * 2 + pos % 2).collect();
            cache.write(0, &slots, &Tensor::from_vec(k.clone(), (m, 16), &dev)?, &Tensor::from_vec(v.clone(), (m, 16), &dev)?)?;
            let q_start = m - n;
            let kv_start = first_visible_position(q_start, window);
            let visible: Vec<u32> = slots[kv_start..].iter().map(|&s| s as u32).collect();
            let slot_t = Tensor::new(visible.as_slice(), &dev)?;
            let seq = SeqContext { q_start, kv_start, slots: &slot_t };
            let got = paged_attention(&Tensor::from_vec(q.clone(), (n, 4, 8), &dev)?, &cache, 0, &seq, &p)?;
            let got = got.flatten_all()?.to_vec1::<f32>()?;
            let want = reference(&q, &k, &v, n, m, &p, q_start);
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "window {window:?}: {a} vs {b}");
            }
            // An f16 cache: the same attention up to f16 rounding of K and V.
            let cfg16 = KvCacheConfig { dtype: DType::F16, ..cfg };
            let cache16 = PagedKvCache::new(cfg16, &dev)?;
            cache16.write(0, &slots, &Tensor::from_vec(k.clone(), (m, 16), &dev)?, &Tensor::from_vec(v.clone(), (m, 16), &dev)?)?;
            let all16: Vec<u32> = slots.iter().map(|&s| s as u32).collect();
            let seq16 = crate::cpu::HostSeq { offset: 0, n_new: n, q_start, prompt_len: m, slots: &all16 };
            let got16 = crate::cpu::paged_attention_host(&q, &cache16, 0, &[seq16], &p)?;
            for (a, b) in got16.iter().zip(&want) {
                assert!((a - b).abs() < 2e-3, "f16 cache, window {window:?}: {a} vs {b}");
            }
            // The host kernel, batched with a one-token sequence ahead of this one in the batch.
            let other = crate::cpu::HostSeq { offset: 0, n_new: 1, q_start: 0, prompt_len: 1, slots: &[6] };
            cache.write(
                0,
                &[6],
                &Tensor::from_vec(k[..16].to_vec(), (1, 16), &dev)?,
                &Tensor::from_vec(v[..16].to_vec(), (1, 16), &dev)?,
            )?;
            let all: Vec<u32> = slots.iter().map(|&s| s as u32).collect();
            let this = crate::cpu::HostSeq { offset: 1, n_new: n, q_start, prompt_len: m, slots: &all };
            let q_batch: Vec<f32> = q[..32].iter().chain(&q).copied().collect();
            let host = crate::cpu::paged_attention_host(&q_batch, &cache, 0, &[other, this], &p)?;
            for (a, b) in host[32..].iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "host, window {window:?}: {a} vs {b}");
            }
            // A single visible key: attention returns its value row, per head's KV head.
            for h in 0..4 {
                let kv = h / 2;
                for d in 0..8 {
                    assert!((host[h * 8 + d] - v[kv * 8 + d]).abs() < 1e-6, "first-token head {h}");
                }
            }
        }
        Ok(())
    }

    /// The host kernel gives bit-identical rows whether a sequence's queries arrive together (a
    /// prompt, or tokens recomputed after preemption), one by one (decode), or beside other
    /// sequences: seeded sampling depends on it. Prompt and sampled tokens are summed in different
    /// orders (llama.cpp's prompt and decode orders), so each is checked against its own kind.
    #[test]
    fn host_attention_rows_do_not_depend_on_how_queries_are_batched() -> Result<()> {
        for dtype in [DType::F32, DType::F16] {
            for prompt_len in [40, 0, 20] {
                rows_do_not_depend_on_batching(dtype, prompt_len)?;
            }
        }
        Ok(())
    }

    fn rows_do_not_depend_on_batching(dtype: DType, prompt_len: usize) -> Result<()> {
        let dev = Device::Cpu;
        let (h, kvh, hd, m) = (6, 2, 64, 40);
        let p = AttentionParams { n_heads: h, n_kv_heads: kvh, head_dim: hd, scale: 0.125, sliding_window: Some(29), softcap: None };
        let cfg = KvCacheConfig { num_blocks: 12, block_size: 4, n_layers: 1, n_kv_heads: kvh, head_dim: hd, dtype };
        let cache = PagedKvCache::new(cfg, &dev)?;
        let slots: Vec<usize> = (0..m).map(|pos| (11 - pos / 4) * 4 + pos % 4).collect();
        let (k, v) = (pseudo_random(m * kvh * hd, 7), pseudo_random(m * kvh * hd, 8));
        cache.write(0, &slots, &Tensor::from_vec(k, (m, kvh * hd), &dev)?, &Tensor::from_vec(v, (m, kvh * hd), &dev)?)?;
        let all: Vec<u32> = slots.iter().map(|&s| s as u32).collect();
        let q = pseudo_random(m * h * hd, 9);
        let seq = |offset, n_new, q_start| crate::cpu::HostSeq { offset, n_new, q_start, prompt_len, slots: &all };
        let whole = crate::cpu::paged_attention_host(&q, &cache, 0, &[seq(0, m, 0)], &p)?;
        let row = h * hd;
        for pos in [0, 1, 9, 17, 33, 39] {
            let qs: Vec<f32> = q[3 * row..4 * row].iter().chain(&q[pos * row..(pos + 1) * row]).copied().collect();
            let got = crate::cpu::paged_attention_host(&qs, &cache, 0, &[seq(0, 1, 3), seq(1, 1, pos)], &p)?;
            assert_eq!(got[row..], whole[pos * row..(pos + 1) * row], "position {pos} alone differs from the whole run");
            assert_eq!(got[..row], whole[3 * row..4 * row], "position 3 beside another sequence differs");
        }
        // A piece from the middle (a prefill chunk after a cached prefix).
        let piece = crate::cpu::paged_attention_host(&q[17 * row..30 * row], &cache, 0, &[seq(0, 13, 17)], &p)?;
        assert_eq!(piece[..], whole[17 * row..30 * row], "a chunk differs from the whole run");
        Ok(())
    }
}
