//! `hearth bench batched MODEL`: aggregate decode throughput with N sequences stepping together (what
//! a server does under load), optionally beside llama.cpp's `llama-batched-bench` in the same run.

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_layers::PagedKvCache;
use hearth_models::{SeqBatch, Transformer};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

#[derive(Args)]
pub struct BatchedArgs {
    /// A .gguf file or a safetensors directory.
    pub model: PathBuf,
    /// Numbers of parallel sequences, comma-separated.
    #[arg(long, default_value = "4,16,64", value_delimiter = ',')]
    pub seqs: Vec<usize>,
    /// Prompt tokens of each sequence (prefilled before decoding; not timed in the decode rate).
    #[arg(long, default_value_t = 128)]
    pub pp: usize,
    /// Tokens decoded per sequence.
    #[arg(long, default_value_t = 128)]
    pub tg: usize,
    /// Path to llama.cpp's llama-batched-bench, to measure it on the same file in the same run.
    #[arg(long)]
    pub llama_batched_bench: Option<PathBuf>,
    /// Where to run: cpu, cuda[:N] or metal[:N].
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// KV cache element type: f16 (llama-bench's default, so memory compares like for like) or f32
    /// (the engine's default).
    #[arg(long, default_value = "f16")]
    pub kv_type: crate::run::KvType,
    /// Also print where a decode step's wall time goes: the forward call, waiting for the device,
    /// and copying the logits to the host (the device is synchronised between them).
    #[arg(long)]
    pub breakdown: bool,
    /// Pick each step's tokens greedily on the device and copy only their ids, as the engine does
    /// when every sequence samples greedily; by default every logit is copied to the host (as
    /// llama-batched-bench's decode calls do).
    #[arg(long)]
    pub greedy_on_device: bool,
    /// Copy only each row's N most likely logits, listed on the device, as the engine does when its
    /// sequences sample from a top k (it lists 256 when penalties apply); overrides
    /// --greedy-on-device.
    #[arg(long)]
    pub top_on_device: Option<usize>,
}

pub fn run(args: BatchedArgs) -> Result<()> {
    if args.pp == 0 || args.tg == 0 || args.seqs.is_empty() || args.seqs.contains(&0) {
        bail!("--pp, --tg and every --seqs value must be positive");
    }
    let threads = std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    });
    // llama.cpp first, so its peak RSS is not inflated by our mapped model (see `bench engine`).
    let reference = args.llama_batched_bench.as_ref().map(|bin| llama_batched_bench(bin, &args, threads)).transpose()?;
    let device = crate::run::open_device(&args.device)?;
    let mut loaded = hearth_models::load(&args.model, &device).with_context(|| format!("loading {}", args.model.display()))?;
    loaded.model.set_kv_dtype(args.kv_type.dtype());
    let name = args.model.file_name().and_then(|n| n.to_str()).unwrap_or("model");
    let kernels = crate::run::kernels_label(&device);
    println!("model: {name}, threads: {threads}, kernels: {kernels}, KV cache: {:?}, prompt {} + decode {} tokens per sequence", args.kv_type, args.pp, args.tg);
    println!("| sequences | hearth decode tok/s | llama.cpp decode tok/s | ratio |");
    println!("|-----------|---------------------|------------------------|-------|");
    let mut splits = Vec::new();
    for &n in &args.seqs {
        let (ours, split) = decode_rate(&loaded.model, n, &args)?;
        splits.push((n, split));
        let theirs = reference.as_ref().and_then(|r| r.iter().find(|(pl, _)| *pl == n).map(|(_, s)| *s));
        match theirs {
            Some(t) => println!("| {n:>9} | {ours:>19.1} | {t:>22.1} | {:.2}x |", ours / t),
            None => println!("| {n:>9} | {ours:>19.1} | {:>22} |     – |", "–"),
        }
    }
    if !device.is_cpu() {
        println!("decode graphs: {}", loaded.model.graph_status());
    }
    let copied = match (args.top_on_device, args.greedy_on_device) {
        (Some(_), _) => "top lists to host",
        (None, true) => "greedy ids to host",
        (None, false) => "logits to host",
    };
    for (n, [call, wait, copy]) in splits.iter().filter(|_| args.breakdown) {
        println!("{n} sequences, ms per step: forward call {call:.3}, device wait {wait:.3}, {copied} {copy:.3}");
    }
    Ok(())
}

/// Aggregate generated tokens per second of `n` sequences decoding `tg` tokens each after a
/// `pp`-token prompt, all in one batch per step; with `breakdown`, also the mean milliseconds per step
/// of the forward call, the device wait after it and the copy of the logits (or greedy ids).
fn decode_rate(model: &Transformer, n: usize, args: &BatchedArgs) -> Result<(f64, [f64; 3])> {
    let (pp, tg, breakdown) = (args.pp, args.tg, args.breakdown);
    const BLOCK: usize = 16;
    let per_seq = (pp + tg + 1).div_ceil(BLOCK);
    let cache = PagedKvCache::new(model.kv_cache_config(n * per_seq, BLOCK), model.device())?;
    let tables: Vec<Vec<usize>> = (0..n).map(|s| (s * per_seq..(s + 1) * per_seq).collect()).collect();
    let vocab = model.config().vocab_size as u32;
    let token = |s: usize, i: usize| ((s * 7919 + i * 104_729 + 13) % vocab as usize) as u32;
    // Prompts: each sequence its own tokens, prefilled one sequence per forward like a server would.
    for (s, table) in tables.iter().enumerate() {
        let prompt: Vec<u32> = (0..pp).map(|i| token(s, i)).collect();
        let seq = SeqBatch { cached: 0, n_new: pp, block_table: table.clone(), all_logits: false, prompt_len: pp };
        model.forward(&prompt, &[seq], &cache)?;
    }
    // One step; returns its milliseconds in the forward call, the device wait and the logits copy.
    let decode = |pos: usize| -> Result<[f64; 3]> {
        let tokens: Vec<u32> = (0..n).map(|s| token(s, pos)).collect();
        let seqs: Vec<SeqBatch> =
            tables.iter().map(|t| SeqBatch { cached: pos, n_new: 1, block_table: t.clone(), all_logits: false, prompt_len: pp }).collect();
        let t0 = Instant::now();
        let logits = model.forward(&tokens, &seqs, &cache)?;
        let t1 = Instant::now();
        if breakdown {
            model.device().synchronize()?;
        }
        let t2 = Instant::now();
        // The logits reach the host as an engine step's do (llama-batched-bench copies them too), or
        // only the greedy ids where the device picks them.
        let picked = match args.top_on_device {
            Some(n) => hearth_layers::device::top_rows(&logits, n)?.map(|_| ()),
            None if args.greedy_on_device => hearth_layers::device::argmax_rows(&logits)?.map(|_| ()),
            None => None,
        };
        if picked.is_none() {
            hearth_layers::device::with_host_rows(&logits, |_| ())?;
        }
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
        Ok([ms(t0, t1), ms(t1, t2), ms(t2, Instant::now())])
    };
    // One untimed step first (it also waits for the prompts, and on a GPU records the decode graph).
    decode(pp)?;
    let start = Instant::now();
    let mut split = [0f64; 3];
    for step in 1..=tg {
        for (acc, ms) in split.iter_mut().zip(decode(pp + step)?) {
            *acc += ms / tg as f64;
        }
    }
    Ok(((n * tg) as f64 / start.elapsed().as_secs_f64(), split))
}

/// Runs llama-batched-bench once per sequence count, each with a context just large enough for it (its
/// attention cost grows with the context size, not just the tokens in use); returns (sequences, decode tok/s).
fn llama_batched_bench(bin: &PathBuf, args: &BatchedArgs, threads: usize) -> Result<Vec<(usize, f64)>> {
    let mut rows = Vec::new();
    for &n in &args.seqs {
        let ctx = n * (args.pp + args.tg) + 16;
        let out = Command::new(bin)
            .arg("-m").arg(&args.model)
            .args(["-c", &ctx.to_string(), "-b", "2048", "-ub", "512"])
            .args(["-npp", &args.pp.to_string(), "-ntg", &args.tg.to_string(), "-npl", &n.to_string()])
            .args(["-t", &threads.to_string(), "--output-format", "jsonl"])
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        if !out.status.success() {
            bail!("llama-batched-bench failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        rows.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| Some((v["pl"].as_u64()? as usize, v["speed_tg"].as_f64()?))),
        );
    }
    if rows.is_empty() {
        bail!("llama-batched-bench printed no result rows");
    }
    Ok(rows)
}
