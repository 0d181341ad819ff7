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
    blocks::<_, 256>(xs, q8k_block)
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
