//! `hearth bench devices MODEL --device cuda`: the same model on the CPU and on an accelerator,
//! greedy, side by side: which tokens each picks, the first divergence and the logit margins there,
//! and how far the accelerator's log-probabilities are from the CPU's on the CPU's own tokens.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use clap::Args;
use hearth_models::{SeqBatch, Transformer};
use std::path::PathBuf;

#[derive(Args)]
pub struct DevicesArgs {
    /// A .gguf file or a safetensors directory.
    pub model: PathBuf,
    /// The device to check against the CPU: cuda[:N] or metal[:N].
    #[arg(long, default_value = "cuda")]
    pub device: String,
    /// Plain-text prompt (no chat template).
    #[arg(long, default_value = "The three most useful things to know about the ocean are")]
    pub prompt: String,
    /// Greedy tokens compared.
    #[arg(long, default_value_t = 32)]
    pub tokens: usize,
    /// Dequantize every weight to f32 on both sides: the exact f32 path against itself, which
    /// separates kernel bugs from quantized-arithmetic differences.
    #[arg(long)]
    pub dense: bool,
}

/// One greedy step: the token picked, and by how much its logit beat the runner-up.
struct Step {
    token: u32,
    margin: f32,
}

pub fn run(args: DevicesArgs) -> Result<()> {
    if args.tokens == 0 {
        bail!("--tokens must be positive");
    }
    let device = crate::run::open_device(&args.device)?;
    let load = if args.dense { hearth_models::load_dense } else { hearth_models::load };
    let cpu = load(&args.model, &Device::Cpu).with_context(|| format!("loading {} on the CPU", args.model.display()))?;
    let accel = load(&args.model, &device).with_context(|| format!("loading {} on {}", args.model.display(), args.device))?;
    let prompt = cpu.tokenizer.encode(&args.prompt, true, false).context("tokenizing the prompt")?;
    let theirs = greedy(&cpu.model, &prompt, args.tokens)?;
    let ours = greedy(&accel.model, &prompt, args.tokens)?;
    let weights = if args.dense { "dequantized to f32" } else { "as stored" };
    println!("model: {} (weights {weights}), prompt: {} tokens, {} greedy tokens, cpu vs {}", args.model.display(), prompt.len(), args.tokens, args.device);
    println!("| step | cpu token | margin | {:>9} token | margin |", args.device);
    println!("|------|-----------|--------|-----------------|--------|");
    for (i, (c, d)) in theirs.iter().zip(&ours).enumerate() {
        let mark = if c.token == d.token { "" } else { "  <- differs" };
        println!("| {i:>4} | {:>9} | {:>6.3} | {:>15} | {:>6.3} |{mark}", c.token, c.margin, d.token, d.margin);
    }
    // Teacher-forced on the CPU's tokens, so later steps compare like with like after a divergence.
    let mut forced = prompt.clone();
    forced.extend(theirs.iter().map(|s| s.token));
    let max_gap = max_logprob_gap(&cpu.model, &accel.model, &forced, prompt.len())?;
    println!("max |log p(cpu) - log p({})| over the top-5 of every step, teacher-forced: {max_gap:.4} nats", args.device);
    match theirs.iter().zip(&ours).position(|(c, d)| c.token != d.token) {
        None => println!("same greedy tokens for all {} steps", args.tokens),
        Some(i) => println!(
            "first divergence at step {i}: cpu margin {:.3}, {} margin {:.3} (a margin near 0 is a near-tie)",
            theirs[i].margin, args.device, ours[i].margin
        ),
    }
    Ok(())
}

fn greedy(model: &Transformer, prompt: &[u32], n: usize) -> Result<Vec<Step>> {
    let (cache, table) = crate::bench::fresh_cache(model, prompt.len() + n)?;
    let (mut steps, mut input, mut cached) = (Vec::with_capacity(n), prompt.to_vec(), 0);
    for _ in 0..n {
        let seq = SeqBatch { cached, n_new: input.len(), block_table: table.clone(), all_logits: false, prompt_len: prompt.len() };
        let logits = model.forward(&input, &[seq], &cache)?;
        let row = logits.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let step = top_two(&row);
        cached += input.len();
        input = vec![step.token];
        steps.push(step);
    }
    Ok(steps)
}

fn top_two(row: &[f32]) -> Step {
    let (mut best, mut second) = ((0usize, f32::NEG_INFINITY), f32::NEG_INFINITY);
    for (i, &v) in row.iter().enumerate() {
        if v > best.1 {
            second = best.1;
            best = (i, v);
        } else if v > second {
            second = v;
        }
    }
    Step { token: best.0 as u32, margin: best.1 - second }
}

/// The largest log-probability difference over each step's CPU top-5 tokens.
fn max_logprob_gap(cpu: &Transformer, accel: &Transformer, tokens: &[u32], from: usize) -> Result<f32> {
    let a = hearth_engine::score_tokens(cpu, tokens, 64)?;
    let b = hearth_engine::score_tokens(accel, tokens, 64)?;
    let mut worst = 0f32;
    for (ra, rb) in a.iter().zip(&b).skip(from.saturating_sub(1)) {
        let mut idx: Vec<usize> = (0..ra.len()).collect();
        idx.sort_unstable_by(|&x, &y| ra[y].total_cmp(&ra[x]));
        for &i in idx.iter().take(5) {
            worst = worst.max((ra[i] - rb[i]).abs());
        }
    }
    Ok(worst)
}
