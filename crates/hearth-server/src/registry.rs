//! The models a server can serve and those it has loaded: names resolve to paths (configured names,
//! a models folder, or a pluggable resolver such as the model store), a model loads on first use (once,
//! however many requests ask at the same time), stays for its keep-alive, and is unloaded when idle
//! past it or when the memory budget needs room.

use crate::config::KeepAlive;
use crate::error::{ApiError, ApiResult, ErrorKind};
use hearth_engine::prompt::PromptMode;
use hearth_engine::{EngineConfig, EngineHandle};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// Maps a model name to a path; the model store plugs in here.
pub type Resolver = Arc<dyn Fn(&str) -> Option<PathBuf> + Send + Sync>;

/// How models are found and run.
#[derive(Clone)]
pub struct RegistrySettings {
    pub models: Vec<(String, PathBuf)>,
    pub models_dir: Option<PathBuf>,
    pub resolver: Option<Resolver>,
    pub engine: EngineConfig,
    pub device: String,
    pub keep_alive: KeepAlive,
    /// Requests per model allowed beyond the engine's running batch before 503.
    pub max_queue: usize,
    pub memory_budget: Option<u64>,
}

/// A loaded model: its engine, how prompts are built, and what it costs.
pub struct LoadedEntry {
    pub engine: EngineHandle,
    pub prompt: PromptMode,
    pub load_duration: Duration,
    /// Weights plus KV cache, in bytes.
    pub size: u64,
    /// Device memory the load took, as the driver measured it (`None` on the CPU).
    pub vram: Option<u64>,
}

struct SlotState {
    active: usize,
    keep_alive: KeepAlive,
    /// When the last request ended (or the model loaded).
    last_used: Instant,
}

/// One model by path, loaded or loading.
struct Slot {
    name: String,
    path: PathBuf,
    model: tokio::sync::OnceCell<Arc<LoadedEntry>>,
    state: Mutex<SlotState>,
}

/// What `/api/ps` shows about a loaded model.
pub struct LoadedInfo {
    pub name: String,
    pub path: PathBuf,
    pub entry: Arc<LoadedEntry>,
    pub active: usize,
    /// `None`: kept forever.
    pub expires_at: Option<SystemTime>,
}

pub struct Registry {
    settings: RegistrySettings,
    names: Mutex<BTreeMap<String, PathBuf>>,
    /// Models-folder names removed with `DELETE /api/delete` (their files are never touched).
    hidden: Mutex<BTreeSet<String>>,
    slots: Mutex<HashMap<PathBuf, Arc<Slot>>>,
    /// One load at a time, so memory-budget decisions see every loaded model.
    load_lock: tokio::sync::Mutex<()>,
}

/// A request's hold on a loaded model: while any exists, the model stays; on drop, its keep-alive starts.
pub struct Lease {
    registry: Arc<Registry>,
    slot: Arc<Slot>,
    pub model: Arc<LoadedEntry>,
}

impl Lease {
    pub fn name(&self) -> &str {
        &self.slot.name
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut slots = lock(&self.registry.slots);
        let mut state = lock(&self.slot.state);
        state.active = state.active.saturating_sub(1);
        state.last_used = Instant::now();
        if state.active == 0 && state.keep_alive.is_zero() {
            slots.remove(&self.slot.path);
            tracing::info!(model = %self.slot.name, "unloaded (keep_alive 0)");
        }
    }
}

/// Locks a mutex even if a panicking thread poisoned it: the guarded maps stay consistent
/// (every update is a single insert or remove).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    pub fn new(settings: RegistrySettings) -> Arc<Self> {
        let names = settings.models.iter().cloned().collect();
        Arc::new(Self {
            settings,
            names: Mutex::new(names),
            hidden: Mutex::new(BTreeSet::new()),
            slots: Mutex::new(HashMap::new()),
            load_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn default_keep_alive(&self) -> KeepAlive {
        self.settings.keep_alive
    }

    /// The path a model name stands for, if it is known.
    pub fn resolve(&self, name: &str) -> Option<PathBuf> {
        let name = name.strip_suffix(":latest").unwrap_or(name);
        if let Some(p) = lock(&self.names).get(name) {
            return Some(p.clone());
        }
        if let Some(p) = self.in_models_dir(name) {
            return Some(p);
        }
        self.settings.resolver.as_ref().and_then(|r| r(name))
    }

    fn in_models_dir(&self, name: &str) -> Option<PathBuf> {
        let dir = self.settings.models_dir.as_ref()?;
        // A name is a file stem, never a path: no separators, no parent references.
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') || lock(&self.hidden).contains(name) {
            return None;
        }
        let file = dir.join(format!("{name}.gguf"));
        if file.is_file() {
            return Some(file);
        }
        let folder = dir.join(name);
        folder.join("config.json").is_file().then_some(folder)
    }

    /// Every servable model by name: configured names, then the models folder.
    pub fn list(&self) -> Vec<(String, PathBuf)> {
        let mut all: BTreeMap<String, PathBuf> = lock(&self.names).clone();
        if let Some(dir) = &self.settings.models_dir {
            for name in scan_models_dir(dir) {
                if let Some(p) = self.in_models_dir(&name) {
                    all.entry(name).or_insert(p);
                }
            }
        }
        all.into_iter().collect()
    }

    /// `POST /api/copy`: `to` becomes another name of `from`'s model.
    pub fn copy(&self, from: &str, to: &str) -> ApiResult<()> {
        let path = self.resolve(from).ok_or_else(|| ApiError::model_not_found(from))?;
        if to.trim().is_empty() || to.contains(['/', '\\']) {
            return Err(ApiError::bad_param("destination", format!("'{to}' is not a valid model name")));
        }
        let to = to.strip_suffix(":latest").unwrap_or(to);
        lock(&self.hidden).remove(to);
        lock(&self.names).insert(to.to_string(), path);
        Ok(())
    }

    /// `DELETE /api/delete`: forget a name and unload its model if idle. Files are never deleted.
    pub fn delete(&self, name: &str) -> ApiResult<()> {
        let path = self.resolve(name).ok_or_else(|| ApiError::model_not_found(name))?;
        let name = name.strip_suffix(":latest").unwrap_or(name);
        if lock(&self.names).remove(name).is_none() {
            lock(&self.hidden).insert(name.to_string());
        }
        let mut slots = lock(&self.slots);
        if slots.get(&path).is_some_and(|s| lock(&s.state).active == 0) {
            slots.remove(&path);
        }
        Ok(())
    }

    /// Take a lease on `name`'s model, loading it first if needed. `keep_alive` (the request's) replaces
    /// the model's. Past the queue bound, 503.
    pub async fn acquire(self: &Arc<Self>, name: &str, keep_alive: Option<KeepAlive>) -> ApiResult<Lease> {
        let path = self.resolve(name).ok_or_else(|| ApiError::model_not_found(name))?;
        let slot = {
            let mut slots = lock(&self.slots);
            let slot = slots.entry(path.clone()).or_insert_with(|| Arc::new(Slot::new(name, path, self.settings.keep_alive))).clone();
            let mut state = lock(&slot.state);
            let limit = self.settings.engine.max_running + self.settings.max_queue;
            if state.active >= limit {
                return Err(ApiError::overloaded(format!("model '{name}' has {limit} requests in flight; retry later")));
            }
            state.active += 1;
            // As in Ollama, every request sets the model's keep-alive (the server default if it names none).
            state.keep_alive = keep_alive.unwrap_or(self.settings.keep_alive);
            drop(state);
            slot
        };
        // From here the lease's drop undoes the count, also when loading fails.
        let model = slot.model.get_or_try_init(|| self.load(&slot)).await;
        let model = match model {
            Ok(m) => m.clone(),
            Err(e) => {
                self.release_failed(&slot);
                return Err(e);
            }
        };
        Ok(Lease { registry: self.clone(), slot, model })
    }

    fn release_failed(&self, slot: &Arc<Slot>) {
        let mut slots = lock(&self.slots);
        let mut state = lock(&slot.state);
        state.active = state.active.saturating_sub(1);
        if state.active == 0 && slot.model.get().is_none() {
            slots.remove(&slot.path);
        }
    }

    async fn load(&self, slot: &Slot) -> ApiResult<Arc<LoadedEntry>> {
        let _one_at_a_time = self.load_lock.lock().await;
        let estimate = file_size(&slot.path) + self.settings.engine.kv_cache_bytes.unwrap_or(0) as u64;
        self.make_room(&slot.path, estimate)?;
        let (path, engine, device) = (slot.path.clone(), self.settings.engine.clone(), self.settings.device.clone());
        let started = Instant::now();
        let loaded = tokio::task::spawn_blocking(move || load_blocking(&path, engine, &device))
            .await
            .map_err(|e| ApiError::internal(format!("loading {}: {e}", slot.path.display())))??;
        let size = loaded.engine.context().info.file_size + loaded.engine.context().kv_cache_bytes as u64;
        let entry = Arc::new(LoadedEntry { engine: loaded.engine, prompt: loaded.prompt, load_duration: started.elapsed(), size, vram: loaded.vram });
        lock(&slot.state).last_used = Instant::now();
        tracing::info!(model = %slot.name, path = %slot.path.display(), size, "loaded");
        Ok(entry)
    }

    /// Unload idle models, least recently used first, until `needed` more bytes fit the budget.
    fn make_room(&self, loading: &Path, needed: u64) -> ApiResult<()> {
        let Some(budget) = self.settings.memory_budget else { return Ok(()) };
        if needed > budget {
            return Err(ApiError::new(ErrorKind::InsufficientMemory, format!(
                "{} needs about {needed} bytes but the memory budget is {budget}", loading.display())));
        }
        let mut slots = lock(&self.slots);
        loop {
            let loaded: Vec<(PathBuf, u64, Option<Instant>)> = slots
                .iter()
                .filter(|(p, _)| p.as_path() != loading)
                .filter_map(|(p, s)| {
                    let state = lock(&s.state);
                    let idle_since = (state.active == 0).then_some(state.last_used);
                    s.model.get().map(|m| (p.clone(), m.size, idle_since))
                })
                .collect();
            let used: u64 = loaded.iter().map(|l| l.1).sum();
            if used + needed <= budget {
                return Ok(());
            }
            let Some(victim) = loaded.iter().filter_map(|l| l.2.map(|t| (t, &l.0))).min().map(|(_, p)| p.clone()) else {
                return Err(ApiError::overloaded(format!("the memory budget ({budget} bytes) is held by busy models; retry later")));
            };
            tracing::info!(path = %victim.display(), "unloading to make room");
            slots.remove(&victim);
        }
    }

    /// Unload models idle past their keep-alive; returns how many.
    pub fn reap_expired(&self) -> usize {
        let now = Instant::now();
        let mut slots = lock(&self.slots);
        let before = slots.len();
        slots.retain(|_, s| {
            let state = lock(&s.state);
            let expired = match state.keep_alive {
                KeepAlive::Forever => false,
                KeepAlive::For(d) => state.active == 0 && s.model.get().is_some() && now >= state.last_used + d,
            };
            if expired {
                tracing::info!(model = %s.name, "unloaded (keep_alive expired)");
            }
            !expired
        });
        before - slots.len()
    }

    /// Unload a model now if nothing is using it (Ollama's `keep_alive: 0` with an empty prompt).
    pub fn unload_if_idle(&self, name: &str) -> bool {
        let Some(path) = self.resolve(name) else { return false };
        let mut slots = lock(&self.slots);
        let idle = slots.get(&path).is_some_and(|s| lock(&s.state).active == 0);
        if idle {
            slots.remove(&path);
        }
        idle
    }

    /// Loaded models, for `/api/ps` and `/metrics`.
    pub fn loaded(&self) -> Vec<LoadedInfo> {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let slots = lock(&self.slots);
        let mut out: Vec<LoadedInfo> = slots
            .values()
            .filter_map(|s| {
                let entry = s.model.get()?.clone();
                let state = lock(&s.state);
                let expires_at = match state.keep_alive {
                    KeepAlive::Forever => None,
                    KeepAlive::For(d) if state.active > 0 => Some(wall + d),
                    KeepAlive::For(d) => Some(wall + (state.last_used + d).saturating_duration_since(now)),
                };
                Some(LoadedInfo { name: s.name.clone(), path: s.path.clone(), entry, active: state.active, expires_at })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Drop every loaded model (shutdown): engines stop once their requests are gone.
    pub fn unload_all(&self) {
        lock(&self.slots).clear();
    }
}

impl Slot {
    fn new(name: &str, path: PathBuf, keep_alive: KeepAlive) -> Self {
        let name = name.strip_suffix(":latest").unwrap_or(name).to_string();
        let state = SlotState { active: 0, keep_alive, last_used: Instant::now() };
        Self { name, path, model: tokio::sync::OnceCell::new(), state: Mutex::new(state) }
    }
}

/// What a load produced: the running engine, its prompt mode and the device memory it took.
struct Loaded {
    engine: EngineHandle,
    prompt: PromptMode,
    vram: Option<u64>,
}

fn load_blocking(path: &Path, engine: EngineConfig, device: &str) -> ApiResult<Loaded> {
    let fail = |e: String| ApiError::internal(format!("loading {}: {e}", path.display()));
    let spec: hearth_layers::DeviceSpec = device.parse().map_err(|e| fail(format!("{e}")))?;
    let device = hearth_layers::select_device(spec).map_err(|e| fail(e.to_string()))?;
    let before = hearth_layers::device::memory_in_use(&device);
    let loaded = hearth_models::load(path, &device).map_err(|e| fail(e.to_string()))?;
    let handle = EngineHandle::start(loaded, engine).map_err(|e| fail(e.to_string()))?;
    // Weights and the KV cache are on the device once the engine has started.
    let vram = before.zip(hearth_layers::device::memory_in_use(&device)).map(|(a, b)| b.saturating_sub(a));
    let prompt = PromptMode::for_model(handle.context(), false).map_err(|e| fail(e.to_string()))?;
    Ok(Loaded { engine: handle, prompt, vram })
}

/// Size of a model file, or of every file in a model folder.
pub fn file_size(path: &Path) -> u64 {
    if path.is_dir() {
        std::fs::read_dir(path)
            .map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
            .unwrap_or(0)
    } else {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }
}

/// Names of the models in a folder: `.gguf` file stems and safetensors folders (with a config.json).
fn scan_models_dir(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if let Some(stem) = file_name.strip_suffix(".gguf").filter(|_| path.is_file()) {
            names.push(stem.to_string());
        } else if path.join("config.json").is_file() {
            names.push(file_name.to_string());
        }
    }
    names
}
