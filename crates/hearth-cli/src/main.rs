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
    give_cublas_a_workspace();
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
fn give_cublas_a_workspace() {
    const VAR: &str = "CUBLAS_WORKSPACE_CONFIG";
    if std::env::var_os(VAR).is_none() {
        std::env::set_var(VAR, ":4096:8");
    }
}
