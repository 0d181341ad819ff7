//! f32 vector primitives for the CPU path (dot, `y += a·x`), with an AVX2+FMA version chosen at run time.

use crate::quant::isa::{active, Isa};

/// `Σ a[i]·b[i]` over the shorter length.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    #[cfg(target_arch = "x86_64")]
    if active() >= Isa::Avx2 && n >= 8 {
        // SAFETY: the CPU has AVX2 and FMA (checked by `active`), and both slices hold n values.
        return unsafe { x86::dot(&a[..n], &b[..n]) };
    }
    let mut acc = [0f32; 8];
    let (ca, cb) = (a[..n].chunks_exact(8), b[..n].chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y[i] += a · x[i]`.
#[inline]
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    let n = y.len().min(x.len());
    #[cfg(target_arch = "x86_64")]
    if active() >= Isa::Avx2 && n >= 8 {
        // SAFETY: as in `dot`.
        return unsafe { x86::axpy(&mut y[..n], a, &x[..n]) };
    }
    for (yi, xi) in y[..n].iter_mut().zip(&x[..n]) {
        *yi += a * xi;
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i)), _mm256_loadu_ps(b.as_ptr().add(i)), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i + 8)), _mm256_loadu_ps(b.as_ptr().add(i + 8)), s1);
            i += 16;
        }
        while i + 8 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i)), _mm256_loadu_ps(b.as_ptr().add(i)), s0);
            i += 8;
        }
        let s = _mm256_add_ps(s0, s1);
        let r = _mm_add_ps(_mm256_extractf128_ps(s, 1), _mm256_castps256_ps128(s));
        let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        let r = _mm_add_ss(r, _mm_movehdup_ps(r));
        let mut total = _mm_cvtss_f32(r);
        while i < n {
            total += a[i] * b[i];
            i += 1;
        }
        total
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
        let n = y.len();
        let av = _mm256_set1_ps(a);
        let mut i = 0;
        while i + 8 <= n {
            let p = y.as_mut_ptr().add(i);
            _mm256_storeu_ps(p, _mm256_fmadd_ps(av, _mm256_loadu_ps(x.as_ptr().add(i)), _mm256_loadu_ps(p)));
            i += 8;
        }
        while i < n {
            y[i] += a * x[i];
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn dot_and_axpy_match_plain_loops(xs in proptest::collection::vec(-10f32..10.0, 0..70), a in -3f32..3.0) {
            let ys: Vec<f32> = xs.iter().map(|v| v * 0.5 - 1.0).collect();
            let exact: f64 = xs.iter().zip(&ys).map(|(x, y)| *x as f64 * *y as f64).sum();
            let mag: f64 = xs.iter().zip(&ys).map(|(x, y)| (*x as f64 * *y as f64).abs()).sum();
            prop_assert!((dot(&xs, &ys) as f64 - exact).abs() <= 1e-5 * mag + 1e-6);
            let mut out = ys.clone();
            axpy(&mut out, a, &xs);
            for i in 0..xs.len() {
                prop_assert!((out[i] - (ys[i] + a * xs[i])).abs() <= 1e-5 * (ys[i].abs() + (a * xs[i]).abs()) + 1e-6);
            }
        }
    }
}
