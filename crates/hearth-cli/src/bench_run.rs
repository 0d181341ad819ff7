//! `hearth bench run | list | show | compare`: benchmarks of any OpenAI- or Ollama-API endpoint over HTTP
//! (hearth-monitor's load generator), saved in the monitor history.

use anyhow::{bail, Context, Result};
use clap::Args;
use hearth_monitor::bench::report::{self, Format};
use hearth_monitor::bench::{self, Api, BenchConfig, RunStatus};
use hearth_monitor::history::History;
use hearth_monitor::source::{ServerKind, Source};
use std::path::PathBuf;
use std::time::Duration;

/// Where the history lives: `--db`, else `HEARTH_MONITOR_DB`, else `$XDG_DATA_HOME/hearth/monitor.db`
/// (`~/.local/share/hearth/monitor.db`).
#[derive(Args, Clone)]
pub struct DbArg {
    /// The monitor history database (SQLite).
    #[arg(long)]
    pub db: Option<PathBuf>,
}

impl DbArg {
    pub fn path(&self) -> PathBuf {
        if let Some(p) = self.db.clone().or_else(|| std::env::var_os("HEARTH_MONITOR_DB").map(PathBuf::from)) {
            return p;
        }
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".local/share"));
        data.join("hearth/monitor.db")
    }

    pub fn open(&self) -> Result<History> {
        Ok(History::open(&self.path())?)
    }
}

#[derive(Args)]
pub struct RunArgs {
    /// The server: http://127.0.0.1:8080 (llama.cpp), http://127.0.0.1:11434 (Ollama), …
    #[arg(long)]
    pub endpoint: String,
    /// openai (/v1/chat/completions) or ollama (/api/chat); default: ollama for Ollama servers, else openai.
    #[arg(long)]
    pub api: Option<String>,
    /// Model name as the server knows it; default: the first model it lists.
    #[arg(long)]
    pub model: Option<String>,
    /// `standard` (the 10-prompt suite), `random[:N]` (synthetic prompts of random length), or a file
    /// (JSON list of {name, prompt}, or one prompt per line).
    #[arg(long, default_value = "standard")]
    pub prompts: String,
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Requests in all (default: one per prompt).
    #[arg(long)]
    pub requests: Option<usize>,
    #[arg(long, default_value_t = 128)]
    pub max_tokens: u32,
    /// Seconds one request may take.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// table, json or csv.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Do not save the result in the history.
    #[arg(long)]
    pub no_save: bool,
    #[command(flatten)]
    pub db: DbArg,
}

#[derive(Args)]
pub struct ListArgs {
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    #[arg(long, default_value = "table")]
    pub format: String,
    #[command(flatten)]
    pub db: DbArg,
}

#[derive(Args)]
pub struct ShowArgs {
    pub id: i64,
    #[arg(long, default_value = "table")]
    pub format: String,
    #[command(flatten)]
    pub db: DbArg,
}

#[derive(Args)]
pub struct CompareArgs {
    /// The baseline run.
    pub a: i64,
    /// The run compared with it (ratios are B / A).
    pub b: i64,
    #[arg(long, default_value = "table")]
    pub format: String,
    #[command(flatten)]
    pub db: DbArg,
}

pub fn run(args: RunArgs) -> Result<()> {
    let format: Format = args.format.parse()?;
    let prompts = bench::prompts::load(&args.prompts)?;
    let history = if args.no_save { None } else { Some(args.db.open()?) };
    let mut result = hearth_monitor::block_on(async {
        let (api, model) = resolve_api_and_model(&args).await?;
        let config = BenchConfig {
            endpoint: args.endpoint.clone(),
            api,
            model,
            prompts_label: args.prompts.clone(),
            prompts,
            concurrency: args.concurrency,
            requests: args.requests,
            max_tokens: args.max_tokens,
            request_timeout: Duration::from_secs(args.timeout.max(1)),
        };
        anyhow::Ok(bench::run(&config, hearth_monitor::ctrl_c()).await?)
    })??;
    if let Some(h) = &history {
        result.id = Some(h.save_benchmark(&result).with_context(|| format!("saving the result in {}", h.path().display()))?);
    }
    print!("{}", report::show(&result, format));
    match result.status {
        RunStatus::Complete => Ok(()),
        _ => bail!("benchmark {}: {}", report::status_label(result.status), result.note.as_deref().unwrap_or("no request completed")),
    }
}

/// `--api` and `--model` as given, else from what the endpoint says it is and serves.
async fn resolve_api_and_model(args: &RunArgs) -> Result<(Api, String)> {
    let given_api = args.api.as_deref().map(str::parse::<Api>).transpose()?;
    if let (Some(api), Some(model)) = (given_api, &args.model) {
        return Ok((api, model.clone()));
    }
    let source = Source::probe(&args.endpoint).await.with_context(|| format!("finding the API and model of {} (pass --api and --model to skip this)", args.endpoint))?;
    let api = given_api.unwrap_or(if matches!(source.kind, ServerKind::Ollama | ServerKind::Proxy) { Api::Ollama } else { Api::OpenAi });
    let model = match &args.model {
        Some(m) => m.clone(),
        None => source.served_models.first().cloned().with_context(|| format!("{} lists no model: pass --model", args.endpoint))?,
    };
    Ok((api, model))
}

pub fn list(args: ListArgs) -> Result<()> {
    let format: Format = args.format.parse()?;
    let runs = args.db.open()?.benchmarks(args.limit)?;
    print!("{}", report::list(&runs, format));
    Ok(())
}

pub fn show(args: ShowArgs) -> Result<()> {
    let format: Format = args.format.parse()?;
    let h = args.db.open()?;
    let run = h.benchmark(args.id)?.with_context(|| format!("no benchmark #{} in {}", args.id, h.path().display()))?;
    print!("{}", report::show(&run, format));
    Ok(())
}

pub fn compare(args: CompareArgs) -> Result<()> {
    let format: Format = args.format.parse()?;
    let h = args.db.open()?;
    let get = |id: i64| h.benchmark(id).map_err(anyhow::Error::from).and_then(|r| r.with_context(|| format!("no benchmark #{id} in {}", h.path().display())));
    print!("{}", report::comparison(&get(args.a)?, &get(args.b)?, format));
    Ok(())
}
