//! Attention of every new token of a batch over its sequence's paged context, read in place from the
//! host KV cache, spread over the thread pool as one task per (sequence, KV head, block of queries).
//!
//! Each query's arithmetic is fixed and is llama.cpp's ([`super::reduce`]): its scores, softmax
//! and weighted sum group keys by their positions, never by how queries were batched. How queries
//! are grouped into tasks (a whole prompt, a short suffix after a prefix-cache hit, one decode token
//! among 64 sequences) therefore never changes a result bit: seeded sampling reproduces whatever the
//! batch or the cache did.

use super::expf;
use super::reduce::{self, SumOrder};
use crate::attention::AttentionParams;
use crate::kv_cache::{HostRows, PagedKvCache};
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
    /// Queries at this position and later were sampled tokens: they are computed in llama.cpp's
    /// decode order, earlier ones in its prompt order ([`super::reduce::SumOrder`]).
    pub prompt_len: usize,
    /// Cache slot of every position `0..q_start + n_new`.
    pub slots: &'a [u32],
}

/// Consecutive query tokens per task: enough to share key loads, few enough to spread a decode step.
const QUERY_BLOCK: usize = 16;

/// One task: queries `tokens` of `seq` for all query heads of KV head `kv`.
struct Task {
    seq: usize,
    kv: usize,
    first_token: usize,
    n_tokens: usize,
}

thread_local! {
    /// Scores of a task's queries, and the lane accumulators of one weighted sum.
    static SCORES: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Output rows shared by tasks that write disjoint (token, head) slices.
struct OutPtr(*mut f32);
// SAFETY: every task writes only the rows of its own (token, head) pairs, which no other task touches.
unsafe impl Sync for OutPtr {}

/// `q`: `tokens × n_heads × head_dim` (roped). K/V of the new tokens must already be in the cache.
/// Returns `tokens × n_heads * head_dim`.
pub fn paged_attention_host(
    q: &[f32],
    cache: &PagedKvCache,
    layer: usize,
    seqs: &[HostSeq<'_>],
    p: &AttentionParams,
) -> Result<Vec<f32>> {
    let bad = |detail: String| LayerError::Shape { what: "host attention".into(), detail };
    let hd = p.head_dim;
    let tokens: usize = seqs.iter().map(|s| s.n_new).sum();
    if q.len() != tokens * p.n_heads * hd || p.n_kv_heads == 0 || !p.n_heads.is_multiple_of(p.n_kv_heads) {
        return Err(bad(format!("{} query values for {tokens} tokens", q.len())));
    }
    let host = cache.host_layer(layer)?.ok_or_else(|| bad("the KV cache is not on the host".into()))?;
    let width = p.n_kv_heads * hd;
    let rows = host.keys.len() / width.max(1);
    for (i, s) in seqs.iter().enumerate() {
        if s.offset + s.n_new > tokens || s.slots.len() < s.q_start + s.n_new {
            return Err(bad(format!("sequence {i} does not fit the batch or its slots")));
        }
        if s.slots.iter().any(|&slot| slot as usize >= rows) {
            return Err(bad(format!("a slot of sequence {i} is past the cache's {rows} rows")));
        }
    }
    let mut tasks = Vec::new();
    for (i, s) in seqs.iter().enumerate() {
        for kv in 0..p.n_kv_heads {
            for t0 in (0..s.n_new).step_by(QUERY_BLOCK) {
                tasks.push(Task { seq: i, kv, first_token: t0, n_tokens: QUERY_BLOCK.min(s.n_new - t0) });
            }
        }
    }
    let mut out = vec![0f32; q.len()];
    let out_ptr = OutPtr(out.as_mut_ptr());
    match (&*host.keys, &*host.values) {
        (HostRows::F32(keys), HostRows::F32(values)) => run_tasks(&tasks, seqs, q, &KvRows { keys, values, width, len: hd }, p, &out_ptr),
        (HostRows::F16(keys), HostRows::F16(values)) => run_tasks(&tasks, seqs, q, &KvRows { keys, values, width, len: hd }, p, &out_ptr),
        _ => return Err(bad("keys and values are stored in different types".into())),
    }
    Ok(out)
}

fn run_tasks<T: KvElem + reduce::SharedElem>(tasks: &[Task], seqs: &[HostSeq<'_>], q: &[f32], kv: &KvRows<'_, T>, p: &AttentionParams, out: &OutPtr) {
    tasks.par_iter().for_each(|task| {
        let s = &seqs[task.seq];
        let (lo, hi) = key_range(task, s, p);
        let koff = task.kv * p.head_dim;
        SCORES.with(|cell| {
            let scores = &mut *cell.borrow_mut();
            if let Some(kv) = T::as_f32_rows(kv) {
                return run_task(task, s, q, &kv, &s.slots[lo..hi], koff, p, scores, out);
            }
            if reduce::reads_in_place(p.head_dim) {
                // The kernels widen f16 rows as they load them.
                return run_task(task, s, q, kv, &s.slots[lo..hi], koff, p, scores, out);
            }
            // Narrow rows are widened once per task (exactly), not once per query that reads them.
            WIDE.with(|wide| {
                let (keys, values, ids) = &mut *wide.borrow_mut();
                keys.clear();
                values.clear();
                for &slot in &s.slots[lo..hi] {
                    let at = slot as usize * kv.width + koff;
                    T::widen(&kv.keys[at..at + kv.len], keys);
                    T::widen(&kv.values[at..at + kv.len], values);
                }
                ids.clear();
                ids.extend(0..(hi - lo) as u32);
                let rows = KvRows { keys: &keys[..], values: &values[..], width: kv.len, len: kv.len };
                run_task(task, s, q, &rows, ids, 0, p, scores, out);
            });
        });
    });
}

thread_local! {
    static WIDE: RefCell<(Vec<f32>, Vec<f32>, Vec<u32>)> = const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// Positions of the keys any query of `task` can see: from the first query's window start to the
/// last query.
fn key_range(task: &Task, s: &HostSeq<'_>, p: &AttentionParams) -> (usize, usize) {
    let first = s.q_start + task.first_token;
    let lo = p.sliding_window.map_or(0, |w| (first + 1).saturating_sub(w));
    (lo, first + task.n_tokens)
}

/// An element of the host KV cache, read as f32.
pub(crate) trait KvElem: Copy + Send + Sync + 'static {
    /// The rows themselves when they are already f32 (read in place, nothing widened).
    fn as_f32_rows<'a>(_kv: &KvRows<'a, Self>) -> Option<KvRows<'a, f32>> {
        None
    }
    /// Append `src` as f32 to `dst`.
    fn widen(src: &[Self], dst: &mut Vec<f32>);
}

impl KvElem for f32 {
    fn as_f32_rows<'a>(kv: &KvRows<'a, f32>) -> Option<KvRows<'a, f32>> {
        Some(KvRows { keys: kv.keys, values: kv.values, width: kv.width, len: kv.len })
    }
    fn widen(src: &[Self], dst: &mut Vec<f32>) {
        dst.extend_from_slice(src);
    }
}

impl KvElem for half::f16 {
    fn widen(src: &[Self], dst: &mut Vec<f32>) {
        #[cfg(target_arch = "x86_64")]
        if crate::quant::isa::active() >= crate::quant::isa::Isa::Avx2 {
            // SAFETY: the CPU has F16C (every AVX2 path does; checked by `active`).
            return unsafe { x86::widen_f16(src, dst) };
        }
        dst.extend(src.iter().map(|x| x.to_f32()));
    }
}

/// The cache rows of one layer: row `slot` of KV head `h` starts at `slot * width + h * len`.
pub(crate) struct KvRows<'a, T> {
    keys: &'a [T],
    values: &'a [T],
    width: usize,
    len: usize,
}

/// `slots`: cache rows of the task's key positions (see [`key_range`]); `koff`: its KV head's offset.
#[allow(clippy::too_many_arguments)]
fn run_task<E: reduce::SharedElem>(
    task: &Task,
    s: &HostSeq<'_>,
    q: &[f32],
    kv: &KvRows<'_, E>,
    slots: &[u32],
    koff: usize,
    p: &AttentionParams,
    (scores, lanes): &mut (Vec<f32>, Vec<f32>),
    out: &OutPtr,
) {
    let (hd, group) = (p.head_dim, p.n_heads / p.n_kv_heads);
    let pos = |t: usize| s.q_start + task.first_token + t;
    let first_of = |qp: usize| p.sliding_window.map_or(0, |w| (qp + 1).saturating_sub(w));
    let (key_lo, _) = key_range(task, s, p);
    let n_keys = slots.len();
    // One token's query heads of this KV head see the same keys: their scores side by side.
    scores.clear();
    scores.resize(group * n_keys, 0.0);
    let key = |j: usize| &kv.keys[slots[j] as usize * kv.width + koff..][..kv.len];
    let value = |j: usize| &kv.values[slots[j] as usize * kv.width + koff..][..kv.len];
    for t in 0..task.n_tokens {
        let qp = pos(t);
        let (lo, hi) = (first_of(qp) - key_lo, qp + 1 - key_lo);
        // llama.cpp decodes a sampled token alone, and sums its values in another order (`reduce`).
        let order = if qp >= s.prompt_len { SumOrder::Alone } else { SumOrder::Batched };
        let token = s.offset + task.first_token + t;
        let head0 = task.kv * group;
        let queries = &q[(token * p.n_heads + head0) * hd..][..group * hd];
        reduce::dots_shared(queries, hd, key, scores, n_keys, lo..hi);
        for row in scores.chunks_mut(n_keys) {
            softmax_in_place(&mut row[lo..hi], key_lo + lo, p);
        }
        // SAFETY: the heads of this KV head at `token` belong to this task alone, and lie inside `out`.
        let dst = unsafe { std::slice::from_raw_parts_mut(out.0.add((token * p.n_heads + head0) * hd), group * hd) };
        reduce::weighted_sums_shared(scores, n_keys, lo..hi, value, key_lo + lo, order, lanes, dst);
    }
}

/// `scale`, soft-cap, then softmax of one query's scores, the first of which is the key at
/// position `first` (llama.cpp's exponential and grouped sum; see [`super::reduce`]).
fn softmax_in_place(row: &mut [f32], first: usize, p: &AttentionParams) {
    let mut max = f32::NEG_INFINITY;
    for sc in row.iter_mut() {
        *sc *= p.scale;
        if let Some(cap) = p.softcap {
            *sc = (*sc / cap).tanh() * cap;
        }
        max = max.max(*sc);
    }
    for sc in row.iter_mut() {
        *sc -= max;
    }
    expf::exp_in_place(row);
    let inv = (1.0 / reduce::grouped_sum(row, first)) as f32;
    for sc in row.iter_mut() {
        *sc *= inv;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// f16 → f32 (exact), eight at a time.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn widen_f16(src: &[half::f16], dst: &mut Vec<f32>) {
        let start = dst.len();
        dst.resize(start + src.len(), 0.0);
        let out = &mut dst[start..];
        let mut i = 0;
        while i + 8 <= src.len() {
            let v = _mm256_cvtph_ps(_mm_loadu_si128(src.as_ptr().add(i) as *const __m128i));
            _mm256_storeu_ps(out.as_mut_ptr().add(i), v);
            i += 8;
        }
        for j in i..src.len() {
            out[j] = src[j].to_f32();
        }
    }
}
