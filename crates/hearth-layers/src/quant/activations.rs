//! Activation rows quantized to 8 bits exactly as llama.cpp's x86 CPU backend does.

use candle_core::quantized::GgmlDType;
use half::f16;
use rayon::prelude::*;

/// A 32-value block of quantized activations (Q8_0, or Q8_1 when `sum_scaled` is used).
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Q8Block {
    /// Scale, rounded through f16 as stored by llama.cpp.
    pub d: f32,
    /// `d * Σ qs`, rounded through f16 (Q8_1 only).
    pub sum_scaled: f32,
    pub qs: [i8; 32],
}

/// A 256-value block for the k-quants: the layout of ggml's (and candle's) `block_q8_K`.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Q8KBlock {
    pub d: f32,
    pub qs: [i8; 256],
    /// Sums of each 16 consecutive `qs`.
    pub bsums: [i16; 16],
}

const _: () = assert!(std::mem::size_of::<Q8KBlock>() == 292);

pub(crate) enum Activations {
    Q8(Vec<Q8Block>),
    Q8K(Vec<Q8KBlock>),
}

/// Quantize `m` rows of `k` floats for a weight of `dtype`.
pub(crate) fn quantize(dtype: GgmlDType, xs: &[f32], m: usize, k: usize) -> Activations {
    use GgmlDType as D;
    match dtype {
        D::Q2K | D::Q3K | D::Q4K | D::Q5K | D::Q6K | D::Q8K => Activations::Q8K(q8k_rows(&xs[..m * k])),
        _ => Activations::Q8(q8_rows_simd(&xs[..m * k])),
    }
}

/// Values per parallel quantization task: below this (decode) the work is too small to share.
const PAR_VALUES: usize = 16 * 1024;

/// Blocks of `xs` quantized by `f`, in parallel for prefill-sized inputs. Each block depends only
/// on its own values, so the result is the same however it is split.
fn blocks<B: Send, const N: usize>(xs: &[f32], f: impl Fn(&[f32]) -> B + Sync + Send) -> Vec<B> {
    if xs.len() < 2 * PAR_VALUES {
        return xs.chunks_exact(N).map(f).collect();
    }
    xs.par_chunks(PAR_VALUES / N * N).flat_map_iter(|c| c.chunks_exact(N).map(&f)).collect()
}

#[inline(always)]
fn q8_rows_simd(xs: &[f32]) -> Vec<Q8Block> {
    #[cfg(target_arch = "x86_64")]
    if super::isa::active() >= super::isa::Isa::Avx2 {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked by `active`); chunks are 32 values.
        return blocks::<_, 32>(xs, |c| unsafe { super::x86::q8_block(c) });
    }
    blocks::<_, 32>(xs, q8_block)
}

#[cfg(test)]
pub(crate) fn q8_block_scalar(xs: &[f32]) -> Q8Block {
    q8_block(xs)
}

#[inline(always)]
fn q8k_rows(xs: &[f32]) -> Vec<Q8KBlock> {
    #[cfg(target_arch = "x86_64")]
    if super::isa::active() >= super::isa::Isa::Avx2 {
        // SAFETY: the CPU has AVX2 (checked by `active`); chunks are 256 values.
        return blocks::<_, 256>(xs, |c| unsafe { x86::q8k_block(c) });
    }
    blocks::<_, 256>(xs, q8k_block)
}

#[cfg(test)]
pub(crate) fn q8k_block_scalar(xs: &[f32]) -> Q8KBlock {
    q8k_block(xs)
}

/// Round to nearest, ties to even, for |x| < 2^22, with integer operations only (ggml's
/// `nearest_int`): adding 1.5·2^23 leaves the rounded integer in the low mantissa bits. Same result
/// as `round_ties_even`, but it vectorises instead of calling libm per value.
#[inline(always)]
pub(crate) fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

#[inline(always)]
fn q8_block(xs: &[f32]) -> Q8Block {
    let amax = xs.iter().fold(0f32, |a, &x| a.max(x.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut qs = [0i8; 32];
    let mut sum = 0i32;
    for (q, &x) in qs.iter_mut().zip(xs) {
        // llama.cpp rounds with _MM_ROUND_NEAREST: ties to even.
        *q = nearest_int(x * id) as i8;
        sum += *q as i32;
    }
    Q8Block { d: f16::from_f32(d).to_f32(), sum_scaled: f16::from_f32(d * sum as f32).to_f32(), qs }
}

/// ggml's reference Q8_K quantizer (llama.cpp uses it on x86 too): the scale comes from the signed
/// value of largest magnitude, so that value maps to -127 exactly.
#[inline(always)]
fn q8k_block(xs: &[f32]) -> Q8KBlock {
    let mut block = Q8KBlock { d: 0.0, qs: [0; 256], bsums: [0; 16] };
    let (mut max, mut amax) = (0f32, 0f32);
    for &x in xs {
        if x.abs() > amax {
            amax = x.abs();
            max = x;
        }
    }
    if amax == 0.0 {
        return block;
    }
    let iscale = -127.0 / max;
    for (q, &x) in block.qs.iter_mut().zip(xs) {
        *q = nearest_int(iscale * x).min(127) as i8;
    }
    for (sum, qs) in block.bsums.iter_mut().zip(block.qs.chunks_exact(16)) {
        *sum = qs.iter().map(|&q| q as i16).sum();
    }
    block.d = 1.0 / iscale;
    block
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use super::Q8KBlock;
    use std::arch::x86_64::*;

    /// [`super::q8k_block`] eight values at a time, the same bits: the same largest magnitude (its
    /// first signed occurrence), the same f32 products, rounded to nearest even as `nearest_int` does.
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn q8k_block(xs: &[f32]) -> Q8KBlock {
        assert!(xs.len() >= 256);
        let p = xs.as_ptr();
        let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        // max(|x|, m) keeps m where x is NaN, as the scalar `>` comparison skips it.
        let mut m = _mm256_setzero_ps();
        for i in (0..256).step_by(8) {
            m = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(p.add(i)), abs_mask), m);
        }
        let r = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
        let r = _mm_max_ps(r, _mm_movehl_ps(r, r));
        let amax = _mm_cvtss_f32(_mm_max_ss(r, _mm_movehdup_ps(r)));
        let mut block = Q8KBlock { d: 0.0, qs: [0; 256], bsums: [0; 16] };
        if amax == 0.0 {
            return block;
        }
        let max = xs[..256].iter().copied().find(|x| x.abs() == amax).unwrap_or(amax);
        let iscale = -127.0 / max;
        let scale = _mm256_set1_ps(iscale);
        let q = |i: usize| _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p.add(i)), scale)), _mm256_set1_epi32(127));
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for g in (0..256).step_by(32) {
            let v = [q(g), q(g + 8), q(g + 16), q(g + 24)];
            // Values are within ±127, so the saturating packs are exact; the permute undoes their
            // interleaving of 128-bit halves.
            let bytes = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
            _mm256_storeu_si256(block.qs.as_mut_ptr().add(g) as *mut __m256i, _mm256_permutevar8x32_epi32(bytes, order));
            block.bsums[g / 16] = hsum(_mm256_add_epi32(v[0], v[1])) as i16;
            block.bsums[g / 16 + 1] = hsum(_mm256_add_epi32(v[2], v[3])) as i16;
        }
        block.d = 1.0 / iscale;
        block
    }

    #[inline(always)]
    unsafe fn hsum(x: __m256i) -> i32 {
        let r = _mm_add_epi32(_mm256_extracti128_si256(x, 1), _mm256_castsi256_si128(x));
        let r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0x4e));
        _mm_cvtsi128_si32(_mm_add_epi32(r, _mm_shuffle_epi32(r, 0xb1)))
    }
}
