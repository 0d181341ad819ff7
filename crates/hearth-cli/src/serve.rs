//! `hearth serve`: the OpenAI- and Ollama-compatible server. Settings come from flags, then `HEARTH_*`
//! environment variables, then a YAML file (`--config`), then defaults.

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_engine::EngineConfig;
use hearth_server::config::{parse_bytes, FileConfig, KeepAlive, Listen, ServerConfig, Size, DEFAULT_PORT};
use hearth_server::AppState;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct ServeArgs {
    /// A YAML file with any of the settings below (keys as the long flags, with `_`; `models` maps
    /// names to paths). Flags and environment variables override it.
    #[arg(long, env = "HEARTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to bind [default: 127.0.0.1].
    #[arg(long, env = "HEARTH_HOST")]
    pub host: Option<String>,
    /// Port to bind; 0 picks a free one [default: 8337].
    #[arg(long, env = "HEARTH_PORT")]
    pub port: Option<u16>,
    /// Listen on this Unix socket (mode 0600) instead of TCP.
    #[arg(long, env = "HEARTH_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Require `Authorization: Bearer KEY` on every route but /health.
    #[arg(long, env = "HEARTH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// A model to serve, as NAME=PATH or PATH (name = file stem). Repeatable; the env variable takes a
    /// comma-separated list.
    #[arg(long = "model", env = "HEARTH_MODELS", value_delimiter = ',')]
    pub models: Vec<String>,
    /// Serve every .gguf file (name = file stem) and safetensors folder in this folder.
    #[arg(long, env = "HEARTH_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// How long a model stays loaded after its last request: 30s, 5m, 1h; 0 unloads at once; -1 keeps
    /// it forever [default: 5m].
    #[arg(long, env = "HEARTH_KEEP_ALIVE", allow_hyphen_values = true)]
    pub keep_alive: Option<String>,
    /// Requests per model that may wait beyond the running batch; past it, 503 with Retry-After [default: 256].
    #[arg(long, env = "HEARTH_MAX_QUEUE")]
    pub max_queue: Option<usize>,
    /// Sequences per model in the running batch [default: 64].
    #[arg(long, env = "HEARTH_MAX_RUNNING")]
    pub max_running: Option<usize>,
    /// Tokens computed per engine step; long prompts are prefilled in chunks of this [default: 512].
    #[arg(long, env = "HEARTH_MAX_BATCH_TOKENS")]
    pub max_batch_tokens: Option<usize>,
    /// KV cache size per model, e.g. 512M or 2G [default: max-running full contexts, at most 2G].
    #[arg(long, env = "HEARTH_KV_CACHE", value_parser = parse_bytes)]
    pub kv_cache: Option<u64>,
    /// Tokens per KV cache block (the prefix cache shares whole blocks) [default: 16].
    #[arg(long, env = "HEARTH_BLOCK_SIZE")]
    pub block_size: Option<usize>,
    /// Memory that loaded models (weights + KV cache) may use together, e.g. 8G; idle models are
    /// unloaded to make room [default: unlimited].
    #[arg(long, env = "HEARTH_MEMORY_BUDGET", value_parser = parse_bytes)]
    pub memory_budget: Option<u64>,
    /// Largest request body, e.g. 8M [default: 8M].
    #[arg(long, env = "HEARTH_BODY_LIMIT", value_parser = parse_bytes)]
    pub body_limit: Option<u64>,
    /// Where models run: cpu, cuda[:N] or metal[:N] [default: cpu].
    #[arg(long, env = "HEARTH_DEVICE")]
    pub device: Option<String>,
    /// Seconds in-flight requests may run on after SIGTERM/SIGINT before they are cancelled [default: 10].
    #[arg(long, env = "HEARTH_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<u64>,
}

/// `NAME=PATH`, or a bare path named after its file stem.
fn parse_model(spec: &str) -> Result<(String, PathBuf)> {
    if let Some((name, path)) = spec.split_once('=') {
        if name.is_empty() || path.is_empty() {
            bail!("--model {spec}: expected NAME=PATH");
        }
        return Ok((name.to_string(), PathBuf::from(path)));
    }
    let path = PathBuf::from(spec);
    let name = path.file_stem().and_then(|s| s.to_str()).with_context(|| format!("--model {spec}: cannot name it; use NAME=PATH"))?;
    Ok((name.to_string(), path))
}

/// A size from the flags (already parsed) or else from the file.
fn size(flag: Option<u64>, file: Option<Size>, key: &str) -> Result<Option<u64>> {
    match (flag, file) {
        (Some(b), _) => Ok(Some(b)),
        (None, Some(s)) => s.bytes().map(Some).map_err(anyhow::Error::msg).with_context(|| format!("config file key `{key}`")),
        (None, None) => Ok(None),
    }
}

/// Flags (and env) over the file over defaults.
fn resolve(args: ServeArgs) -> Result<ServerConfig> {
    let file = match &args.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let d = ServerConfig::default();
    let socket = args.socket.or(file.socket);
    let listen = match socket {
        Some(path) => Listen::Unix(path),
        None => Listen::Tcp {
            host: args.host.or(file.host).unwrap_or_else(|| "127.0.0.1".into()),
            port: args.port.or(file.port).unwrap_or(DEFAULT_PORT),
        },
    };
    let mut models: Vec<(String, PathBuf)> = file.models.unwrap_or_default().into_iter().collect();
    for spec in &args.models {
        let (name, path) = parse_model(spec)?;
        models.retain(|(n, _)| *n != name);
        models.push((name, path));
    }
    for (name, path) in &models {
        if !path.exists() {
            bail!("model '{name}': {} does not exist", path.display());
        }
    }
    let keep_alive = match args.keep_alive.or(file.keep_alive) {
        Some(text) => KeepAlive::parse(&text).map_err(anyhow::Error::msg).context("--keep-alive")?,
        None => d.keep_alive,
    };
    let e = EngineConfig::default();
    let engine = EngineConfig {
        block_size: args.block_size.or(file.block_size).unwrap_or(e.block_size),
        kv_cache_bytes: size(args.kv_cache, file.kv_cache, "kv_cache")?.map(|b| b as usize),
        max_batch_tokens: args.max_batch_tokens.or(file.max_batch_tokens).unwrap_or(e.max_batch_tokens),
        max_running: args.max_running.or(file.max_running).unwrap_or(e.max_running),
    };
    if engine.block_size == 0 || engine.max_batch_tokens == 0 || engine.max_running == 0 {
        bail!("--block-size, --max-batch-tokens and --max-running must be at least 1");
    }
    Ok(ServerConfig {
        listen,
        api_key: args.api_key.or(file.api_key).filter(|k| !k.is_empty()),
        models,
        models_dir: args.models_dir.or(file.models_dir),
        keep_alive,
        max_queue: args.max_queue.or(file.max_queue).unwrap_or(d.max_queue),
        body_limit: size(args.body_limit, file.body_limit, "body_limit")?.map_or(d.body_limit, |b| b as usize),
        memory_budget: size(args.memory_budget, file.memory_budget, "memory_budget")?,
        engine,
        device: args.device.or(file.device).unwrap_or(d.device),
        shutdown_grace: Duration::from_secs(args.shutdown_grace.or(file.shutdown_grace).unwrap_or(d.shutdown_grace.as_secs())),
    })
}

pub fn run(args: ServeArgs) -> Result<()> {
    let config = resolve(args)?;
    // Names not configured here resolve through the model store (`hearth cache`), counted as uses by
    // hearth; only store names, never client-supplied paths.
    if config.models.is_empty() && config.models_dir.is_none() {
        eprintln!("hearth serve: no --model or --models-dir; model names are looked up in the model store (`hearth cache add …`)");
    }
    let resolver: hearth_server::registry::Resolver =
        std::sync::Arc::new(|name: &str| crate::cache::resolve_store_name(name).ok());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(async {
        let state = AppState::new(&config, Some(resolver));
        let on_listening = |address: &str| {
            // Tests and scripts read this line to find a port picked with --port 0.
            println!("hearth serve listening on {address}");
            let _ = std::io::stdout().flush();
        };
        hearth_server::serve(config.clone(), state, shutdown_signal(), on_listening).await
    })?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    eprintln!("hearth serve: shutting down (in-flight requests get a grace period)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_specs_parse() {
        let (name, path) = parse_model("/m/SmolLM2.Q4.gguf").expect("bare path");
        assert_eq!((name.as_str(), path), ("SmolLM2.Q4", PathBuf::from("/m/SmolLM2.Q4.gguf")));
        assert_eq!(parse_model("smol=/m/x.gguf").expect("named").0, "smol");
        assert!(parse_model("=x").is_err());
    }

    #[derive(clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn flags_override_the_config_file_which_overrides_defaults() {
        use clap::Parser;
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("m.gguf");
        std::fs::write(&model, b"x").expect("write");
        let file = dir.path().join("serve.yaml");
        let yaml = format!("port: 9000\nkeep_alive: 1m\nkv_cache: 64M\nmodels:\n  m: {}\n", model.display());
        std::fs::write(&file, yaml).expect("write");
        let config = file.to_str().expect("utf-8");
        let w = Wrapper::try_parse_from(["t", "--config", config, "--port", "9001"]).expect("args");
        let c = resolve(w.serve).expect("resolve");
        assert_eq!(c.listen, Listen::Tcp { host: "127.0.0.1".into(), port: 9001 });
        assert_eq!(c.keep_alive, KeepAlive::For(Duration::from_secs(60)));
        assert_eq!(c.engine.kv_cache_bytes, Some(64 << 20));
        assert_eq!(c.models, vec![("m".to_string(), model.clone())]);
        assert_eq!(c.max_queue, ServerConfig::default().max_queue);
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "prot: 1\n").expect("write");
        let w = Wrapper::try_parse_from(["t", "--config", bad.to_str().expect("utf-8")]).expect("args");
        assert!(resolve(w.serve).is_err(), "unknown keys are refused");
    }
}
