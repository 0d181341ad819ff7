//! hearth's CUDA kernels against their CPU references, on random inputs of ragged shapes. Built only
//! with `--features cuda` (see Cargo.toml) and run on a machine with an NVIDIA GPU:
//! `scripts/device/check-cuda.sh` runs the binary there.

use candle_core::{DType, Device, Tensor};
use hearth_layers::cpu::{paged_attention_host, HostSeq};
use hearth_layers::{first_visible_position, AttentionParams, DeviceSpec, KvCacheConfig, PagedKvCache};

/// Deterministic values in [-1, 1) that differ per seed.
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Values as the cache will hold them, so the f32 reference sees the same K and V.
fn round_to(v: Vec<f32>, dtype: DType) -> Vec<f32> {
    match dtype {
        DType::F16 => v.into_iter().map(|x| half::f16::from_f32(x).to_f32()).collect(),
        DType::BF16 => v.into_iter().map(|x| half::bf16::from_f32(x).to_f32()).collect(),
        _ => v,
    }
}

fn check(heads: usize, kv_heads: usize, head_dim: usize, window: Option<usize>, softcap: Option<f32>, dtype: DType, seed: u64) {
    // Few sequences, so the kernel splits their keys; 1100 keys give each split several chunks.
    check_lens(&[1, 7, 33, 130, 1100], heads, kv_heads, head_dim, window, softcap, dtype, seed);
}

#[allow(clippy::too_many_arguments)]
fn check_lens(lens: &[usize], heads: usize, kv_heads: usize, head_dim: usize, window: Option<usize>, softcap: Option<f32>, dtype: DType, seed: u64) {
    let gpu = hearth_layers::select_device(DeviceSpec::Cuda(0)).expect("a CUDA device");
    let block = 16;
    let per_seq = lens.iter().max().copied().unwrap_or(1).div_ceil(block);
    let blocks = per_seq * lens.len();
    let cfg = |dtype| KvCacheConfig { num_blocks: blocks, block_size: block, n_layers: 1, n_kv_heads: kv_heads, head_dim, dtype };
    let host = PagedKvCache::new(cfg(DType::F32), &Device::Cpu).expect("host cache");
    let dev = PagedKvCache::new(cfg(dtype), &gpu).expect("device cache");
    let width = kv_heads * head_dim;
    let p = AttentionParams { n_heads: heads, n_kv_heads: kv_heads, head_dim, scale: 1.0 / (head_dim as f32).sqrt(), sliding_window: window, softcap };
    // Sequence s owns blocks s, s + 5, s + 10, ... (interleaved, so slots are scattered).
    let slots: Vec<Vec<u32>> = lens
        .iter()
        .enumerate()
        .map(|(s, &len)| (0..len).map(|pos| (((pos / block) * lens.len() + s) * block + pos % block) as u32).collect())
        .collect();
    let q = noise(lens.len() * heads * head_dim, seed);
    let (mut visible, mut offsets) = (Vec::new(), vec![0u32]);
    for (s, &len) in lens.iter().enumerate() {
        let k = round_to(noise(len * width, seed + 10 + s as u64), dtype);
        let v = round_to(noise(len * width, seed + 20 + s as u64), dtype);
        let ids: Vec<usize> = slots[s].iter().map(|&x| x as usize).collect();
        host.write_host(0, &ids, &k, &v).expect("host write");
        let kt = Tensor::from_vec(k, (len, width), &gpu).expect("k");
        let vt = Tensor::from_vec(v, (len, width), &gpu).expect("v");
        dev.write(0, &ids, &kt, &vt).expect("device write");
        visible.extend_from_slice(&slots[s][first_visible_position(len - 1, window)..]);
        offsets.push(visible.len() as u32);
    }
    let seqs: Vec<HostSeq> = lens
        .iter()
        .enumerate()
        .map(|(s, &len)| HostSeq { offset: s, n_new: 1, q_start: len - 1, prompt_len: len - 1, slots: &slots[s] })
        .collect();
    let want = paged_attention_host(&q, &host, 0, &seqs, &p).expect("host attention");
    let (k, v) = dev.device_layer(0).expect("layer").expect("device rows");
    let qt = Tensor::from_vec(q, (lens.len(), heads, head_dim), &gpu).expect("q");
    let visible = Tensor::new(visible.as_slice(), &gpu).expect("slots");
    let offsets = Tensor::new(offsets.as_slice(), &gpu).expect("offsets");
    let run = |out: DType| {
        let got = hearth_layers::device::decode_attention(&qt, k, v, &visible, &offsets, &p, out).expect("kernel").expect("a CUDA kernel");
        assert_eq!(got.dtype(), out);
        got.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>()).expect("copy back")
    };
    let got = run(DType::F32);
    // Written in a matmul's bf16/f16: the f32 result rounded as a cast rounds it.
    for half in [DType::BF16, DType::F16] {
        assert_eq!(run(half), round_to(got.clone(), half), "{half:?} output differs from the rounded f32 one");
    }
    assert_eq!(got.len(), want.len());
    let norm = want.iter().map(|x| x * x).sum::<f32>().sqrt();
    let err = got.iter().zip(&want).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt() / norm;
    assert!(got.iter().all(|x| x.is_finite()), "non-finite output");
    assert!(err < 1e-5, "heads {heads}/{kv_heads}, head_dim {head_dim}, window {window:?}, softcap {softcap:?}, {dtype:?}: relative error {err}");
}

#[test]
fn decode_attention_matches_the_cpu_kernel() {
    let mut seed = 1;
    // GQA groups of 4, 1, 4, 3, 7 (two runs: 4 + 3) and 10 (4 + 4 + 2).
    for (heads, kv_heads, head_dim) in [(32, 8, 64), (8, 8, 128), (4, 1, 256), (6, 2, 40), (14, 2, 64), (10, 1, 128)] {
        for window in [None, Some(5)] {
            for dtype in [DType::F32, DType::F16, DType::BF16] {
                check(heads, kv_heads, head_dim, window, None, dtype, seed);
                seed += 100;
            }
        }
    }
    check(8, 2, 64, None, Some(20.0), DType::F32, 7);
}

/// Enough sequences that no split is made (one block per sequence and KV head writes the output
/// directly), with lengths that leave every lane group a partial last step.
#[test]
fn decode_attention_without_splits_matches_the_cpu_kernel() {
    let lens: Vec<usize> = (0..70).map(|i| 1 + (i * 37) % 300).collect();
    for (i, dtype) in [DType::F32, DType::F16, DType::BF16].into_iter().enumerate() {
        check_lens(&lens, 32, 8, 64, None, None, dtype, 900 + i as u64);
        check_lens(&lens, 16, 8, 128, Some(50), None, dtype, 950 + i as u64);
    }
}

#[test]
fn kv_write_puts_each_row_in_its_slot_and_nowhere_else() {
    let gpu = hearth_layers::select_device(DeviceSpec::Cuda(0)).expect("a CUDA device");
    for (i, dtype) in [DType::F32, DType::F16, DType::BF16].into_iter().enumerate() {
        let (kv_heads, head_dim) = (3, 40);
        let width = kv_heads * head_dim;
        let cfg = KvCacheConfig { num_blocks: 4, block_size: 4, n_layers: 2, n_kv_heads: kv_heads, head_dim, dtype };
        let cache = PagedKvCache::new(cfg, &gpu).expect("device cache");
        let slots = [7usize, 0, 13, 2, 8];
        let k = noise(slots.len() * width, 100 + i as u64);
        let v = noise(slots.len() * width, 200 + i as u64);
        let kt = Tensor::from_vec(k.clone(), (slots.len(), width), &gpu).expect("k");
        let vt = Tensor::from_vec(v.clone(), (slots.len(), width), &gpu).expect("v");
        cache.write(1, &slots, &kt, &vt).expect("write");
        let all: Vec<u32> = (0..16).collect();
        let (gk, gv) = cache.gather(1, &Tensor::new(all.as_slice(), &gpu).expect("ids")).expect("gather");
        let to_vec = |t: Tensor| t.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>()).expect("copy back");
        let (gk, gv) = (to_vec(gk), to_vec(gv));
        let (k, v) = (round_to(k, dtype), round_to(v, dtype));
        for slot in 0..16 {
            let row = |x: &[f32]| x[slot * width..(slot + 1) * width].to_vec();
            match slots.iter().position(|&s| s == slot) {
                Some(r) => {
                    assert_eq!(row(&gk), k[r * width..(r + 1) * width], "{dtype:?}: K of slot {slot}");
                    assert_eq!(row(&gv), v[r * width..(r + 1) * width], "{dtype:?}: V of slot {slot}");
                }
                None => assert!(row(&gk).iter().chain(&row(&gv)).all(|&x| x == 0.0), "{dtype:?}: slot {slot} was written"),
            }
        }
        // Layer 0 was not touched.
        let (k0, _) = cache.gather(0, &Tensor::new(all.as_slice(), &gpu).expect("ids")).expect("gather");
        assert!(to_vec(k0).iter().all(|&x| x == 0.0), "{dtype:?}: another layer was written");
    }
}

/// K and V rows read at a stride (column ranges of one wider matrix, as a stacked q/k/v matmul
/// gives them) land in the cache exactly as packed copies of them do.
#[test]
fn kv_write_reads_rows_at_a_stride() {
    let gpu = hearth_layers::select_device(DeviceSpec::Cuda(0)).expect("a CUDA device");
    let (kv_heads, head_dim, tokens) = (2, 64, 9);
    let width = kv_heads * head_dim;
    let wide = Tensor::from_vec(noise(tokens * (2 * width + 24), 77), (tokens, 2 * width + 24), &gpu).expect("wide");
    let (k, v) = (wide.narrow(1, 8, width).expect("k view"), wide.narrow(1, width + 24, width).expect("v view"));
    let slots = [3usize, 30, 4, 5, 17, 0, 9, 10, 31];
    let all: Vec<u32> = (0..32).collect();
    let ids = Tensor::new(all.as_slice(), &gpu).expect("ids");
    let gathered = |k: &Tensor, v: &Tensor| {
        let cfg = KvCacheConfig { num_blocks: 2, block_size: 16, n_layers: 1, n_kv_heads: kv_heads, head_dim, dtype: DType::F16 };
        let cache = PagedKvCache::new(cfg, &gpu).expect("device cache");
        cache.write(0, &slots, k, v).expect("write");
        let (gk, gv) = cache.gather(0, &ids).expect("gather");
        let host = |t: Tensor| t.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>()).expect("copy back");
        (host(gk), host(gv))
    };
    let packed = gathered(&k.contiguous().expect("k"), &v.contiguous().expect("v"));
    let strided = gathered(&k, &v);
    assert!(packed.0.iter().any(|&x| x != 0.0), "nothing was written");
    assert!(strided == packed, "rows read at a stride were written differently");
}

/// q/k/v stacked into one weight: the parts (views of its rows) multiply as the layers did, and the
/// stacked layer's one matmul gives their outputs side by side, over decode and prompt row counts.
#[test]
fn stacked_weights_multiply_as_their_parts() {
    use hearth_layers::Linear;
    let gpu = hearth_layers::select_device(DeviceSpec::Cuda(0)).expect("a CUDA device");
    let k = 256;
    let widths = [128usize, 32, 32];
    let weights: Vec<Tensor> = widths
        .iter()
        .enumerate()
        .map(|(i, &n)| Tensor::from_vec(noise(n * k, 40 + i as u64), (n, k), &gpu).and_then(|t| t.to_dtype(DType::BF16)).expect("w"))
        .collect();
    let layers = || weights.iter().map(|w| Linear::dense(w.clone(), None).expect("layer")).collect::<Vec<_>>();
    let (parts, stacked) = Linear::stack(layers()).expect("stack");
    let stacked = stacked.expect("dense device layers stack");
    let host = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("to host");
    for rows in [1usize, 5, 7, 64] {
        let x = Tensor::from_vec(noise(rows * k, rows as u64), (rows, k), &gpu).expect("x");
        let alone: Vec<Tensor> = layers().iter().map(|l| l.forward(&x).expect("layer")).collect();
        for (part, want) in parts.iter().zip(&alone) {
            assert_eq!(host(&part.forward(&x).expect("part")), host(want), "{rows} rows: a part differs from its layer");
        }
        let got = host(&stacked.forward(&x).expect("stacked"));
        let want = host(&Tensor::cat(&alone, 1).expect("side by side"));
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(got.len() == want.len() && worst < 1e-4, "{rows} rows: stacked output off by {worst}");
    }
    // A host layer is never stacked.
    let host_layer = Linear::dense(Tensor::zeros((4, k), DType::F32, &Device::Cpu).expect("w"), None).expect("layer");
    let (back, none) = Linear::stack(vec![host_layer.clone(), host_layer]).expect("stack");
    assert!(none.is_none() && back.len() == 2);
}

#[test]
fn rope_kernel_matches_the_cpu_rope() {
    use hearth_layers::{RopeConfig, RopeScaling, RopeStyle, RotaryEmbedding};
    let gpu = hearth_layers::select_device(DeviceSpec::Cuda(0)).expect("a CUDA device");
    let positions = [0u32, 1, 17, 300, 4095, 5];
    for style in [RopeStyle::Interleaved, RopeStyle::Half] {
        for (heads, head_dim) in [(32, 64), (8, 128), (4, 256), (3, 40)] {
            let cfg = RopeConfig { head_dim, rotary_dim: head_dim, base: 10000.0, scaling: RopeScaling::None, style, max_positions: 4096 };
            let x = noise(positions.len() * heads * head_dim, head_dim as u64);
            let run = |device: &Device| {
                let rope = RotaryEmbedding::new(&cfg, device).expect("rope");
                let rows = rope.rows(&positions).expect("rows");
                let xt = Tensor::from_vec(x.clone(), (positions.len(), heads, head_dim), device).expect("x");
                let y = rope.apply_rows(&xt, &rows).expect("apply");
                assert_eq!(y.dims(), &[positions.len(), heads, head_dim]);
                y.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("copy back")
            };
            let (want, got) = (run(&Device::Cpu), run(&gpu));
            let worst = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-5, "{style:?}, {heads} heads of {head_dim}: max difference {worst}");
            // q and k of one step in one launch (k with 3 heads): the same rows as one by one.
            let k_heads = 3;
            let kx = noise(positions.len() * k_heads * head_dim, head_dim as u64 + 7);
            let pair = |device: &Device| {
                let rope = RotaryEmbedding::new(&cfg, device).expect("rope");
                let rows = rope.rows(&positions).expect("rows");
                let qt = Tensor::from_vec(x.clone(), (positions.len(), heads, head_dim), device).expect("q");
                let kt = Tensor::from_vec(kx.clone(), (positions.len(), k_heads, head_dim), device).expect("k");
                let (q, k) = rope.apply_rows_pair(&qt, &kt, &rows).expect("pair");
                let host = |t: Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("copy back");
                (host(q), host(k))
            };
            let ((wq, wk), (gq, gk)) = (pair(&Device::Cpu), pair(&gpu));
            assert_eq!(gq, got, "{style:?}: q of the pair differs from q alone");
            // q and k as column ranges of one wider matrix (a stacked q/k/v output): read at a stride.
            let strided = {
                let rope = RotaryEmbedding::new(&cfg, &gpu).expect("rope");
                let rows = rope.rows(&positions).expect("rows");
                let t = positions.len();
                let qt = Tensor::from_vec(x.clone(), (t, heads, head_dim), &gpu).expect("q");
                let kt = Tensor::from_vec(kx.clone(), (t, k_heads, head_dim), &gpu).expect("k");
                let junk = Tensor::ones((t, 2, head_dim), DType::F32, &gpu).expect("junk");
                let wide = Tensor::cat(&[&qt, &kt, &junk], 1).expect("wide");
                let (q, k) = (wide.narrow(1, 0, heads).expect("q view"), wide.narrow(1, heads, k_heads).expect("k view"));
                let (q, k) = rope.apply_rows_pair(&q, &k, &rows).expect("strided pair");
                let host = |t: Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("copy back");
                (host(q), host(k))
            };
            assert!(strided.0 == gq && strided.1 == gk, "{style:?}, {heads} heads of {head_dim}: strided q/k differ from packed");
            let worst = wk.iter().zip(&gk).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(wq == want && worst < 1e-5, "{style:?}, k of {k_heads} heads of {head_dim}: max difference {worst}");
        }
    }
}

/// `x` (`[rows, k]`) times `w^T` (`[n, k]`) in f64 on the host.
fn host_product(x: &[f32], w: &[f32], rows: usize, n: usize, k: usize) -> Vec<f64> {
    (0..rows * n).map(|e| (0..k).map(|i| x[(e / n) * k + i] as f64 * w[(e % n) * k + i] as f64).sum()).collect()
}

/// Several weights in one GEMV launch (q/k/v; with k = 2056, two warps per row) and the fused SwiGLU
/// form, against f64 host products.
#[test]
fn fused_gemv_forms_match_host_products() {
    let gpu = hearth_layers::select_device(DeviceSpec::Cuda(0)).expect("a CUDA device");
    for (k, dtype) in [(1032, DType::BF16), (1032, DType::F16), (2056, DType::BF16)] {
        for rows in [1usize, 2, 5, 6] {
            let ns = [96usize, 24, 40, 7];
            let ws: Vec<Vec<f32>> = ns.iter().enumerate().map(|(i, &n)| round_to(noise(n * k, 70 + i as u64 + rows as u64), dtype)).collect();
            let x = noise(rows * k, 80 + rows as u64);
            let xt = Tensor::from_vec(x.clone(), (rows, k), &gpu).expect("x");
            let wt: Vec<Tensor> = ws.iter().zip(ns).map(|(w, n)| Tensor::from_vec(w.clone(), (n, k), &gpu).and_then(|t| t.to_dtype(dtype)).expect("w")).collect();
            let refs: Vec<&Tensor> = wt.iter().collect();
            let got = hearth_layers::device::dense_gemv_many(&xt, &refs).expect("gemv").expect("a CUDA kernel");
            let tol = 1e-4 * (k as f64).sqrt();
            for (i, y) in got.iter().enumerate() {
                assert_eq!(y.dims(), &[rows, ns[i]]);
                let y = y.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("to host");
                for (a, b) in y.iter().zip(host_product(&x, &ws[i], rows, ns[i], k)) {
                    assert!((*a as f64 - b).abs() <= tol, "{dtype:?} rows {rows} weight {i}: {a} vs {b}");
                }
            }
            let sw = hearth_layers::device::dense_swiglu(&xt, &wt[0], &wt[0].affine(0.5, 0.0).expect("up")).expect("swiglu").expect("a CUDA kernel");
            let sw = sw.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("to host");
            let g = host_product(&x, &ws[0], rows, ns[0], k);
            for (a, g) in sw.iter().zip(g) {
                let want = g / (1.0 + (-g).exp()) * (g * 0.5);
                assert!((*a as f64 - want).abs() <= tol * (1.0 + g.abs()), "{dtype:?} rows {rows} swiglu: {a} vs {want}");
            }
        }
    }
}

/// The library matmul with an f32 result (more than 6 rows) against an f64 host product of the same
/// bf16/f16-rounded inputs.
#[test]
fn dense_gemm_matches_a_host_product() {
    let gpu = hearth_layers::select_device(DeviceSpec::Cuda(0)).expect("a CUDA device");
    for dtype in [DType::BF16, DType::F16] {
        for (rows, n, k) in [(7usize, 33usize, 64usize), (64, 300, 2048), (513, 17, 8)] {
            let w = round_to(noise(n * k, (rows + n) as u64), dtype);
            let x = noise(rows * k, k as u64 + 3);
            let wt = Tensor::from_vec(w.clone(), (n, k), &gpu).and_then(|t| t.to_dtype(dtype)).expect("w");
            let xt = Tensor::from_vec(x.clone(), (rows, k), &gpu).expect("x");
            let got = hearth_layers::device::dense_gemm(&xt, &wt).expect("gemm").expect("a CUDA path");
            assert_eq!(got.dims(), &[rows, n]);
            // Several weights over one x (one input cast) give each weight's product bit for bit.
            let many = hearth_layers::device::dense_gemm_many(&xt, &[&wt, &wt]).expect("gemm many").expect("a CUDA path");
            let bits = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("to host");
            assert!(many.iter().all(|m| bits(m) == bits(&got)), "{dtype:?} {rows}x{n}x{k}: many differs from one");
            // An input already in the weight's dtype (written so by the kernel before): no cast, same bits.
            let cast = xt.to_dtype(dtype).expect("cast");
            let direct = hearth_layers::device::dense_gemm(&cast, &wt).expect("gemm").expect("a CUDA path");
            assert_eq!(direct.dtype(), DType::F32);
            assert!(bits(&direct) == bits(&got), "{dtype:?} {rows}x{n}x{k}: a pre-cast input differs");
            let got = got.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("to host");
            let xr = round_to(x, dtype); // the activations are cast to the weight's dtype
            for (i, (a, b)) in got.iter().zip(host_product(&xr, &w, rows, n, k)).enumerate() {
                assert!((*a as f64 - b).abs() <= 1e-4 * (k as f64).sqrt(), "{dtype:?} {rows}x{n}x{k} [{i}]: {a} vs {b}");
            }
        }
    }
}

/// The fused residual add + RMSNorm against the CPU's add and norm (llama.cpp's order, f64 sum).
#[test]
fn add_rms_norm_matches_the_cpu_norm() {
    let gpu = hearth_layers::select_device(DeviceSpec::Cuda(0)).expect("a CUDA device");
    // Rows held in registers at 8, 4, 16 and 32 values a thread, and, past 8192 values, in loops.
    for (rows, dim) in [(1usize, 2048usize), (5, 40), (64, 3000), (2, 8192), (3, 9000)] {
        let (x, r, w) = (noise(rows * dim, dim as u64), noise(rows * dim, dim as u64 + 1), noise(dim, dim as u64 + 2));
        let run = |device: &Device| {
            let t = |v: &Vec<f32>, shape: &[usize]| Tensor::from_vec(v.clone(), shape, device).expect("tensor");
            let norm = hearth_layers::RmsNorm::new(t(&w, &[dim]), 1e-5, 0.0).expect("norm");
            let (s, h) = norm.forward_residual(&t(&x, &[rows, dim]), &t(&r, &[rows, dim])).expect("add norm");
            let host = |t: Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("to host");
            (host(s), host(h))
        };
        let ((ws, wh), (gs, gh)) = (run(&Device::Cpu), run(&gpu));
        assert_eq!(ws, gs, "{rows} x {dim}: the sums are exact");
        let worst = wh.iter().zip(&gh).map(|(a, b)| (a - b).abs() / (1.0 + a.abs())).fold(0f32, f32::max);
        assert!(worst < 1e-5, "{rows} x {dim}: normed rows differ by {worst}");
        // Written in a matmul's bf16/f16: the f32 result's bits, rounded as a cast rounds them.
        for dtype in [DType::BF16, DType::F16] {
            let t = |v: &Vec<f32>, shape: &[usize]| Tensor::from_vec(v.clone(), shape, &gpu).expect("tensor");
            let norm = hearth_layers::RmsNorm::new(t(&w, &[dim]), 1e-5, 0.0).expect("norm");
            let (s, h) = norm.forward_residual_as(&t(&x, &[rows, dim]), &t(&r, &[rows, dim]), dtype).expect("add norm");
            assert_eq!((s.dtype(), h.dtype()), (DType::F32, dtype));
            let host = |t: &Tensor| t.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>()).expect("to host");
            assert_eq!(host(&s), gs, "{rows} x {dim} {dtype:?}: the sums");
            assert_eq!(host(&h), round_to(gh.clone(), dtype), "{rows} x {dim} {dtype:?}: the normed rows, rounded");
        }
    }
}

/// Logits copied through the page-locked buffer equal a plain copy, also when the buffer is reused
/// for a smaller and then a larger tensor.
#[test]
fn rows_to_host_matches_a_plain_copy() {
    let gpu = hearth_layers::select_device(DeviceSpec::Cuda(0)).expect("a CUDA device");
    for (rows, cols) in [(3usize, 1000usize), (1, 17), (64, 4099)] {
        let t = Tensor::from_vec(noise(rows * cols, cols as u64), (rows, cols), &gpu).expect("t");
        let want = t.to_vec2::<f32>().expect("plain copy");
        let got = hearth_layers::device::rows_to_host(&t).expect("pinned copy");
        assert_eq!(got.rows(), rows);
        for (r, w) in want.iter().enumerate() {
            assert_eq!(got.row(r), w.as_slice(), "row {r} of {rows} x {cols}");
        }
    }
}

/// The decode GEMV (f32 activations × bf16/f16 weights, 1–6 rows) against an f64 product of the same
/// rounded weights on the host, for ragged row counts and k not a multiple of the 256-wide warp step.
#[test]
fn dense_gemv_matches_a_host_product() {
    let gpu = hearth_layers::select_device(DeviceSpec::Cuda(0)).expect("a CUDA device");
    // k of 2048+ splits rows over 2 warps, 8192+ over 4 (odd n: a block with one row past the end).
    for (seed, &(n, k)) in [(1usize, 8usize), (5, 64), (130, 2056), (33, 4096), (9, 8200)].iter().enumerate() {
        for dtype in [DType::BF16, DType::F16] {
            for rows in 1..=9 {
                let w = round_to(noise(n * k, seed as u64 * 31 + rows as u64), dtype);
                let x = noise(rows * k, seed as u64 * 17 + 5);
                let wt = Tensor::from_vec(w.clone(), (n, k), &gpu).and_then(|t| t.to_dtype(dtype)).expect("weight");
                let xt = Tensor::from_vec(x.clone(), (rows, k), &gpu).expect("x");
                let got = hearth_layers::device::dense_gemv(&xt, &wt).expect("gemv");
                let Some(got) = got else {
                    assert!(rows > 6, "{rows} rows of k {k} must take the kernel");
                    continue;
                };
                assert!(rows <= 6, "more than 6 rows must take the library path");
                let got = got.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("to host");
                for r in 0..rows {
                    for j in 0..n {
                        let want: f64 = (0..k).map(|i| x[r * k + i] as f64 * w[j * k + i] as f64).sum();
                        let diff = (got[r * n + j] as f64 - want).abs();
                        assert!(diff <= 1e-4 * (k as f64).sqrt(), "{dtype:?} n {n} k {k} rows {rows}: [{r},{j}] {} vs {want}", got[r * n + j]);
                    }
                }
            }
        }
    }
}

/// Two rows a kernel must flag for the host: one with a NaN in the middle, one ending in +inf.
fn non_finite_rows(cols: usize, seed: u64) -> [Vec<f32>; 2] {
    let mut nan = noise(cols, seed);
    nan[cols / 2] = f32::NAN;
    let mut inf = noise(cols, seed + 1);
    inf[cols - 1] = f32::INFINITY;
    [nan, inf]
}

/// The device's greedy pick against the host's rule (first index of the largest value), on rows with
/// ties spread across the kernel's threads, -inf masks, and rows the host must see (NaN, +inf, all
/// -inf) marked `u32::MAX`.
#[test]
fn argmax_rows_matches_the_host_rule() {
    let gpu = hearth_layers::select_device(DeviceSpec::Cuda(0)).expect("a CUDA device");
    for cols in [1usize, 7, 1024, 1025, 128_256, 262_144] {
        let mut rows: Vec<Vec<f32>> = (0..5u64).map(|r| noise(cols, cols as u64 + r)).collect();
        // Row 1: the maximum at several places, the first one not on thread 0's stride.
        for at in [cols / 3, cols / 2, cols - 1] {
            rows[1][at] = 2.0;
        }
        rows[2].iter_mut().step_by(2).for_each(|x| *x = f32::NEG_INFINITY);
        rows.push(vec![f32::NEG_INFINITY; cols]);
        rows.extend(non_finite_rows(cols, 77));
        let want: Vec<u32> = rows
            .iter()
            .map(|row| {
                if row.iter().any(|x| x.is_nan() || *x == f32::INFINITY) || row.iter().all(|x| *x == f32::NEG_INFINITY) {
                    return u32::MAX;
                }
                let best = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                row.iter().position(|&x| x == best).expect("a maximum") as u32
            })
            .collect();
        let n = rows.len();
        let t = Tensor::from_vec(rows.concat(), (n, cols), &gpu).expect("logits");
        let got = hearth_layers::device::argmax_rows(&t).expect("kernel").expect("a CUDA kernel");
        assert_eq!(got, want, "{cols} columns");
    }
}

/// The device's top lists against a full host sort in the sampler's order (value by f32::total_cmp,
/// best first, the lowest id first among equals): on rows with ties straddling the cut, ties spread
/// across the kernel's threads, -inf masks, +0 / -0, and NaN / +inf rows flagged.
#[test]
fn top_rows_match_a_host_sort() {
    let gpu = hearth_layers::select_device(DeviceSpec::Cuda(0)).expect("a CUDA device");
    // One slice, several, a last slice shorter than the list (8,292 and 16,400 values), a full one.
    for (cols, count) in [(1usize, 1usize), (7, 7), (300, 256), (1025, 40), (8292, 256), (16_400, 200), (128_256, 256), (262_144, 64), (151_936, 1)] {
        let mut rows: Vec<Vec<f32>> = (0..4u64).map(|r| noise(cols, cols as u64 * 31 + r)).collect();
        // Row 1: values quantized to 1/8, so many ties, some straddling the cut.
        rows[1].iter_mut().for_each(|x| *x = (*x * 8.0).round() / 8.0);
        // Row 2: half masked, zeros of both signs.
        rows[2].iter_mut().step_by(2).for_each(|x| *x = f32::NEG_INFINITY);
        rows[2].iter_mut().skip(1).step_by(7).for_each(|x| *x = 0.0);
        rows[2].iter_mut().skip(3).step_by(7).for_each(|x| *x = -0.0);
        // Row 3: one value repeated at ids on different threads' strides, above everything else.
        for at in [cols / 3, cols / 2, cols - 1, 0] {
            rows[3][at] = 3.0;
        }
        rows.extend(non_finite_rows(cols, 91));
        let n = rows.len();
        let t = Tensor::from_vec(rows.concat(), (n, cols), &gpu).expect("logits");
        let got = hearth_layers::device::top_rows(&t, count).expect("kernel").expect("a CUDA kernel");
        assert_eq!(got.rows(), n);
        for (r, row) in rows.iter().enumerate() {
            let bad = row.iter().any(|x| x.is_nan() || *x == f32::INFINITY);
            assert_eq!(got.holds_non_finite(r), bad, "{cols} columns, row {r}: flag");
            if bad {
                continue;
            }
            let mut order: Vec<u32> = (0..cols as u32).collect();
            order.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
            let want_values: Vec<u32> = order[..count].iter().map(|&i| row[i as usize].to_bits()).collect();
            let got_values: Vec<u32> = got.values(r).iter().map(|v| v.to_bits()).collect();
            assert_eq!(got.ids(r), &order[..count], "{cols} columns, row {r}: ids");
            assert_eq!(got_values, want_values, "{cols} columns, row {r}: values");
        }
    }
}

/// A prompt-sized batch through a block-quantized weight (dequantized to f16, one library matmul)
/// against an f64 host product of the f16-rounded activations and the host's dequantized weight.
/// Below the row threshold the quantized kernels keep the call (`None`).
#[test]
fn dequant_gemm_matches_a_host_product() {
    use candle_core::quantized::{GgmlDType, QTensor};
    let gpu = hearth_layers::select_device(DeviceSpec::Cuda(0)).expect("a CUDA device");
    let min_rows = hearth_layers::device::DEQUANT_GEMM_ROWS;
    for dtype in [GgmlDType::Q4K, GgmlDType::Q6K, GgmlDType::Q8_0, GgmlDType::Q4_1] {
        let (n, k) = (96usize, 512usize);
        let wf = Tensor::from_vec(noise(n * k, n as u64), (n, k), &gpu).expect("w");
        let q = QTensor::quantize(&wf, dtype).expect("quantize");
        let w = q.dequantize(&Device::Cpu).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>()).expect("host weight");
        let x = noise(min_rows * k, 5);
        let few = Tensor::from_vec(x[..(min_rows - 1) * k].to_vec(), (min_rows - 1, k), &gpu).expect("x");
        assert!(hearth_layers::device::dequant_gemm(&few, &q).expect("gemm").is_none(), "{dtype:?}: fewer rows than the threshold");
        let xt = Tensor::from_vec(x.clone(), (min_rows, k), &gpu).expect("x");
        let got = hearth_layers::device::dequant_gemm(&xt, &q).expect("gemm").expect("a CUDA path");
        let bits = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("to host");
        // Several weights over one input (its cast shared) give each weight's product bit for bit.
        let many = hearth_layers::device::dequant_gemm_many(&xt, &[&q, &q]).expect("gemm many").expect("a CUDA path");
        assert!(many.iter().all(|m| bits(m) == bits(&got)), "{dtype:?}: many differs from one");
        let got = bits(&got);
        let want = host_product(&round_to(x, DType::F16), &w, min_rows, n, k);
        let err: f64 = got.iter().zip(&want).map(|(a, b)| (*a as f64 - b).powi(2)).sum::<f64>().sqrt();
        let norm: f64 = want.iter().map(|b| b * b).sum::<f64>().sqrt();
        assert!(err / norm < 2e-3, "{dtype:?}: relative error {}", err / norm);
    }
}

/// The fused SiLU-gated product against the host formula.
#[test]
fn silu_mul_matches_the_host_formula() {
    let gpu = hearth_layers::select_device(DeviceSpec::Cuda(0)).expect("a CUDA device");
    for (rows, width) in [(1usize, 7usize), (300, 8192)] {
        let (g, u) = (noise(rows * width, 31).iter().map(|x| x * 8.0).collect::<Vec<f32>>(), noise(rows * width, 32));
        let t = |v: &Vec<f32>| Tensor::from_vec(v.clone(), (rows, width), &gpu).expect("tensor");
        let got = hearth_layers::device::silu_mul(&t(&g), &t(&u), DType::F32).expect("kernel").expect("a CUDA kernel");
        let got = got.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("to host");
        for (i, ((x, y), out)) in g.iter().zip(&u).zip(&got).enumerate() {
            let want = *x as f64 / (1.0 + (-*x as f64).exp()) * *y as f64;
            assert!((*out as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()), "[{i}]: {out} vs {want}");
        }
        // Written in a matmul's bf16/f16: the f32 product rounded as a cast rounds it.
        for dtype in [DType::BF16, DType::F16] {
            let half = hearth_layers::device::silu_mul(&t(&g), &t(&u), dtype).expect("kernel").expect("a CUDA kernel");
            assert_eq!(half.dtype(), dtype);
            let half = half.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>()).expect("to host");
            assert_eq!(half, round_to(got.clone(), dtype), "{rows} x {width} {dtype:?}");
        }
        // gate and up as the two halves of one wider matrix (a stacked gate/up output): read in place.
        let wide = Tensor::cat(&[&t(&g), &t(&u)], 1).expect("wide");
        let (gv, uv) = (wide.narrow(1, 0, width).expect("gate view"), wide.narrow(1, width, width).expect("up view"));
        let strided = hearth_layers::device::silu_mul(&gv, &uv, DType::F32).expect("kernel").expect("a CUDA kernel");
        let strided = strided.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("to host");
        assert_eq!(strided, got, "{rows} x {width}: strided halves differ from packed inputs");
    }
}

/// The k-quant decode GEMV (activations quantized to 8 bits in runs of 32, llama.cpp's MMVQ numerics)
/// for 1..=8 rows: three weights of mixed formats in one launch against candle's own quantized kernel
/// (the same 8-bit activations; candle keeps their scales in f16, hence 2e-3) and an f64 host product of the host's
/// dequantized weights (within the activations' 8-bit error); the SwiGLU form against the host formula
/// over those products; a NaN in a row's input reaches every output of that row and no other. k = 768
/// leaves lanes idle in a row's last pass; k = 4352 (17 super-blocks, two warps a row), 6400 (25, two)
/// and 8448 (33, four) give lanes uneven counts.
#[test]
fn quant_gemv_matches_candle_and_a_host_product() {
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::Module;
    let gpu = hearth_layers::select_device(DeviceSpec::Cuda(0)).expect("a CUDA device");
    let bits = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("to host");
    let rel = |a: &[f32], b: &[f64]| {
        let err: f64 = a.iter().zip(b).map(|(a, b)| (*a as f64 - b).powi(2)).sum::<f64>().sqrt();
        err / b.iter().map(|b| b * b).sum::<f64>().sqrt()
    };
    for k in [768usize, 2048, 4352, 6400, 8448] {
        let (ns, formats) = ([40usize, 24, 9], [GgmlDType::Q4K, GgmlDType::Q6K, GgmlDType::Q4K]);
        let qs: Vec<std::sync::Arc<QTensor>> = ns
            .iter()
            .zip(formats)
            .enumerate()
            .map(|(i, (&n, f))| {
                let w = Tensor::from_vec(noise(n * k, 90 + i as u64 + k as u64), (n, k), &gpu).expect("w");
                std::sync::Arc::new(QTensor::quantize(&w, f).expect("quantize"))
            })
            .collect();
        let host_w: Vec<Vec<f32>> = qs.iter().map(|q| bits(&q.dequantize(&Device::Cpu).expect("dequantize"))).collect();
        for rows in 1..=8usize {
            let x: Vec<f32> = noise(rows * k, 7 + rows as u64).iter().map(|v| v * 3.0).collect();
            let xt = Tensor::from_vec(x.clone(), (rows, k), &gpu).expect("x");
            let refs: Vec<&QTensor> = qs.iter().map(|q| &**q).collect();
            let got = hearth_layers::device::quant_gemv_many(&xt, &refs).expect("gemv").expect("a CUDA kernel");
            for (i, (y, q)) in got.iter().zip(&qs).enumerate() {
                assert_eq!(y.dims(), &[rows, ns[i]]);
                let y = bits(y);
                let candle = bits(&QMatMul::from_arc(q.clone()).expect("qmatmul").forward(&xt).expect("candle"));
                let candle: Vec<f64> = candle.iter().map(|v| *v as f64).collect();
                let (to_candle, to_host) = (rel(&y, &candle), rel(&y, &host_product(&x, &host_w[i], rows, ns[i], k)));
                assert!(to_candle < 2e-3, "k {k} rows {rows} weight {i} ({:?}): {to_candle} from candle's kernel", formats[i]);
                assert!(to_host < 1e-2, "k {k} rows {rows} weight {i} ({:?}): {to_host} from the host product", formats[i]);
            }
            let up = &qs[0];
            let sw = hearth_layers::device::quant_swiglu(&xt, &qs[0], up).expect("swiglu").expect("a CUDA kernel");
            let (sw, g) = (bits(&sw), bits(&got[0]));
            for (a, g) in sw.iter().zip(&g) {
                let want = *g as f64 / (1.0 + (-*g as f64).exp()) * *g as f64;
                assert!((*a as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()), "k {k} rows {rows} swiglu: {a} vs {want}");
            }
            let mut poisoned = x.clone();
            poisoned[k / 2] = f32::NAN;
            let xp = Tensor::from_vec(poisoned, (rows, k), &gpu).expect("x");
            let yp = bits(&hearth_layers::device::quant_gemv(&xp, &qs[1]).expect("gemv").expect("a CUDA kernel"));
            assert!(yp[..ns[1]].iter().all(|v| v.is_nan()), "k {k} rows {rows}: a NaN input row gave finite outputs");
            assert!(yp[ns[1]..].iter().all(|v| v.is_finite()), "k {k} rows {rows}: a NaN reached another row");
        }
    }
}

/// add + RMSNorm writing the k-quant GEMV's 8-bit rows (U8) gives the GEMV exactly what the GEMV's own
/// quantization of the norm's f32 rows gives, and is asked for exactly where the GEMV takes the rows.
#[test]
fn add_rms_norm_writes_the_gemv_rows_it_would_quantize() {
    use candle_core::quantized::{GgmlDType, QTensor};
    let gpu = hearth_layers::select_device(DeviceSpec::Cuda(0)).expect("a CUDA device");
    let host = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("to host");
    // Rows of 4 and 8 values a thread (longer rows keep the quantize launch).
    for (k, rows) in [(1024usize, 2usize), (1536, 3), (2048, 1), (2048, 8)] {
        let t = |v: Vec<f32>, shape: &[usize]| Tensor::from_vec(v, shape, &gpu).expect("tensor");
        let (x, r) = (t(noise(rows * k, k as u64 + 5), &[rows, k]), t(noise(rows * k, k as u64 + 6), &[rows, k]));
        let norm = hearth_layers::RmsNorm::new(t(noise(k, k as u64 + 7), &[k]), 1e-5, 0.0).expect("norm");
        let (s8, q8) = norm.forward_residual_as(&x, &r, DType::U8).expect("add norm, 8-bit rows");
        let (s32, h32) = norm.forward_residual_as(&x, &r, DType::F32).expect("add norm");
        assert_eq!((q8.dtype(), q8.dims()), (DType::U8, &[rows, k + k / 4][..]), "k {k} rows {rows}");
        assert_eq!(host(&s8), host(&s32), "k {k} rows {rows}: the sums");
        let ws: Vec<QTensor> = [(40usize, GgmlDType::Q4K), (24, GgmlDType::Q6K)]
            .iter()
            .enumerate()
            .map(|(i, &(n, f))| QTensor::quantize(&t(noise(n * k, 300 + i as u64), &[n, k]), f).expect("quantize"))
            .collect();
        let refs: Vec<&QTensor> = ws.iter().collect();
        assert!(hearth_layers::device::quant_gemv_reads_q8(&refs, rows), "k {k} rows {rows}: the GEMV takes these rows");
        assert!(!hearth_layers::device::quant_gemv_reads_q8(&refs, 9), "k {k}: nine rows go to other kernels");
        let from_q8 = hearth_layers::device::quant_gemv_many(&q8, &refs).expect("gemv").expect("a CUDA kernel");
        let from_f32 = hearth_layers::device::quant_gemv_many(&h32, &refs).expect("gemv").expect("a CUDA kernel");
        for (i, (a, b)) in from_q8.iter().zip(&from_f32).enumerate() {
            assert_eq!(host(a), host(b), "k {k} rows {rows} weight {i}: the products differ");
        }
        let sw = |h: &Tensor| host(&hearth_layers::device::quant_swiglu(h, &ws[0], &ws[0]).expect("swiglu").expect("a CUDA kernel"));
        assert_eq!(sw(&q8), sw(&h32), "k {k} rows {rows}: SiLU x up differs");
    }
    let long = QTensor::quantize(&Tensor::from_vec(noise(8 * 4096, 9), (8, 4096), &gpu).expect("w"), GgmlDType::Q4K).expect("quantize");
    assert!(!hearth_layers::device::quant_gemv_reads_q8(&[&long], 1), "rows of 4096 values keep the quantize launch");
}
