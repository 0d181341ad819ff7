//! One request in flight: its tokens, cache blocks, sampler and text pipeline.

use crate::events::{GenerationEvent, GenerationStats, TokenEvent};
use crate::sampling::{
    Detokenize, FinishReason, IncrementalDecoder, SampledToken, Sampler, StopMatcher, StopReason, StopScan,
};
use crate::blocks::{block_hash, BlockHash};
use hearth_formats::tokenizer::Tokenizer;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Instant;

/// Adapts the tokenizer to the incremental decoder; special tokens are not part of the text.
pub(crate) struct TextOf<'a>(pub &'a Tokenizer);

impl Detokenize for TextOf<'_> {
    type Error = hearth_formats::tokenizer::TokenizerError;
    fn decode(&self, ids: &[u32]) -> Result<String, Self::Error> {
        self.0.decode(ids, true)
    }
}

pub(crate) struct Sequence {
    pub id: u64,
    /// Prompt followed by generated tokens.
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
    /// Positions whose K/V are in the cache.
    pub cached: usize,
    pub block_table: Vec<usize>,
    /// Prefix hashes of the full blocks of `tokens` computed so far (tokens only grow, so they stay valid).
    block_hashes: Vec<BlockHash>,
    /// Leading blocks of `block_table` already registered in the prefix cache.
    pub registered_blocks: usize,
    /// Set by the request's owner to abandon it.
    cancel: Option<Arc<AtomicBool>>,
    pub sampler: Sampler,
    pub max_tokens: usize,
    decoder: IncrementalDecoder,
    stops: StopMatcher,
    pub events: Sender<GenerationEvent>,
    pub stats: GenerationStats,
    pub started: Instant,
    first_token_at: Option<Instant>,
    prefill_started: Option<Instant>,
}

/// What happened to a sequence after a token was appended.
pub(crate) enum Progress {
    Continue,
    Finished,
    /// The client went away; drop the sequence.
    Abandoned,
}

impl Sequence {
    pub fn new(id: u64, prompt: Vec<u32>, sampler: Sampler, max_tokens: usize, events: Sender<GenerationEvent>) -> Self {
        let stops = StopMatcher::new(&sampler.params().stop);
        Self {
            id,
            block_hashes: Vec::new(),
            registered_blocks: 0,
            cancel: None,
            prompt_len: prompt.len(),
            decoder: IncrementalDecoder::with_prompt(&prompt),
            tokens: prompt,
            cached: 0,
            block_table: Vec::new(),
            sampler,
            max_tokens,
            stops,
            events,
            stats: GenerationStats { prompt_tokens: 0, ..Default::default() },
            started: Instant::now(),
            first_token_at: None,
            prefill_started: None,
        }
    }

    pub fn with_cancel(mut self, cancel: Arc<AtomicBool>) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// True once the owner has given up on the request.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Prefix hashes of the first `n` full blocks of `tokens` (`n` must not exceed the full blocks).
    pub fn block_hashes(&mut self, n: usize, block_size: usize) -> &[BlockHash] {
        while self.block_hashes.len() < n {
            let i = self.block_hashes.len();
            let parent = self.block_hashes.last().copied().unwrap_or(0);
            self.block_hashes.push(block_hash(parent, &self.tokens[i * block_size..(i + 1) * block_size]));
        }
        &self.block_hashes[..n]
    }

    /// Tokens not yet in the cache (the prompt remainder, or the last sampled token).
    pub fn pending(&self) -> usize {
        self.tokens.len() - self.cached
    }

    pub fn generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }

    pub fn mark_prefill_start(&mut self) {
        if self.prefill_started.is_none() {
            self.prefill_started = Some(Instant::now());
            self.stats.queue_duration = self.started.elapsed();
        }
    }

    /// Forget the cache (after preemption): everything will be recomputed.
    pub fn reset_cache(&mut self) {
        self.cached = 0;
        self.registered_blocks = 0;
    }

    /// Append a sampled token, stream its text, and decide whether the sequence is done.
    pub fn accept(&mut self, tok: SampledToken, tokenizer: &Tokenizer, context_length: usize) -> Progress {
        if self.first_token_at.is_none() {
            let now = Instant::now();
            self.first_token_at = Some(now);
            self.stats.prompt_tokens = self.prompt_len;
            self.stats.prompt_eval_duration = self.prefill_started.map(|s| now - s).unwrap_or_default();
            self.stats.time_to_first_token = now - self.started;
        }
        if self.sampler.is_eos(tok.id) && !self.sampler.params().ignore_eos {
            return self.finish(FinishReason::Stop(StopReason::Eos { token: tok.id }), tokenizer);
        }
        self.tokens.push(tok.id);
        let piece = match self.decoder.push(&TextOf(tokenizer), tok.id) {
            Ok(p) => p,
            Err(e) => return self.fail(format!("detokenization failed: {e}")),
        };
        let (text, stop) = match self.stops.push(&piece) {
            StopScan::Emit(t) => (t, None),
            StopScan::Stop { text, stop_index } => (text, Some(stop_index)),
        };
        let event = TokenEvent { id: tok.id, text, logprob: tok.logprob, top_logprobs: tok.top_logprobs };
        if self.events.send(GenerationEvent::Token(event)).is_err() {
            return Progress::Abandoned;
        }
        if let Some(index) = stop {
            return self.finish(FinishReason::Stop(StopReason::StopString { index }), tokenizer);
        }
        if self.generated() >= self.max_tokens || self.tokens.len() >= context_length {
            return self.finish(FinishReason::Length, tokenizer);
        }
        Progress::Continue
    }

    fn finish(&mut self, reason: FinishReason, tokenizer: &Tokenizer) -> Progress {
        // Text held back by the decoder or the stop matcher belongs to the output unless a stop string cut it.
        let mut tail = String::new();
        let mut reason = reason;
        if !self.stops.is_stopped() {
            let rest = self.decoder.finish(&TextOf(tokenizer)).unwrap_or_default();
            for scan in [self.stops.push(&rest), self.stops.finish()] {
                match scan {
                    StopScan::Emit(t) => tail.push_str(&t),
                    StopScan::Stop { text, stop_index } => {
                        tail.push_str(&text);
                        reason = FinishReason::Stop(StopReason::StopString { index: stop_index });
                    }
                }
            }
        }
        self.stats.generated_tokens = self.generated();
        if let Some(first) = self.first_token_at {
            self.stats.eval_duration = first.elapsed();
        }
        self.stats.total_duration = self.started.elapsed();
        tracing::debug!(seq = self.id, reason = reason.as_str(), tokens = self.stats.generated_tokens, "finished");
        let _ = self.events.send(GenerationEvent::Done { reason, tail, stats: self.stats.clone() });
        Progress::Finished
    }

    /// End because the KV cache cannot hold another token.
    pub fn finish_length(&mut self, tokenizer: &Tokenizer) {
        let _ = self.finish(FinishReason::Length, tokenizer);
    }

    pub fn fail(&mut self, message: String) -> Progress {
        let _ = self.events.send(GenerationEvent::Error(message));
        Progress::Finished
    }
}
