//! Running requests on an engine from async code: submit one or more choices, receive their events
//! tagged by choice index, record metrics when each finishes, and cancel everything still running
//! when the [`Batch`] is dropped (the client went away).

use crate::error::{ApiError, ApiResult};
use crate::metrics::ServerMetrics;
use crate::registry::Lease;
use hearth_engine::{CancelGuard, GenerateRequest, GenerationEvent, GenerationStats, TokenEvent};
use std::sync::Arc;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// The choices of one request in flight on one model.
pub struct Batch {
    events: UnboundedReceiver<(usize, GenerationEvent)>,
    /// Dropping these cancels unfinished choices and frees their KV blocks at the engine's next step.
    _cancel: Vec<CancelGuard>,
    remaining: usize,
    metrics: Arc<ServerMetrics>,
    pub lease: Arc<Lease>,
}

/// One finished choice of a non-streaming request.
#[derive(Debug, Clone)]
pub struct Finished {
    pub text: String,
    pub tokens: Vec<TokenEvent>,
    pub reason: &'static str,
    pub stats: GenerationStats,
}

/// Check every request (so a bad one is a 400 before anything runs), then submit them all.
pub fn start(lease: Arc<Lease>, requests: Vec<GenerateRequest>, metrics: Arc<ServerMetrics>) -> ApiResult<Batch> {
    let engine = &lease.model.engine;
    for r in &requests {
        engine.check(r)?;
    }
    let (tx, rx) = unbounded_channel();
    let mut cancel = Vec::with_capacity(requests.len());
    let remaining = requests.len();
    for (index, request) in requests.into_iter().enumerate() {
        let generation = engine.submit(request)?;
        cancel.push(generation.cancel);
        let (tx, events) = (tx.clone(), generation.events);
        // The engine reports on a std channel; one blocking task per choice moves its events over.
        tokio::task::spawn_blocking(move || {
            for event in events {
                if tx.send((index, event)).is_err() {
                    return;
                }
            }
        });
    }
    Ok(Batch { events: rx, _cancel: cancel, remaining, metrics, lease })
}

impl Batch {
    /// The next event of any choice; `None` once every choice has ended. A choice whose engine
    /// vanished without a final event ends with an error.
    pub async fn next(&mut self) -> Option<(usize, GenerationEvent)> {
        if self.remaining == 0 {
            return None;
        }
        let Some((index, event)) = self.events.recv().await else {
            self.remaining = 0;
            return Some((0, GenerationEvent::Error("the engine stopped before finishing".into())));
        };
        match &event {
            GenerationEvent::Done { reason, stats, .. } => {
                self.remaining -= 1;
                self.metrics.record(self.lease.name(), reason.as_str(), stats);
            }
            GenerationEvent::Error(_) => self.remaining -= 1,
            GenerationEvent::Token(_) => {}
        }
        Some((index, event))
    }

    /// Run every choice to its end (non-streaming responses).
    pub async fn collect(mut self, choices: usize) -> ApiResult<Vec<Finished>> {
        let mut out: Vec<Finished> = (0..choices)
            .map(|_| Finished { text: String::new(), tokens: Vec::new(), reason: "stop", stats: GenerationStats::default() })
            .collect();
        while let Some((i, event)) = self.next().await {
            let Some(choice) = out.get_mut(i) else { continue };
            match event {
                GenerationEvent::Token(t) => {
                    choice.text.push_str(&t.text);
                    choice.tokens.push(t);
                }
                GenerationEvent::Done { reason, tail, stats } => {
                    choice.text.push_str(&tail);
                    choice.reason = reason.as_str();
                    choice.stats = stats;
                }
                GenerationEvent::Error(e) => return Err(ApiError::internal(format!("generation failed: {e}"))),
            }
        }
        Ok(out)
    }
}
