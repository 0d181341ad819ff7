//! The engine proper: owns the model, the paged KV cache and the scheduler state, and advances every
//! running sequence by one step per call. Synchronous; [`crate::handle`] runs it on its own thread.

use crate::blocks::BlockAllocator;
use crate::events::GenerationEvent;
use crate::metrics::EngineMetrics;
use crate::sampling::{SampleError, SampledToken, Sampler, SamplingParams};
use crate::sequence::{Progress, Sequence};
use crate::{EngineError, Result};
use hearth_formats::tokenizer::Tokenizer;
use hearth_layers::PagedKvCache;
use hearth_models::{SeqBatch, Transformer};
use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Sender;
use std::sync::Arc;

/// Sizes of the KV cache and of each step.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Tokens per KV block.
    pub block_size: usize,
    /// Memory for the KV cache; `None` sizes it for `max_running` full contexts, capped at 2 GiB.
    pub kv_cache_bytes: Option<usize>,
    /// Most tokens computed in one step (prefill is chunked to this, so long prompts don't stall streams).
    pub max_batch_tokens: usize,
    /// Most sequences running at once; the rest wait.
    pub max_running: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { block_size: 16, kv_cache_bytes: None, max_batch_tokens: 512, max_running: 64 }
    }
}

const DEFAULT_KV_CAP: usize = 2 << 30;

/// A request for the engine: token ids and how to sample.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
}

/// What every request must fit: known before the engine thread starts, so callers can refuse a request
/// up front (the server answers 400) instead of reading an error event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    pub context_length: usize,
    /// Positions the KV cache can hold in total.
    pub cache_tokens: usize,
    pub vocab_size: usize,
}

impl RequestLimits {
    /// Why `req` can never run, if it can't.
    pub fn check(&self, req: &GenerateRequest) -> Result<()> {
        let (context, vocab) = (self.context_length, self.vocab_size as u32);
        if req.prompt.is_empty() {
            return Err(EngineError::BadRequest("the prompt has no tokens".into()));
        }
        if let Some(bad) = req.prompt.iter().find(|&&t| t >= vocab) {
            return Err(EngineError::BadRequest(format!("token id {bad} is outside the vocabulary ({vocab})")));
        }
        // One position must stay free for the first generated token.
        let capacity = self.cache_tokens;
        let limit = context.min(capacity).saturating_sub(1);
        if req.prompt.len() > limit {
            return Err(EngineError::PromptTooLong { prompt: req.prompt.len(), limit, context, capacity });
        }
        req.params.validate().map_err(|e| EngineError::BadRequest(e.to_string()))
    }
}

pub struct EngineCore {
    model: Transformer,
    tokenizer: Arc<Tokenizer>,
    eos_ids: Vec<u32>,
    cache: PagedKvCache,
    blocks: BlockAllocator,
    config: EngineConfig,
    waiting: VecDeque<Sequence>,
    running: Vec<Sequence>,
    next_id: u64,
    preemptions: u64,
    metrics: Arc<EngineMetrics>,
}

/// A step's tokens the device decided, one entry per batch row: `None` for a row that does not
/// sample this step or whose sampler reads its whole logits row on the host.
type Picks = Vec<Option<std::result::Result<SampledToken, SampleError>>>;

impl EngineCore {
    pub fn new(model: Transformer, tokenizer: Arc<Tokenizer>, eos_ids: Vec<u32>, config: EngineConfig) -> Result<Self> {
        let per_token = model.kv_cache_config(1, 1).bytes_per_token();
        let context = model.config().context_length;
        let budget = config
            .kv_cache_bytes
            .unwrap_or_else(|| (per_token * context * config.max_running.max(1)).min(DEFAULT_KV_CAP));
        let num_blocks = model.kv_cache_config(0, config.block_size).blocks_for_budget(budget);
        if num_blocks == 0 {
            return Err(EngineError::Config(format!("a KV cache of {budget} bytes holds no block of {} tokens", config.block_size)));
        }
        let cache = PagedKvCache::new(model.kv_cache_config(num_blocks, config.block_size), model.device())?;
        Ok(Self {
            blocks: BlockAllocator::new(num_blocks, config.block_size),
            model,
            tokenizer,
            eos_ids,
            cache,
            config,
            waiting: VecDeque::new(),
            running: Vec::new(),
            next_id: 0,
            preemptions: 0,
            metrics: Arc::new(EngineMetrics::default()),
        })
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    pub fn model(&self) -> &Transformer {
        &self.model
    }

    pub fn has_work(&self) -> bool {
        !self.waiting.is_empty() || !self.running.is_empty()
    }

    pub fn preemptions(&self) -> u64 {
        self.preemptions
    }

    /// The counters this core updates every step.
    pub fn metrics(&self) -> &Arc<EngineMetrics> {
        &self.metrics
    }

    pub fn limits(&self) -> RequestLimits {
        let config = self.model.config();
        RequestLimits { context_length: config.context_length, cache_tokens: self.capacity_tokens(), vocab_size: config.vocab_size }
    }

    /// Blocks of the KV cache not held by any sequence (cached prefix blocks included).
    pub fn free_blocks(&self) -> usize {
        self.blocks.free_count()
    }

    /// Bytes the KV cache occupies.
    pub fn kv_cache_bytes(&self) -> usize {
        self.capacity_tokens() * self.model.kv_cache_config(1, 1).bytes_per_token()
    }

    /// Positions the KV cache can hold in total.
    pub fn capacity_tokens(&self) -> usize {
        self.blocks.total() * self.blocks.block_size()
    }

    /// Queue a request; errors (sent as the only event) if it can never run.
    pub fn submit(&mut self, req: GenerateRequest, events: Sender<GenerationEvent>) {
        self.submit_inner(req, events, None);
    }

    /// Like [`submit`](Self::submit); setting `cancel` drops the request and frees its blocks at the next step.
    pub fn submit_cancellable(&mut self, req: GenerateRequest, events: Sender<GenerationEvent>, cancel: Arc<AtomicBool>) {
        self.submit_inner(req, events, Some(cancel));
    }

    fn submit_inner(&mut self, req: GenerateRequest, events: Sender<GenerationEvent>, cancel: Option<Arc<AtomicBool>>) {
        if let Err(e) = self.limits().check(&req) {
            let _ = events.send(GenerationEvent::Error(e.to_string()));
            return;
        }
        let context = self.model.config().context_length;
        let room = context - req.prompt.len();
        let max_tokens = req.params.max_tokens.map_or(room, |m| m.min(room));
        let sampler = match Sampler::new(req.params, &self.eos_ids) {
            Ok(s) => s,
            Err(e) => {
                let _ = events.send(GenerationEvent::Error(e.to_string()));
                return;
            }
        };
        self.next_id += 1;
        let mut seq = Sequence::new(self.next_id, req.prompt, sampler, max_tokens, events);
        if let Some(cancel) = cancel {
            seq = seq.with_cancel(cancel);
        }
        self.waiting.push_back(seq);
        self.publish_state();
    }

    /// One scheduling step: decode a token for every running sequence and spend the rest of the token
    /// budget on prefill. Returns the number of tokens computed.
    pub fn step(&mut self) -> Result<usize> {
        self.drop_cancelled();
        let computed = self.step_batch();
        self.publish_state();
        computed
    }

    fn step_batch(&mut self) -> Result<usize> {
        self.reserve_decode_blocks();
        self.admit_waiting();
        let mut plan: Vec<(usize, usize)> = Vec::new(); // (running index, tokens this step)
        let mut budget = self.config.max_batch_tokens;
        for (i, s) in self.running.iter().enumerate() {
            if budget == 0 {
                break;
            }
            let n = s.pending().min(budget);
            if n > 0 && s.block_table.len() * self.blocks.block_size() >= s.cached + n {
                plan.push((i, n));
                budget -= n;
            }
        }
        if plan.is_empty() {
            // Prefills hold blocks but none can grow: free the newest so the others progress.
            if self.running.len() > 1 {
                self.preempt_newest();
            }
            return Ok(0);
        }
        let mut tokens = Vec::new();
        let mut batch = Vec::with_capacity(plan.len());
        for &(i, n) in &plan {
            let s = &mut self.running[i];
            s.mark_prefill_start();
            tokens.extend_from_slice(&s.tokens[s.cached..s.cached + n]);
            batch.push(SeqBatch {
                cached: s.cached,
                n_new: n,
                block_table: s.block_table.clone(),
                all_logits: false,
                prompt_len: s.prompt_len,
            });
        }
        let t0 = std::time::Instant::now();
        let out = self.model.forward(&tokens, &batch, &self.cache)?;
        tracing::debug!(tokens = tokens.len(), seqs = batch.len(), forward_ms = t0.elapsed().as_secs_f64() * 1e3, "forward");
        // (batch row, sequence) of each sequence whose prompt is done after this step: it samples.
        let sampling: Vec<(usize, usize)> =
            plan.iter().enumerate().filter(|&(_, &(i, n))| self.running[i].pending() == n).map(|(row, &(i, _))| (row, i)).collect();
        let mut picks = self.device_picks(&sampling, plan.len(), &out)?;
        if sampling.iter().any(|&(row, _)| picks[row].is_none()) {
            // A CPU step's logits are read in place; a GPU step's come over once (`with_host_rows`).
            hearth_layers::device::with_host_rows(&out, |rows| self.sample_rows(&sampling, &mut picks, rows))?;
        }
        let done = self.sample_step(&plan, &mut picks);
        for i in done.into_iter().rev() {
            let mut s = self.running.remove(i);
            self.blocks.release(&mut s.block_table);
        }
        Ok(tokens.len())
    }

    /// The tokens the device decides for the rows that sample this step, so that only ids or short
    /// lists cross the bus instead of logits rows (64 sequences x 128k vocabulary: 33 MB a step):
    /// every row's argmax when all those samplers are plain greedy; else each row's top list where
    /// every sampler can decide from one ([`Sampler::top_needed`]). Rows it leaves `None` (a row
    /// holding NaN/+inf, whose error the host reports, or a list that could not tell) are sampled
    /// from their whole row.
    /// `sampling` lists the step's sampling rows as (batch row, sequence) of a batch of `batch` rows.
    fn device_picks(&mut self, sampling: &[(usize, usize)], batch: usize, out: &candle_core::Tensor) -> Result<Picks> {
        let mut picks: Picks = (0..batch).map(|_| None).collect();
        if out.device().is_cpu() || sampling.is_empty() {
            return Ok(picks);
        }
        let (rows, vocab) = out.dims2()?;
        if rows != batch {
            return Ok(picks);
        }
        if sampling.iter().all(|&(_, i)| self.running[i].sampler.is_plain_greedy()) {
            if let Some(ids) = hearth_layers::device::argmax_rows(out)?.filter(|ids| ids.len() == rows) {
                for &(row, i) in sampling.iter().filter(|&&(row, _)| ids[row] != u32::MAX) {
                    picks[row] = Some(Ok(self.running[i].sampler.greedy_token(ids[row])));
                }
                return Ok(picks);
            }
        }
        let most = hearth_layers::device::top_rows_max(out.device()).min(vocab.saturating_sub(1));
        let needed: Option<Vec<usize>> = sampling.iter().map(|&(_, i)| self.running[i].sampler.top_needed(most)).collect();
        let Some(needed) = needed else { return Ok(picks) };
        // Penalties and EOS masks reorder a list: the longest one leaves them room to.
        let adjusted = sampling.iter().any(|&(_, i)| self.running[i].sampler.adjusts_logits());
        let listed = if adjusted { most } else { needed.into_iter().max().unwrap_or(1) };
        let Some(top) = hearth_layers::device::top_rows(out, listed)? else { return Ok(picks) };
        for &(row, i) in sampling.iter().filter(|&&(row, _)| !top.holds_non_finite(row)) {
            let s = &mut self.running[i];
            picks[row] = s.sampler.sample_from_top(top.ids(row), top.values(row), vocab, &s.tokens);
        }
        Ok(picks)
    }

    /// Samples every row of `sampling` ((batch row, sequence)) that has no pick yet from its logits
    /// row, the sequences in parallel: each has its own generator, so no token depends on the order,
    /// and a 64-sequence step no longer waits on 64 whole-vocabulary samplings one after another.
    fn sample_rows(&mut self, sampling: &[(usize, usize)], picks: &mut Picks, rows: &[&[f32]]) {
        use rayon::prelude::*;
        let mut row_of = vec![None; self.running.len()];
        for &(row, i) in sampling.iter().filter(|&&(row, _)| picks[row].is_none()) {
            row_of[i] = Some(row);
        }
        let sampled: Vec<(usize, std::result::Result<SampledToken, SampleError>)> = self
            .running
            .par_iter_mut()
            .zip(row_of)
            .filter_map(|(s, row)| row.map(|row| (row, s.sampler.sample(rows.get(row).copied().unwrap_or_default(), &s.tokens))))
            .collect();
        for (row, token) in sampled {
            picks[row] = Some(token);
        }
    }

    /// After a forward pass over `plan` (`(sequence, new tokens)` in batch order, one logits row each):
    /// advance every sequence, sample those whose prompt is done, and return the indices that finished.
    /// `picks` holds every sampling row's token ([`Self::device_picks`], then [`Self::sample_rows`]).
    fn sample_step(&mut self, plan: &[(usize, usize)], picks: &mut Picks) -> Vec<usize> {
        let mut done = Vec::new();
        let block_size = self.blocks.block_size();
        for (row, &(i, n)) in plan.iter().enumerate() {
            let s = &mut self.running[i];
            s.cached += n;
            register_full_blocks(&mut self.blocks, s, block_size);
            if s.pending() > 0 {
                continue; // prompt chunk: more to prefill before sampling
            }
            if s.generated() == 0 {
                self.metrics.add_prompt_tokens(s.prompt_len);
            }
            self.metrics.add_generation_tokens(1);
            // Every sampling row has a pick: from the device, else from `sample_rows`.
            let sampled = picks.get_mut(row).and_then(Option::take).unwrap_or(Err(SampleError::EmptyLogits));
            let progress = match sampled {
                Ok(tok) => s.accept(tok, &self.tokenizer, self.model.config().context_length),
                Err(e) => s.fail(format!("sampling failed: {e}")),
            };
            if !matches!(progress, Progress::Continue) {
                done.push(i);
            }
        }
        done
    }

    /// Make sure each decoding sequence has a slot for its next token, preempting the newest
    /// sequences (their KV is dropped and recomputed later) when blocks run out. A sequence alone in
    /// a full cache has reached the cache's length limit and finishes.
    fn reserve_decode_blocks(&mut self) {
        let mut i = 0;
        while i < self.running.len() {
            let needed = self.running[i].cached + self.running[i].pending().min(1);
            if self.blocks.grow(&mut self.running[i].block_table, needed) {
                i += 1;
            } else if self.running.len() == 1 {
                let mut s = self.running.remove(i);
                s.finish_length(&self.tokenizer);
                self.blocks.release(&mut s.block_table);
            } else {
                self.preempt_newest();
            }
        }
    }

    /// vLLM-style recompute preemption: the newest running sequence gives its blocks back and waits.
    fn preempt_newest(&mut self) {
        if let Some(mut victim) = self.running.pop() {
            self.blocks.release(&mut victim.block_table);
            victim.reset_cache();
            self.waiting.push_front(victim);
            self.preemptions += 1;
            self.metrics.add_preemption();
        }
    }

    /// Move waiting sequences into the running set while there is room for their first chunk.
    fn admit_waiting(&mut self) {
        while self.running.len() < self.config.max_running {
            let Some(s) = self.waiting.front_mut() else { break };
            if s.cached == 0 && s.block_table.is_empty() {
                match_cached_prefix(&mut self.blocks, s, &self.metrics);
            }
            let first_chunk = s.pending().min(self.config.max_batch_tokens);
            if !self.blocks.grow(&mut s.block_table, s.cached + first_chunk) {
                // Matched prefix blocks go back (still cached) until there is room.
                self.blocks.release(&mut s.block_table);
                s.reset_cache();
                break;
            }
            if let Some(s) = self.waiting.pop_front() {
                self.running.push(s);
            }
        }
        // Running prefills need blocks for their next chunk too.
        for s in &mut self.running {
            let chunk = s.pending().min(self.config.max_batch_tokens);
            let _ = self.blocks.grow(&mut s.block_table, s.cached + chunk);
        }
    }
}

/// Start a fresh sequence on the cached blocks of its longest known prefix (always leaving at least
/// one token to compute, whose logits pick the next token).
fn match_cached_prefix(blocks: &mut BlockAllocator, s: &mut Sequence, metrics: &EngineMetrics) {
    let block_size = blocks.block_size();
    let full = (s.tokens.len() - 1) / block_size;
    let hashes = s.block_hashes(full, block_size).to_vec();
    let matched = blocks.match_prefix(&mut s.block_table, &hashes, &s.tokens);
    s.cached = matched * block_size;
    s.registered_blocks = matched;
    metrics.add_prefix(s.tokens.len(), s.cached);
}

/// Offer the sequence's newly completed blocks to the prefix cache.
fn register_full_blocks(blocks: &mut BlockAllocator, s: &mut Sequence, block_size: usize) {
    let full = s.cached / block_size;
    if full <= s.registered_blocks {
        return;
    }
    let hashes = s.block_hashes(full, block_size).to_vec();
    for (i, &hash) in hashes.iter().enumerate().skip(s.registered_blocks) {
        blocks.register(s.block_table[i], hash, &s.tokens[i * block_size..(i + 1) * block_size]);
    }
    s.registered_blocks = full;
}

impl EngineCore {
    /// Requests whose owner gave up leave at once, and their blocks go back to the pool.
    fn drop_cancelled(&mut self) {
        let blocks = &mut self.blocks;
        self.running.retain_mut(|s| {
            let keep = !s.is_cancelled();
            if !keep {
                blocks.release(&mut s.block_table);
            }
            keep
        });
        self.waiting.retain_mut(|s| {
            let keep = !s.is_cancelled();
            if !keep {
                blocks.release(&mut s.block_table);
            }
            keep
        });
    }

    fn publish_state(&self) {
        let used = self.blocks.total() - self.blocks.free_count();
        self.metrics.set_state(self.running.len(), self.waiting.len(), used, self.blocks.total());
    }

    /// A step failed (a tensor or device error): every sequence gets the error and its blocks back.
    pub fn fail_all(&mut self, message: &str) {
        for mut s in self.running.drain(..).chain(self.waiting.drain(..)) {
            let _ = s.fail(message.to_string());
            self.blocks.release(&mut s.block_table);
        }
        self.publish_state();
    }
}
