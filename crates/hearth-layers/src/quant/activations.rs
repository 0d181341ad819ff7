//! Activation rows quantized to 8 bits exactly as llama.cpp's x86 CPU backend does.

use candle_core::quantized::k_quants::{BlockQ8K, GgmlType};
use candle_core::quantized::GgmlDType;
use half::f16;

/// A 32-value block of quantized activations (Q8_0, or Q8_1 when `sum_scaled` is used).
#[derive(Clone, Copy)]
pub(crate) struct Q8Block {
    /// Scale, rounded through f16 as stored by llama.cpp.
    pub d: f32,
    /// `d * Σ qs`, rounded through f16 (Q8_1 only).
    pub sum_scaled: f32,
    pub qs: [i8; 32],
}

pub(crate) enum Activations {
    Q8(Vec<Q8Block>),
    Q8K(Vec<BlockQ8K>),
}

/// Quantize `m` rows of `k` floats for a weight of `dtype`.
pub(crate) fn quantize(dtype: GgmlDType, xs: &[f32], m: usize, k: usize) -> Activations {
    use GgmlDType as D;
    match dtype {
        D::Q2K | D::Q3K | D::Q4K | D::Q5K | D::Q6K | D::Q8K => {
            let mut blocks = vec![BlockQ8K::zeros(); m * k / 256];
            BlockQ8K::from_float(&xs[..m * k], &mut blocks);
            Activations::Q8K(blocks)
        }
        _ => Activations::Q8(xs[..m * k].chunks_exact(32).map(q8_block).collect()),
    }
}

fn q8_block(xs: &[f32]) -> Q8Block {
    let amax = xs.iter().fold(0f32, |a, &x| a.max(x.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut qs = [0i8; 32];
    let mut sum = 0i32;
    for (q, &x) in qs.iter_mut().zip(xs) {
        // llama.cpp rounds with _MM_ROUND_NEAREST: ties to even.
        *q = (x * id).round_ties_even() as i8;
        sum += *q as i32;
    }
    Q8Block { d: f16::from_f32(d).to_f32(), sum_scaled: f16::from_f32(d * sum as f32).to_f32(), qs }
}
