//! Attention of every new token of a batch over its sequence's paged context, read in place from the
//! host KV cache: one task per (token, head), spread over the thread pool, so a decode step of 64
//! sequences is one parallel pass instead of 64 gathers.

use super::vec::{axpy, dot};
use crate::attention::AttentionParams;
use crate::kv_cache::PagedKvCache;
use crate::{LayerError, Result};
use rayon::prelude::*;
use std::cell::RefCell;

/// One sequence's new tokens in the batch and where its context lives.
#[derive(Debug, Clone)]
pub struct HostSeq<'a> {
    /// Index of its first new token in the batch.
    pub offset: usize,
    pub n_new: usize,
    /// Position of its first new token.
    pub q_start: usize,
    /// Cache slot of every position `0..q_start + n_new`.
    pub slots: &'a [u32],
}

thread_local! {
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `q`: `tokens × n_heads × head_dim` (roped). K/V of the new tokens must already be in the cache.
/// Returns `tokens × n_heads * head_dim`.
pub fn paged_attention_host(
    q: &[f32],
    cache: &PagedKvCache,
    layer: usize,
    seqs: &[HostSeq<'_>],
    p: &AttentionParams,
) -> Result<Vec<f32>> {
    let hd = p.head_dim;
    let tokens: usize = seqs.iter().map(|s| s.n_new).sum();
    if q.len() != tokens * p.n_heads * hd || p.n_kv_heads == 0 || p.n_heads % p.n_kv_heads != 0 {
        return Err(LayerError::Shape { what: "host attention".into(), detail: format!("{} query values for {tokens} tokens", q.len()) });
    }
    let host = cache.host_layer(layer)?.ok_or_else(|| LayerError::Shape { what: "host attention".into(), detail: "the KV cache is not on the host".into() })?;
    // Which sequence each batch token belongs to.
    let mut owner = vec![0usize; tokens];
    for (i, s) in seqs.iter().enumerate() {
        if s.offset + s.n_new > tokens || s.slots.len() < s.q_start + s.n_new {
            return Err(LayerError::Shape { what: "host attention".into(), detail: format!("sequence {i} does not fit the batch or its slots") });
        }
        owner[s.offset..s.offset + s.n_new].fill(i);
    }
    let width = p.n_kv_heads * hd;
    let group = p.n_heads / p.n_kv_heads;
    let rows = host.keys.len() / width.max(1);
    if seqs.iter().any(|s| s.slots.iter().any(|&slot| slot as usize >= rows)) {
        return Err(LayerError::Shape { what: "host attention".into(), detail: format!("a slot past the cache's {rows} rows") });
    }
    let mut out = vec![0f32; q.len()];
    out.par_chunks_mut(hd).enumerate().for_each(|(task, o)| {
        let (token, head) = (task / p.n_heads, task % p.n_heads);
        let s = &seqs[owner[token]];
        let qp = s.q_start + token - s.offset;
        let first = match p.sliding_window {
            Some(w) => (qp + 1).saturating_sub(w),
            None => 0,
        };
        let kv_off = (head / group) * hd;
        let qv = &q[task * hd..(task + 1) * hd];
        let visible = &s.slots[first..=qp];
        SCORES.with(|cell| {
            let mut scores = cell.borrow_mut();
            let rows = KvRows { keys: &host.keys, values: &host.values, width, offset: kv_off, len: hd };
            #[cfg(target_arch = "x86_64")]
            if crate::quant::isa::active() >= crate::quant::isa::Isa::Avx2 {
                // SAFETY: the CPU has AVX2 and FMA (checked by `active`).
                unsafe { attend_avx2(qv, &rows, visible, p, &mut scores, o) };
                return;
            }
            attend(qv, &rows, visible, p, &mut scores, o, dot, axpy);
        });
    });
    Ok(out)
}

/// One KV head's rows in the cache: row `slot` starts at `slot * width + offset` and is `len` long.
struct KvRows<'a> {
    keys: &'a [f32],
    values: &'a [f32],
    width: usize,
    offset: usize,
    len: usize,
}

/// Softmax-weighted sum of the value rows of `slots` for query `qv`, into `out`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn attend(
    qv: &[f32],
    rows: &KvRows<'_>,
    slots: &[u32],
    p: &AttentionParams,
    scores: &mut Vec<f32>,
    out: &mut [f32],
    dot: impl Fn(&[f32], &[f32]) -> f32,
    axpy: impl Fn(&mut [f32], f32, &[f32]),
) {
    scores.clear();
    let mut max = f32::NEG_INFINITY;
    for &slot in slots {
        let k = &rows.keys[slot as usize * rows.width + rows.offset..][..rows.len];
        let mut sc = dot(qv, k) * p.scale;
        if let Some(cap) = p.softcap {
            sc = (sc / cap).tanh() * cap;
        }
        max = max.max(sc);
        scores.push(sc);
    }
    let mut total = 0f32;
    for sc in scores.iter_mut() {
        *sc = (*sc - max).exp();
        total += *sc;
    }
    let inv = 1.0 / total;
    for (&slot, &e) in slots.iter().zip(scores.iter()) {
        axpy(out, e * inv, &rows.values[slot as usize * rows.width + rows.offset..][..rows.len]);
    }
}

/// [`attend`] compiled for AVX2 with the vector primitives inlined into its loops.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2(qv: &[f32], rows: &KvRows<'_>, slots: &[u32], p: &AttentionParams, scores: &mut Vec<f32>, out: &mut [f32]) {
    use super::vec::x86;
    attend(qv, rows, slots, p, scores, out, |a, b| unsafe { x86::dot(a, b) }, |y, a, x| unsafe { x86::axpy(y, a, x) });
}
