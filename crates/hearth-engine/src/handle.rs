//! The engine on its own thread, driven through a cheap, cloneable handle.
//!
//! One thread owns the [`EngineCore`] (model, KV cache, scheduler); requests arrive over a channel
//! and join the running batch at the next step boundary. The same path serves `hearth run` and the server.

use crate::core::{EngineConfig, EngineCore, GenerateRequest, RequestLimits};
use crate::events::GenerationEvent;
use crate::metrics::EngineMetrics;
use crate::{EngineError, Result};
use hearth_formats::tokenizer::Tokenizer;
use hearth_models::{LoadedModel, ModelInfo};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

enum Command {
    Generate(GenerateRequest, Sender<GenerationEvent>, Option<Arc<AtomicBool>>),
}

/// Everything about the loaded model a caller needs besides the engine itself.
pub struct ModelContext {
    pub tokenizer: Arc<Tokenizer>,
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub eos_ids: Vec<u32>,
    pub info: ModelInfo,
    pub context_length: usize,
    /// What every request must fit (context, KV cache, vocabulary).
    pub limits: RequestLimits,
    /// Bytes of the KV cache the engine allocated.
    pub kv_cache_bytes: usize,
}

#[derive(Clone)]
pub struct EngineHandle {
    commands: Sender<Command>,
    context: Arc<ModelContext>,
    metrics: Arc<EngineMetrics>,
    thread: Arc<JoinHandle<()>>,
}

/// Cancels its request when dropped (or on [`cancel`](Self::cancel)): the engine drops the sequence
/// and frees its KV blocks at the next step. Dropping it after the request finished does nothing.
#[derive(Debug)]
pub struct CancelGuard(Arc<AtomicBool>);

impl CancelGuard {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// A submitted request: its events, and the guard whose drop abandons it.
pub struct Generation {
    pub events: Receiver<GenerationEvent>,
    pub cancel: CancelGuard,
}

impl EngineHandle {
    /// Start the engine thread for `loaded`.
    pub fn start(loaded: LoadedModel, config: EngineConfig) -> Result<Self> {
        let tokenizer = Arc::new(loaded.tokenizer);
        let core = EngineCore::new(loaded.model, tokenizer.clone(), loaded.eos_ids.clone(), config)?;
        let context = Arc::new(ModelContext {
            tokenizer,
            chat_template: loaded.chat_template,
            bos_token: loaded.bos_token,
            eos_token: loaded.eos_token,
            eos_ids: loaded.eos_ids,
            context_length: core.model().config().context_length,
            info: loaded.info,
            limits: core.limits(),
            kv_cache_bytes: core.kv_cache_bytes(),
        });
        let metrics = core.metrics().clone();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("hearth-engine".into())
            .spawn(move || run_loop(core, rx))
            .map_err(|e| EngineError::Config(format!("cannot start the engine thread: {e}")))?;
        Ok(Self { commands: tx, context, metrics, thread: Arc::new(thread) })
    }

    pub fn context(&self) -> &ModelContext {
        &self.context
    }

    /// Live counters and gauges of this engine.
    pub fn metrics(&self) -> &Arc<EngineMetrics> {
        &self.metrics
    }

    /// Why `request` can never run, checked without a round trip to the engine thread.
    pub fn check(&self, request: &GenerateRequest) -> Result<()> {
        self.context.limits.check(request)
    }

    /// Submit a request; its events arrive on the returned receiver, ending with `Done` or `Error`.
    pub fn generate(&self, request: GenerateRequest) -> Result<Receiver<GenerationEvent>> {
        let (tx, rx) = mpsc::channel();
        self.commands.send(Command::Generate(request, tx, None)).map_err(|_| EngineError::Stopped)?;
        Ok(rx)
    }

    /// Submit a request that is abandoned, its KV blocks freed, as soon as the returned guard drops.
    pub fn submit(&self, request: GenerateRequest) -> Result<Generation> {
        let (tx, rx) = mpsc::channel();
        let flag = Arc::new(AtomicBool::new(false));
        self.commands.send(Command::Generate(request, tx, Some(flag.clone()))).map_err(|_| EngineError::Stopped)?;
        Ok(Generation { events: rx, cancel: CancelGuard(flag) })
    }

    /// Whether the engine thread is still alive.
    pub fn is_running(&self) -> bool {
        !self.thread.is_finished()
    }
}

fn run_loop(mut core: EngineCore, commands: Receiver<Command>) {
    loop {
        // Idle: block for work. Busy: take what has arrived and keep stepping.
        if !core.has_work() {
            match commands.recv() {
                Ok(cmd) => apply(&mut core, cmd),
                Err(_) => return,
            }
        }
        loop {
            match commands.try_recv() {
                Ok(cmd) => apply(&mut core, cmd),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) if core.has_work() => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        if let Err(e) = core.step() {
            core.fail_all(&e.to_string());
        }
    }
}

fn apply(core: &mut EngineCore, cmd: Command) {
    match cmd {
        Command::Generate(req, events, None) => core.submit(req, events),
        Command::Generate(req, events, Some(cancel)) => core.submit_cancellable(req, events, cancel),
    }
}
