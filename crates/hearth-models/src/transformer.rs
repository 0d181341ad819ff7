//! The decoder shared by every family: embeddings → N × (attention, MLP) → norm → logits.
//!
//! `forward` takes a batch of sequences, each with its own positions and block table into a paged KV
//! cache that the caller owns, so continuous batching needs nothing more from the model.

use crate::config::{Family, ModelConfig};
use crate::weights::{Weight, WeightFiles};
use crate::{ModelError, Result};
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor};
use hearth_layers::attention::{first_visible_position, paged_attention, AttentionParams, SeqContext};
use hearth_layers::cpu::{paged_attention_host, HostSeq};
use hearth_layers::quant::RowBatch;
use hearth_layers::rope::RopeRows;
use hearth_layers::{KvCacheConfig, Linear, PagedKvCache, RmsNorm, RopeConfig, RotaryEmbedding};
use std::cell::OnceCell;
use std::sync::Arc;

mod decode_graph;
mod projections;
#[cfg(test)]
mod tests;
use decode_graph::DecodeGraphs;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether models loaded from now on replay decode steps as device graphs (see [`set_device_graphs_default`]).
static GRAPHS_BY_DEFAULT: AtomicBool = AtomicBool::new(true);

/// Sets whether models loaded from now on replay decode steps as device graphs where the device can
/// (on by default); the CLI turns it off for `HEARTH_CUDA_GRAPHS=0`.
pub fn set_device_graphs_default(enabled: bool) {
    GRAPHS_BY_DEFAULT.store(enabled, Ordering::Relaxed);
}

/// One sequence's slice of a batch.
#[derive(Debug, Clone)]
pub struct SeqBatch {
    /// Tokens of this sequence already in the cache; the new tokens sit at positions `cached..`.
    pub cached: usize,
    /// New tokens of this sequence in the batch's token list (they are contiguous there).
    pub n_new: usize,
    /// Cache block ids of this sequence, covering positions `0..cached + n_new`.
    pub block_table: Vec<usize>,
    /// Logits for every new token (teacher forcing, prompt logprobs) instead of just the last.
    pub all_logits: bool,
    /// Length of the sequence's prompt: tokens from here on were sampled, and the CPU kernels
    /// compute them in llama.cpp's decode order (`hearth_layers::cpu::reduce`).
    pub prompt_len: usize,
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    /// q, k and v stacked into one weight (dense accelerator weights; q/k/v are views of its rows).
    qkv: Option<Linear>,
    o: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
}

struct Mlp {
    gate: Linear,
    up: Linear,
    /// gate and up stacked into one weight (dense accelerator weights; gate/up are views of its rows).
    gate_up: Option<Linear>,
    down: Linear,
}

struct Block {
    attn_norm: RmsNorm,
    attn: Attention,
    attn_post_norm: Option<RmsNorm>,
    ffn_norm: RmsNorm,
    mlp: Mlp,
    ffn_post_norm: Option<RmsNorm>,
}

enum Embedding {
    Quantized(Arc<QTensor>),
    Blocks(hearth_layers::quant::QuantMatrix),
    Dense(Tensor),
}

pub struct Transformer {
    config: ModelConfig,
    device: Device,
    embedding: Embedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    lm_head: Linear,
    rope_global: RotaryEmbedding,
    rope_local: Option<RotaryEmbedding>,
    kv_dtype: DType,
    /// Recorded decode steps, on devices that can replay them (CUDA).
    graphs: Option<DecodeGraphs>,
}

impl Transformer {
    pub fn load(config: ModelConfig, files: &WeightFiles, device: &Device) -> Result<Self> {
        let loader = Loader { files, family: config.family, device, cfg: &config };
        let embed_weight = loader.weight("token_embd.weight")?;
        let lm_head = match files.get("output.weight", config.family, device)? {
            Some(w) => loader.linear_of(w, None)?,
            None => loader.linear_of(embed_weight.clone(), None)?, // tied embeddings
        };
        let embedding = match embed_weight {
            Weight::Quantized(q) => Embedding::Quantized(q),
            Weight::Blocks(m) => Embedding::Blocks(m),
            Weight::Dense(t) => Embedding::Dense(t),
        };
        let blocks = (0..config.n_layers).map(|i| loader.block(i)).collect::<Result<Vec<_>>>()?;
        let rope = |base: f32, scaling| RopeConfig {
            head_dim: config.head_dim,
            rotary_dim: config.head_dim,
            base,
            scaling,
            style: config.rope_style,
            max_positions: config.context_length,
        };
        let rope_global = RotaryEmbedding::new(&rope(config.rope_base, config.rope_scaling.clone()), device)?;
        let rope_local = match config.local_rope_base {
            Some(base) => Some(RotaryEmbedding::new(&rope(base, hearth_layers::RopeScaling::None), device)?),
            None => None,
        };
        Ok(Self {
            norm: loader.norm("output_norm.weight")?,
            config,
            device: device.clone(),
            embedding,
            blocks,
            lm_head,
            rope_global,
            rope_local,
            kv_dtype: DType::F32,
            graphs: DecodeGraphs::for_device(device, GRAPHS_BY_DEFAULT.load(Ordering::Relaxed)),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Replay decode steps as device graphs where the device can (the default, see
    /// [`set_device_graphs_default`]), or run every step op by op.
    pub fn set_device_graphs(&mut self, enabled: bool) {
        self.graphs = DecodeGraphs::for_device(&self.device, enabled);
    }

    /// Whether decode steps are replayed as device graphs, or why recording them failed.
    pub fn graph_status(&self) -> String {
        match &self.graphs {
            None => "off".into(),
            Some(g) => g.failure().map_or_else(|| "on".into(), |why| format!("failed: {why}")),
        }
    }

    /// The element type of KV caches made by [`Self::kv_cache_config`]: f32 (default) or f16.
    pub fn set_kv_dtype(&mut self, dtype: DType) {
        self.kv_dtype = dtype;
    }

    /// The shape of a KV cache for this model with `num_blocks` blocks of `block_size` tokens.
    pub fn kv_cache_config(&self, num_blocks: usize, block_size: usize) -> KvCacheConfig {
        KvCacheConfig {
            num_blocks,
            block_size,
            n_layers: self.config.n_layers,
            n_kv_heads: self.config.n_kv_heads,
            head_dim: self.config.head_dim,
            // f32 by default: the llama.cpp parity fixtures are made with an f32 cache, and f16 rounding
            // moves the tiny random models' logprobs by up to 0.18 nats. f16 halves the cache's memory.
            dtype: self.kv_dtype,
        }
    }

    /// Runs the batch; returns logits `[rows, vocab]` where each sequence contributes its last new
    /// token's row (or all its new tokens' rows when `all_logits`), in batch order.
    pub fn forward(&self, tokens: &[u32], seqs: &[SeqBatch], cache: &PagedKvCache) -> Result<Tensor> {
        // The whole step runs on a pool worker: each of the ~8 parallel regions per layer is then
        // shared with the other workers directly, instead of the caller handing it over and sleeping.
        if self.device.is_cpu() && rayon::current_thread_index().is_none() {
            return rayon::scope(|_| self.forward_on_pool(tokens, seqs, cache));
        }
        self.forward_on_pool(tokens, seqs, cache)
    }

    fn forward_on_pool(&self, tokens: &[u32], seqs: &[SeqBatch], cache: &PagedKvCache) -> Result<Tensor> {
        let mut plan = BatchPlan::new(tokens.len(), seqs, cache.config().block_size, &self.config, &self.device)?;
        if let Some(graphs) = &self.graphs {
            if let Some(logits) = graphs.decode(self, tokens, &mut plan, cache)? {
                return Ok(logits);
            }
        }
        let rope = StepRope {
            global: self.rope_global.rows(&plan.positions)?,
            local: self.rope_local.as_ref().map(|r| r.rows(&plan.positions)).transpose()?,
        };
        let ids = Tensor::new(tokens, &self.device)?;
        self.forward_planned(tokens, &ids, &plan, &rope, cache)
    }

    /// The layers over a planned batch: `tokens` on the host, the same ids as `ids` and the rope rows
    /// on the device already.
    fn forward_planned(&self, tokens: &[u32], ids: &Tensor, plan: &BatchPlan, rope: &StepRope, cache: &PagedKvCache) -> Result<Tensor> {
        let mut x = match &self.embedding {
            Embedding::Quantized(q) => q.embedding(ids)?,
            Embedding::Blocks(m) => m.rows_f32(tokens, &self.device)?,
            Embedding::Dense(t) => t.index_select(ids, 0)?.to_dtype(DType::F32)?,
        };
        if let Some(scale) = self.config.embed_scale {
            x = (x * scale as f64)?;
        }
        // Each block hands back its MLP output unadded: the next norm adds it in the same kernel.
        let mut pending = None;
        for (i, block) in self.blocks.iter().enumerate() {
            (x, pending) = self.block_forward(i, block, &x, pending.as_ref(), plan, rope, cache)?;
        }
        // The last block kept only the rows that give logits.
        let h = match &pending {
            Some(ff) => self.norm.forward_residual(&x, ff)?.1,
            None => self.norm.forward(&x)?,
        };
        let mut logits = self.lm_head.forward(&h)?;
        if let Some(cap) = self.config.final_logit_softcap {
            logits = ((logits / cap as f64)?.tanh()? * cap as f64)?;
        }
        Ok(logits)
    }

    /// One block over `x` plus `pending` (the previous block's MLP output, not yet added): returns
    /// the residual stream after attention and this block's MLP output, for the caller to add.
    #[allow(clippy::too_many_arguments)]
    fn block_forward(
        &self,
        layer: usize,
        b: &Block,
        x: &Tensor,
        pending: Option<&Tensor>,
        plan: &BatchPlan,
        step_rope: &StepRope,
        cache: &PagedKvCache,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let c = &self.config;
        let t = x.dim(0)?;
        let (x, h) = match pending {
            Some(ff) => b.attn_norm.forward_residual_as(x, ff, Linear::input_dtype_many(&[&b.attn.q, &b.attn.k, &b.attn.v], t))?,
            None => (x.clone(), b.attn_norm.forward(x)?),
        };
        let [mut q, mut k, v] = self.project_qkv(&b.attn, &h, plan)?;
        if let (Some(qn), Some(kn)) = (&b.attn.q_norm, &b.attn.k_norm) {
            q = qn.forward(&q)?;
            k = kn.forward(&k)?;
        }
        let sliding = c.is_sliding(layer);
        let (rope, rows) = match (&self.rope_local, &step_rope.local, sliding) {
            (Some(local), Some(rows), true) => (local, rows),
            _ => (&self.rope_global, &step_rope.global),
        };
        let (q, k) = rope.apply_rows_pair(&q, &k, rows)?;
        let on_device = if self.device.is_cpu() { None } else { Some(plan.slot_tensor(&self.device)?) };
        cache.write_indexed(layer, &plan.slots, on_device, &k.reshape((t, c.n_kv_heads * c.head_dim))?, &v)?;
        let params = AttentionParams {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            scale: c.attn_scale,
            sliding_window: if sliding { c.sliding_window } else { None },
            softcap: None,
        };
        let attn = self.attention(&q, layer, sliding, plan, cache, &params, b.attn.o.input_dtype(t))?;
        let attn = b.attn.o.forward_batched(&attn, &plan.row_batching)?;
        let attn = match &b.attn_post_norm {
            Some(n) => n.forward(&attn)?,
            None => attn,
        };
        // After the last attention only the rows that give logits matter: the feed-forward runs on
        // them alone, as in llama.cpp, whose kernels then multiply each such row alone.
        let (x, attn, ffn_batching) = match (&plan.logit_rows, layer + 1 == self.blocks.len()) {
            (Some(rows), true) => (x.index_select(rows, 0)?, attn.index_select(rows, 0)?, &[][..]),
            _ => (x.clone(), attn, &plan.row_batching[..]),
        };
        let (x, h) = b.ffn_norm.forward_residual_as(&x, &attn, Linear::input_dtype_many(&[&b.mlp.gate, &b.mlp.up], x.dim(0)?))?;
        let gate_up = self.gated(&b.mlp, &h, ffn_batching)?;
        let ff = b.mlp.down.forward_batched(&gate_up, ffn_batching)?;
        let ff = match &b.ffn_post_norm {
            Some(n) => n.forward(&ff)?,
            None => ff,
        };
        Ok((x, Some(ff)))
    }

    /// Attention of every sequence's new tokens: `[t, n_heads * head_dim]`. On a host cache every
    /// sequence goes through the host kernel in one parallel pass (whose rows do not depend on the
    /// batch, so prefix-cache hits and batching never change a sampled token); on a device cache,
    /// the rows the batch's index covers (decode tokens, and prompts up to [`MAX_INDEXED_SLOTS`])
    /// go through the device's kernel in one launch where it has one, the rest through tensor
    /// matmuls one sequence at a time. Rows all from the kernel come in `out` (the o-projection's
    /// input dtype), others in f32.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        q: &Tensor,
        layer: usize,
        sliding: bool,
        plan: &BatchPlan,
        cache: &PagedKvCache,
        params: &AttentionParams,
        out: DType,
    ) -> Result<Tensor> {
        if cache.host_layer(layer)?.is_some() {
            return self.host_attention(q, layer, plan, cache, params);
        }
        let width = self.config.n_heads * self.config.head_dim;
        let mut rows: Vec<Option<Tensor>> = vec![None; plan.seqs.len()];
        if let Some((covered, out)) = self.device_decode(q, layer, sliding, plan, cache, params, out)? {
            if covered.len() == plan.seqs.len() {
                return Ok(out.reshape((q.dim(0)?, width))?);
            }
            let out = out.to_dtype(DType::F32)?; // joined with the other rows' f32 below
            for &(i, row0) in covered {
                let n = plan.seqs[i].n_new;
                rows[i] = Some(out.narrow(0, row0, n)?.reshape((n, width))?);
            }
        }
        for (i, s) in plan.seqs.iter().enumerate() {
            if rows[i].is_none() {
                let (kv_start, slots) = s.slots_tensor(sliding, &self.device)?;
                rows[i] = Some(chunked_attention(&q.narrow(0, s.offset, s.n_new)?, s.q_start, kv_start, slots, cache, layer, params)?);
            }
        }
        let rows: Vec<Tensor> = rows.into_iter().flatten().collect();
        Ok(Tensor::cat(&rows, 0)?)
    }

    /// The sequences the batch's row index covers (every decoding one, and prompts while their rows'
    /// slot lists fit [`MAX_INDEXED_SLOTS`]) through the device's attention kernel, one query row per
    /// kernel row: `(sequence, first output row)` of each and `[their rows, n_heads, head_dim]`, or
    /// `None` without such a kernel. The result is in `out`.
    #[allow(clippy::too_many_arguments)]
    fn device_decode<'p>(
        &self,
        q: &Tensor,
        layer: usize,
        sliding: bool,
        plan: &'p BatchPlan,
        cache: &PagedKvCache,
        params: &AttentionParams,
        out: DType,
    ) -> Result<Option<(&'p [(usize, usize)], Tensor)>> {
        let Some((k, v)) = cache.device_layer(layer)? else { return Ok(None) };
        let Some(index) = plan.decode_index(sliding, &self.device)? else { return Ok(None) };
        let q = match &index.q_rows {
            None => q.clone(),
            Some(rows) => q.index_select(rows, 0)?,
        };
        let out = hearth_layers::device::decode_attention(&q, k, v, &index.slots, &index.offsets, params, out)?;
        Ok(out.map(|o| (index.covered.as_slice(), o)))
    }

    fn host_attention(&self, q: &Tensor, layer: usize, plan: &BatchPlan, cache: &PagedKvCache, params: &AttentionParams) -> Result<Tensor> {
        let width = self.config.n_heads * self.config.head_dim;
        let q_rows = q.flatten_all()?.to_vec1::<f32>()?;
        let seqs: Vec<HostSeq> = plan
            .seqs
            .iter()
            .map(|s| HostSeq { offset: s.offset, n_new: s.n_new, q_start: s.q_start, prompt_len: s.prompt_len, slots: &s.host_slots })
            .collect();
        let out = paged_attention_host(&q_rows, cache, layer, &seqs, params)?;
        Ok(Tensor::from_vec(out, (q_rows.len() / width.max(1), width), &self.device)?)
    }
}

/// [`paged_attention`] over query chunks, so the score matrix of a long prompt stays small
/// (chunks of 64 queries: 64 × context scores per head instead of prompt × context).
fn chunked_attention(
    q: &Tensor,
    q_start: usize,
    kv_start: usize,
    slots: &Tensor,
    cache: &PagedKvCache,
    layer: usize,
    params: &AttentionParams,
) -> Result<Tensor> {
    const CHUNK: usize = 64;
    let n = q.dim(0)?;
    let mut outs = Vec::with_capacity(n.div_ceil(CHUNK));
    for c0 in (0..n).step_by(CHUNK) {
        let len = CHUNK.min(n - c0);
        let first = first_visible_position(q_start + c0, params.sliding_window).max(kv_start);
        let visible = slots.narrow(0, first - kv_start, q_start + c0 + len - first)?;
        let ctx = SeqContext { q_start: q_start + c0, kv_start: first, slots: &visible };
        outs.push(paged_attention(&q.narrow(0, c0, len)?, cache, layer, &ctx, params)?);
    }
    Ok(Tensor::cat(&outs, 0)?)
}

/// Most slot entries a batch's row index lists (64 MiB of u32): a prompt row lists every key it
/// sees, so a prompt of n tokens lists ~n²/2; longer prompts take the chunked tensor path.
const MAX_INDEXED_SLOTS: usize = 1 << 24;

/// Where the query rows the device kernel serves read their keys, uploaded once per batch: each
/// decoding sequence's one row, and each covered prompt's rows, row i seeing positions up to its own.
struct DecodeIndex {
    /// Covered sequences (batch index) and the kernel row of each one's first query.
    covered: Vec<(usize, usize)>,
    /// Every row's visible slots concatenated, and where each row's run starts (u32, on the device).
    slots: Tensor,
    offsets: Tensor,
    /// The covered query rows in the batch, when the batch also holds uncovered sequences.
    q_rows: Option<Tensor>,
}

/// cos/sin of a batch's positions for the global (and, in Gemma 3, the local) rope, shared by all layers.
struct StepRope {
    global: RopeRows,
    local: Option<RopeRows>,
}

/// Per-batch index tensors computed once and shared by every layer.
struct BatchPlan {
    positions: Vec<u32>,
    slots: Vec<usize>,
    /// Rows of the batch that produce logits; `None` when that is every row.
    logit_rows: Option<Tensor>,
    seqs: Vec<SeqPlan>,
    /// Per token: how llama.cpp would have batched it, which picks the k-quant kernels' rounding.
    row_batching: Vec<RowBatch>,
    /// The sliding-window layers' window (models that have such layers).
    window: Option<usize>,
    /// Device copies made on first use: `slots` as u32, decode indices for global and local layers.
    slot_tensor: OnceCell<Tensor>,
    decode_global: OnceCell<Option<DecodeIndex>>,
    decode_local: OnceCell<Option<DecodeIndex>>,
}

struct SeqPlan {
    offset: usize,
    n_new: usize,
    q_start: usize,
    prompt_len: usize,
    /// Slots of positions `0..q_start + n_new`.
    host_slots: Vec<u32>,
    /// First position a sliding-window layer sees (models that have such layers).
    local_start: Option<usize>,
    /// Device copies of the visible slots (global, local), made on first use only.
    global_tensor: OnceCell<Tensor>,
    local_tensor: OnceCell<Tensor>,
}

impl SeqPlan {
    /// The cache slots a layer of this kind sees, starting at its first visible position.
    fn visible_slots(&self, sliding: bool) -> &[u32] {
        match (self.local_start, sliding) {
            (Some(start), true) => &self.host_slots[start..],
            _ => &self.host_slots,
        }
    }

    /// First visible position and the visible slots as a u32 tensor on `device`.
    fn slots_tensor(&self, sliding: bool, device: &Device) -> Result<(usize, &Tensor)> {
        let (start, cell) = match (self.local_start, sliding) {
            (Some(start), true) => (start, &self.local_tensor),
            _ => (0, &self.global_tensor),
        };
        if cell.get().is_none() {
            let _ = cell.set(Tensor::new(self.visible_slots(sliding), device)?);
        }
        let t = cell.get().ok_or_else(|| ModelError::BadBatch("slot tensor missing".into()))?;
        Ok((start, t))
    }
}

impl BatchPlan {
    fn slot_tensor(&self, device: &Device) -> Result<&Tensor> {
        if self.slot_tensor.get().is_none() {
            let ids: Vec<u32> = self.slots.iter().map(|&s| s as u32).collect();
            let _ = self.slot_tensor.set(Tensor::new(ids.as_slice(), device)?);
        }
        self.slot_tensor.get().ok_or_else(|| ModelError::BadBatch("slot tensor missing".into()))
    }

    /// The decode index for layers of this kind, or `None` when no sequence decodes one token.
    fn decode_index(&self, sliding: bool, device: &Device) -> Result<Option<&DecodeIndex>> {
        let cell = if sliding && self.seqs.iter().any(|s| s.local_start.is_some()) { &self.decode_local } else { &self.decode_global };
        if cell.get().is_none() {
            let _ = cell.set(self.build_decode_index(sliding, device)?);
        }
        Ok(cell.get().and_then(|i| i.as_ref()))
    }

    /// The visible slots of every row of the sequences `covered`, concatenated, and where each
    /// row's run starts.
    fn decode_slots(&self, covered: &[usize], sliding: bool) -> (Vec<u32>, Vec<u32>) {
        let window = if sliding { self.window } else { None };
        let (mut slots, mut offsets) = (Vec::new(), vec![0u32]);
        for &i in covered {
            let s = &self.seqs[i];
            for pos in s.q_start..s.q_start + s.n_new {
                slots.extend_from_slice(&s.host_slots[first_visible_position(pos, window)..=pos]);
                offsets.push(slots.len() as u32);
            }
        }
        (slots, offsets)
    }

    /// The sequences, in batch order, that the kernel serves: every decoding one, and each prompt
    /// whose rows' slot lists still fit [`MAX_INDEXED_SLOTS`]; `None` when that is none.
    fn build_decode_index(&self, sliding: bool, device: &Device) -> Result<Option<DecodeIndex>> {
        let window = if sliding { self.window } else { None };
        let listed = |s: &SeqPlan| -> usize {
            (s.q_start..s.q_start + s.n_new).map(|pos| pos + 1 - first_visible_position(pos, window)).sum()
        };
        let mut budget = MAX_INDEXED_SLOTS;
        let mut chosen: Vec<usize> = Vec::new();
        for (i, s) in self.seqs.iter().enumerate() {
            let n = listed(s);
            if s.n_new == 1 || n <= budget {
                budget = budget.saturating_sub(n);
                chosen.push(i);
            }
        }
        if chosen.is_empty() {
            return Ok(None);
        }
        let (slots, offsets) = self.decode_slots(&chosen, sliding);
        let mut covered = Vec::with_capacity(chosen.len());
        let mut q_rows = Vec::new();
        for &i in &chosen {
            let s = &self.seqs[i];
            covered.push((i, q_rows.len()));
            q_rows.extend((s.offset..s.offset + s.n_new).map(|r| r as u32));
        }
        let q_rows = if chosen.len() == self.seqs.len() { None } else { Some(Tensor::new(q_rows.as_slice(), device)?) };
        Ok(Some(DecodeIndex { covered, slots: Tensor::new(slots.as_slice(), device)?, offsets: Tensor::new(offsets.as_slice(), device)?, q_rows }))
    }

    fn new(n_tokens: usize, seqs: &[SeqBatch], block_size: usize, cfg: &ModelConfig, device: &Device) -> Result<Self> {
        let total: usize = seqs.iter().map(|s| s.n_new).sum();
        if total != n_tokens || seqs.iter().any(|s| s.n_new == 0) {
            return Err(ModelError::BadBatch(format!("{n_tokens} tokens but sequences claim {total} (each needs at least one)")));
        }
        let (mut positions, mut slots, mut rows, mut plans) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut row_batching = Vec::with_capacity(n_tokens);
        let mut offset = 0;
        for s in seqs {
            let end = s.cached + s.n_new;
            if end > cfg.context_length {
                return Err(ModelError::ContextOverflow { needed: end, context_length: cfg.context_length });
            }
            let all = slots_of(&s.block_table, block_size, end)?;
            positions.extend((s.cached..end).map(|p| p as u32));
            row_batching.extend((s.cached..end).map(|p| RowBatch::at(p, s.prompt_len)));
            slots.extend(all[s.cached..].iter().map(|&x| x as usize));
            let first_row = if s.all_logits { offset } else { offset + s.n_new - 1 };
            rows.extend((first_row..offset + s.n_new).map(|r| r as u32));
            plans.push(SeqPlan {
                offset,
                n_new: s.n_new,
                q_start: s.cached,
                prompt_len: s.prompt_len,
                host_slots: all,
                local_start: cfg.sliding_window.map(|w| first_visible_position(s.cached, Some(w))),
                global_tensor: OnceCell::new(),
                local_tensor: OnceCell::new(),
            });
            offset += s.n_new;
        }
        Ok(Self {
            positions,
            slots,
            logit_rows: if rows.len() == n_tokens { None } else { Some(Tensor::new(rows.as_slice(), device)?) },
            seqs: plans,
            row_batching,
            window: cfg.sliding_window,
            slot_tensor: OnceCell::new(),
            decode_global: OnceCell::new(),
            decode_local: OnceCell::new(),
        })
    }
}

/// Cache slots of positions `0..end` under `block_table`, a block at a time (a 64-sequence decode
/// step at 512-token contexts lists 33k of them, on the host, before every step).
fn slots_of(block_table: &[usize], block_size: usize, end: usize) -> Result<Vec<u32>> {
    let blocks = end.div_ceil(block_size.max(1));
    if block_table.len() < blocks {
        let pos = block_table.len() * block_size;
        return Err(ModelError::BadBatch(format!("block table of {} blocks does not cover position {pos}", block_table.len())));
    }
    let mut all = Vec::with_capacity(end);
    for &block in &block_table[..blocks] {
        let first = block * block_size;
        let take = (end - all.len()).min(block_size);
        if first + take > u32::MAX as usize {
            return Err(ModelError::BadBatch(format!("cache slot {} does not fit 32 bits", first + take - 1)));
        }
        all.extend(first as u32..(first + take) as u32);
    }
    Ok(all)
}

/// Builds layers from weights by their GGUF names.
struct Loader<'a> {
    files: &'a WeightFiles,
    family: Family,
    device: &'a Device,
    cfg: &'a ModelConfig,
}

impl Loader<'_> {
    fn weight(&self, name: &str) -> Result<Weight> {
        self.files.require(name, self.family, self.device)
    }

    fn optional_f32(&self, name: &str) -> Result<Option<Tensor>> {
        self.files.get(name, self.family, self.device)?.map(|w| w.to_f32(self.device)).transpose()
    }

    fn linear_of(&self, w: Weight, bias: Option<Tensor>) -> Result<Linear> {
        Ok(match w {
            Weight::Quantized(q) => Linear::quantized(q, bias)?,
            Weight::Blocks(m) => Linear::blocks(m, bias),
            Weight::Dense(t) => Linear::dense(t, bias)?,
        })
    }

    fn linear(&self, prefix: &str) -> Result<Linear> {
        let bias = self.optional_f32(&format!("{prefix}.bias"))?;
        self.linear_of(self.weight(&format!("{prefix}.weight"))?, bias)
    }

    fn norm(&self, name: &str) -> Result<RmsNorm> {
        let w = self.weight(name)?.to_f32(self.device)?;
        Ok(RmsNorm::new(w, self.cfg.rms_eps, self.cfg.norm_offset)?)
    }

    fn optional_norm(&self, name: &str, wanted: bool) -> Result<Option<RmsNorm>> {
        if wanted { self.norm(name).map(Some) } else { Ok(None) }
    }

    fn mlp(&self, i: usize) -> Result<Mlp> {
        let p = |s: &str| format!("blk.{i}.{s}");
        let (parts, gate_up) = Linear::stack(vec![self.linear(&p("ffn_gate"))?, self.linear(&p("ffn_up"))?])?;
        let [gate, up]: [Linear; 2] = parts.try_into().map_err(|_| ModelError::Format(format!("blk.{i}: gate/up stacking lost a layer")))?;
        Ok(Mlp { gate, up, gate_up, down: self.linear(&p("ffn_down"))? })
    }

    fn block(&self, i: usize) -> Result<Block> {
        let p = |s: &str| format!("blk.{i}.{s}");
        let c = self.cfg;
        let (parts, qkv) = Linear::stack(vec![self.linear(&p("attn_q"))?, self.linear(&p("attn_k"))?, self.linear(&p("attn_v"))?])?;
        let [q, k, v]: [Linear; 3] = parts.try_into().map_err(|_| ModelError::Format(format!("blk.{i}: q/k/v stacking lost a layer")))?;
        Ok(Block {
            attn_norm: self.norm(&p("attn_norm.weight"))?,
            attn: Attention {
                q,
                k,
                v,
                qkv,
                o: self.linear(&p("attn_output"))?,
                q_norm: self.optional_norm(&p("attn_q_norm.weight"), c.qk_norm)?,
                k_norm: self.optional_norm(&p("attn_k_norm.weight"), c.qk_norm)?,
            },
            attn_post_norm: self.optional_norm(&p("post_attention_norm.weight"), c.sandwich_norms)?,
            ffn_norm: self.norm(&p("ffn_norm.weight"))?,
            mlp: self.mlp(i)?,
            ffn_post_norm: self.optional_norm(&p("post_ffw_norm.weight"), c.sandwich_norms)?,
        })
    }
}
