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
        SCORES.with(|cell| {
            let mut scores = cell.borrow_mut();
            scores.clear();
            let mut max = f32::NEG_INFINITY;
            for &slot in &s.slots[first..=qp] {
                let k = &host.keys[slot as usize * width + kv_off..][..hd];
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
            for (&slot, &e) in s.slots[first..=qp].iter().zip(scores.iter()) {
                axpy(o, e * inv, &host.values[slot as usize * width + kv_off..][..hd]);
            }
        });
    });
    Ok(out)
}
