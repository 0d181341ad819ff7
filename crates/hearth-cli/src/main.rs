//! The `hearth` binary: parses arguments, installs logging, dispatches to one file per command, and is
//! the only place that reads the environment or exits the process.

mod bench;
mod bench_batched;
mod bench_devices;
mod bench_run;
mod cache;
mod cache_output;
mod chat;
mod convert;
mod convert_rope;
mod dash;
mod proxy;
mod run;
mod serve;
mod service;
mod show;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "hearth", version, about = "Run, serve, store and measure local LLMs.", long_about = None)]
struct Cli {
    /// Worker threads for CPU inference (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a model: one prompt, or an interactive chat when no prompt is given.
    Run(run::RunArgs),
    /// Describe a model: architecture, parameters, quantization, context, vocabulary, template.
    Show(show::ShowArgs),
    /// Convert a GGUF file into a Hugging Face safetensors directory.
    Convert(convert::ConvertArgs),
    /// Measure inference speed.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Live monitor of local LLM servers in the terminal, or in the browser with --web.
    Dash(dash::DashArgs),
    /// The monitor history: export, import, prune.
    #[command(subcommand)]
    History(dash::HistoryCommand),
    /// Transparent metering proxy: counts streamed tokens of a server without live counters (Ollama).
    Proxy(proxy::ProxyArgs),
    /// Start `hearth serve` (or the web dashboard) at login: systemd user unit or launchd agent.
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Serve models over OpenAI- and Ollama-compatible HTTP APIs (default 127.0.0.1:8337).
    Serve(serve::ServeArgs),
    /// The shared model store: add, status, sync and dedup with the HF cache, Ollama and LM Studio.
    Cache(cache::CacheArgs),
}

fn main() -> ExitCode {
    set_backend_environment();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("HEARTH_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    if let Ok(isa) = std::env::var("HEARTH_ISA") {
        // Pins the CPU kernels' instruction-set path (for comparing paths); the default is the widest.
        match isa.parse::<hearth_layers::quant::Isa>() {
            Ok(isa) => {
                hearth_layers::quant::isa::force(isa);
            }
            Err(e) => eprintln!("warning: HEARTH_ISA: {e}"),
        }
    }
    if std::env::var("HEARTH_CUDA_GRAPHS").is_ok_and(|v| v == "0") {
        // Runs decode steps op by op instead of replaying CUDA graphs (for comparisons).
        hearth_models::set_device_graphs_default(false);
    }
    if std::env::var("HEARTH_CUDA_QUANT_GEMV").is_ok_and(|v| v == "0") {
        // Decode rows over Q4_K/Q6_K weights through candle's kernels instead of hearth's (comparisons).
        hearth_layers::device::set_quant_gemv(false);
    }
    if let Ok(rows) = std::env::var("HEARTH_CUDA_DEQUANT_ROWS") {
        // From how many rows quantized matmuls on CUDA widen the weight to f16 for cuBLAS (comparisons).
        match rows.parse::<usize>() {
            Ok(rows) => hearth_layers::device::set_dequant_gemm_rows(rows),
            Err(e) => eprintln!("warning: HEARTH_CUDA_DEQUANT_ROWS: {e}"),
        }
    }
    if let Some(n) = cli.threads {
        // candle's CPU kernels size their pool from this variable; set it before any tensor work starts.
        std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string());
    }
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Show(args) => show::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Dash(args) => dash::run(args),
        Command::History(cmd) => dash::history(cmd),
        Command::Proxy(args) => proxy::run(args),
        Command::Service(cmd) => service::run(cmd),
        Command::Serve(args) => serve::run(args),
        Command::Cache(args) => cache::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Gives cuBLAS a fixed workspace (8 × 4 MiB) unless the user chose one. Without it, on the H100
/// cuBLAS's split-K GEMMs (which it picks from 48 rows up) made every decode step of 48+ sequences
/// ~35 ms slower: 1B bf16 at 48 sequences 1,322 → 5,679 tok/s. Set before anything touches CUDA,
/// while the process has one thread.
///
/// candle's elementwise ops on the CPU run on a pool of its own whose threads spin after each op
/// (25,000 spins). hearth's CPU forward runs its kernels on rayon's pool, so those spinning threads
/// took cores from it (perf: 3.4 % of a 64-sequence Gemma decode); candle's few elementwise ops run
/// on the calling thread instead.
fn set_backend_environment() {
    for (var, value) in [("CUBLAS_WORKSPACE_CONFIG", ":4096:8"), ("CANDLE_NUM_THREADS", "1")] {
        if std::env::var_os(var).is_none() {
            std::env::set_var(var, value);
        }
    }
    keep_large_host_buffers();
}

/// glibc serves blocks over 128 KiB-32 MiB with fresh `mmap`s and hands them back on free, and each
/// rayon worker allocates from an arena of its own. So every prefill matmul's output and every decode
/// step's logits (64 sequences × a 262k vocabulary = 67 MB) paid page faults on fresh zeroed pages;
/// on a GPU the driver also pinned them anew. One arena that keeps large freed blocks for reuse
/// instead: CPU SmolLM2 pp512 ≈ 405 → 510 tok/s and Gemma 64-sequence decode 241-264 → 301 at the
/// same peak RSS; H100 1B bf16 64 sequences × 512-token context 1,261 → 5,013 tok/s. The cost: memory
/// freed after a peak stays with the process for the next one.
fn keep_large_host_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const KEEP: i32 = 1 << 30;
        // SAFETY: mallopt only changes allocator settings; called first thing, with one thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
            libc::mallopt(libc::M_MMAP_THRESHOLD, KEEP);
            libc::mallopt(libc::M_TRIM_THRESHOLD, KEEP);
        }
    }
}
