//! The model on CUDA. Decode steps replayed as CUDA graphs must give exactly the logits of the same
//! steps run op by op: the same kernels run in the same order, only launched differently. The schedule
//! changes the batch size, reuses each size's graph with new inputs, and switches to another KV cache.
//! Prompt rows, which the attention kernel serves with one slot run per row, must give the logits of
//! feeding the same tokens one decode step at a time.
//!
//! Model: `HEARTH_GRAPH_TEST_MODEL` (a small GGUF; scripts/device/graphs-check.sh passes the tiny ones).

use candle_core::Tensor;
use hearth_layers::{select_device, DeviceSpec, PagedKvCache};
use hearth_models::{SeqBatch, Transformer};

const BLOCK: usize = 16;

fn model_path() -> std::path::PathBuf {
    std::env::var_os("HEARTH_GRAPH_TEST_MODEL").expect("set HEARTH_GRAPH_TEST_MODEL to a small GGUF model").into()
}

/// Prefills prompts of several lengths in one batch, then decodes fixed tokens (all sequences, then
/// three of them, then all again); returns every step's logits.
fn run_schedule(model: &Transformer, cache: &PagedKvCache, salt: u32) -> Vec<Vec<f32>> {
    let vocab = model.config().vocab_size as u32;
    let token = |s: usize, pos: usize| (s as u32 * 7919 + pos as u32 * 104_729 + salt) % vocab;
    let lens = [3usize, 7, 12, 20, 33];
    let per_seq = 64usize.div_ceil(BLOCK);
    let tables: Vec<Vec<usize>> = (0..lens.len()).map(|s| (s * per_seq..(s + 1) * per_seq).collect()).collect();
    let mut pos = lens.to_vec();
    let mut tokens: Vec<u32> = Vec::new();
    let mut seqs = Vec::new();
    for (s, &n) in lens.iter().enumerate() {
        tokens.extend((0..n).map(|p| token(s, p)));
        seqs.push(SeqBatch { cached: 0, n_new: n, block_table: tables[s].clone(), all_logits: false, prompt_len: n });
    }
    let mut out = vec![flat(&model.forward(&tokens, &seqs, cache).expect("prefill"))];
    let phases: [&[usize]; 3] = [&[0, 1, 2, 3, 4], &[0, 2, 4], &[0, 1, 2, 3, 4]];
    for (phase, members) in phases.iter().enumerate() {
        for _ in 0..6 + phase {
            let tokens: Vec<u32> = members.iter().map(|&s| token(s, pos[s])).collect();
            let seqs: Vec<SeqBatch> = members
                .iter()
                .map(|&s| SeqBatch { cached: pos[s], n_new: 1, block_table: tables[s].clone(), all_logits: false, prompt_len: pos[s] })
                .collect();
            out.push(flat(&model.forward(&tokens, &seqs, cache).expect("decode step")));
            members.iter().for_each(|&s| pos[s] += 1);
        }
    }
    out
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("logits to host")
}

fn cache_for(model: &Transformer) -> PagedKvCache {
    PagedKvCache::new(model.kv_cache_config(5 * 64 / BLOCK, BLOCK), model.device()).expect("kv cache")
}

#[test]
fn graph_replays_give_the_logits_of_direct_steps() {
    let device = select_device(DeviceSpec::Cuda(0)).expect("a CUDA device");
    let mut direct = hearth_models::load(&model_path(), &device).expect("load").model;
    direct.set_device_graphs(false);
    let mut graphed = hearth_models::load(&model_path(), &device).expect("load").model;
    graphed.set_device_graphs(true);
    assert_eq!(direct.graph_status(), "off");

    let (cache_a, cache_b) = (cache_for(&direct), cache_for(&graphed));
    let want = run_schedule(&direct, &cache_a, 13);
    let got = run_schedule(&graphed, &cache_b, 13);
    assert_eq!(graphed.graph_status(), "on", "recording must have succeeded");
    assert_eq!(want.len(), got.len());
    for (step, (w, g)) in want.iter().zip(&got).enumerate() {
        assert!(w == g, "step {step}: logits differ (max |diff| {})", w.iter().zip(g).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max));
    }

    // Another cache with other tokens, the first one still alive: graphs recorded on the first must
    // not be replayed against it.
    let (cache_c, cache_d) = (cache_for(&direct), cache_for(&graphed));
    let want = run_schedule(&direct, &cache_c, 977);
    let got = run_schedule(&graphed, &cache_d, 977);
    assert!(want == got, "after switching caches the graphed logits differ from the direct ones");
    drop((cache_a, cache_b));
}

/// Relative distance of two logit rows (root-mean-square difference over the reference's).
fn relative_distance(got: &[f32], want: &[f32]) -> f32 {
    let diff: f32 = got.iter().zip(want).map(|(a, b)| (a - b) * (a - b)).sum();
    let norm: f32 = want.iter().map(|b| b * b).sum();
    (diff / norm.max(f32::MIN_POSITIVE)).sqrt()
}

/// One batch mixing a decoding sequence, a fresh prompt and a prompt continued after cached tokens
/// (as after a prefix-cache hit), every row's logits kept, against each sequence fed one token per
/// step on another cache. A row that saw one key too many or too few, or another row's output,
/// differs by far more than the rounding of the two paths' matmuls.
#[test]
fn prompt_rows_give_the_logits_of_token_by_token_decoding() {
    let device = select_device(DeviceSpec::Cuda(0)).expect("a CUDA device");
    let mut model = hearth_models::load(&model_path(), &device).expect("load").model;
    model.set_device_graphs(false);
    let vocab = model.config().vocab_size as u32;
    let token = |s: usize, pos: usize| (s as u32 * 7919 + pos as u32 * 104_729 + 5) % vocab;
    let per_seq = 64usize.div_ceil(BLOCK);
    let table = |s: usize| -> Vec<usize> { (s * per_seq..(s + 1) * per_seq).collect() };
    // (cached before the batch, new in the batch) per sequence.
    let shape = [(9usize, 1usize), (0, 20), (5, 12)];

    let reference = cache_for(&model);
    let mut want: Vec<Vec<Vec<f32>>> = Vec::new();
    for (s, &(cached, n_new)) in shape.iter().enumerate() {
        let rows = (0..cached + n_new).map(|pos| {
            let seq = SeqBatch { cached: pos, n_new: 1, block_table: table(s), all_logits: false, prompt_len: pos };
            flat(&model.forward(&[token(s, pos)], &[seq], &reference).expect("decode step"))
        });
        want.push(rows.skip(cached).collect());
    }

    let cache = cache_for(&model);
    let warm: Vec<usize> = (0..shape.len()).filter(|&s| shape[s].0 > 0).collect();
    let tokens: Vec<u32> = warm.iter().flat_map(|&s| (0..shape[s].0).map(move |p| token(s, p))).collect();
    let seqs: Vec<SeqBatch> = warm
        .iter()
        .map(|&s| SeqBatch { cached: 0, n_new: shape[s].0, block_table: table(s), all_logits: false, prompt_len: shape[s].0 })
        .collect();
    model.forward(&tokens, &seqs, &cache).expect("cached prefixes");
    let tokens: Vec<u32> = shape.iter().enumerate().flat_map(|(s, &(c, n))| (c..c + n).map(move |p| token(s, p))).collect();
    let seqs: Vec<SeqBatch> = shape
        .iter()
        .enumerate()
        .map(|(s, &(cached, n_new))| SeqBatch { cached, n_new, block_table: table(s), all_logits: true, prompt_len: cached + n_new })
        .collect();
    let got = flat(&model.forward(&tokens, &seqs, &cache).expect("mixed batch"));
    let vocab = vocab as usize;
    let mut rows = got.chunks_exact(vocab);
    for (s, want) in want.iter().enumerate() {
        for (i, w) in want.iter().enumerate() {
            let g = rows.next().expect("a logits row per token");
            let d = relative_distance(g, w);
            println!("sequence {s} row {i}: relative distance {d:.2e}");
            assert!(d < 1e-2, "sequence {s}, new token {i}: logits differ from token-by-token decoding by {d}");
        }
    }
    assert!(rows.next().is_none(), "more logits rows than tokens");
}
