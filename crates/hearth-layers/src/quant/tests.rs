//! Each block format's matmul against an f64 reference on the dequantized weights: the only error
//! allowed is what 8-bit activation quantization can cause (half a quantum per element).

use super::QuantMatrix;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use proptest::prelude::*;
use std::sync::Arc;

const TYPES: [GgmlDType; 10] = [
    GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q5_1, GgmlDType::Q8_0,
    GgmlDType::Q2K, GgmlDType::Q3K, GgmlDType::Q4K, GgmlDType::Q5K, GgmlDType::Q6K,
];

fn matrix(dtype: GgmlDType, w: &[f32], rows: usize, cols: usize) -> QuantMatrix {
    let t = Tensor::from_slice(w, (rows, cols), &Device::Cpu).expect("tensor");
    let q = QTensor::quantize(&t, dtype).expect("quantize");
    let bytes = q.data().expect("bytes").to_vec();
    QuantMatrix::new(dtype, rows, cols, Arc::new(bytes)).expect("matrix")
}

/// Largest error 8-bit activation quantization can add to row `r` of `w · x` (plus float slack).
fn bound(wd: &[f32], x: &[f32], r: usize, cols: usize, block: usize) -> f64 {
    let mut b = 0.0;
    for (wb, xb) in wd[r * cols..(r + 1) * cols].chunks(block).zip(x.chunks(block)) {
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
        b += wb.iter().map(|v| v.abs() as f64).sum::<f64>() * amax / 127.0 * 0.51;
    }
    b * 1.01 + 1e-3
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn quantized_matmul_equals_dequantized_reference(
        seed in any::<u64>(), rows in 1usize..20, m in 1usize..4, blocks in 1usize..3,
    ) {
        let cols = 256 * blocks; // a multiple of every block size, including k-quants' 256
        let mut state = seed | 1;
        let mut next = || { state ^= state << 13; state ^= state >> 7; state ^= state << 17; (state % 2001) as f32 / 1000.0 - 1.0 };
        let w: Vec<f32> = (0..rows * cols).map(|_| next()).collect();
        let x: Vec<f32> = (0..m * cols).map(|_| next() * 3.0).collect();
        for dtype in TYPES {
            let q = matrix(dtype, &w, rows, cols);
            let wd = q.to_f32(&Device::Cpu).expect("dequantize").flatten_all().expect("flat").to_vec1::<f32>().expect("vec");
            let y = q.matmul(&x, m);
            let act_block = if dtype.block_size() == 256 { 256 } else { 32 };
            for i in 0..m {
                let xi = &x[i * cols..(i + 1) * cols];
                for r in 0..rows {
                    let exact: f64 = (0..cols).map(|c| wd[r * cols + c] as f64 * xi[c] as f64).sum();
                    let err = (y[i * rows + r] as f64 - exact).abs();
                    prop_assert!(err <= bound(&wd, xi, r, cols, act_block), "{dtype:?} row {r} of input {i}: {} vs {exact}", y[i * rows + r]);
                }
            }
        }
    }
}

#[test]
fn embedding_rows_are_the_dequantized_rows() {
    let (rows, cols) = (5, 64);
    let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
    let q = matrix(GgmlDType::Q8_0, &w, rows, cols);
    let all = q.to_f32(&Device::Cpu).expect("all").to_vec2::<f32>().expect("rows");
    let picked = q.rows_f32(&[3, 0], &Device::Cpu).expect("rows").to_vec2::<f32>().expect("vec");
    assert_eq!(picked, vec![all[3].clone(), all[0].clone()]);
    assert!(q.rows_f32(&[5], &Device::Cpu).is_err(), "a token past the vocabulary must be an error");
}

#[test]
fn a_short_or_misshapen_buffer_is_rejected() {
    assert!(QuantMatrix::new(GgmlDType::Q8_0, 2, 32, Arc::new(vec![0u8; 34])).is_err());
    assert!(QuantMatrix::new(GgmlDType::Q4K, 1, 32, Arc::new(vec![0u8; 144])).is_err());
}

/// One random weight matrix per SIMD format (`rows` × `blocks` blocks; k-quants take a third as many
/// of their larger blocks) and `m` activation rows scaled by `scale`.
struct Case {
    dtype: GgmlDType,
    q: QuantMatrix,
    x: Vec<f32>,
    cols: usize,
}

fn random_cases(seed: u64, rows: usize, m: usize, blocks: usize, scale: f32) -> Vec<Case> {
    let mut state = seed | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 2001) as f32 / 1000.0 - 1.0
    };
    SIMD_TYPES
        .iter()
        .map(|&(dtype, block)| {
            let cols = block * if block == 256 { blocks.div_ceil(3) } else { blocks };
            let w: Vec<f32> = (0..rows * cols).map(|_| next()).collect();
            let x: Vec<f32> = (0..m * cols).map(|_| next() * scale).collect();
            Case { dtype, q: matrix(dtype, &w, rows, cols), x, cols }
        })
        .collect()
}

/// Formats with SIMD kernels, and the block count granularity their rows come in.
const SIMD_TYPES: [(GgmlDType, usize); 7] = [
    (GgmlDType::Q4_0, 32), (GgmlDType::Q4_1, 32), (GgmlDType::Q5_0, 32), (GgmlDType::Q5_1, 32),
    (GgmlDType::Q8_0, 32), (GgmlDType::Q4K, 256), (GgmlDType::Q6K, 256),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Every instruction-set path this CPU has gives the scalar path's result, up to float summation
    /// order, on ragged shapes: odd block counts and activation row counts that leave partial tiles.
    #[test]
    fn simd_paths_equal_the_scalar_path(
        seed in any::<u64>(), rows in 1usize..13, m in 1usize..10, blocks in 1usize..8, scale in 0.01f32..100.0,
    ) {
        for Case { dtype, q, x, cols } in random_cases(seed, rows, m, blocks, scale) {
            let wd = q.to_f32(&Device::Cpu).expect("dequantize").flatten_all().expect("flat").to_vec1::<f32>().expect("vec");
            let scalar = q.matmul_with(super::Isa::Scalar, &x, m);
            for isa in super::Isa::available() {
                let y = q.matmul_with(isa, &x, m);
                for i in 0..m {
                    for r in 0..rows {
                        let magnitude: f64 = (0..cols).map(|c| (wd[r * cols + c] as f64 * x[i * cols + c] as f64).abs()).sum();
                        let (a, b) = (y[i * rows + r] as f64, scalar[i * rows + r] as f64);
                        prop_assert!((a - b).abs() <= 2e-5 * magnitude + 1e-6, "{dtype:?} on {}: row {r} input {i}: {a} vs scalar {b}", isa.name());
                        // NEON keeps the scalar path's float steps for the 32-value formats.
                        if isa == super::Isa::Neon && !q.uses_q8k() {
                            prop_assert_eq!(a.to_bits(), b.to_bits(), "{:?} on neon: row {} input {}", dtype, r, i);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn this_cpu_reports_its_simd_path() {
    // The CI and dev machines are x86-64 with AVX2; a scalar-only result there would mean detection broke.
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        assert!(super::Isa::detect() >= super::Isa::Avx2);
    }
    #[cfg(target_arch = "aarch64")]
    assert_eq!(super::Isa::detect(), super::Isa::Neon);
    assert_eq!(super::Isa::available()[0], super::Isa::Scalar);
    assert!(super::Isa::available().iter().all(|i| i.runs_here()));
}

proptest! {
    /// The vector quantizer is the scalar one, bit for bit (including ties, zeros and f16 rounding).
    #[test]
    fn simd_activation_quantizer_equals_scalar(xs in proptest::collection::vec(prop_oneof![-50f32..50.0, Just(0.0), Just(0.5), Just(-2.5)], 32)) {
        #[cfg(target_arch = "x86_64")]
        if super::Isa::detect() >= super::Isa::Avx2 {
            let a = super::activations::q8_block_scalar(&xs);
            // SAFETY: AVX2/FMA/F16C present (checked above); 32 values.
            let b = unsafe { super::x86::q8_block(&xs) };
            prop_assert_eq!(a.qs, b.qs);
            prop_assert_eq!(a.d.to_bits(), b.d.to_bits());
            prop_assert_eq!(a.sum_scaled.to_bits(), b.sum_scaled.to_bits());
        }
    }
}

proptest! {
    /// The vector Q8_K quantizer is the scalar one, bit for bit: ties, zeros, a repeated largest
    /// magnitude of either sign (the first one sets the scale's sign), all-zero blocks.
    #[test]
    fn simd_q8k_quantizer_equals_scalar(
        xs in proptest::collection::vec(prop_oneof![-50f32..50.0, Just(0.0), Just(0.5), Just(-2.5), Just(50.0), Just(-50.0)], 256),
        zero in any::<bool>(),
    ) {
        let xs = if zero { vec![0f32; 256] } else { xs };
        #[cfg(target_arch = "x86_64")]
        if super::Isa::detect() >= super::Isa::Avx2 {
            let a = super::activations::q8k_block_scalar(&xs);
            // SAFETY: AVX2 present (checked above); 256 values.
            let b = unsafe { super::activations::x86::q8k_block(&xs) };
            prop_assert_eq!(a.qs, b.qs);
            prop_assert_eq!(a.bsums, b.bsums);
            prop_assert_eq!(a.d.to_bits(), b.d.to_bits());
        }
    }
}

proptest! {
    #[test]
    fn nearest_int_rounds_half_to_even_like_the_float_op(x in -300f32..300.0, half in any::<bool>()) {
        let x = if half { x.trunc() + 0.5 } else { x };
        prop_assert_eq!(super::activations::nearest_int(x), x.round_ties_even() as i32);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// The k-quant kernels' batched arithmetic (llama.cpp's Q4_K groups of four, Q6_K tiles) stays
    /// within float summation order of the scalar path, and a row's result depends only on its own
    /// batching flags, not on its neighbours.
    #[test]
    fn batched_k_quant_rows_equal_the_scalar_path_and_each_row_alone(
        seed in any::<u64>(), rows in 1usize..13, m in 1usize..20, blocks in 1usize..4, scale in 0.01f32..100.0,
        flags in prop_oneof![any::<u64>(), Just(u64::MAX)],
    ) {
        // All flags set half the time, so runs of 8+ batched rows (the eight-row kernels) come up.
        let batching: Vec<super::RowBatch> = (0..m)
            .map(|j| super::RowBatch { in_group_of_four: flags >> j & 1 == 1, in_batch_of_eight: flags >> (j + 32) & 1 == 1 })
            .collect();
        for Case { dtype, q, x, cols } in random_cases(seed, rows, m, blocks, scale).into_iter().filter(|c| c.dtype == GgmlDType::Q4K || c.dtype == GgmlDType::Q6K) {
            let wd = q.to_f32(&Device::Cpu).expect("dequantize").flatten_all().expect("flat").to_vec1::<f32>().expect("vec");
            let scalar = q.matmul_with(super::Isa::Scalar, &x, m);
            for isa in super::Isa::available() {
                let all = q.matmul_batched_with(isa, &x, m, &batching);
                for i in 0..m {
                    let one = q.matmul_batched_with(isa, &x[i * cols..(i + 1) * cols], 1, &batching[i..i + 1]);
                    for r in 0..rows {
                        let magnitude: f64 = (0..cols).map(|c| (wd[r * cols + c] as f64 * x[i * cols + c] as f64).abs()).sum();
                        let (a, b) = (all[i * rows + r] as f64, scalar[i * rows + r] as f64);
                        prop_assert!((a - b).abs() <= 2e-5 * magnitude + 1e-6, "{dtype:?} on {}: row {r} input {i}: {a} vs scalar {b}", isa.name());
                        prop_assert!(all[i * rows + r].to_bits() == one[r].to_bits(), "{dtype:?} on {}: row {r} input {i} differs alone", isa.name());
                    }
                }
            }
        }
    }

    /// Batch invariance, bit for bit: every output of a many-row matmul (prefill and batched decode,
    /// the tiled kernels) equals that row multiplied alone (single-stream decode), on every
    /// instruction-set path and SIMD format. Shapes are ragged on purpose: weight rows that leave
    /// partial weight tiles and span several parallel tasks, activation rows that leave partial
    /// activation tiles and cross the activation-chunk boundary, odd block counts.
    #[test]
    fn many_rows_equal_each_row_alone_bit_for_bit(
        seed in any::<u64>(), rows in 1usize..140, m in 1usize..72, blocks in 1usize..8, scale in 0.01f32..100.0,
    ) {
        for Case { dtype, q, x, cols } in random_cases(seed, rows, m, blocks, scale) {
            for isa in super::Isa::available() {
                let all = q.matmul_with(isa, &x, m);
                for i in 0..m {
                    let one = q.matmul_with(isa, &x[i * cols..(i + 1) * cols], 1);
                    for r in 0..rows {
                        let (a, b) = (all[i * rows + r], one[r]);
                        prop_assert!(a.to_bits() == b.to_bits(), "{dtype:?} on {}: row {r} input {i} of {m}: {a} batched vs {b} alone", isa.name());
                    }
                }
            }
        }
    }
}
