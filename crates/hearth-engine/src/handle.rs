//! The engine on its own thread, driven through a cheap, cloneable handle.
//!
//! One thread owns the [`EngineCore`] (model, KV cache, scheduler); requests arrive over a channel
//! and join the running batch at the next step boundary. The same path serves `hearth run` and the server.

use crate::core::{EngineConfig, EngineCore, GenerateRequest};
use crate::events::GenerationEvent;
use crate::{EngineError, Result};
use hearth_formats::tokenizer::Tokenizer;
use hearth_models::{LoadedModel, ModelInfo};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

enum Command {
    Generate(GenerateRequest, Sender<GenerationEvent>),
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
}

#[derive(Clone)]
pub struct EngineHandle {
    commands: Sender<Command>,
    context: Arc<ModelContext>,
    thread: Arc<JoinHandle<()>>,
}

impl EngineHandle {
    /// Start the engine thread for `loaded`.
    pub fn start(loaded: LoadedModel, config: EngineConfig) -> Result<Self> {
        let tokenizer = Arc::new(loaded.tokenizer);
        let context = Arc::new(ModelContext {
            tokenizer: tokenizer.clone(),
            chat_template: loaded.chat_template,
            bos_token: loaded.bos_token,
            eos_token: loaded.eos_token,
            eos_ids: loaded.eos_ids.clone(),
            context_length: loaded.model.config().context_length,
            info: loaded.info,
        });
        let core = EngineCore::new(loaded.model, tokenizer, loaded.eos_ids, config)?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("hearth-engine".into())
            .spawn(move || run_loop(core, rx))
            .map_err(|e| EngineError::Config(format!("cannot start the engine thread: {e}")))?;
        Ok(Self { commands: tx, context, thread: Arc::new(thread) })
    }

    pub fn context(&self) -> &ModelContext {
        &self.context
    }

    /// Submit a request; its events arrive on the returned receiver, ending with `Done` or `Error`.
    pub fn generate(&self, request: GenerateRequest) -> Result<Receiver<GenerationEvent>> {
        let (tx, rx) = mpsc::channel();
        self.commands.send(Command::Generate(request, tx)).map_err(|_| EngineError::Stopped)?;
        Ok(rx)
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
        Command::Generate(req, events) => core.submit(req, events),
    }
}
