//! `hearth cache …`: one deduplicated model store shared with the Hugging Face cache, Ollama and LM Studio.
//! This file parses the subcommands and resolves settings (defaults < config file < environment < flags);
//! `cache_output.rs` prints. The store itself is `hearth-store`.

use crate::cache_output as out;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use hearth_store::sync::SyncOptions;
use hearth_store::{Config, Locations, Remotes, Store};
use std::path::{Path, PathBuf};

const ABOUT: &str = "One model store shared with the Hugging Face cache, Ollama and LM Studio.

Models are kept once, as content-addressed blobs (sha256) with a SQLite registry, in $HEARTH_CACHE_DIR
(default ~/.cache/hearth). `sync` indexes the other tools' caches in place and `dedup` links identical
files so each weight file takes disk space once. `hearth run/show` accept store names (org/repo, name:tag).

Environment: HEARTH_CACHE_DIR, HF_TOKEN, HF_ENDPOINT, HF_HUB_CACHE (or HF_HOME), OLLAMA_MODELS,
HEARTH_OLLAMA_REGISTRY (default https://registry.ollama.ai), HEARTH_LMSTUDIO_MODELS (default
~/.lmstudio/models), HEARTH_FETCH_BACKOFF_MS (first retry delay). Config: $XDG_CONFIG_HOME/hearth/config.yaml.";

#[derive(Args)]
// after_help, not long_about: the doc comment of the `Cache` variant in main.rs sets the about texts.
#[command(after_help = ABOUT)]
pub struct CacheArgs {
    /// The store folder (overrides HEARTH_CACHE_DIR and the config's cache_dir).
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<PathBuf>,
    #[command(subcommand)]
    command: CacheCommand,
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Table of models: name, source, format, quantization, size, used by, last used; totals and savings.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Fetch or import a model: hf://org/repo[@rev][/file-or-glob], ollama://name[:tag], file:///path.
    Add {
        /// hf://org/repo[@REVISION][/FILE-OR-GLOB], ollama://[namespace/]name[:tag] or file:///path.
        ///
        /// REVISION is a branch, tag or commit (default main). It ends at the next `/`, so write one that
        /// contains slashes URL-encoded (hf://org/repo@feature%2Fx/model.gguf); pull-request refs are also
        /// recognised as written (hf://org/repo@refs/pr/1). FILE-OR-GLOB picks files (`*`, `?`); without it
        /// a GGUF repo gives one quantization (Q4_K_M first). A split GGUF (NAME-00001-of-00003.gguf) is
        /// fetched whole when any part is picked and stored as one model; hearth cannot load split GGUF yet.
        #[arg(required = true, value_name = "SOURCE")]
        sources: Vec<String>,
        /// An alias to resolve the model by (one source only).
        #[arg(long)]
        name: Option<String>,
        /// Files downloaded at once.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
    },
    /// Remove a model; refuses while an app links it (names the apps) unless --force.
    Remove {
        model: String,
        #[arg(long)]
        force: bool,
    },
    /// Register an app and link the models it uses into its model folder (reflink, hard link or symlink).
    Link {
        app_path: PathBuf,
        /// Models to link (store names); repeatable.
        #[arg(long = "model", value_name = "M")]
        models: Vec<String>,
        /// The app's model folder (default APP_PATH/models).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Undo `link`: remove exactly the links it made and forget the app.
    Unlink { app_path: PathBuf },
    /// Remove models no app links and not used for N days, orphan blobs, stale partial downloads; evict
    /// least recently used models above max_cache_size_gb when auto_clean is on.
    Clean {
        #[arg(long)]
        dry_run: bool,
        /// Days without use (default: the config's clean_after_days).
        #[arg(long)]
        days: Option<u32>,
    },
    /// Disk usage: logical bytes (each tool's own copies) against physical bytes (unique inodes/extents).
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Index the HF cache, Ollama and LM Studio in place (no weight bytes read); optionally export a
    /// store model to Ollama or LM Studio.
    Sync {
        #[arg(long)]
        no_hf: bool,
        #[arg(long)]
        no_ollama: bool,
        #[arg(long)]
        no_lmstudio: bool,
        /// Export MODEL to Ollama, as MODEL=name:tag or just MODEL (named after it).
        #[arg(long, value_name = "MODEL[=NAME:TAG]")]
        to_ollama: Vec<String>,
        /// Export MODEL into LM Studio's folder.
        #[arg(long, value_name = "MODEL")]
        to_lmstudio: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Keep one physical copy of byte-identical files across the store, the tools' caches and DIRs.
    Dedup {
        #[arg(long)]
        dry_run: bool,
        dirs: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Re-hash store blobs; corrupt ones are quarantined and `add` fetches them again.
    Verify {
        /// Also re-hash digest-named files in the HF cache and Ollama store (reported, not moved).
        #[arg(long)]
        external: bool,
    },
    /// Read or change the YAML config.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print one key, or the whole config.
    Get { key: Option<String> },
    /// Set a key to a YAML value (checked against the config's schema).
    Set { key: String, value: String },
    /// Open the config in $EDITOR (validated afterwards).
    Edit,
    /// Print the config file's path.
    Path,
}

pub fn run(args: CacheArgs) -> Result<()> {
    let config_path = config_path();
    if let CacheCommand::Config(cmd) = args.command {
        return config(cmd, &config_path);
    }
    let config = Config::load(&config_path)?;
    let mut store = open_store(args.store.as_deref(), config)?;
    match args.command {
        CacheCommand::Status { json } => out::status(&store, json),
        CacheCommand::Add { sources, name, parallel } => add(&mut store, &sources, name.as_deref(), parallel),
        CacheCommand::Remove { model, force } => {
            let m = store.resolve(&model)?;
            let freed = store.remove(&m, force)?;
            println!("removed {} ({} freed)", m.name, out::bytes(freed));
            Ok(())
        }
        CacheCommand::Link { app_path, models, dir } => link(&mut store, &app_path, &models, dir),
        CacheCommand::Unlink { app_path } => {
            let removed = store.unlink_app(&absolute(&app_path)?)?;
            println!("removed {} link(s)", removed.len());
            Ok(())
        }
        CacheCommand::Clean { dry_run, days } => {
            let days = days.unwrap_or(store.config.clean_after_days);
            out::clean(&store.clean(days, dry_run)?);
            Ok(())
        }
        CacheCommand::Stats { json } => out::stats(&hearth_store::stats::compute(&store)?, json),
        CacheCommand::Sync { no_hf, no_ollama, no_lmstudio, to_ollama, to_lmstudio, json } => {
            let opts = SyncOptions { hf: !no_hf, ollama: !no_ollama && store.config.ollama_sync, lmstudio: !no_lmstudio };
            sync(&mut store, opts, &to_ollama, &to_lmstudio, json)
        }
        CacheCommand::Dedup { dry_run, dirs, json } => {
            let mut all = store.locations.scan_dirs.clone();
            all.extend(dirs);
            out::dedup(&hearth_store::dedup::dedup(&store, &all, dry_run)?, json)
        }
        CacheCommand::Verify { external } => out::verify(&store.verify(external)?),
        CacheCommand::Config(_) => unreachable!("handled above"),
    }
}

fn add(store: &mut Store, sources: &[String], alias: Option<&str>, parallel: usize) -> Result<()> {
    if alias.is_some() && sources.len() > 1 {
        bail!("--name needs exactly one source");
    }
    store.remotes.parallel = parallel.max(1);
    for source in sources {
        let m = store.add(source, alias).with_context(|| format!("adding {source}"))?;
        println!("added {} ({}, {}) -> {}", m.name, m.format, out::bytes(m.size), m.entry.display());
    }
    if let Some(report) = store.auto_clean()? {
        if !report.models.is_empty() {
            out::clean(&report);
        }
    }
    Ok(())
}

fn link(store: &mut Store, app_path: &Path, names: &[String], dir: Option<PathBuf>) -> Result<()> {
    let app_path = absolute(app_path)?;
    let dir = match dir {
        Some(d) => absolute(&d)?,
        None => app_path.join("models"),
    };
    let models = names.iter().map(|n| store.resolve(n)).collect::<Result<Vec<_>, _>>()?;
    for l in store.link_app(&app_path, &dir, &models)? {
        println!("{} ({})", l.path.display(), l.mode);
    }
    Ok(())
}

fn sync(store: &mut Store, opts: SyncOptions, to_ollama: &[String], to_lmstudio: &[String], json: bool) -> Result<()> {
    let report = hearth_store::sync::sync(store, opts)?;
    out::sync(&report, json)?;
    for spec in to_ollama {
        let (model, as_name) = match spec.split_once('=') {
            Some((m, n)) => (m, n.to_string()),
            None => (spec.as_str(), spec.rsplit('/').next().unwrap_or(spec).to_string()),
        };
        let m = store.resolve(model)?;
        let manifest = store.export_ollama(&m, &as_name)?;
        println!("exported {} to Ollama as {as_name} ({})", m.name, manifest.display());
    }
    for model in to_lmstudio {
        let m = store.resolve(model)?;
        let path = store.export_lmstudio(&m)?;
        println!("exported {} to LM Studio ({})", m.name, path.display());
    }
    Ok(())
}

fn config(cmd: ConfigCommand, path: &Path) -> Result<()> {
    let current = Config::load(path)?;
    match cmd {
        ConfigCommand::Get { key: Some(key) } => println!("{}", current.get(&key, path)?),
        ConfigCommand::Get { key: None } => print!("{}", std::fs::read_to_string(path).unwrap_or_default()),
        ConfigCommand::Set { key, value } => current.set(&key, &value, path)?.save(path)?,
        ConfigCommand::Path => println!("{}", path.display()),
        ConfigCommand::Edit => {
            if !path.exists() {
                current.save(path)?;
            }
            let editor = std::env::var("VISUAL").or_else(|_| std::env::var("EDITOR")).unwrap_or_else(|_| "vi".into());
            let status = std::process::Command::new(&editor).arg(path).status().with_context(|| format!("starting {editor}"))?;
            if !status.success() {
                bail!("{editor} exited with {status}");
            }
            Config::load(path).context("the edited config is invalid")?;
        }
    }
    Ok(())
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"))
}

fn env_path(key: &str) -> Option<PathBuf> {
    std::env::var_os(key).filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn config_path() -> PathBuf {
    env_path("XDG_CONFIG_HOME").unwrap_or_else(|| home().join(".config")).join("hearth/config.yaml")
}

fn store_dir(flag: Option<&Path>, config: &Config) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| env_path("HEARTH_CACHE_DIR"))
        .or_else(|| config.cache_dir.clone())
        .unwrap_or_else(|| env_path("XDG_CACHE_HOME").unwrap_or_else(|| home().join(".cache")).join("hearth"))
}

/// Opens the store with every location resolved: flag > environment > config file > default.
pub fn open_store(flag: Option<&Path>, config: Config) -> Result<Store> {
    let store_dir = store_dir(flag, &config);
    let hf_hub_cache = env_path("HF_HUB_CACHE")
        .or_else(|| env_path("HF_HOME").map(|h| h.join("hub")))
        .unwrap_or_else(|| env_path("XDG_CACHE_HOME").unwrap_or_else(|| home().join(".cache")).join("huggingface/hub"));
    let locations = Locations {
        store_dir,
        hf_hub_cache,
        ollama_models: env_path("OLLAMA_MODELS").unwrap_or_else(|| home().join(".ollama/models")),
        lmstudio_models: env_path("HEARTH_LMSTUDIO_MODELS").or_else(|| config.lmstudio_dir.clone()).unwrap_or_else(|| home().join(".lmstudio/models")),
        scan_dirs: config.scan_dirs.clone(),
    };
    let defaults = Remotes::default();
    let remotes = Remotes {
        hf_endpoint: std::env::var("HF_ENDPOINT").ok().filter(|s| !s.is_empty()).unwrap_or(defaults.hf_endpoint),
        hf_token: std::env::var("HF_TOKEN").or_else(|_| std::env::var("HUGGING_FACE_HUB_TOKEN")).ok().filter(|s| !s.is_empty()),
        ollama_registry: std::env::var("HEARTH_OLLAMA_REGISTRY").ok().filter(|s| !s.is_empty()).unwrap_or(defaults.ollama_registry),
        backoff_ms: std::env::var("HEARTH_FETCH_BACKOFF_MS").ok().and_then(|s| s.parse().ok()).unwrap_or(defaults.backoff_ms),
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ..defaults
    };
    let dir = locations.store_dir.clone();
    Store::open(locations, remotes, config).with_context(|| format!("opening the model store in {}", dir.display()))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir()?.join(p) })
}

/// The path a MODEL argument of `run` / `show` stands for. Anything that looks like a path (exists, is
/// absolute, starts with `.`, ends in `.gguf`) stays a path so the loader names the missing file; anything
/// else is a store name, resolved through the store and counted as a use by hearth.
pub fn resolve_model_arg(model: &Path) -> Result<PathBuf> {
    let text = model.to_string_lossy();
    let looks_like_path = model.exists() || model.is_absolute() || text.starts_with('.') || text.ends_with(".gguf");
    let path = if looks_like_path { model.to_path_buf() } else { resolve_store_name(&text)? };
    refuse_split_gguf(&path)?;
    Ok(path)
}

/// hearth's loader reads single-file GGUF only: part of a split one is refused here by name, rather than
/// failing deep in the load on the tensors the other parts hold.
fn refuse_split_gguf(path: &Path) -> Result<()> {
    if !path.is_file() {
        return Ok(());
    }
    match hearth_store::meta::gguf_split_count(path) {
        Some(n) if n > 1 => bail!(
            "{}: split GGUF (one of {n} files) is not supported by hearth yet; merge the parts into one file \
             (llama-gguf-split --merge FIRST-PART merged.gguf) and use that",
            path.display()
        ),
        _ => Ok(()),
    }
}

/// The entry path of store model `name` (`org/repo`, `name:tag`, an alias), counted as a use by hearth.
/// With no store yet, the "not found — try `hearth cache add`" error rather than creating one.
pub fn resolve_store_name(name: &str) -> Result<PathBuf> {
    let config = Config::load(&config_path())?;
    let dir = store_dir(None, &config);
    if !dir.join("registry.db").exists() {
        return Err(hearth_store::StoreError::NotFound(name.to_owned()).into());
    }
    let store = open_store(None, config)?;
    let m = store.resolve(name)?;
    if !m.entry.exists() {
        bail!("{}: registered as {} but its files are missing; run `hearth cache add {}` again", m.name, m.entry.display(), m.source);
    }
    store.record_use(&m, hearth_store::HEARTH_APP)?;
    Ok(m.entry)
}
