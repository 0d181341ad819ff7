//! `hearth run MODEL [PROMPT]`: stream a completion, or chat interactively.

use crate::chat::PromptMode;
use anyhow::{bail, Result};
use clap::Args;
use hearth_engine::sampling::SamplingParams;
use hearth_engine::{EngineConfig, EngineHandle, GenerateRequest, GenerationEvent, GenerationStats};
use hearth_layers::DeviceSpec;
use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct RunArgs {
    /// A .gguf file, a Hugging Face safetensors directory, or a store name (org/repo, name:tag, alias).
    pub model: PathBuf,
    /// The prompt; without one, an interactive chat starts (/bye quits, /clear forgets the history).
    pub prompt: Option<String>,
    /// Print load time, prompt and generation token counts, durations and rates after each reply.
    #[arg(long)]
    pub verbose: bool,
    /// Send the prompt as plain text, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// A system message to start the conversation with.
    #[arg(long)]
    pub system: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Where to run: cpu, cuda[:N] or metal[:N].
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Sampling flags; defaults follow Ollama's so results feel the same.
#[derive(Args, Clone)]
pub struct SamplingArgs {
    /// Most tokens to generate (default: until the model stops or the context is full).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// 0 = greedy (deterministic).
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    #[arg(long, default_value_t = 1.1)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Same seed, same output.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop when this text appears (repeatable); it is not printed.
    #[arg(long)]
    pub stop: Vec<String>,
}

impl SamplingArgs {
    pub fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed: self.seed,
            max_tokens: self.max_tokens,
            stop: self.stop.clone(),
            ..SamplingParams::default()
        }
    }
}

/// A `--kv-type` value.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum KvType {
    F16,
    F32,
}

impl KvType {
    pub fn dtype(self) -> candle_core::DType {
        match self {
            KvType::F16 => candle_core::DType::F16,
            KvType::F32 => candle_core::DType::F32,
        }
    }
}

/// Parse and open a `--device` value.
pub fn open_device(spec: &str) -> Result<candle_core::Device> {
    let spec: DeviceSpec = spec.parse()?;
    Ok(hearth_layers::select_device(spec)?)
}

/// Which kernels run on `device`, for benchmark headers.
pub fn kernels_label(device: &candle_core::Device) -> String {
    match device {
        candle_core::Device::Cpu => format!("cpu {}", hearth_layers::quant::isa::active().name()),
        candle_core::Device::Cuda(_) => "cuda".into(),
        candle_core::Device::Metal(_) => "metal".into(),
    }
}

/// Load a model onto a device and start its engine, timing the load.
pub fn start_engine(model: &std::path::Path, device: &str) -> Result<(EngineHandle, Duration)> {
    let started = Instant::now();
    let device = open_device(device)?;
    // Model errors already name the file and field.
    let loaded = hearth_models::load(model, &device)?;
    let engine = EngineHandle::start(loaded, EngineConfig::default())?;
    Ok((engine, started.elapsed()))
}

pub fn run(args: RunArgs) -> Result<()> {
    // A path that exists stays a path; otherwise MODEL is a store name (`hearth cache`).
    let model = crate::cache::resolve_model_arg(&args.model)?;
    let (engine, load_time) = start_engine(&model, &args.device)?;
    let mode = PromptMode::for_model(engine.context(), args.raw)?;
    let mut history: Vec<Value> = args.system.iter().map(|s| json!({"role": "system", "content": s})).collect();
    if let Some(prompt) = &args.prompt {
        history.push(json!({"role": "user", "content": prompt}));
        let (_, stats) = reply(&engine, &mode, &history, &args.sampling)?;
        if args.verbose {
            print_stats(load_time, &stats);
        }
        return Ok(());
    }
    chat_loop(&engine, &mode, history, &args, load_time)
}

fn chat_loop(engine: &EngineHandle, mode: &PromptMode, mut history: Vec<Value>, args: &RunArgs, load_time: Duration) -> Result<()> {
    let system_len = history.len();
    let stdin = std::io::stdin();
    loop {
        eprint!(">>> ");
        std::io::stderr().flush().ok();
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            return Ok(()); // end of input
        }
        match line.trim() {
            "" => continue,
            "/bye" | "/exit" => return Ok(()),
            "/clear" => {
                history.truncate(system_len);
                eprintln!("Cleared session context");
                continue;
            }
            "/?" | "/help" => {
                eprintln!("/clear  forget the conversation\n/bye    quit");
                continue;
            }
            _ => {}
        }
        history.push(json!({"role": "user", "content": line.trim_end()}));
        let (text, stats) = reply(engine, mode, &history, &args.sampling)?;
        history.push(json!({"role": "assistant", "content": text}));
        if args.verbose {
            print_stats(load_time, &stats);
        }
    }
}

/// Generate one reply, streaming it to stdout; returns its text and timings.
fn reply(engine: &EngineHandle, mode: &PromptMode, history: &[Value], sampling: &SamplingArgs) -> Result<(String, GenerationStats)> {
    let prompt = mode.tokens(engine.context(), history)?;
    let events = engine.generate(GenerateRequest { prompt, params: sampling.params() })?;
    let mut out = std::io::stdout().lock();
    let mut text = String::new();
    for event in events {
        match event {
            GenerationEvent::Token(t) => {
                out.write_all(t.text.as_bytes())?;
                out.flush()?;
                text.push_str(&t.text);
            }
            GenerationEvent::Done { tail, stats, .. } => {
                writeln!(out, "{tail}")?;
                text.push_str(&tail);
                return Ok((text, stats));
            }
            GenerationEvent::Error(e) => bail!("{e}"),
        }
    }
    bail!("the engine stopped before finishing the reply")
}

fn print_stats(load: Duration, s: &GenerationStats) {
    let rate = |n: usize, d: Duration| if d.as_secs_f64() > 0.0 { n as f64 / d.as_secs_f64() } else { 0.0 };
    eprintln!("total duration:       {:?}", load + s.total_duration);
    eprintln!("load duration:        {load:?}");
    eprintln!("prompt eval count:    {} token(s)", s.prompt_tokens);
    eprintln!("prompt eval duration: {:?}", s.prompt_eval_duration);
    eprintln!("prompt eval rate:     {:.2} tokens/s", rate(s.prompt_tokens, s.prompt_eval_duration));
    eprintln!("eval count:           {} token(s)", s.generated_tokens);
    eprintln!("eval duration:        {:?}", s.eval_duration);
    eprintln!("eval rate:            {:.2} tokens/s", rate(s.generated_tokens.saturating_sub(1), s.eval_duration));
}
