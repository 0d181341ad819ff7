//! arm64 NEON dot products of weight rows with quantized activations: the integer part of each block
//! in vector registers (signed 8-bit products widened to 16 and pairwise-added into 32 bits, which
//! every ARMv8 core has), the float part as the scalar path does it.
//!
//! Legacy formats give the scalar path's bits exactly (the same per-block f32 expression, summed in
//! block order); the k-quants accumulate each super-block's exact integer sum with one fused
//! multiply-add, as llama.cpp's single-row x86 Q4_K kernel does. Every (weight row, activation row)
//! pair is computed on its own, so batching never changes a result.

use super::activations::{Q8Block, Q8KBlock};
use super::dot::k4_scales;
use super::OutPtr;
use candle_core::quantized::GgmlDType;
use half::f16;
use std::arch::aarch64::*;

/// Whether this module has a kernel for `dtype`.
pub(crate) fn has_kernel(dtype: GgmlDType) -> bool {
    use GgmlDType as D;
    matches!(dtype, D::Q4_0 | D::Q4_1 | D::Q5_0 | D::Q5_1 | D::Q8_0 | D::Q4K | D::Q6K)
}

/// `out(r, j)` = weight row `r` of `w` (rows of `rb` bytes) · activation row `j` of `m`.
pub(crate) fn legacy_rows_all(dtype: GgmlDType, w: &[u8], rb: usize, acts: &[Q8Block], m: usize, out: OutPtr) {
    let (rows, nb) = (w.len() / rb, acts.len() / m);
    assert!(out.holds(rows, m) && nb * dtype.type_size() <= rb, "legacy rows: output or row size");
    for r in 0..rows {
        let row = &w[r * rb..(r + 1) * rb];
        for j in 0..m {
            let a = &acts[j * nb..(j + 1) * nb];
            // SAFETY: NEON is part of every aarch64 target; `row` holds `nb` blocks of `dtype`.
            let v = unsafe { legacy_row(dtype, row, a) };
            // SAFETY: r < rows and j < m, checked against the output above.
            unsafe { out.put(r, j, v) };
        }
    }
}

/// As [`legacy_rows_all`] for Q4_K and Q6_K with Q8_K activations.
pub(crate) fn k_rows_all(dtype: GgmlDType, w: &[u8], rb: usize, acts: &[Q8KBlock], m: usize, out: OutPtr) {
    let (rows, nb) = (w.len() / rb, acts.len() / m);
    assert!(out.holds(rows, m) && nb * dtype.type_size() <= rb, "k-quant rows: output or row size");
    for r in 0..rows {
        let row = &w[r * rb..(r + 1) * rb];
        for j in 0..m {
            let a = &acts[j * nb..(j + 1) * nb];
            // SAFETY: as in `legacy_rows_all`.
            let v = unsafe { if dtype == GgmlDType::Q4K { q4k_row(row, a) } else { q6k_row(row, a) } };
            // SAFETY: r < rows and j < m.
            unsafe { out.put(r, j, v) };
        }
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// `acc` + Σ w·a over 16 signed bytes, four lanes of i32.
#[inline(always)]
unsafe fn dot16(acc: int32x4_t, w: int8x16_t, a: int8x16_t) -> int32x4_t {
    let lo = vmull_s8(vget_low_s8(w), vget_low_s8(a));
    vpadalq_s16(vpadalq_s16(acc, lo), vmull_high_s8(w, a))
}

/// Σ w·a over a 32-value block, exact.
#[inline(always)]
unsafe fn dot32(w: (int8x16_t, int8x16_t), a: &[i8]) -> i32 {
    let acc = dot16(vdupq_n_s32(0), w.0, vld1q_s8(a.as_ptr()));
    vaddvq_s32(dot16(acc, w.1, vld1q_s8(a.as_ptr().add(16))))
}

/// 16 bytes of nibbles: values 0..16 (low nibbles) and 16..32 (high nibbles).
#[inline(always)]
unsafe fn nibbles(p: &[u8]) -> (uint8x16_t, uint8x16_t) {
    let v = vld1q_u8(p.as_ptr());
    (vandq_u8(v, vdupq_n_u8(0x0f)), vshrq_n_u8::<4>(v))
}

/// The 32 fifth bits in `qh` as 0x10 per value, for values 0..16 and 16..32.
#[inline(always)]
unsafe fn fifth_bits(qh: &[u8]) -> (uint8x16_t, uint8x16_t) {
    const BIT: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let bit = vld1q_u8(BIT.as_ptr());
    let spread = |i: usize| vcombine_u8(vdup_n_u8(qh[i]), vdup_n_u8(qh[i + 1]));
    let sixteen = vdupq_n_u8(0x10);
    (vandq_u8(vtstq_u8(spread(0), bit), sixteen), vandq_u8(vtstq_u8(spread(2), bit), sixteen))
}

/// A legacy block's 32 values as signed bytes, `offset` taken off.
#[inline(always)]
unsafe fn signed(v: (uint8x16_t, uint8x16_t), offset: i8) -> (int8x16_t, int8x16_t) {
    let o = vdupq_n_s8(offset);
    (vsubq_s8(vreinterpretq_s8_u8(v.0), o), vsubq_s8(vreinterpretq_s8_u8(v.1), o))
}

/// One weight row · one activation row, legacy formats: each block's value is the scalar path's
/// expression (`dot.rs`), summed in block order.
#[target_feature(enable = "neon")]
unsafe fn legacy_row(dtype: GgmlDType, row: &[u8], acts: &[Q8Block]) -> f32 {
    let bs = dtype.type_size();
    let blocks = row.chunks_exact(bs).zip(acts);
    let or = |a: (uint8x16_t, uint8x16_t), b: (uint8x16_t, uint8x16_t)| (vorrq_u8(a.0, b.0), vorrq_u8(a.1, b.1));
    match dtype {
        GgmlDType::Q4_0 => blocks.map(|(b, a)| dot32(signed(nibbles(&b[2..]), 8), &a.qs) as f32 * (f16_at(b, 0) * a.d)).sum(),
        GgmlDType::Q4_1 => blocks
            .map(|(b, a)| dot32(signed(nibbles(&b[4..]), 0), &a.qs) as f32 * f16_at(b, 0) * a.d + f16_at(b, 2) * a.sum_scaled)
            .sum(),
        GgmlDType::Q5_0 => blocks
            .map(|(b, a)| dot32(signed(or(nibbles(&b[6..]), fifth_bits(&b[2..])), 16), &a.qs) as f32 * (f16_at(b, 0) * a.d))
            .sum(),
        GgmlDType::Q5_1 => blocks
            .map(|(b, a)| {
                let v = signed(or(nibbles(&b[8..]), fifth_bits(&b[4..])), 0);
                dot32(v, &a.qs) as f32 * f16_at(b, 0) * a.d + f16_at(b, 2) * a.sum_scaled
            })
            .sum(),
        _ => blocks
            .map(|(b, a)| {
                let v = (vld1q_s8(b[2..].as_ptr() as *const i8), vld1q_s8(b[18..].as_ptr() as *const i8));
                dot32(v, &a.qs) as f32 * (f16_at(b, 0) * a.d)
            })
            .sum(),
    }
}

/// Q4_K: per super-block the exact `Σ scale·dot` and `Σ min·bsum`, each accumulated with one FMA by
/// `d·d8` and `dmin·d8`.
#[target_feature(enable = "neon")]
unsafe fn q4k_row(row: &[u8], acts: &[Q8KBlock]) -> f32 {
    let (mut acc, mut mins_acc) = (0f32, 0f32);
    for (b, a) in row.chunks_exact(144).zip(acts) {
        let (scales, mins) = k4_scales(&b[4..16]);
        let mut sumi = 0i32;
        for j in 0..4 {
            let (lo, hi) = (vld1q_u8(b[16 + 32 * j..].as_ptr()), vld1q_u8(b[32 + 32 * j..].as_ptr()));
            let m4 = vdupq_n_u8(0x0f);
            let low = (vreinterpretq_s8_u8(vandq_u8(lo, m4)), vreinterpretq_s8_u8(vandq_u8(hi, m4)));
            let high = (vreinterpretq_s8_u8(vshrq_n_u8::<4>(lo)), vreinterpretq_s8_u8(vshrq_n_u8::<4>(hi)));
            sumi += scales[2 * j] as i32 * dot32(low, &a.qs[64 * j..]) + scales[2 * j + 1] as i32 * dot32(high, &a.qs[64 * j + 32..]);
        }
        let msum: i32 = (0..8).map(|s| mins[s] as i32 * (a.bsums[2 * s] as i32 + a.bsums[2 * s + 1] as i32)).sum();
        acc = (sumi as f32).mul_add(f16_at(b, 0) * a.d, acc);
        mins_acc = (msum as f32).mul_add(f16_at(b, 2) * a.d, mins_acc);
    }
    acc - mins_acc
}

/// Q6_K: per super-block the exact `Σ scale·(q − 32)·a` over its sixteen sub-blocks of 16, one FMA
/// by `d·d8`.
#[target_feature(enable = "neon")]
unsafe fn q6k_row(row: &[u8], acts: &[Q8KBlock]) -> f32 {
    let mut acc = 0f32;
    let (m4, m3, off) = (vdupq_n_u8(0x0f), vdupq_n_u8(0x03), vdupq_n_s8(32));
    for (b, a) in row.chunks_exact(210).zip(acts) {
        let sc = &b[192..208];
        let mut sumi = 0i32;
        for half in 0..2 {
            let (ql, qh) = (&b[64 * half..], &b[128 + 32 * half..]);
            for part in 0..2 {
                // Values l = 16·part .. +16 of each of this half's four groups of 32.
                let l0 = vld1q_u8(ql[16 * part..].as_ptr());
                let l1 = vld1q_u8(ql[32 + 16 * part..].as_ptr());
                let h = vld1q_u8(qh[16 * part..].as_ptr());
                let groups = [
                    vorrq_u8(vandq_u8(l0, m4), vshlq_n_u8::<4>(vandq_u8(h, m3))),
                    vorrq_u8(vandq_u8(l1, m4), vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<2>(h), m3))),
                    vorrq_u8(vshrq_n_u8::<4>(l0), vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<4>(h), m3))),
                    vorrq_u8(vshrq_n_u8::<4>(l1), vshlq_n_u8::<4>(vshrq_n_u8::<6>(h))),
                ];
                for (g, q) in groups.iter().enumerate() {
                    // Elements 128·half + 32·g + 16·part .. +16: sub-block 8·half + 2·g + part.
                    let e = 128 * half + 32 * g + 16 * part;
                    let w = vsubq_s8(vreinterpretq_s8_u8(*q), off);
                    let d = vaddvq_s32(dot16(vdupq_n_s32(0), w, vld1q_s8(a.qs[e..].as_ptr())));
                    sumi += (sc[e / 16] as i8) as i32 * d;
                }
            }
        }
        acc = (sumi as f32).mul_add(f16_at(b, 208) * a.d, acc);
    }
    acc
}
