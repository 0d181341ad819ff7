//! AVX2 / AVX-512 VNNI dot products of one weight row with up to four activation rows at once (eight
//! for Q4_K on AVX-512), so a weight block is loaded and unpacked once per several rows in prefill and
//! batched decode. With 4+ activation rows the legacy formats on AVX-512 VNNI go through the tiles of
//! `x86_tile` instead (4 weight rows × 4 activation rows), which give the same bits.
//!
//! Integer products are exact; each block's 8 lanes of i32 sums are scaled and accumulated in 8 f32
//! lanes and summed at the end, the order llama.cpp's AVX2 `vec_dot` kernels use.

use super::activations::{Q8Block, Q8KBlock};
use super::isa::Isa;
use super::dot::k4_scales;
use super::x86_kbatch;
use super::{OutPtr, RowBatch};
use candle_core::quantized::GgmlDType;
use std::arch::x86_64::*;

/// Activation rows per weight-row pass.
pub(crate) const TILE: usize = 4;

/// Activation rows per cache-blocking chunk: a whole number of tiles, about 128 KiB of blocks
/// (`row_bytes` each), so a chunk stays in L2 while a task's weight rows pass over it.
pub(crate) fn act_chunk(row_bytes: usize) -> usize {
    ((128 * 1024 / row_bytes.max(1)) / TILE).max(1) * TILE
}

/// u8 × i8 products summed in fours into i32 lanes.
pub(super) trait DotU8I8 {
    unsafe fn dot(u: __m256i, s: __m256i) -> __m256i;
    /// `acc` + each lane's four u8 × i8 products, pair sums times the i16 `scale` of their word:
    /// the k-quants' sub-block scales applied without a 32-bit multiply. Exact while each pair of
    /// products fits i16 (|u| ≤ 64 with i8 activations).
    unsafe fn dot_scaled(acc: __m256i, u: __m256i, s: __m256i, scale: __m256i) -> __m256i;
}

pub(super) struct Maddubs;
impl DotU8I8 for Maddubs {
    #[inline(always)]
    unsafe fn dot(u: __m256i, s: __m256i) -> __m256i {
        // Pair sums fit i16: |u·s| ≤ 255·127·2 only for u ≤ 255; callers keep u ≤ 128 (or nibbles).
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
    }
    #[inline(always)]
    unsafe fn dot_scaled(acc: __m256i, u: __m256i, s: __m256i, scale: __m256i) -> __m256i {
        _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), scale))
    }
}

pub(super) struct Vnni;
impl DotU8I8 for Vnni {
    #[inline(always)]
    unsafe fn dot(u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
    }
    #[inline(always)]
    unsafe fn dot_scaled(acc: __m256i, u: __m256i, s: __m256i, scale: __m256i) -> __m256i {
        _mm256_dpwssd_epi32(acc, _mm256_maddubs_epi16(u, s), scale)
    }
}

/// One legacy (32-value) block format: where its scale, offset and values are.
pub(crate) trait Legacy {
    const BYTES: usize;
    /// Values are signed (q - offset) rather than unsigned with a separate minimum.
    const SIGNED: bool;
    /// What [`Legacy::unsigned`] adds to each value so that it fits `vpdpbusd`'s unsigned operand.
    const OFFSET: u8;
    unsafe fn values(b: *const u8) -> __m256i;
    /// The values plus [`Legacy::OFFSET`], as unsigned bytes (no sign tricks needed per activation row).
    unsafe fn unsigned(b: *const u8) -> __m256i;
    /// As [`Legacy::unsigned`], with AVX-512 BW/VL instructions where they are shorter: call only
    /// from code compiled with those features.
    #[inline(always)]
    unsafe fn unsigned_bw(b: *const u8) -> __m256i {
        Self::unsigned(b)
    }
    #[inline(always)]
    unsafe fn d(b: *const u8) -> f32 {
        f16_at(b, 0)
    }
    #[inline(always)]
    unsafe fn m(_b: *const u8) -> f32 {
        0.0
    }
}

/// The f16 at `b + offset` as f32, through F16C (every AVX2 CPU has it).
#[inline(always)]
pub(crate) unsafe fn f16_at(b: *const u8, offset: usize) -> f32 {
    let bits = u16::from_le_bytes([*b.add(offset), *b.add(offset + 1)]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// 16 bytes of nibbles → 32 bytes: low nibbles are values 0..16, high nibbles 16..32.
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> __m256i {
    let x = _mm_loadu_si128(p as *const __m128i);
    let both = _mm256_set_m128i(_mm_srli_epi16(x, 4), x);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// As [`nibbles`] in two instructions: the 16 bytes in both halves, the upper half shifted by 4.
#[inline(always)]
unsafe fn nibbles_bw(p: *const u8) -> __m256i {
    let both = _mm256_broadcastsi128_si256(_mm_loadu_si128(p as *const __m128i));
    let shift = _mm256_setr_epi16(0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4);
    _mm256_and_si256(_mm256_srlv_epi16(both, shift), _mm256_set1_epi8(0x0f))
}

/// `nib` plus 16 in each byte whose bit is set in the 32 bits at `p` (as [`fifth_bits`], through a mask).
#[inline(always)]
unsafe fn with_fifth_bits_bw(nib: __m256i, p: *const u8) -> __m256i {
    let qh = u32::from_le_bytes([*p, *p.add(1), *p.add(2), *p.add(3)]);
    _mm256_mask_add_epi8(nib, qh, nib, _mm256_set1_epi8(0x10))
}

/// The 32 bits of `qh` as 32 bytes, each 0x10 where its bit is set.
#[inline(always)]
unsafe fn fifth_bits(p: *const u8) -> __m256i {
    let qh = u32::from_le_bytes([*p, *p.add(1), *p.add(2), *p.add(3)]);
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(qh as i32),
        _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3),
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

pub(crate) struct Q4_0;
impl Legacy for Q4_0 {
    const BYTES: usize = 18;
    const SIGNED: bool = true;
    const OFFSET: u8 = 8;
    #[inline(always)]
    unsafe fn values(b: *const u8) -> __m256i {
        _mm256_sub_epi8(Self::unsigned(b), _mm256_set1_epi8(8))
    }
    #[inline(always)]
    unsafe fn unsigned(b: *const u8) -> __m256i {
        nibbles(b.add(2))
    }
    #[inline(always)]
    unsafe fn unsigned_bw(b: *const u8) -> __m256i {
        nibbles_bw(b.add(2))
    }
}

pub(crate) struct Q4_1;
impl Legacy for Q4_1 {
    const BYTES: usize = 20;
    const SIGNED: bool = false;
    const OFFSET: u8 = 0;
    #[inline(always)]
    unsafe fn values(b: *const u8) -> __m256i {
        nibbles(b.add(4))
    }
    #[inline(always)]
    unsafe fn unsigned(b: *const u8) -> __m256i {
        Self::values(b)
    }
    #[inline(always)]
    unsafe fn unsigned_bw(b: *const u8) -> __m256i {
        nibbles_bw(b.add(4))
    }
    #[inline(always)]
    unsafe fn m(b: *const u8) -> f32 {
        f16_at(b, 2)
    }
}

pub(crate) struct Q5_0;
impl Legacy for Q5_0 {
    const BYTES: usize = 22;
    const SIGNED: bool = true;
    const OFFSET: u8 = 16;
    #[inline(always)]
    unsafe fn values(b: *const u8) -> __m256i {
        _mm256_sub_epi8(Self::unsigned(b), _mm256_set1_epi8(16))
    }
    #[inline(always)]
    unsafe fn unsigned(b: *const u8) -> __m256i {
        _mm256_or_si256(nibbles(b.add(6)), fifth_bits(b.add(2)))
    }
    #[inline(always)]
    unsafe fn unsigned_bw(b: *const u8) -> __m256i {
        with_fifth_bits_bw(nibbles_bw(b.add(6)), b.add(2))
    }
}

pub(crate) struct Q5_1;
impl Legacy for Q5_1 {
    const BYTES: usize = 24;
    const SIGNED: bool = false;
    const OFFSET: u8 = 0;
    #[inline(always)]
    unsafe fn values(b: *const u8) -> __m256i {
        _mm256_or_si256(nibbles(b.add(8)), fifth_bits(b.add(4)))
    }
    #[inline(always)]
    unsafe fn unsigned(b: *const u8) -> __m256i {
        Self::values(b)
    }
    #[inline(always)]
    unsafe fn unsigned_bw(b: *const u8) -> __m256i {
        with_fifth_bits_bw(nibbles_bw(b.add(8)), b.add(4))
    }
    #[inline(always)]
    unsafe fn m(b: *const u8) -> f32 {
        f16_at(b, 2)
    }
}

pub(crate) struct Q8_0;
impl Legacy for Q8_0 {
    const BYTES: usize = 34;
    const SIGNED: bool = true;
    const OFFSET: u8 = 128;
    #[inline(always)]
    unsafe fn values(b: *const u8) -> __m256i {
        _mm256_loadu_si256(b.add(2) as *const __m256i)
    }
    #[inline(always)]
    unsafe fn unsigned(b: *const u8) -> __m256i {
        // x + 128 as u8 is x with its top bit flipped.
        _mm256_xor_si256(Self::values(b), _mm256_set1_epi8(-128))
    }
}

/// The horizontal sum of 8 f32 lanes, in the one order every kernel here uses.
#[inline(always)]
pub(crate) unsafe fn hsum(x: __m256) -> f32 {
    let r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    let r = _mm_add_ss(r, _mm_movehdup_ps(r));
    _mm_cvtss_f32(r)
}

#[inline(always)]
unsafe fn legacy_rows<F: Legacy, D: DotU8I8, const R: usize>(w: &[u8], acts: &[&[Q8Block]; R], out: &mut [f32]) {
    let nb = acts[0].len();
    debug_assert!(w.len() >= nb * F::BYTES && acts.iter().all(|a| a.len() == nb));
    let mut acc = [_mm256_setzero_ps(); R];
    let mut summs = [0f32; R];
    for ib in 0..nb {
        let b = w.as_ptr().add(ib * F::BYTES);
        let dw = F::d(b);
        let qx = F::values(b);
        // Signed weights: |x| as the unsigned operand, the sign moved onto the activations.
        let ux = if F::SIGNED { _mm256_sign_epi8(qx, qx) } else { qx };
        for r in 0..R {
            let a = acts[r].get_unchecked(ib);
            if !F::SIGNED {
                summs[r] += F::m(b) * a.sum_scaled;
            }
            let qy = _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i);
            let sy = if F::SIGNED { _mm256_sign_epi8(qy, qx) } else { qy };
            let p = _mm256_cvtepi32_ps(D::dot(ux, sy));
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * a.d), p, acc[r]);
        }
    }
    for r in 0..R {
        out[r] = hsum(acc[r]) + summs[r];
    }
}

/// How a k-quant kernel turns its exact integer sums into floats, after the llama.cpp kernel that
/// would have multiplied the row ([`super::RowBatch`]). Q4_K: llama.cpp repacks every Q4_K matrix
/// whose row count is a multiple of 8 (on x86) and multiplies rows in groups of four
/// (`gemm_q4_K_8x8_q8_K`: one FMA per 64 values) or alone (`gemv`: one FMA per 256). Q6_K: a
/// micro-batch of 8+ rows goes through its tiled kernel (per super-block `fma(sum·d, d8, acc)`), fewer
/// through `vec_dot_q6_K_q8_K` (8 lanes of FMAs).
pub(crate) trait Sums {
    const BATCHED: bool;
}
/// Rows multiplied alone (`gemv`, `vec_dot`).
pub(crate) struct Alone;
impl Sums for Alone {
    const BATCHED: bool = false;
}
/// Rows multiplied with others (Q4_K's groups of four, Q6_K's tiles).
pub(crate) struct Batched;
impl Sums for Batched {
    const BATCHED: bool = true;
}

/// Q4_K: 8 sub-blocks of 32 with 6-bit scales and mins, f16 `d` and `dmin`.
///
/// The float arithmetic is that of llama.cpp's repacked Q4_K kernels (see [`Sums`]): the integer
/// dot and the integer min-sum of each super-block (or each pair of sub-blocks), accumulated with
/// one FMA each by `d·d8` and `dmin·d8`, and one subtraction at the end.
#[inline(always)]
unsafe fn q4k_rows<D: DotU8I8, S: Sums, const R: usize>(w: &[u8], acts: &[&[Q8KBlock]; R], out: &mut [f32]) {
    const BYTES: usize = 144;
    if R == x86_kbatch::ROWS {
        return if S::BATCHED { x86_kbatch::q4k_rows8::<D, true>(w, acts, out) } else { x86_kbatch::q4k_rows8::<D, false>(w, acts, out) };
    }
    let nb = acts[0].len();
    debug_assert!(w.len() >= nb * BYTES);
    let mut acc = [0f32; R];
    let mut mins_acc = [0f32; R];
    for ib in 0..nb {
        let b = w.as_ptr().add(ib * BYTES);
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let (scales, mins) = k4_scales(std::slice::from_raw_parts(b.add(4), 12));
        let mins16 = pairs_i16(mins);
        let qs = b.add(16);
        let mut sumi = [_mm256_setzero_si256(); R];
        for j in 0..4 {
            let bits = _mm256_loadu_si256(qs.add(32 * j) as *const __m256i);
            let lo = _mm256_and_si256(bits, _mm256_set1_epi8(0x0f));
            let hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), _mm256_set1_epi8(0x0f));
            let (sl, sh) = (_mm256_set1_epi16(scales[2 * j] as i16), _mm256_set1_epi16(scales[2 * j + 1] as i16));
            for r in 0..R {
                let a = acts[r].get_unchecked(ib);
                let q = a.qs.as_ptr().add(64 * j);
                sumi[r] = D::dot_scaled(sumi[r], lo, _mm256_loadu_si256(q as *const __m256i), sl);
                sumi[r] = D::dot_scaled(sumi[r], hi, _mm256_loadu_si256(q.add(32) as *const __m256i), sh);
                if S::BATCHED {
                    let bs = &a.bsums[4 * j..4 * j + 4];
                    let msum = mins[2 * j] as i32 * (bs[0] as i32 + bs[1] as i32) + mins[2 * j + 1] as i32 * (bs[2] as i32 + bs[3] as i32);
                    acc[r] = (hsum_i32(sumi[r]) as f32).mul_add(d * a.d, acc[r]);
                    mins_acc[r] = (msum as f32).mul_add(dmin * a.d, mins_acc[r]);
                    sumi[r] = _mm256_setzero_si256();
                }
            }
        }
        if S::BATCHED {
            continue;
        }
        for r in 0..R {
            let a = acts[r].get_unchecked(ib);
            // Σ mins[s]·(bsums[2s] + bsums[2s+1]) and the scaled dot, both exact in i32.
            let msum = hsum_i32(_mm256_madd_epi16(_mm256_loadu_si256(a.bsums.as_ptr() as *const __m256i), mins16));
            acc[r] = (hsum_i32(sumi[r]) as f32).mul_add(d * a.d, acc[r]);
            mins_acc[r] = (msum as f32).mul_add(dmin * a.d, mins_acc[r]);
        }
    }
    for r in 0..R {
        out[r] = acc[r] - mins_acc[r];
    }
}

/// `[v0, v0, v1, v1, …, v7, v7]` as 16 i16 lanes: one value per pair of `bsums`.
#[inline(always)]
pub(super) unsafe fn pairs_i16(v: [u8; 8]) -> __m256i {
    let x = _mm_cvtepu8_epi16(_mm_loadl_epi64(v.as_ptr() as *const __m128i));
    _mm256_set_m128i(_mm_unpackhi_epi16(x, x), _mm_unpacklo_epi16(x, x))
}

#[inline(always)]
unsafe fn hsum_i32(x: __m256i) -> i32 {
    let r = _mm_add_epi32(_mm256_extracti128_si256(x, 1), _mm256_castsi256_si128(x));
    let r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0x4e));
    _mm_cvtsi128_si32(_mm_add_epi32(r, _mm_shuffle_epi32(r, 0xb1)))
}

/// Q6_K: 16 sub-blocks of 16 with i8 scales; values are 4 low bits in `ql`, 2 high bits in `qh`, minus 32.
#[inline(always)]
unsafe fn q6k_rows<D: DotU8I8, S: Sums, const R: usize>(w: &[u8], acts: &[&[Q8KBlock]; R], out: &mut [f32]) {
    const BYTES: usize = 210;
    if S::BATCHED && R == x86_kbatch::ROWS {
        return x86_kbatch::q6k_rows8::<D>(w, acts, out);
    }
    let nb = acts[0].len();
    debug_assert!(w.len() >= nb * BYTES);
    let mut acc = [_mm256_setzero_ps(); R];
    let mut tiled = [0f32; R];
    for ib in 0..nb {
        let b = w.as_ptr().add(ib * BYTES);
        let (ql, qh, sc) = (b, b.add(128), b.add(192) as *const i8);
        let d = f16_at(b, 208);
        let scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(sc as *const __m128i));
        let mut sumi = [_mm256_setzero_si256(); R];
        for half in 0..2 {
            for (g, qg) in x86_kbatch::q6k_groups(ql, qh, half).iter().enumerate() {
                // Lanes 0..4 hold values 0..16 of the group (first scale), lanes 4..8 values 16..32.
                let scale = x86_kbatch::sub_block_scales(sc, 8 * half + 2 * g);
                for r in 0..R {
                    let a = _mm256_loadu_si256(acts[r].get_unchecked(ib).qs.as_ptr().add(128 * half + 32 * g) as *const __m256i);
                    // q·a here (pair sums fit i16: q < 64); the −32 offset comes off once per block, below.
                    sumi[r] = D::dot_scaled(sumi[r], *qg, a, scale);
                }
            }
        }
        for r in 0..R {
            let a = acts[r].get_unchecked(ib);
            // 32·Σ scale·bsum, lane l taking sub-blocks 2l and 2l+1: llama.cpp's lanes (its AVX2
            // `vec_dot_q6_K_q8_K`), so each lane's i32 and its f32 rounding are the same.
            let bsums = _mm256_loadu_si256(a.bsums.as_ptr() as *const __m256i);
            let offset = _mm256_slli_epi32(_mm256_madd_epi16(bsums, scales16), 5);
            let s = _mm256_sub_epi32(sumi[r], offset);
            if S::BATCHED {
                // The tiled kernel: the block's whole sum times d, then one FMA by d8 (GCC fuses its
                // multiply and add).
                tiled[r] = (hsum_i32(s) as f32 * d).mul_add(a.d, tiled[r]);
            } else {
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), _mm256_cvtepi32_ps(s), acc[r]);
            }
        }
    }
    for r in 0..R {
        out[r] = if S::BATCHED { tiled[r] } else { hsum(acc[r]) };
    }
}

/// Activation rows `j0..m` against one weight row, up to [`TILE`] rows per pass (twice that where
/// `$wide`: AVX-512 has the registers, and the weight block's unpacking is shared by 8), into column `r`.
macro_rules! dispatch_tile {
    ($kernel:ident [$($g:ty),*], $wide:literal, $w:expr, $a:expr, $nb:expr, $j0:expr, $m:expr, $out:expr, $r:expr) => {{
        let mut j = $j0;
        while j < $m {
            let row = |i: usize| $a.get_unchecked((j + i) * $nb..(j + i + 1) * $nb);
            let mut o = [0f32; 2 * TILE];
            let n = if $wide && $m - j >= 2 * TILE { 2 * TILE } else { ($m - j).min(TILE) };
            match n {
                1 => $kernel::<$($g,)* 1>($w, &[row(0)], &mut o),
                2 => $kernel::<$($g,)* 2>($w, &[row(0), row(1)], &mut o),
                3 => $kernel::<$($g,)* 3>($w, &[row(0), row(1), row(2)], &mut o),
                4 => $kernel::<$($g,)* 4>($w, &[row(0), row(1), row(2), row(3)], &mut o),
                _ => $kernel::<$($g,)* 8>($w, &[row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7)], &mut o),
            }
            for (i, v) in o[..n].iter().enumerate() {
                $out.put($r, j + i, *v);
            }
            j += n;
        }
    }};
}

/// For weight rows `rows` of `w` (rows of `rb` bytes), their dots with activation rows `j0..m`,
/// written through `out`.
macro_rules! rows_entry {
    ($name:ident, $block:ty, $features:literal, { $($dtype:pat => $kernel:ident [$($g:ty),*] $wide:literal),* $(,)? }) => {
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        pub(crate) unsafe fn $name(
            dtype: GgmlDType, w: &[u8], rb: usize, acts: &[$block], m: usize, rows: std::ops::Range<usize>, j0: usize, out: OutPtr,
        ) {
            let nb = acts.len() / m;
            let chunk = act_chunk(nb * std::mem::size_of::<$block>());
            // Activation rows in chunks that stay in L2 while every weight row passes over them,
            // rather than all of them streamed again for each weight row.
            for jc in (j0..m).step_by(chunk) {
                let je = (jc + chunk).min(m);
                for r in rows.clone() {
                    let wr = w.get_unchecked(r * rb..(r + 1) * rb);
                    match dtype {
                        $($dtype => dispatch_tile!($kernel[$($g),*], $wide, wr, acts, nb, jc, je, out, r),)*
                    }
                }
            }
        }
    };
}

rows_entry!(legacy_avx2, Q8Block, "avx2,fma,f16c", {
    GgmlDType::Q4_0 => legacy_rows[Q4_0, Maddubs] false, GgmlDType::Q4_1 => legacy_rows[Q4_1, Maddubs] false,
    GgmlDType::Q5_0 => legacy_rows[Q5_0, Maddubs] false, GgmlDType::Q5_1 => legacy_rows[Q5_1, Maddubs] false,
    _ => legacy_rows[Q8_0, Maddubs] false,
});
rows_entry!(legacy_vnni, Q8Block, "avx2,fma,f16c,avx512f,avx512vnni,avx512vl,avx512bw", {
    GgmlDType::Q4_0 => legacy_rows[Q4_0, Vnni] false, GgmlDType::Q4_1 => legacy_rows[Q4_1, Vnni] false,
    GgmlDType::Q5_0 => legacy_rows[Q5_0, Vnni] false, GgmlDType::Q5_1 => legacy_rows[Q5_1, Vnni] false,
    _ => legacy_rows[Q8_0, Vnni] false,
});
rows_entry!(k_avx2, Q8KBlock, "avx2,fma,f16c", {
    GgmlDType::Q4K => q4k_rows[Maddubs, Alone] false, _ => q6k_rows[Maddubs, Alone] false,
});
rows_entry!(k_vnni, Q8KBlock, "avx2,fma,f16c,avx512f,avx512vnni,avx512vl,avx512bw", {
    GgmlDType::Q4K => q4k_rows[Vnni, Alone] true, _ => q6k_rows[Vnni, Alone] true,
});
rows_entry!(k_avx2_batched, Q8KBlock, "avx2,fma,f16c", {
    GgmlDType::Q4K => q4k_rows[Maddubs, Batched] false, _ => q6k_rows[Maddubs, Batched] false,
});
rows_entry!(k_vnni_batched, Q8KBlock, "avx2,fma,f16c,avx512f,avx512vnni,avx512vl,avx512bw", {
    GgmlDType::Q4K => q4k_rows[Vnni, Batched] true, _ => q6k_rows[Vnni, Batched] true,
});

/// Whether this module has a kernel for `dtype`.
pub(crate) fn has_kernel(dtype: GgmlDType) -> bool {
    use GgmlDType as D;
    matches!(dtype, D::Q4_0 | D::Q4_1 | D::Q5_0 | D::Q5_1 | D::Q8_0 | D::Q4K | D::Q6K)
}

fn check(dtype: GgmlDType, w: &[u8], rb: usize, acts: usize, m: usize, out: OutPtr, per_block: usize) -> usize {
    assert!(m > 0 && acts.is_multiple_of(m) && rb > 0 && w.len().is_multiple_of(rb), "activation rows must tile the output");
    assert!((acts / m) * dtype.type_size() <= rb && (acts / m) * per_block > 0);
    assert!(out.holds(w.len() / rb, m), "output smaller than the weight rows × activation rows");
    w.len() / rb
}

/// For each weight row in `w` (rows of `rb` bytes), `out(r, j)` = row `r` · activation row `j`
/// (`acts` holds `m` rows of legacy blocks). `isa` must be a path the CPU supports. With 4 or more
/// activation rows, AVX-512 VNNI runs the tiled kernel of `x86_tile`, which gives the same bits.
pub(crate) fn legacy_rows_all(isa: Isa, dtype: GgmlDType, w: &[u8], rb: usize, acts: &[Q8Block], m: usize, out: OutPtr) {
    let rows = check(dtype, w, rb, acts.len(), m, out, 32);
    // SAFETY: the CPU has the features of `isa` (detected at run time); `check` bounds every slice.
    unsafe {
        match isa {
            Isa::Avx512Vnni => super::x86_tile::legacy_tiled_vnni(dtype, w, rb, acts, m, out),
            _ => legacy_avx2(dtype, w, rb, acts, m, 0..rows, 0, out),
        }
    }
}

/// As [`legacy_rows_all`] for the k-quant formats with Q8_K activations. `batching[j]` says how
/// llama.cpp would have batched activation row `j` (missing entries: alone), which picks the
/// float arithmetic ([`Sums`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn k_rows_all(isa: Isa, dtype: GgmlDType, w: &[u8], rb: usize, acts: &[Q8KBlock], m: usize, out: OutPtr, batching: &[RowBatch]) {
    let rows = check(dtype, w, rb, acts.len(), m, out, 256);
    let nb = acts.len() / m;
    let is_grouped = |j: usize| {
        let b = batching.get(j).copied().unwrap_or_default();
        match dtype {
            GgmlDType::Q4K => b.in_group_of_four,
            _ => b.in_batch_of_eight,
        }
    };
    // Runs of activation rows with the same arithmetic, each through its kernel.
    let mut start = 0;
    while start < m {
        let flag = is_grouped(start);
        let end = (start..m).find(|&j| is_grouped(j) != flag).unwrap_or(m);
        let acts = &acts[..end * nb];
        // SAFETY: as in `legacy_rows_all`; `acts` holds `end` whole rows and `start < end`.
        unsafe {
            match (isa, flag) {
                (Isa::Avx512Vnni, false) => k_vnni(dtype, w, rb, acts, end, 0..rows, start, out),
                (Isa::Avx512Vnni, true) => k_vnni_batched(dtype, w, rb, acts, end, 0..rows, start, out),
                (_, false) => k_avx2(dtype, w, rb, acts, end, 0..rows, start, out),
                (_, true) => k_avx2_batched(dtype, w, rb, acts, end, 0..rows, start, out),
            }
        }
        start = end;
    }
}

/// 32 activations as a Q8 block, with the same IEEE operations as the scalar quantizer (so the same
/// result) but rounding in vector registers instead of a libm call per value.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q8_block(xs: &[f32]) -> Q8Block {
    assert!(xs.len() >= 32);
    let v: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(xs.as_ptr().add(8 * i)));
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let m = v.iter().fold(_mm256_setzero_ps(), |m, x| _mm256_max_ps(m, _mm256_and_ps(*x, abs_mask)));
    let r = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    let r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    let amax = _mm_cvtss_f32(_mm_max_ss(r, _mm_movehdup_ps(r)));
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
    let mut qs = [0i8; 32];
    let mut sum = 0i32;
    for (i, x) in v.iter().enumerate() {
        let q = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(*x, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        let mut lanes = [0i32; 8];
        _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, q);
        for (j, l) in lanes.iter().enumerate() {
            qs[8 * i + j] = *l as i8;
            sum += l;
        }
    }
    let to_f16 = |x: f32| _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph(_mm_set_ss(x), _MM_FROUND_TO_NEAREST_INT)));
    Q8Block { d: to_f16(d), sum_scaled: to_f16(d * sum as f32), qs }
}
