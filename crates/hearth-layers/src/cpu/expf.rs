//! `e^x` in f32 with llama.cpp's CPU arithmetic (its AVX-512 `ggml_v_expf`: a range reduction by
//! `2^n`, a degree-5 polynomial, then `scalef`), and the SwiGLU built on it.
//!
//! llama.cpp's softmax and SiLU use this approximation (about 1.5 ulp from the true value), not
//! libm's. The quantized linear layers round their inputs to 8 bits, so a last-bit difference in an
//! activation can flip a rounding and move a log-probability by tenths of a nat (issue 2); computing
//! the same bits keeps hearth's quantized path next to llama.cpp's. The scalar function is the
//! reference; the 8-lane AVX2 path returns the same bits for every input.

use crate::Result;
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

const SHIFT: f32 = 12_582_912.0; // 0x1.8p23: adding it rounds to an integer
const LOG2E: f32 = f32::from_bits(0x3fb8_aa3b); // 0x1.715476p+0
const LN2_HI: f32 = f32::from_bits(0x3f31_7200); // 0x1.62e4p-1
const LN2_LO: f32 = f32::from_bits(0x35bf_be8e); // 0x1.7f7d1cp-20
const C5: f32 = f32::from_bits(0x3c07_2010); // 0x1.0e4020p-7
const C4: f32 = f32::from_bits(0x3d2b_9f17); // 0x1.573e2ep-5
const C3: f32 = f32::from_bits(0x3e2a_af33); // 0x1.555e66p-3
const C2: f32 = f32::from_bits(0x3eff_fedb); // 0x1.fffdb6p-2
const C1: f32 = f32::from_bits(0x3f7f_fff6); // 0x1.ffffecp-1

/// `e^x`, bit for bit as llama.cpp's AVX-512 `ggml_v_expf`.
pub fn expf(x: f32) -> f32 {
    let z = x.mul_add(LOG2E, SHIFT);
    let n = z - SHIFT;
    let b = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let u = b * b;
    let j = C5.mul_add(b, C4).mul_add(u, C3.mul_add(b, C2)).mul_add(u, C1.mul_add(b, 1.0));
    scalef(j, n)
}

/// `j · 2^n` rounded once (`n` is a whole number with |n| ≤ 192).
fn scalef(j: f32, n: f32) -> f32 {
    (f64::from(j) * 2f64.powi(n as i32)) as f32
}

/// `silu(x) · g` as llama.cpp's `ggml_vec_swiglu_f32` computes it on AVX-512: whole groups of 16
/// with [`expf`], the rest of the row with libm's `expf`.
pub fn swiglu_row(x: &[f32], g: &[f32], y: &mut [f32]) {
    let whole = x.len() / 16 * 16;
    exp_neg_into(&x[..whole], &mut y[..whole]);
    for i in 0..whole {
        y[i] = x[i] / (1.0 + y[i]) * g[i];
    }
    for i in whole..x.len() {
        y[i] = x[i] / (1.0 + (-x[i]).exp()) * g[i];
    }
}

/// `out[i] = expf(-x[i])`.
fn exp_neg_into(x: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::quant::isa::active() >= crate::quant::isa::Isa::Avx2 {
        // SAFETY: AVX2 and FMA are present (checked by `active`).
        return unsafe { x86::exp_map(x.as_ptr(), out.as_mut_ptr(), x.len().min(out.len()), true) };
    }
    for (o, &v) in out.iter_mut().zip(x) {
        *o = expf(0.0 - v);
    }
}

/// `expf` of every element of `v`, in place.
pub fn exp_in_place(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::quant::isa::active() >= crate::quant::isa::Isa::Avx2 {
        let n = v.len();
        let p = v.as_mut_ptr();
        // SAFETY: AVX2 and FMA are present (checked by `active`); input and output are the same
        // `n` floats, each group read before it is written.
        return unsafe { x86::exp_map(p, p, n, false) };
    }
    for x in v.iter_mut() {
        *x = expf(*x);
    }
}

/// `silu(gate) · up` of two same-shaped f32 tensors, row by row over the last dimension, in
/// llama.cpp's arithmetic on the CPU (in f32); one fused kernel on CUDA, candle's ops elsewhere (both
/// in `out`, the dtype the next matmul reads).
pub fn swiglu(gate: &Tensor, up: &Tensor, out: DType) -> Result<Tensor> {
    let on_host = matches!(gate.device(), Device::Cpu) && gate.dtype() == DType::F32 && up.dtype() == DType::F32;
    if !on_host || gate.dims() != up.dims() || gate.rank() == 0 {
        if let Some(y) = crate::device::silu_mul(gate, up, out)? {
            return Ok(y);
        }
        return Ok((candle_nn::ops::silu(gate)? * up)?.to_dtype(out)?);
    }
    let width = gate.dims()[gate.rank() - 1].max(1);
    let x = gate.flatten_all()?.to_vec1::<f32>()?;
    let g = up.flatten_all()?.to_vec1::<f32>()?;
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(width).zip(x.par_chunks(width).zip(g.par_chunks(width))).for_each(|(y, (x, g))| swiglu_row(x, g, y));
    Ok(Tensor::from_vec(y, gate.dims(), gate.device())?)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    /// `out[i] = expf(±x[i])` for `i < n` (negated first when `negate`), eight lanes at a time;
    /// `x` and `out` may be the same memory.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_map(x: *const f32, out: *mut f32, n: usize, negate: bool) {
        let whole = n / 8 * 8;
        for i in (0..whole).step_by(8) {
            let mut v = _mm256_loadu_ps(x.add(i));
            if negate {
                v = _mm256_sub_ps(_mm256_setzero_ps(), v);
            }
            exp8(v, out.add(i));
        }
        for i in whole..n {
            let v = *x.add(i);
            *out.add(i) = expf(if negate { 0.0 - v } else { v });
        }
    }

    /// Eight [`expf`]s: the polynomial in lanes; the final scaling as one multiply by `2^n` where
    /// every lane's `n` makes that exact (the usual case), else lane by lane.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp8(x: __m256, out: *mut f32) {
        let shift = _mm256_set1_ps(SHIFT);
        let z = _mm256_fmadd_ps(x, _mm256_set1_ps(LOG2E), shift);
        let n = _mm256_sub_ps(z, shift);
        let b = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x));
        let u = _mm256_mul_ps(b, b);
        let p = _mm256_fmadd_ps(_mm256_set1_ps(C5), b, _mm256_set1_ps(C4));
        let q = _mm256_fmadd_ps(_mm256_set1_ps(C3), b, _mm256_set1_ps(C2));
        let r = _mm256_fmadd_ps(_mm256_set1_ps(C1), b, _mm256_set1_ps(1.0));
        let j = _mm256_fmadd_ps(_mm256_fmadd_ps(p, u, q), u, r);
        let in_range =
            _mm256_and_ps(_mm256_cmp_ps(n, _mm256_set1_ps(-126.0), _CMP_GE_OQ), _mm256_cmp_ps(n, _mm256_set1_ps(127.0), _CMP_LE_OQ));
        if _mm256_movemask_ps(in_range) == 0xff {
            let bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
            _mm256_storeu_ps(out, _mm256_mul_ps(j, _mm256_castsi256_ps(bits)));
            return;
        }
        let (mut jl, mut nl) = ([0f32; 8], [0f32; 8]);
        _mm256_storeu_ps(jl.as_mut_ptr(), j);
        _mm256_storeu_ps(nl.as_mut_ptr(), n);
        for l in 0..8 {
            let v = if nl[l].abs() > 192.0 {
                if nl[l] <= 0.0 {
                    0.0
                } else {
                    f32::INFINITY
                }
            } else {
                scalef(jl[l], nl[l])
            };
            *out.add(l) = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expf_is_within_two_ulp_of_libm() {
        for i in -20_000..20_000 {
            let x = i as f32 * 0.0044;
            let (ours, libm) = (expf(x), x.exp());
            let ulp = (ours.to_bits() as i64 - libm.to_bits() as i64).abs();
            assert!(ulp <= 2, "expf({x}) = {ours}, libm {libm}");
        }
        assert_eq!(expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf(200.0), f32::INFINITY);
        assert!(expf(f32::NAN).is_nan());
    }

    #[test]
    fn vector_exp_equals_scalar_on_every_range() {
        // Includes the subnormal and overflow edges, where the vector path goes lane by lane.
        let mut v: Vec<f32> = (-30_000..30_000).map(|i| i as f32 * 0.0041).collect();
        v.extend([-104.0, -103.5, -88.0, 88.5, 89.0, -150.0, 0.0, -0.0, f32::NEG_INFINITY, f32::INFINITY]);
        let want: Vec<u32> = v.iter().map(|&x| expf(x).to_bits()).collect();
        let mut got = v.clone();
        exp_in_place(&mut got);
        let got: Vec<u32> = got.iter().map(|x| x.to_bits()).collect();
        assert_eq!(got, want);
    }
}
