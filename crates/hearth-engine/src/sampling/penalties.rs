//! Repetition, presence and frequency penalties, applied to the logits of tokens in the history.

use super::candidates::Candidate;
use super::params::SamplingParams;

/// Penalises `candidates` (indexed by token id) for the tokens in `history`, in llama.cpp's order:
/// first the repetition penalty over the last `repeat_last_n` tokens (once per distinct token),
/// then OpenAI's `logit -= count * frequency_penalty + presence_penalty` over the whole history.
/// History ids outside the vocabulary are ignored. `scratch` is reused to avoid allocating.
pub(crate) fn apply_penalties(
    candidates: &mut [Candidate],
    history: &[u32],
    params: &SamplingParams,
    scratch: &mut Vec<u32>,
) {
    if params.repeat_penalty != 1.0 && params.repeat_last_n > 0 {
        let start = history.len().saturating_sub(params.repeat_last_n);
        sorted_copy(scratch, history.get(start..).unwrap_or_default());
        scratch.dedup();
        for &id in scratch.iter() {
            if let Some(candidate) = candidates.get_mut(id as usize) {
                candidate.logit = repeat_penalised(candidate.logit, params.repeat_penalty);
            }
        }
    }
    if params.presence_penalty != 0.0 || params.frequency_penalty != 0.0 {
        sorted_copy(scratch, history);
        for run in scratch.chunk_by(|a, b| a == b) {
            let Some(&id) = run.first() else { continue };
            if let Some(candidate) = candidates.get_mut(id as usize) {
                let count = run.len() as f32;
                candidate.logit -= count * params.frequency_penalty + params.presence_penalty;
            }
        }
    }
}

/// Moves a logit towards "less likely" whatever its sign: dividing a negative logit would raise it.
fn repeat_penalised(logit: f32, penalty: f32) -> f32 {
    if logit > 0.0 {
        logit / penalty
    } else {
        logit * penalty
    }
}

fn sorted_copy(scratch: &mut Vec<u32>, tokens: &[u32]) {
    scratch.clear();
    scratch.extend_from_slice(tokens);
    scratch.sort_unstable();
}
