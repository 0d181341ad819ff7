//! The k-quant kernels for eight activation rows at once: Q4_K in both of llama.cpp's arithmetics
//! and Q6_K's batched one (its tiles; [`super::x86::Sums`]). These kernels turn an exact integer
//! sum into a float per row every 64 (Q4_K batched), 256 or so values; done one row at a time, the
//! horizontal sums and scalar multiply-adds cost about three times the integer dots themselves
//! (perf: `k_vnni_batched`, 27 % of Gemma's pp512). Here the eight rows' sums are reduced together
//! by a transpose, and their float steps run with one row per lane.
//!
//! Every result is bit-identical to the one-row kernel: integer sums are exact whatever their order,
//! and each row's lane performs the same f32 operations (`d · d8`, convert, one FMA) in block order.

use super::activations::Q8KBlock;
use super::dot::k4_scales;
use super::x86::{f16_at, pairs_i16, DotU8I8};
use std::arch::x86_64::*;

/// Activation rows per pass.
pub(super) const ROWS: usize = 8;

/// Lane `r` = the sum of the eight i32 lanes of `s[r]` (exact).
#[inline(always)]
unsafe fn hsums8(s: &[__m256i; ROWS]) -> __m256i {
    // hadd pairs lanes within each 128-bit half; two rounds leave rows 0..4 (then 4..8) side by side,
    // the low half holding lanes 0..4 of each row and the high half lanes 4..8.
    let q0 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
    let q1 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[4], s[5]), _mm256_hadd_epi32(s[6], s[7]));
    _mm256_add_epi32(_mm256_permute2x128_si256(q0, q1, 0x20), _mm256_permute2x128_si256(q0, q1, 0x31))
}

/// From `m[r]` = 8 i32 lanes per row, the four vectors `out[j]` with lane `r` = `m[r][2j] + m[r][2j + 1]`.
#[inline(always)]
unsafe fn pair_sums_by_row(m: &[__m256i; ROWS]) -> [__m256i; 4] {
    // hadd(a, b) per 128-bit half: [a(2j) + a(2j+1), …, b(2j) + b(2j+1), …] for j = 0, 1 (low) and 2, 3
    // (high); the shuffle puts the two rows' j side by side, the unpacks gather four rows' j.
    let by_j = |a: __m256i, b: __m256i| _mm256_shuffle_epi32(_mm256_hadd_epi32(a, b), 0b11_01_10_00);
    let (a01, a23, a45, a67) = (by_j(m[0], m[1]), by_j(m[2], m[3]), by_j(m[4], m[5]), by_j(m[6], m[7]));
    let (lo03, hi03) = (_mm256_unpacklo_epi64(a01, a23), _mm256_unpackhi_epi64(a01, a23));
    let (lo47, hi47) = (_mm256_unpacklo_epi64(a45, a67), _mm256_unpackhi_epi64(a45, a67));
    [
        _mm256_permute2x128_si256(lo03, lo47, 0x20),
        _mm256_permute2x128_si256(hi03, hi47, 0x20),
        _mm256_permute2x128_si256(lo03, lo47, 0x31),
        _mm256_permute2x128_si256(hi03, hi47, 0x31),
    ]
}

/// Block `ib`'s activation scales `d8`, one row per lane.
#[inline(always)]
unsafe fn act_scales(acts: &[&[Q8KBlock]], ib: usize) -> __m256 {
    let d = |r: usize| acts.get_unchecked(r).get_unchecked(ib).d;
    _mm256_setr_ps(d(0), d(1), d(2), d(3), d(4), d(5), d(6), d(7))
}

/// Q4_K: `acc += f32(dot)·(d·d8)` and `mins += f32(msum)·(dmin·d8)` per pair of sub-blocks when
/// `BATCHED` (llama.cpp's groups of four), per super-block when not (its `gemv`); the result is
/// `acc − mins` (as `x86::q4k_rows`). `acts` holds [`ROWS`] rows.
#[inline(always)]
pub(super) unsafe fn q4k_rows8<D: DotU8I8, const BATCHED: bool>(w: &[u8], acts: &[&[Q8KBlock]], out: &mut [f32]) {
    const BYTES: usize = 144;
    debug_assert!(acts.len() == ROWS && out.len() >= ROWS);
    let nb = acts[0].len();
    debug_assert!(w.len() >= nb * BYTES);
    let (mut acc, mut mins_acc) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for ib in 0..nb {
        let b = w.as_ptr().add(ib * BYTES);
        let (scales, mins) = k4_scales(std::slice::from_raw_parts(b.add(4), 12));
        let ad = act_scales(acts, ib);
        let dd = _mm256_mul_ps(_mm256_set1_ps(f16_at(b, 0)), ad);
        let dmin = _mm256_mul_ps(_mm256_set1_ps(f16_at(b, 2)), ad);
        // Lane s of row r: mins[s]·(bsums[2s] + bsums[2s+1]); a pair j takes lanes 2j and 2j+1.
        let mins16 = pairs_i16(mins);
        let m: [__m256i; ROWS] = std::array::from_fn(|r| {
            _mm256_madd_epi16(_mm256_loadu_si256(acts.get_unchecked(r).get_unchecked(ib).bsums.as_ptr() as *const __m256i), mins16)
        });
        let msums = if BATCHED { pair_sums_by_row(&m) } else { [hsums8(&m); 4] };
        let qs = b.add(16);
        let mut sumi = [_mm256_setzero_si256(); ROWS];
        for (j, msum) in msums.iter().enumerate() {
            let bits = _mm256_loadu_si256(qs.add(32 * j) as *const __m256i);
            let lo = _mm256_and_si256(bits, _mm256_set1_epi8(0x0f));
            let hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), _mm256_set1_epi8(0x0f));
            let (sl, sh) = (_mm256_set1_epi16(scales[2 * j] as i16), _mm256_set1_epi16(scales[2 * j + 1] as i16));
            for (r, s) in sumi.iter_mut().enumerate() {
                let q = acts.get_unchecked(r).get_unchecked(ib).qs.as_ptr().add(64 * j);
                *s = D::dot_scaled(*s, lo, _mm256_loadu_si256(q as *const __m256i), sl);
                *s = D::dot_scaled(*s, hi, _mm256_loadu_si256(q.add(32) as *const __m256i), sh);
            }
            if BATCHED {
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hsums8(&sumi)), dd, acc);
                mins_acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(*msum), dmin, mins_acc);
                sumi = [_mm256_setzero_si256(); ROWS];
            }
        }
        if !BATCHED {
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hsums8(&sumi)), dd, acc);
            mins_acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msums[0]), dmin, mins_acc);
        }
    }
    _mm256_storeu_ps(out.as_mut_ptr(), _mm256_sub_ps(acc, mins_acc));
}

/// Q6_K, batched (llama.cpp's tiled kernel): per super-block `acc = fma(f32(sum)·d, d8, acc)`, the
/// sum being the block's exact `Σ scale·(q − 32)·a`. `acts` holds [`ROWS`] rows.
#[inline(always)]
pub(super) unsafe fn q6k_rows8<D: DotU8I8>(w: &[u8], acts: &[&[Q8KBlock]], out: &mut [f32]) {
    const BYTES: usize = 210;
    debug_assert!(acts.len() == ROWS && out.len() >= ROWS);
    let nb = acts[0].len();
    debug_assert!(w.len() >= nb * BYTES);
    let mut acc = _mm256_setzero_ps();
    for ib in 0..nb {
        let b = w.as_ptr().add(ib * BYTES);
        let (ql, qh, sc) = (b, b.add(128), b.add(192) as *const i8);
        let scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(sc as *const __m128i));
        // The −32 offset, once per block: 32·Σ scale·bsum.
        let mut sumi: [__m256i; ROWS] = std::array::from_fn(|r| {
            let bsums = _mm256_loadu_si256(acts.get_unchecked(r).get_unchecked(ib).bsums.as_ptr() as *const __m256i);
            _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(bsums, scales16), 5))
        });
        for half in 0..2 {
            for (g, qg) in q6k_groups(ql, qh, half).iter().enumerate() {
                let scale = sub_block_scales(sc, 8 * half + 2 * g);
                for (r, s) in sumi.iter_mut().enumerate() {
                    let a = acts.get_unchecked(r).get_unchecked(ib).qs.as_ptr().add(128 * half + 32 * g);
                    *s = D::dot_scaled(*s, *qg, _mm256_loadu_si256(a as *const __m256i), scale);
                }
            }
        }
        let d = _mm256_set1_ps(f16_at(b, 208));
        acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(hsums8(&sumi)), d), act_scales(acts, ib), acc);
    }
    _mm256_storeu_ps(out.as_mut_ptr(), acc);
}

/// Q6_K's scales of sub-blocks `s` and `s + 1` as i16 words: the first for the 16 values in the low
/// 128 bits of a 32-value group, the second for the high.
#[inline(always)]
pub(super) unsafe fn sub_block_scales(sc: *const i8, s: usize) -> __m256i {
    _mm256_setr_m128i(_mm_set1_epi16(*sc.add(s) as i16), _mm_set1_epi16(*sc.add(s + 1) as i16))
}

/// One half (128 values) of a Q6_K block as four groups of 32 unsigned values 0..63 (elements 0..32,
/// 32..64, 64..96, 96..128 of the half): 4 low bits from `ql`, 2 high bits from `qh`.
#[inline(always)]
pub(super) unsafe fn q6k_groups(ql: *const u8, qh: *const u8, half: usize) -> [__m256i; 4] {
    let (m4, h03) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x30));
    let l0 = _mm256_loadu_si256(ql.add(64 * half) as *const __m256i);
    let l1 = _mm256_loadu_si256(ql.add(64 * half + 32) as *const __m256i);
    let h = _mm256_loadu_si256(qh.add(32 * half) as *const __m256i);
    [
        _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), h03)),
        _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), h03)),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(h, h03)),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(h, 2), h03)),
    ]
}
