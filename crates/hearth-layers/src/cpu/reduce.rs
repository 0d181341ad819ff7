//! The attention sums in llama.cpp's order of operations, so hearth's CPU attention returns its bits.
//!
//! llama.cpp (AVX-512 build, f32 KV cache, no flash attention) computes
//! - a query·key score with `ggml_vec_dot_f32`: four 16-lane FMA accumulators over 64-wide steps
//!   of the head, added as `(a0 + a2) + (a1 + a3)`, then reduced by GCC's `_mm512_reduce_add_ps`
//!   tree ([`reduce16`]);
//! - the softmax denominator 16 cache cells at a time, each group reduced by that tree into an f64;
//! - a probability-weighted sum of values with tinyBLAS when the batch has several query tokens:
//!   one 16-lane FMA accumulator per output element, lane = cell index mod 16, then the same tree;
//!   for a batch of one token (tinyBLAS declines `n < 2`) with `ggml_vec_dot_f32` over the cells,
//!   so the four accumulators × 16 lanes make lane = cell index mod 64.
//!
//! Its cache cells are the positions of a single sequence, so "cell index" is the key's position
//! here. The quantized linear layer after attention rounds its input to 8 bits, where a last-bit
//! difference can flip a rounding and move log-probabilities by tenths of a nat (issue 2). The
//! scalar functions are the reference; the AVX2 paths return the same bits.

use std::ops::Range;

/// GCC's `_mm512_reduce_add_ps`: halves, then quarters, then pairs.
pub fn reduce16(v: &[f32; 16]) -> f32 {
    let t3: [f32; 8] = std::array::from_fn(|i| v[8 + i] + v[i]);
    let t6: [f32; 4] = std::array::from_fn(|i| t3[4 + i] + t3[i]);
    (t6[0] + t6[2]) + (t6[1] + t6[3])
}

/// `ggml_vec_dot_f32` on AVX-512 (see the module doc).
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if crate::quant::isa::active() >= crate::quant::isa::Isa::Avx2 {
        // SAFETY: AVX2 and FMA are present (checked by `active`).
        return unsafe { x86::dot(x, y) };
    }
    dot_reference(x, y)
}

/// `out[j] = dot(query, key(j))` for every `j < out.len()`, the same bits as [`dot`] one by one
/// (eight keys reduced together where the head is a whole number of 64-wide steps).
pub fn dots<'k>(query: &[f32], key: impl Fn(usize) -> &'k [f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::quant::isa::active() >= crate::quant::isa::Isa::Avx2 && !query.is_empty() && query.len().is_multiple_of(64) {
        // SAFETY: AVX2 and FMA are present (checked by `active`); every key is as long as the query
        // (checked per key inside).
        return unsafe { x86::dots(query, key, out) };
    }
    for (j, o) in out.iter_mut().enumerate() {
        *o = dot(query, key(j));
    }
}

/// The scalar form of [`dot`].
pub fn dot_reference(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let whole = n / 64 * 64;
    let mut acc = [[0f32; 16]; 4];
    for i in (0..whole).step_by(64) {
        for (j, a) in acc.iter_mut().enumerate() {
            for (l, lane) in a.iter_mut().enumerate() {
                let at = i + 16 * j + l;
                *lane = x[at].mul_add(y[at], *lane);
            }
        }
    }
    let lanes: [f32; 16] = std::array::from_fn(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]));
    let mut sum = reduce16(&lanes);
    for i in whole..n {
        sum += x[i] * y[i]; // not fused: GCC keeps this loop as written
    }
    sum
}

/// Σ of `row` (whose first element is the key at `first`) as llama.cpp's softmax adds its
/// exponentials: 16 positions per group, each reduced by [`reduce16`], groups added in f64.
pub fn grouped_sum(row: &[f32], first: usize) -> f64 {
    let mut total = 0f64;
    let mut i = 0;
    while i < row.len() {
        let lane0 = (first + i) % 16;
        let n = (16 - lane0).min(row.len() - i);
        let mut lanes = [0f32; 16];
        lanes[lane0..lane0 + n].copy_from_slice(&row[i..i + n]);
        total += f64::from(reduce16(&lanes));
        i += n;
    }
    total
}

/// How a weighted sum spreads keys over accumulators (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SumOrder {
    /// Several query tokens in the step: 16 lanes (tinyBLAS).
    Batched,
    /// A step of one query token: 4 × 16 lanes (`ggml_vec_dot_f32`).
    Alone,
}

impl SumOrder {
    fn lanes(self) -> usize {
        match self {
            SumOrder::Batched => 16,
            SumOrder::Alone => 64,
        }
    }
}

/// `out = Σ_j probs[j] · value(j)` in llama.cpp's order (see the module doc): key `j` is at
/// position `first + j`. `lanes` is scratch space, resized here.
pub fn weighted_sum<'v>(
    probs: &[f32],
    value: impl Fn(usize) -> &'v [f32],
    first: usize,
    order: SumOrder,
    lanes: &mut Vec<f32>,
    out: &mut [f32],
) {
    let hd = out.len();
    let n_lanes = order.lanes();
    lanes.clear();
    lanes.resize(n_lanes * hd, 0.0);
    #[cfg(target_arch = "x86_64")]
    if crate::quant::isa::active() >= crate::quant::isa::Isa::Avx2 && hd.is_multiple_of(8) {
        // SAFETY: AVX2 and FMA are present (checked by `active`); rows are `hd` long, a multiple of 8.
        return unsafe { x86::weighted_sum(probs, value, first, n_lanes, lanes, out) };
    }
    for (j, &p) in probs.iter().enumerate() {
        let lane = &mut lanes[(first + j) % n_lanes * hd..][..hd];
        for (a, &v) in lane.iter_mut().zip(value(j)) {
            *a = p.mul_add(v, *a);
        }
    }
    let at = |l: usize, d: usize| lanes[l * hd + d];
    for (d, o) in out.iter_mut().enumerate() {
        *o = match order {
            SumOrder::Batched => reduce16(&std::array::from_fn(|l| at(l, d))),
            SumOrder::Alone => reduce16(&std::array::from_fn(|l| (at(l, d) + at(32 + l, d)) + (at(16 + l, d) + at(48 + l, d)))),
        };
    }
}

/// Query heads of one token that share a KV head see the same keys. [`dots`] for `queries.len() / hd`
/// of them at once (`rows`: one row of `stride` scores per query, filled at `range`; `key(j)`: the
/// key of column `j`), reading each key once for up to four of them where AVX-512 allows. Every
/// score has the bits of [`dot`].
pub fn dots_shared<'k, E: SharedElem + 'k>(queries: &[f32], hd: usize, key: impl Fn(usize) -> &'k [E], rows: &mut [f32], stride: usize, range: Range<usize>) {
    let g = queries.len().checked_div(hd).unwrap_or(0);
    assert!(range.start <= range.end && range.end <= stride && rows.len() >= g * stride, "score rows too short for {g} queries");
    for c in (0..g).step_by(4) {
        let n = (g - c).min(4);
        dots_up_to_four(&queries[c * hd..(c + n) * hd], hd, &key, &mut rows[c * stride..(c + n) * stride], stride, range.clone());
    }
}

fn dots_up_to_four<'k, E: SharedElem + 'k>(queries: &[f32], hd: usize, key: impl Fn(usize) -> &'k [E], rows: &mut [f32], stride: usize, range: Range<usize>) {
    #[cfg(target_arch = "x86_64")]
    if reads_in_place(hd) && !range.is_empty() {
        let r = (range.start, range.end);
        // SAFETY: AVX-512F is present (checked by `active`); `rows` holds a row of `stride` ≥
        // `range.end` per query, and there are 1 to 4 queries of `hd`.
        unsafe {
            return match queries.len() / hd {
                1 => shared::dots::<E, 1>(queries, hd, key, rows, stride, r),
                2 => shared::dots::<E, 2>(queries, hd, key, rows, stride, r),
                3 => shared::dots::<E, 3>(queries, hd, key, rows, stride, r),
                _ => shared::dots::<E, 4>(queries, hd, key, rows, stride, r),
            };
        }
    }
    let wide = widen_rows::<E>(&key, range.clone(), hd);
    let at = |j: usize| E::f32_row(key(range.start + j)).unwrap_or_else(|| &wide[j * hd..(j + 1) * hd]);
    for (query, row) in queries.chunks_exact(hd).zip(rows.chunks_mut(stride)) {
        dots(query, at, &mut row[range.clone()]);
    }
}

/// Rows `range` of `row(j)` widened to f32 side by side, `hd` each; empty for f32 rows (read as
/// they are) and for rows shorter than `hd` (scored NaN by the kernels).
fn widen_rows<'r, E: SharedElem + 'r>(row: impl Fn(usize) -> &'r [E], range: Range<usize>, hd: usize) -> Vec<f32> {
    let mut wide = Vec::new();
    if range.clone().all(|j| E::f32_row(row(j)).is_none() && row(j).len() >= hd) {
        for j in range {
            wide.extend(row(j)[..hd].iter().map(|&x| x.to_f32()));
        }
    }
    wide
}

/// [`weighted_sum`] for the `rows.len() / stride` queries of [`dots_shared`]: `out` holds their
/// outputs side by side, `value(j)` is the value of column `j`, and column `range.start` is at
/// position `first`. Each value row is read once for up to four queries where AVX-512 allows; every
/// output has the bits of [`weighted_sum`].
#[allow(clippy::too_many_arguments)]
pub fn weighted_sums_shared<'v, E: SharedElem + 'v>(
    rows: &[f32],
    stride: usize,
    range: Range<usize>,
    value: impl Fn(usize) -> &'v [E],
    first: usize,
    order: SumOrder,
    lanes: &mut Vec<f32>,
    out: &mut [f32],
) {
    let g = rows.len().checked_div(stride).unwrap_or(0);
    assert!(range.start <= range.end && range.end <= stride && g > 0 && out.len().is_multiple_of(g), "{g} weighted sums into {} outputs", out.len());
    let hd = out.len() / g;
    if g > 4 {
        // Four queries at a time (the kernels' register budget).
        for c in (0..g).step_by(4) {
            let n = (g - c).min(4);
            let (rows, out) = (&rows[c * stride..(c + n) * stride], &mut out[c * hd..(c + n) * hd]);
            // Through `dyn`, so the recursion instantiates one more function, not one per level.
            weighted_sums_shared(rows, stride, range.clone(), &value as &dyn Fn(usize) -> &'v [E], first, order, lanes, out);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if reads_in_place(hd) {
        let (r, n) = ((range.start, range.end), order.lanes());
        // SAFETY: AVX-512F is present (checked by `active`); `rows` holds 1 to 4 rows of `stride` ≥
        // `range.end`, and `out` one output of `hd` per row.
        unsafe {
            return match g {
                1 => shared::weighted_sums::<E, 1>(rows, stride, r, value, first, n, lanes, out),
                2 => shared::weighted_sums::<E, 2>(rows, stride, r, value, first, n, lanes, out),
                3 => shared::weighted_sums::<E, 3>(rows, stride, r, value, first, n, lanes, out),
                _ => shared::weighted_sums::<E, 4>(rows, stride, r, value, first, n, lanes, out),
            };
        }
    }
    let wide = widen_rows::<E>(&value, range.clone(), hd);
    let at = |j: usize| E::f32_row(value(range.start + j)).unwrap_or_else(|| &wide[j * hd..(j + 1) * hd]);
    for (row, o) in rows.chunks_exact(stride).zip(out.chunks_exact_mut(hd.max(1))) {
        weighted_sum(&row[range.clone()], at, first, order, lanes, o);
    }
}

/// Whether the shared kernels read rows of `hd` in place, f16 included (AVX-512, whole 64-wide steps).
/// Elsewhere they take f32 rows as they are and widen f16 ones per call: the caller should widen them
/// once instead.
pub fn reads_in_place(hd: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    return hd > 0 && hd.is_multiple_of(64) && crate::quant::isa::active() >= crate::quant::isa::Isa::Avx512Vnni;
    #[allow(unreachable_code)]
    false
}

/// A KV cache element the shared kernels take: f32, or f16 (widened exactly).
pub trait SharedElem: Copy + Send + Sync + 'static + SharedLanes {
    /// The row itself when it is f32.
    fn f32_row(row: &[Self]) -> Option<&[f32]>;
    fn to_f32(self) -> f32;
}

impl SharedElem for f32 {
    fn f32_row(row: &[f32]) -> Option<&[f32]> {
        Some(row)
    }
    fn to_f32(self) -> f32 {
        self
    }
}

impl SharedElem for half::f16 {
    fn f32_row(_row: &[half::f16]) -> Option<&[f32]> {
        None
    }
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
}

#[cfg(target_arch = "x86_64")]
pub use shared::Lanes16 as SharedLanes;
/// What the x86 kernels need of an element (nothing elsewhere).
#[cfg(not(target_arch = "x86_64"))]
pub trait SharedLanes {}
#[cfg(not(target_arch = "x86_64"))]
impl SharedLanes for f32 {}
#[cfg(not(target_arch = "x86_64"))]
impl SharedLanes for half::f16 {}

#[cfg(target_arch = "x86_64")]
#[path = "reduce_shared.rs"]
mod shared;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot(x: &[f32], y: &[f32]) -> f32 {
        let n = x.len().min(y.len());
        let whole = n / 64 * 64;
        // a[2j] holds lanes 0..8 of accumulator j, a[2j + 1] lanes 8..16.
        let mut a = [_mm256_setzero_ps(); 8];
        let (xp, yp) = (x.as_ptr(), y.as_ptr());
        for i in (0..whole).step_by(64) {
            for (k, acc) in a.iter_mut().enumerate() {
                let at = i + 8 * k;
                *acc = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(at)), _mm256_loadu_ps(yp.add(at)), *acc);
            }
        }
        let lo = _mm256_add_ps(_mm256_add_ps(a[0], a[4]), _mm256_add_ps(a[2], a[6]));
        let hi = _mm256_add_ps(_mm256_add_ps(a[1], a[5]), _mm256_add_ps(a[3], a[7]));
        let mut sum = reduce(hi, lo);
        for i in whole..n {
            sum += x[i] * y[i]; // not fused: GCC keeps this loop as written
        }
        sum
    }

    /// Eight lanes each of `hi + lo` after the accumulators are combined: the per-key vector that
    /// [`reduce`] finishes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn t3_of(x: &[f32], y: &[f32]) -> __m256 {
        let mut a = [_mm256_setzero_ps(); 8];
        let (xp, yp) = (x.as_ptr(), y.as_ptr());
        for i in (0..x.len()).step_by(64) {
            for (k, acc) in a.iter_mut().enumerate() {
                let at = i + 8 * k;
                *acc = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(at)), _mm256_loadu_ps(yp.add(at)), *acc);
            }
        }
        let lo = _mm256_add_ps(_mm256_add_ps(a[0], a[4]), _mm256_add_ps(a[2], a[6]));
        let hi = _mm256_add_ps(_mm256_add_ps(a[1], a[5]), _mm256_add_ps(a[3], a[7]));
        _mm256_add_ps(hi, lo)
    }

    /// [`super::dots`] for a query of a whole number of 64-wide steps: eight keys' `t3` vectors
    /// transposed, so the rest of the tree runs down the lanes for all eight at once.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dots<'k>(query: &[f32], key: impl Fn(usize) -> &'k [f32], out: &mut [f32]) {
        let n = out.len();
        for j0 in (0..n).step_by(8) {
            let m = (n - j0).min(8);
            let t: [__m256; 8] = std::array::from_fn(|l| {
                let k = key(j0 + l.min(m - 1));
                if k.len() < query.len() {
                    _mm256_set1_ps(f32::NAN)
                } else {
                    t3_of(query, k)
                }
            });
            let mut r = [0f32; 8];
            _mm256_storeu_ps(r.as_mut_ptr(), tree8(&t));
            out[j0..j0 + m].copy_from_slice(&r[..m]);
        }
    }

    /// The rest of [`super::reduce16`]'s tree for eight keys at once, from their `t3` vectors (the
    /// 16 lanes already folded to 8): transposed, so it runs down the lanes. Lane `l` of the result
    /// is key `l`'s sum.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tree8(t: &[__m256; 8]) -> __m256 {
        let u0 = _mm256_unpacklo_ps(t[0], t[1]);
        let u1 = _mm256_unpackhi_ps(t[0], t[1]);
        let u2 = _mm256_unpacklo_ps(t[2], t[3]);
        let u3 = _mm256_unpackhi_ps(t[2], t[3]);
        let u4 = _mm256_unpacklo_ps(t[4], t[5]);
        let u5 = _mm256_unpackhi_ps(t[4], t[5]);
        let u6 = _mm256_unpacklo_ps(t[6], t[7]);
        let u7 = _mm256_unpackhi_ps(t[6], t[7]);
        let v0 = _mm256_shuffle_ps(u0, u2, 0x44);
        let v1 = _mm256_shuffle_ps(u0, u2, 0xee);
        let v2 = _mm256_shuffle_ps(u1, u3, 0x44);
        let v3 = _mm256_shuffle_ps(u1, u3, 0xee);
        let v4 = _mm256_shuffle_ps(u4, u6, 0x44);
        let v5 = _mm256_shuffle_ps(u4, u6, 0xee);
        let v6 = _mm256_shuffle_ps(u5, u7, 0x44);
        let v7 = _mm256_shuffle_ps(u5, u7, 0xee);
        // lane[i] holds lane i of every key's t3.
        let lane = [
            _mm256_permute2f128_ps(v0, v4, 0x20),
            _mm256_permute2f128_ps(v1, v5, 0x20),
            _mm256_permute2f128_ps(v2, v6, 0x20),
            _mm256_permute2f128_ps(v3, v7, 0x20),
            _mm256_permute2f128_ps(v0, v4, 0x31),
            _mm256_permute2f128_ps(v1, v5, 0x31),
            _mm256_permute2f128_ps(v2, v6, 0x31),
            _mm256_permute2f128_ps(v3, v7, 0x31),
        ];
        let even = _mm256_add_ps(_mm256_add_ps(lane[4], lane[0]), _mm256_add_ps(lane[6], lane[2]));
        let odd = _mm256_add_ps(_mm256_add_ps(lane[5], lane[1]), _mm256_add_ps(lane[7], lane[3]));
        _mm256_add_ps(even, odd)
    }

    /// [`super::reduce16`] of the 16 lanes `lo` (0..8) and `hi` (8..16).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn reduce(hi: __m256, lo: __m256) -> f32 {
        let t3 = _mm256_add_ps(hi, lo);
        let t6 = _mm_add_ps(_mm256_extractf128_ps(t3, 1), _mm256_castps256_ps128(t3));
        let t8 = _mm_add_ps(t6, _mm_shuffle_ps(t6, t6, 0b01_00_11_10));
        _mm_cvtss_f32(t8) + _mm_cvtss_f32(_mm_shuffle_ps(t8, t8, 1))
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weighted_sum<'v>(
        probs: &[f32],
        value: impl Fn(usize) -> &'v [f32],
        first: usize,
        n_lanes: usize,
        lanes: &mut [f32],
        out: &mut [f32],
    ) {
        let hd = out.len();
        let base = lanes.as_mut_ptr();
        // Lane by lane, 64 dimensions at a time, so each lane's running sums stay in registers:
        // the same FMAs in the same order as adding each key into its lane in turn.
        for d0 in (0..hd).step_by(64) {
            let width = (hd - d0).min(64) / 8;
            for l in 0..n_lanes {
                let mut acc = [_mm256_setzero_ps(); 8];
                let mut j = (l + n_lanes - first % n_lanes) % n_lanes;
                while j < probs.len() {
                    let pv = _mm256_set1_ps(*probs.get_unchecked(j));
                    let v = value(j).as_ptr().add(d0);
                    for (c, a) in acc.iter_mut().enumerate().take(width) {
                        *a = _mm256_fmadd_ps(pv, _mm256_loadu_ps(v.add(8 * c)), *a);
                    }
                    j += n_lanes;
                }
                for (c, a) in acc.iter().enumerate().take(width) {
                    _mm256_storeu_ps(base.add(l * hd + d0 + 8 * c), *a);
                }
            }
        }
        for d in (0..hd).step_by(8) {
            _mm256_storeu_ps(out.as_mut_ptr().add(d), lane_tree(base.add(d), hd, n_lanes));
        }
    }

    /// Eight outputs of a weighted sum from its lane accumulators: lane `l`'s eight values at
    /// `at + l · lane_stride`, summed across the 16 (Batched) or 64 (Alone) lanes by llama.cpp's tree.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn lane_tree(at: *const f32, lane_stride: usize, n_lanes: usize) -> __m256 {
        let row = |l: usize| _mm256_loadu_ps(at.add(l * lane_stride));
        // Alone: the four accumulators first, as (a0 + a2) + (a1 + a3).
        let lane = |l: usize| {
            if n_lanes == 64 {
                _mm256_add_ps(_mm256_add_ps(row(l), row(32 + l)), _mm256_add_ps(row(16 + l), row(48 + l)))
            } else {
                row(l)
            }
        };
        let t3: [__m256; 8] = std::array::from_fn(|i| _mm256_add_ps(lane(8 + i), lane(i)));
        let t6: [__m256; 4] = std::array::from_fn(|i| _mm256_add_ps(t3[4 + i], t3[i]));
        _mm256_add_ps(_mm256_add_ps(t6[0], t6[2]), _mm256_add_ps(t6[1], t6[3]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        // Values of mixed magnitude and sign, so the order of additions changes low bits.
        (0..n).map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 20_011) as f32 / 977.0 - 10.0).collect()
    }

    proptest! {
        #[test]
        fn dot_equals_its_reference(n in 1usize..300, seed in any::<u32>()) {
            let (x, y) = (values(n, seed), values(n, seed ^ 0x5555));
            prop_assert_eq!(dot(&x, &y).to_bits(), dot_reference(&x, &y).to_bits());
        }

        #[test]
        fn dots_equal_dot_one_by_one(keys in 1usize..30, steps in 1usize..5, extra in 0usize..3, seed in any::<u32>()) {
            // Whole 64-wide steps take the eight-key path; `extra` dims exercise the fallback.
            let hd = 64 * steps + 8 * extra;
            let q = values(hd, seed);
            let ks = values(keys * hd, seed ^ 0x77);
            let key = |j: usize| &ks[j * hd..(j + 1) * hd];
            let mut got = vec![0f32; keys];
            dots(&q, key, &mut got);
            let want: Vec<u32> = (0..keys).map(|j| dot_reference(&q, key(j)).to_bits()).collect();
            prop_assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want);
        }

        #[test]
        fn weighted_sum_equals_its_reference(keys in 1usize..150, hd8 in 1usize..10, first in 0usize..80, alone in any::<bool>(), seed in any::<u32>()) {
            let hd = hd8 * 8;
            let order = if alone { SumOrder::Alone } else { SumOrder::Batched };
            let probs = values(keys, seed);
            let vals = values(keys * hd, seed ^ 0x1234);
            let value = |j: usize| &vals[j * hd..(j + 1) * hd];
            let mut lanes = Vec::new();
            let mut got = vec![0f32; hd];
            weighted_sum(&probs, value, first, order, &mut lanes, &mut got);
            // The reference, by hand: Alone is ggml_vec_dot_f32 over the positions (four 16-lane
            // accumulators), Batched one 16-lane accumulator.
            let want: Vec<u32> = (0..hd)
                .map(|d| {
                    let mut acc = [[0f32; 16]; 4];
                    for (j, &p) in probs.iter().enumerate() {
                        let pos = first + j;
                        let (k, l) = if alone { (pos / 16 % 4, pos % 16) } else { (0, pos % 16) };
                        acc[k][l] = p.mul_add(value(j)[d], acc[k][l]);
                    }
                    let lanes: [f32; 16] = std::array::from_fn(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]));
                    reduce16(&lanes).to_bits()
                })
                .collect();
            prop_assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want);
        }
    }

    proptest! {
        /// The shared forms give each query exactly what it gets alone: heads of one token (1 to 9,
        /// so groups of four and a remainder), heads of 64-multiples (the AVX-512 path) or not, any
        /// key range inside the row.
        #[test]
        fn shared_queries_equal_each_query_alone(
            g in 1usize..10, hd64 in prop_oneof![Just(0usize), 1usize..5], odd in 0usize..3, keys in 1usize..70, lo in 0usize..70,
            first in 0usize..200, alone in any::<bool>(), seed in any::<u32>(),
        ) {
            let hd = if hd64 == 0 { 8 * (odd + 1) } else { 64 * hd64 };
            let (lo, hi) = (lo.min(keys), keys);
            let order = if alone { SumOrder::Alone } else { SumOrder::Batched };
            let queries = values(g * hd, seed);
            let ks = values(keys * hd, seed ^ 0x77);
            let vs = values(keys * hd, seed ^ 0x99);
            let key = |j: usize| &ks[j * hd..(j + 1) * hd];
            let value = |j: usize| &vs[j * hd..(j + 1) * hd];
            let mut rows = vec![0f32; g * keys];
            dots_shared(&queries, hd, key, &mut rows, keys, lo..hi);
            let mut lanes = Vec::new();
            let mut out = vec![0f32; g * hd];
            // Probabilities of mixed sign and size stand in for the softmax: the sums' order shows either way.
            let probs: Vec<f32> = rows.iter().map(|x| x / 1000.0).collect();
            weighted_sums_shared(&probs, keys, lo..hi, value, first, order, &mut lanes, &mut out);
            for q in 0..g {
                let mut want = vec![0f32; hi - lo];
                dots(&queries[q * hd..(q + 1) * hd], |j| key(lo + j), &mut want);
                let got = &rows[q * keys + lo..q * keys + hi];
                prop_assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "scores of query {}", q);
                let mut one = vec![0f32; hd];
                weighted_sum(&probs[q * keys + lo..q * keys + hi], |j| value(lo + j), first, order, &mut lanes, &mut one);
                let got = &out[q * hd..(q + 1) * hd];
                prop_assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), one.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "sums of query {}", q);
            }
            // f16 rows (read in place on AVX-512, widened first elsewhere) give what their f32 widening gives.
            let narrow = |v: &[f32]| -> Vec<half::f16> { v.iter().map(|&x| half::f16::from_f32(x)).collect() };
            let (ks16, vs16) = (narrow(&ks), narrow(&vs));
            let (ksw, vsw): (Vec<f32>, Vec<f32>) = (ks16.iter().map(|x| x.to_f32()).collect(), vs16.iter().map(|x| x.to_f32()).collect());
            let (mut rows16, mut rows_w) = (vec![0f32; g * keys], vec![0f32; g * keys]);
            dots_shared(&queries, hd, |j| &ks16[j * hd..(j + 1) * hd], &mut rows16, keys, lo..hi);
            dots_shared(&queries, hd, |j| &ksw[j * hd..(j + 1) * hd], &mut rows_w, keys, lo..hi);
            prop_assert_eq!(rows16.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), rows_w.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
            let (mut out16, mut out_w) = (vec![0f32; g * hd], vec![0f32; g * hd]);
            weighted_sums_shared(&probs, keys, lo..hi, |j| &vs16[j * hd..(j + 1) * hd], first, order, &mut lanes, &mut out16);
            weighted_sums_shared(&probs, keys, lo..hi, |j| &vsw[j * hd..(j + 1) * hd], first, order, &mut lanes, &mut out_w);
            prop_assert_eq!(out16.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), out_w.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn grouped_sum_aligns_groups_to_positions() {
        let row = values(40, 7);
        // Starting at position 5: the first group holds 11 values, then 16, then 13.
        let parts = [&row[..11], &row[11..27], &row[27..]];
        let mut want = 0f64;
        for (k, part) in parts.iter().enumerate() {
            let mut lanes = [0f32; 16];
            let lane0 = if k == 0 { 5 } else { 0 };
            lanes[lane0..lane0 + part.len()].copy_from_slice(part);
            want += f64::from(reduce16(&lanes));
        }
        assert_eq!(grouped_sum(&row, 5), want);
        assert!((grouped_sum(&row, 5) - row.iter().map(|&x| f64::from(x)).sum::<f64>()).abs() < 1e-3);
    }
}
