//! AVX-512 forms of [`super`]'s scores and weighted sums for up to four queries that see the
//! same keys: the query heads of one token that share a KV head. One at a time, each query streams
//! every key and value row of its context from L2 (a 512-token Gemma prompt: 512 KiB per head per
//! query), which bounded attention at a quarter of the FMA rate. Here each row is loaded once for
//! the whole group.
//!
//! The bits are those of [`super::dot`] and [`super::weighted_sum`]: each query keeps
//! its own 4 × 16-lane score accumulators and its own lane accumulators, updated in the same order
//! with the same fused multiply-adds, and finished by the same trees.

use super::x86::{lane_tree, tree8};
use std::arch::x86_64::*;

/// A KV row element these kernels read in place: f32, or f16 widened (exactly) as it is loaded.
pub trait Lanes16: Copy {
    /// 16 elements from `p` as f32.
    ///
    /// # Safety
    /// `p` points at 16 readable elements, and the CPU has AVX-512F.
    unsafe fn load16(p: *const Self) -> __m512;
}

impl Lanes16 for f32 {
    #[inline(always)]
    unsafe fn load16(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
}

impl Lanes16 for half::f16 {
    #[inline(always)]
    unsafe fn load16(p: *const half::f16) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    }
}

/// The upper eight lanes of `v`.
#[inline(always)]
unsafe fn upper8(v: __m512) -> __m256 {
    _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))
}

/// `rows[g · stride + j]` = `queries[g] · key(j)` for `j` in `lo..hi`. `queries` holds `G` rows of
/// `hd` (a multiple of 64); a key shorter than `hd` scores NaN.
#[target_feature(enable = "avx2,fma,avx512f")]
pub(super) unsafe fn dots<'k, E: Lanes16 + 'k, const G: usize>(
    queries: &[f32],
    hd: usize,
    key: impl Fn(usize) -> &'k [E],
    rows: &mut [f32],
    stride: usize,
    (lo, hi): (usize, usize),
) {
    debug_assert!(hd.is_multiple_of(64) && queries.len() >= G * hd && rows.len() >= (G - 1) * stride + hi);
    let q = queries.as_ptr();
    for j0 in (lo..hi).step_by(8) {
        let m = (hi - j0).min(8);
        let mut t = [[_mm256_setzero_ps(); 8]; G];
        for l in 0..8 {
            let k = key(j0 + l.min(m - 1));
            if k.len() < hd {
                for tg in t.iter_mut() {
                    tg[l] = _mm256_set1_ps(f32::NAN);
                }
                continue;
            }
            // Accumulator c of query g: lanes of dimensions 64·i + 16·c .. +16, as `ggml_vec_dot_f32`.
            let mut acc = [[_mm512_setzero_ps(); 4]; G];
            for i in (0..hd).step_by(64) {
                let kv: [__m512; 4] = std::array::from_fn(|c| E::load16(k.as_ptr().add(i + 16 * c)));
                for (g, a) in acc.iter_mut().enumerate() {
                    for c in 0..4 {
                        a[c] = _mm512_fmadd_ps(_mm512_loadu_ps(q.add(g * hd + i + 16 * c)), kv[c], a[c]);
                    }
                }
            }
            for (g, a) in acc.iter().enumerate() {
                // (a0 + a2) + (a1 + a3), then the tree's first step: lanes 8..16 plus lanes 0..8.
                let s = _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3]));
                t[g][l] = _mm256_add_ps(upper8(s), _mm512_castps512_ps256(s));
            }
        }
        for (g, tg) in t.iter().enumerate() {
            let mut r = [0f32; 8];
            _mm256_storeu_ps(r.as_mut_ptr(), tree8(tg));
            rows[g * stride + j0..g * stride + j0 + m].copy_from_slice(&r[..m]);
        }
    }
}

/// `out[g · hd ..]` = `Σ_j rows[g · stride + j] · value(j)` over `j` in `lo..hi`, column `lo` being at
/// position `first`, with `n_lanes` lane accumulators (16 or 64). `hd` (a multiple of 64) is each
/// value row's length; `lanes` is scratch space, resized here.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,avx512f")]
pub(super) unsafe fn weighted_sums<'v, E: Lanes16 + 'v, const G: usize>(
    rows: &[f32],
    stride: usize,
    (lo, hi): (usize, usize),
    value: impl Fn(usize) -> &'v [E],
    first: usize,
    n_lanes: usize,
    lanes: &mut Vec<f32>,
    out: &mut [f32],
) {
    let hd = out.len() / G;
    debug_assert!(hd.is_multiple_of(64) && rows.len() >= (G - 1) * stride + hi);
    // 64 dimensions at a time: every lane's accumulators for them, then their trees.
    lanes.clear();
    lanes.resize(G * n_lanes * 64, 0.0);
    let base = lanes.as_mut_ptr();
    let p = rows.as_ptr();
    for d0 in (0..hd).step_by(64) {
        for l in 0..n_lanes {
            let mut acc = [[_mm512_setzero_ps(); 4]; G];
            let mut j = lo + (l + n_lanes - first % n_lanes) % n_lanes;
            while j < hi {
                let v = value(j);
                assert!(v.len() >= hd, "a value row is shorter than the head");
                let vv: [__m512; 4] = std::array::from_fn(|c| E::load16(v.as_ptr().add(d0 + 16 * c)));
                for (g, a) in acc.iter_mut().enumerate() {
                    let pv = _mm512_set1_ps(*p.add(g * stride + j));
                    for c in 0..4 {
                        a[c] = _mm512_fmadd_ps(pv, vv[c], a[c]);
                    }
                }
                j += n_lanes;
            }
            for (g, a) in acc.iter().enumerate() {
                for (c, v) in a.iter().enumerate() {
                    _mm512_storeu_ps(base.add((g * n_lanes + l) * 64 + 16 * c), *v);
                }
            }
        }
        for g in 0..G {
            for d in (0..64).step_by(8) {
                let sum = lane_tree(base.add(g * n_lanes * 64 + d), 64, n_lanes);
                _mm256_storeu_ps(out.as_mut_ptr().add(g * hd + d0 + d), sum);
            }
        }
    }
}
