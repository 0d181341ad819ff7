//! `hearth dash`: the live monitor in the terminal, or in the browser with `--web`; also
//! `hearth history export | import | prune` for the monitor's SQLite history.

use crate::bench_run::DbArg;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use hearth_monitor::history::{History, Retention};
use hearth_monitor::monitor::{self, CacheReader, CacheStatus, MonitorConfig};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct DashArgs {
    /// Servers to watch (repeatable), besides those in the monitor config; without any, the usual ports
    /// of hearth, Ollama, llama.cpp, vLLM and the proxy are probed too.
    #[arg(long = "endpoint")]
    pub endpoints: Vec<String>,
    /// The monitor config (YAML: `endpoints:` a list of name, url, kind); default
    /// `$XDG_CONFIG_HOME/hearth/monitor.yaml` (`~/.config/hearth/monitor.yaml`); a missing file is no endpoints.
    #[arg(long, env = "HEARTH_MONITOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Serve the web dashboard instead of drawing in the terminal.
    #[arg(long)]
    pub web: bool,
    /// Address of the web dashboard.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub addr: String,
    /// Print one snapshot as JSON after this many seconds of sampling, then exit (for scripts).
    #[arg(long)]
    pub json_after: Option<f64>,
    /// Days of sessions and samples to keep.
    #[arg(long, default_value_t = 30)]
    pub keep_days: u32,
    /// Record nothing in the history.
    #[arg(long)]
    pub no_history: bool,
    #[command(flatten)]
    pub db: DbArg,
}

pub fn run(args: DashArgs) -> Result<()> {
    let history = if args.no_history { None } else { Some(open_pruned(&args.db, args.keep_days)?) };
    let config_path = args.config.clone().unwrap_or_else(default_config_path);
    let from_file = hearth_monitor::endpoints::load(&config_path)?;
    let endpoints = hearth_monitor::endpoints::resolve(&args.endpoints, from_file);
    let config = MonitorConfig { endpoints, history, cache: Some(store_cache_reader()), ..MonitorConfig::default() };
    if let Some(secs) = args.json_after {
        return hearth_monitor::block_on(print_snapshot_after(config, secs))?;
    }
    if args.web {
        return hearth_monitor::block_on(serve_web(config, args.addr))?;
    }
    hearth_monitor::block_on(hearth_monitor::tui::run(config))??;
    Ok(())
}

/// `monitor.yaml` beside the store's `config.yaml`: `$XDG_CONFIG_HOME/hearth/` (`~/.config/hearth/`).
fn default_config_path() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let home = env("HOME").unwrap_or_else(|| PathBuf::from("/"));
    env("XDG_CONFIG_HOME").unwrap_or_else(|| home.join(".config")).join("hearth/monitor.yaml")
}

fn open_pruned(db: &DbArg, keep_days: u32) -> Result<Arc<Mutex<History>>> {
    let mut h = db.open()?;
    h.prune(hearth_monitor::now_ms(), Retention { keep_days, ..Retention::default() }).with_context(|| format!("applying retention to {}", h.path().display()))?;
    Ok(Arc::new(Mutex::new(h)))
}

/// Cache figures from the model store, where one exists (never creating one), recomputed at most once a
/// minute: walking the caches costs far more than a sample.
fn store_cache_reader() -> CacheReader {
    let last: Mutex<Option<(Instant, Option<CacheStatus>)>> = Mutex::new(None);
    Arc::new(move || {
        let mut last = last.lock().ok()?;
        if let Some((_, status)) = last.as_ref().filter(|(at, _)| at.elapsed() < Duration::from_secs(60)) {
            return status.clone();
        }
        let status = read_store_cache();
        *last = Some((Instant::now(), status.clone()));
        status
    })
}

fn read_store_cache() -> Option<CacheStatus> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let home = env("HOME").unwrap_or_else(|| PathBuf::from("/"));
    let dir = env("HEARTH_CACHE_DIR").unwrap_or_else(|| env("XDG_CACHE_HOME").unwrap_or_else(|| home.join(".cache")).join("hearth"));
    if !dir.join("registry.db").is_file() {
        return None;
    }
    let store = crate::cache::open_store(Some(&dir), hearth_store::Config::default()).ok()?;
    let models = store.registry().models().ok()?.len() as u64;
    let stats = hearth_store::stats::compute(&store).ok()?;
    Some(CacheStatus { models, size_bytes: stats.physical_bytes, bytes_saved: stats.saved_bytes })
}

async fn print_snapshot_after(config: MonitorConfig, secs: f64) -> Result<()> {
    let rx = monitor::spawn(config);
    hearth_monitor::sleep(Duration::from_secs_f64(secs.clamp(0.0, 3600.0))).await;
    let snap = rx.borrow().clone();
    println!("{}", serde_json::to_string_pretty(&snap)?);
    Ok(())
}

async fn serve_web(config: MonitorConfig, addr: String) -> Result<()> {
    let history = config.history.clone();
    let snapshots = monitor::spawn(config);
    let listener = hearth_monitor::bind(&addr).await?;
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
    eprintln!("hearth dash: web dashboard at http://{local}/ (Ctrl-C to stop)");
    hearth_monitor::web::serve(listener, hearth_monitor::web::WebState { snapshots, history }, hearth_monitor::ctrl_c()).await.context("serving the web dashboard")
}

#[derive(Subcommand)]
pub enum HistoryCommand {
    /// Write the whole history as JSON, or one table as CSV.
    Export(ExportArgs),
    /// Add the contents of a JSON export.
    Import {
        file: PathBuf,
        #[command(flatten)]
        db: DbArg,
    },
    /// Apply retention now: delete old sessions and samples, downsample older samples to minute means.
    Prune {
        #[arg(long, default_value_t = 30)]
        keep_days: u32,
        #[command(flatten)]
        db: DbArg,
    },
}

#[derive(Args)]
pub struct ExportArgs {
    /// json or csv.
    #[arg(long, default_value = "json")]
    pub format: String,
    /// For CSV: sessions, benchmarks or samples.
    #[arg(long, default_value = "sessions")]
    pub table: String,
    /// Write here (atomically) instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub db: DbArg,
}

pub fn history(cmd: HistoryCommand) -> Result<()> {
    match cmd {
        HistoryCommand::Export(args) => export(args),
        HistoryCommand::Import { file, db } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let (s, b, p) = db.open()?.import_json(&text).with_context(|| format!("importing {}", file.display()))?;
            eprintln!("imported {s} sessions, {b} benchmarks, {p} samples");
            Ok(())
        }
        HistoryCommand::Prune { keep_days, db } => {
            let report = db.open()?.prune(hearth_monitor::now_ms(), Retention { keep_days, ..Retention::default() })?;
            eprintln!("deleted {} sessions and {} samples; downsampled {} samples", report.sessions_deleted, report.samples_deleted, report.samples_downsampled);
            Ok(())
        }
    }
}

fn export(args: ExportArgs) -> Result<()> {
    let h = args.db.open()?;
    let text = match args.format.as_str() {
        "json" => h.export_json()?,
        "csv" => h.export_csv(&args.table)?,
        other => anyhow::bail!("--format {other:?}: expected json or csv"),
    };
    match &args.output {
        Some(path) => write_atomic(path, text.as_bytes()),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// Writes through a temporary file in the same directory and renames it into place.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".{}.tmp{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("out"), std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}
