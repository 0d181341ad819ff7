//! GELU with the tanh approximation (Gemma's activation) on f32, as llama.cpp's CPU computes it.
//!
//! llama.cpp (`GGML_GELU_FP16`) rounds an input in (−10, 10) to f16 and reads the f16-rounded result
//! of the formula from a 65,536-entry table; at or below −10 it gives 0, at or above 10 the input.
//! That costs about 2⁻¹¹ of relative precision against the exact formula, far below the quantized
//! weights' error, and the quantized layer after the activation rounds its input to 8 bits, where a
//! last-bit difference moves log-probabilities by tenths of a nat (issue 2). So hearth computes the
//! same values: same table, same bounds. Each element's result depends only on its own value.

use crate::Result;
use candle_core::{DType, Device, Tensor};
use half::f16;
use rayon::prelude::*;
use std::sync::OnceLock;

/// Elements per parallel task.
const CHUNK: usize = 16 * 1024;

/// `gelu` (tanh approximation) of `x`: llama.cpp's table on the CPU for f32 tensors, candle's op
/// elsewhere.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    if !matches!(x.device(), Device::Cpu) || x.dtype() != DType::F32 {
        return Ok(x.gelu()?);
    }
    let mut v = x.flatten_all()?.to_vec1::<f32>()?;
    v.par_chunks_mut(CHUNK).for_each(gelu_in_place);
    Ok(Tensor::from_vec(v, x.dims(), x.device())?)
}

/// The formula, in f32 with libm's `tanh`, in llama.cpp's order of operations (GCC fuses its
/// `1 + a·x·x` into one FMA).
pub fn gelu_scalar(x: f32) -> f32 {
    const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044715;
    0.5 * x * (1.0 + (SQRT_TWO_OVER_PI * x * (COEF_A * x).mul_add(x, 1.0)).tanh())
}

/// The table: entry `b` is the formula at the f16 with bits `b`, rounded to f16, as f32.
fn table() -> &'static [f32] {
    static TABLE: OnceLock<Box<[f32]>> = OnceLock::new();
    TABLE.get_or_init(|| (0..=u16::MAX).map(|b| f16::from_f32(gelu_scalar(f16::from_bits(b).to_f32())).to_f32()).collect())
}

/// One element, given its f16 bits (computed by the caller, scalar or vectorised).
#[inline]
fn gelu_at(x: f32, bits: u16, table: &[f32]) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        table[bits as usize]
    }
}

/// GELU of one element (the reference for [`gelu_in_place`]).
pub fn gelu_f16_table(x: f32) -> f32 {
    gelu_at(x, f16::from_f32(x).to_bits(), table())
}

/// GELU of every element of `v`, in place.
pub fn gelu_in_place(v: &mut [f32]) {
    let table = table();
    #[cfg(target_arch = "x86_64")]
    if crate::quant::isa::active() >= crate::quant::isa::Isa::Avx2 {
        let whole = v.len() / 8 * 8;
        let (head, tail) = v.split_at_mut(whole);
        for group in head.chunks_exact_mut(8) {
            // SAFETY: the CPU has AVX2 and F16C (every AVX2 path does; checked by `active`).
            let bits = unsafe { x86::f16_bits8(group) };
            for (x, b) in group.iter_mut().zip(bits) {
                *x = gelu_at(*x, b, table);
            }
        }
        for x in tail.iter_mut() {
            *x = gelu_f16_table(*x);
        }
        return;
    }
    for x in v.iter_mut() {
        *x = gelu_at(*x, f16::from_f32(*x).to_bits(), table);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// The f16 bits (round to nearest even, as `half` and llama.cpp round) of 8 values.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn f16_bits8(v: &[f32]) -> [u16; 8] {
        let h = _mm256_cvtps_ph(_mm256_loadu_ps(v.as_ptr()), _MM_FROUND_TO_NEAREST_INT);
        let mut out = [0u16; 8];
        _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, h);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The vector path gives the scalar reference's bits, whatever the length; both stay within
        /// f16 precision of the formula.
        #[test]
        fn gelu_matches_its_reference(xs in proptest::collection::vec(prop_oneof![-12f32..12.0, -100f32..100.0, Just(0.0), Just(-10.0), Just(10.0)], 0..40)) {
            let mut v = xs.clone();
            gelu_in_place(&mut v);
            for (x, y) in xs.iter().zip(&v) {
                prop_assert_eq!(y.to_bits(), gelu_f16_table(*x).to_bits(), "gelu({})", x);
                let exact = gelu_scalar(*x);
                prop_assert!((y - exact).abs() <= 2e-3 * exact.abs().max(x.abs()) + 1e-6, "gelu({x}) = {y}, formula {exact}");
            }
        }

        /// An element's result does not depend on where it sits (batch invariance).
        #[test]
        fn gelu_is_elementwise(xs in proptest::collection::vec(-10f32..10.0, 1..30), cut in 0usize..30) {
            let cut = cut.min(xs.len());
            let mut whole = xs.clone();
            gelu_in_place(&mut whole);
            let (mut a, mut b) = (xs[..cut].to_vec(), xs[cut..].to_vec());
            gelu_in_place(&mut a);
            gelu_in_place(&mut b);
            a.extend(b);
            prop_assert_eq!(whole.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), a.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn the_bounds_follow_llama_cpp() {
        assert_eq!(gelu_f16_table(-10.0), 0.0);
        assert_eq!(gelu_f16_table(-50.0), 0.0);
        assert_eq!(gelu_f16_table(10.0), 10.0);
        assert_eq!(gelu_f16_table(37.5), 37.5);
        assert_eq!(gelu_f16_table(0.0), 0.0);
    }
}
