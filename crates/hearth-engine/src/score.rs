//! Logits of every position of a token sequence in one pass (teacher forcing), through the same
//! batched forward the engine uses: for parity tests, perplexity and prompt log-probabilities.

use crate::Result;
use hearth_layers::PagedKvCache;
use hearth_models::{SeqBatch, Transformer};

/// Log-softmax rows for positions `0..tokens.len()`: row `i` is the distribution of token `i + 1`.
pub fn score_tokens(model: &Transformer, tokens: &[u32], chunk: usize) -> Result<Vec<Vec<f32>>> {
    let block_size = 16;
    let blocks = tokens.len().div_ceil(block_size).max(1);
    let cache = PagedKvCache::new(model.kv_cache_config(blocks, block_size), model.device())?;
    let table: Vec<usize> = (0..blocks).collect();
    let mut rows = Vec::with_capacity(tokens.len());
    let mut start = 0;
    // Chunks exercise the cached-prefix path exactly as chunked prefill does.
    while start < tokens.len() {
        let n = chunk.max(1).min(tokens.len() - start);
        let seq = SeqBatch { cached: start, n_new: n, block_table: table.clone(), all_logits: true };
        let logits = model.forward(&tokens[start..start + n], &[seq], &cache)?;
        let logp = candle_nn_log_softmax(&logits)?;
        rows.extend(logp.to_vec2::<f32>()?);
        start += n;
    }
    Ok(rows)
}

fn candle_nn_log_softmax(x: &candle_core::Tensor) -> Result<candle_core::Tensor> {
    let max = x.max_keepdim(1)?;
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}
