//! `hearth bench engine MODEL`: llama-bench style pp/tg throughput of the engine, optionally side by
//! side with llama.cpp's `llama-bench` on the same file in the same run.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use hearth_layers::PagedKvCache;
use hearth_models::{SeqBatch, Transformer};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Prompt processing (pp) and token generation (tg) speed of the engine on one model.
    Engine(EngineBenchArgs),
    /// Aggregate decode speed with many sequences stepping together (4, 16, 64 by default).
    Batched(crate::bench_batched::BatchedArgs),
    /// Benchmark an OpenAI- or Ollama-API endpoint (TTFT, TPOT, ITL, E2E; saved in the history).
    Run(crate::bench_run::RunArgs),
    /// The same model greedy on the CPU and on an accelerator: tokens, first divergence, margins.
    Devices(crate::bench_devices::DevicesArgs),
    /// Saved benchmark runs, newest first.
    List(crate::bench_run::ListArgs),
    /// One saved run in full.
    Show(crate::bench_run::ShowArgs),
    /// Ratios of run B to run A, with noise.
    Compare(crate::bench_run::CompareArgs),
}

#[derive(Args)]
pub struct EngineBenchArgs {
    /// A .gguf file or a safetensors directory.
    pub model: PathBuf,
    /// Prompt tokens processed in one batch.
    #[arg(long, default_value_t = 512)]
    pub pp: usize,
    /// Tokens generated one at a time.
    #[arg(long, default_value_t = 128)]
    pub tg: usize,
    /// Repetitions of each test.
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Path to llama.cpp's llama-bench, to measure it on the same file in the same run.
    #[arg(long)]
    pub llama_bench: Option<PathBuf>,
    /// Where to run: cpu, cuda[:N] or metal[:N].
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// KV cache element type: f16 (llama-bench's default, so memory compares like for like) or f32
    /// (the engine's default).
    #[arg(long, default_value = "f16")]
    pub kv_type: crate::run::KvType,
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Engine(args) => engine(args),
        BenchCommand::Batched(args) => crate::bench_batched::run(args),
        BenchCommand::Run(args) => crate::bench_run::run(args),
        BenchCommand::Devices(args) => crate::bench_devices::run(args),
        BenchCommand::List(args) => crate::bench_run::list(args),
        BenchCommand::Show(args) => crate::bench_run::show(args),
        BenchCommand::Compare(args) => crate::bench_run::compare(args),
    }
}

struct Stat {
    mean: f64,
    sd: f64,
}

impl std::fmt::Display for Stat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:8.2} ± {:6.2}", self.mean, self.sd)
    }
}

fn stat(xs: &[f64]) -> Stat {
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    Stat { mean, sd: var.sqrt() }
}

fn engine(args: EngineBenchArgs) -> Result<()> {
    if args.reps == 0 || args.pp == 0 || args.tg == 0 {
        bail!("--reps, --pp and --tg must be positive");
    }
    let file_size = std::fs::metadata(&args.model).map(|m| m.len()).unwrap_or(0);
    let threads = std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or_else(num_cpus);
    // llama.cpp runs first: a child forked from a process that already holds the model would report
    // the parent's resident pages as its own peak RSS.
    let reference = args.llama_bench.as_ref().map(|lb| llama_bench(lb, &args, threads)).transpose()?;
    let device = crate::run::open_device(&args.device)?;
    let mut loaded = hearth_models::load(&args.model, &device).with_context(|| format!("loading {}", args.model.display()))?;
    loaded.model.set_kv_dtype(args.kv_type.dtype());
    let model = &loaded.model;
    let vocab = model.config().vocab_size as u32;
    let tokens: Vec<u32> = (0..args.pp.max(args.tg) as u32).map(|i| (i * 7919 + 13) % vocab).collect();
    // Warm-up with the whole prompt, as llama-bench does: page faults of the mapped weights, and on a
    // GPU loading the kernels a prompt batch uses and growing the memory pool, are not timed.
    run_pp(model, &tokens[..args.pp])?;
    let pp: Vec<f64> = (0..args.reps).map(|_| run_pp(model, &tokens[..args.pp]).map(|s| args.pp as f64 / s)).collect::<Result<_>>()?;
    let tg: Vec<f64> = (0..args.reps).map(|_| run_tg(model, &tokens[..args.tg]).map(|s| args.tg as f64 / s)).collect::<Result<_>>()?;
    let rss = peak_rss_bytes();
    let name = args.model.file_name().and_then(|n| n.to_str()).unwrap_or("model");
    let mut kernels = crate::run::kernels_label(&device);
    if !device.is_cpu() {
        kernels = format!("{kernels} (decode graphs: {})", model.graph_status());
    }
    println!("model: {name} ({} MiB), threads: {threads}, reps: {}, kernels: {kernels}, KV cache: {:?}", file_size >> 20, args.reps, args.kv_type);
    println!("| engine    | pp{:<4} tok/s      | tg{:<4} tok/s      | peak RSS MiB |", args.pp, args.tg);
    println!("|-----------|-------------------|-------------------|--------------|");
    let (pp, tg) = (stat(&pp), stat(&tg));
    println!("| hearth    | {pp} | {tg} | {:>12} |", rss >> 20);
    if let Some((lpp, ltg, lrss)) = reference {
        println!("| llama.cpp | {lpp} | {ltg} | {:>12} |", lrss >> 20);
        println!("ratio hearth/llama.cpp: pp {:.2}x, tg {:.2}x, peak RSS {:.2}x", pp.mean / lpp.mean, tg.mean / ltg.mean, rss as f64 / lrss.max(1) as f64);
    }
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// An empty cache for `tokens` tokens of one sequence, and its block table.
pub(crate) fn fresh_cache(model: &Transformer, tokens: usize) -> Result<(PagedKvCache, Vec<usize>)> {
    let blocks = tokens.div_ceil(16);
    Ok((PagedKvCache::new(model.kv_cache_config(blocks, 16), model.device())?, (0..blocks).collect()))
}

/// Brings a step's logits to the host as an engine step that samples on the host does (a GPU's
/// through the reused page-locked buffer), as llama-bench's decode calls copy theirs.
fn read_logits(logits: &candle_core::Tensor) -> Result<()> {
    hearth_layers::device::with_host_rows(logits, |_| ())?;
    Ok(())
}

/// Seconds to process `tokens` as one prompt.
fn run_pp(model: &Transformer, tokens: &[u32]) -> Result<f64> {
    let (cache, table) = fresh_cache(model, tokens.len())?;
    let t = Instant::now();
    let seq = SeqBatch { cached: 0, n_new: tokens.len(), block_table: table, all_logits: false, prompt_len: tokens.len() };
    read_logits(&model.forward(tokens, &[seq], &cache)?)?;
    Ok(t.elapsed().as_secs_f64())
}

/// Seconds to generate `tokens.len()` tokens one by one from an empty context.
fn run_tg(model: &Transformer, tokens: &[u32]) -> Result<f64> {
    let (cache, table) = fresh_cache(model, tokens.len() + 1)?;
    let step = |pos: usize, tok: u32| -> Result<()> {
        let seq = SeqBatch { cached: pos, n_new: 1, block_table: table.clone(), all_logits: false, prompt_len: 0 };
        read_logits(&model.forward(&[tok], &[seq], &cache)?)
    };
    // One untimed step first, as llama-bench warms up: on a GPU it records the decode graph.
    step(0, tokens.first().copied().unwrap_or(0))?;
    let t = Instant::now();
    for (pos, &tok) in tokens.iter().enumerate() {
        step(pos + 1, tok)?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// This process's peak resident set (VmHWM), in bytes.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Runs llama-bench; returns (pp, tg, peak RSS bytes of the child).
fn llama_bench(bin: &PathBuf, args: &EngineBenchArgs, threads: usize) -> Result<(Stat, Stat, u64)> {
    let out = Command::new(bin)
        .args(["-m"]).arg(&args.model)
        .args(["-p", &args.pp.to_string(), "-n", &args.tg.to_string(), "-r", &args.reps.to_string()])
        .args(["-t", &threads.to_string(), "-o", "json"])
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!("llama-bench failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).context("parsing llama-bench JSON")?;
    let pick = |prompt: bool| -> Result<Stat> {
        let row = rows
            .as_array()
            .and_then(|a| a.iter().find(|r| (r["n_prompt"].as_u64().unwrap_or(0) > 0) == prompt))
            .context("llama-bench printed no result row")?;
        Ok(Stat { mean: row["avg_ts"].as_f64().unwrap_or(0.0), sd: row["stddev_ts"].as_f64().unwrap_or(0.0) })
    };
    Ok((pick(true)?, pick(false)?, children_peak_rss()))
}

/// Peak RSS of the largest finished child process, in bytes.
fn children_peak_rss() -> u64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    if rc == 0 { usage.ru_maxrss as u64 * 1024 } else { 0 }
}
