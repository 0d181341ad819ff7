//! Logits of every position of a token sequence in one pass (teacher forcing), through the same
//! batched forward the engine uses: for parity tests, perplexity and prompt log-probabilities.

use crate::Result;
use hearth_layers::PagedKvCache;
use hearth_models::{SeqBatch, Transformer};

/// Log-softmax rows for positions `0..tokens.len()`: row `i` is the distribution of token `i + 1`.
/// The tokens go through the model `chunk` at a time, exercising the cached-prefix path exactly as
/// chunked prefill does.
pub fn score_tokens(model: &Transformer, tokens: &[u32], chunk: usize) -> Result<Vec<Vec<f32>>> {
    let chunk = chunk.max(1);
    score_in_pieces(model, tokens, tokens.len(), true, |start| chunk.min(tokens.len() - start))
}

/// The distributions a generation computes after a prompt: the prompt (the first `prompt_len`
/// tokens) in one pass with only its last row's logits, then each later token alone, as a decode
/// step. Row `i` is the distribution of token `prompt_len + i` (given everything before it).
pub fn score_like_generation(model: &Transformer, tokens: &[u32], prompt_len: usize) -> Result<Vec<Vec<f32>>> {
    let prompt_len = prompt_len.clamp(1, tokens.len().max(1));
    score_in_pieces(model, tokens, prompt_len, false, |start| if start == 0 { prompt_len } else { 1 })
}

/// `piece(start)` is how many tokens to compute at once from `start` (at least one); tokens from
/// `prompt_len` on count as sampled ones. Each piece gives the rows of all its tokens
/// (`all_logits`) or of its last.
fn score_in_pieces(
    model: &Transformer,
    tokens: &[u32],
    prompt_len: usize,
    all_logits: bool,
    piece: impl Fn(usize) -> usize,
) -> Result<Vec<Vec<f32>>> {
    let block_size = 16;
    let blocks = tokens.len().div_ceil(block_size).max(1);
    let cache = PagedKvCache::new(model.kv_cache_config(blocks, block_size), model.device())?;
    let table: Vec<usize> = (0..blocks).collect();
    let mut rows = Vec::with_capacity(tokens.len());
    let mut start = 0;
    while start < tokens.len() {
        let n = piece(start).clamp(1, tokens.len() - start);
        let seq = SeqBatch { cached: start, n_new: n, block_table: table.clone(), all_logits, prompt_len };
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
