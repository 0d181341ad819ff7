//! Per-row dot products of weight blocks with quantized activations, and row dequantization.
//!
//! The legacy formats (Q4_0…Q8_0) are written out here, following ggml's block layouts; the k-quants
//! use candle's block dot products, whose activation format (Q8_K) matches llama.cpp's.

use super::activations::{Activations, Q8Block, Q8KBlock};
use super::as_blocks;
use candle_core::quantized::k_quants::{self as kq, GgmlType};
use candle_core::quantized::GgmlDType;
use half::f16;

pub(crate) fn supported(dtype: GgmlDType) -> bool {
    use GgmlDType as D;
    matches!(dtype, D::Q4_0 | D::Q4_1 | D::Q5_0 | D::Q5_1 | D::Q8_0 | D::Q2K | D::Q3K | D::Q4K | D::Q5K | D::Q6K | D::Q8K)
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dot of one weight row (`w`, `k` elements) with activation row `j`.
pub(crate) fn row_dot(dtype: GgmlDType, w: &[u8], acts: &Activations, j: usize, k: usize) -> f32 {
    use GgmlDType as D;
    match acts {
        Activations::Q8(a) => {
            let nb = k / 32;
            let a = &a[j * nb..(j + 1) * nb];
            let bs = dtype.type_size();
            let blocks = w.chunks_exact(bs).zip(a);
            match dtype {
                D::Q4_0 => blocks.map(|(b, a)| q4_0(b, a)).sum(),
                D::Q4_1 => blocks.map(|(b, a)| q4_1(b, a)).sum(),
                D::Q5_0 => blocks.map(|(b, a)| q5_0(b, a)).sum(),
                D::Q5_1 => blocks.map(|(b, a)| q5_1(b, a)).sum(),
                D::Q8_0 => blocks.map(|(b, a)| q8_0(b, a)).sum(),
                _ => 0.0,
            }
        }
        Activations::Q8K(a) => {
            let nb = k / 256;
            let a = as_candle_q8k(&a[j * nb..(j + 1) * nb]);
            match dtype {
                D::Q2K => kq::BlockQ2K::vec_dot(k, as_blocks(w), a),
                D::Q3K => kq::BlockQ3K::vec_dot(k, as_blocks(w), a),
                D::Q4K => kq::BlockQ4K::vec_dot(k, as_blocks(w), a),
                D::Q5K => kq::BlockQ5K::vec_dot(k, as_blocks(w), a),
                D::Q6K => kq::BlockQ6K::vec_dot(k, as_blocks(w), a),
                D::Q8K => kq::BlockQ8K::vec_dot(k, as_blocks(w), a),
                _ => 0.0,
            }
        }
    }
}

/// hearth's Q8_K blocks as candle's, for candle's scalar k-quant dot products.
fn as_candle_q8k(a: &[Q8KBlock]) -> &[kq::BlockQ8K] {
    const _: () = assert!(std::mem::size_of::<Q8KBlock>() == std::mem::size_of::<kq::BlockQ8K>());
    // SAFETY: both are repr(C) {f32, [i8; 256], [i16; 16]} (ggml's block_q8_K) with the same size and
    // alignment 4, so the cast reinterprets identical bytes.
    unsafe { std::slice::from_raw_parts(a.as_ptr() as *const kq::BlockQ8K, a.len()) }
}

fn dot_nibbles(qs: &[u8], a: &[i8; 32], offset: i32) -> i32 {
    let mut sum = 0i32;
    for i in 0..16 {
        sum += ((qs[i] & 0x0f) as i32 - offset) * a[i] as i32 + ((qs[i] >> 4) as i32 - offset) * a[i + 16] as i32;
    }
    sum
}

/// Q4_0: f16 d, 16 bytes of nibbles; value = d * (q - 8).
fn q4_0(b: &[u8], a: &Q8Block) -> f32 {
    dot_nibbles(&b[2..18], &a.qs, 8) as f32 * (f16_at(b, 0) * a.d)
}

/// Q4_1: f16 d, f16 m, 16 bytes of nibbles; value = d * q + m.
fn q4_1(b: &[u8], a: &Q8Block) -> f32 {
    dot_nibbles(&b[4..20], &a.qs, 0) as f32 * f16_at(b, 0) * a.d + f16_at(b, 2) * a.sum_scaled
}

fn dot_5bit(qh: u32, qs: &[u8], a: &[i8; 32], offset: i32) -> i32 {
    let mut sum = 0i32;
    for i in 0..16 {
        let hi0 = ((qh >> i) & 1) as i32;
        let hi1 = ((qh >> (i + 16)) & 1) as i32;
        let x0 = ((qs[i] & 0x0f) as i32 | (hi0 << 4)) - offset;
        let x1 = ((qs[i] >> 4) as i32 | (hi1 << 4)) - offset;
        sum += x0 * a[i] as i32 + x1 * a[i + 16] as i32;
    }
    sum
}

/// Q5_0: f16 d, u32 high bits, 16 bytes of nibbles; value = d * (q - 16).
fn q5_0(b: &[u8], a: &Q8Block) -> f32 {
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    dot_5bit(qh, &b[6..22], &a.qs, 16) as f32 * (f16_at(b, 0) * a.d)
}

/// Q5_1: f16 d, f16 m, u32 high bits, 16 bytes of nibbles; value = d * q + m.
fn q5_1(b: &[u8], a: &Q8Block) -> f32 {
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    dot_5bit(qh, &b[8..24], &a.qs, 0) as f32 * f16_at(b, 0) * a.d + f16_at(b, 2) * a.sum_scaled
}

/// Q8_0: f16 d, 32 signed bytes.
fn q8_0(b: &[u8], a: &Q8Block) -> f32 {
    let mut sum = 0i32;
    for i in 0..32 {
        sum += (b[2 + i] as i8) as i32 * a.qs[i] as i32;
    }
    sum as f32 * (f16_at(b, 0) * a.d)
}

/// The eight 6-bit (scale, min) pairs packed into Q4_K's 12 scale bytes.
#[inline(always)]
pub(crate) fn k4_scales(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
    for j in 0..8 {
        if j < 4 {
            sc[j] = s[j] & 63;
            mn[j] = s[j + 4] & 63;
        } else {
            sc[j] = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
            mn[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
    }
    (sc, mn)
}

/// Dequantize one row of blocks into `dst`.
pub(crate) fn dequantize(dtype: GgmlDType, w: &[u8], dst: &mut [f32]) {
    use GgmlDType as D;
    match dtype {
        D::Q4_0 => kq::BlockQ4_0::to_float(as_blocks(w), dst),
        D::Q4_1 => kq::BlockQ4_1::to_float(as_blocks(w), dst),
        D::Q5_0 => kq::BlockQ5_0::to_float(as_blocks(w), dst),
        D::Q5_1 => kq::BlockQ5_1::to_float(as_blocks(w), dst),
        D::Q8_0 => kq::BlockQ8_0::to_float(as_blocks(w), dst),
        D::Q2K => kq::BlockQ2K::to_float(as_blocks(w), dst),
        D::Q3K => kq::BlockQ3K::to_float(as_blocks(w), dst),
        D::Q4K => kq::BlockQ4K::to_float(as_blocks(w), dst),
        D::Q5K => kq::BlockQ5K::to_float(as_blocks(w), dst),
        D::Q6K => kq::BlockQ6K::to_float(as_blocks(w), dst),
        D::Q8K => kq::BlockQ8K::to_float(as_blocks(w), dst),
        _ => dst.fill(0.0),
    }
}
