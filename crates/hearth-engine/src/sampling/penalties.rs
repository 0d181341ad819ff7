//! Repetition, presence and frequency penalties, applied to the logits of tokens in the history.

use super::candidates::Candidate;
use super::params::SamplingParams;

/// Where the penalties find a token's logit: a whole vocabulary's candidates indexed by id, or a
/// short list (a device's top list) sorted by id.
pub(crate) trait LogitsById {
    fn logit_mut(&mut self, id: u32) -> Option<&mut f32>;
}

/// Candidates of every vocabulary id, at their id's index.
pub(crate) struct Vocabulary<'a>(pub &'a mut [Candidate]);

impl LogitsById for Vocabulary<'_> {
    fn logit_mut(&mut self, id: u32) -> Option<&mut f32> {
        self.0.get_mut(id as usize).map(|c| &mut c.logit)
    }
}

/// A few candidates sorted by id; ids not among them are not there to penalise.
pub(crate) struct SortedById<'a>(pub &'a mut [Candidate]);

impl LogitsById for SortedById<'_> {
    fn logit_mut(&mut self, id: u32) -> Option<&mut f32> {
        let at = self.0.binary_search_by_key(&id, |c| c.id).ok()?;
        Some(&mut self.0[at].logit)
    }
}

/// Penalises `candidates` for the tokens in `history`, in llama.cpp's order:
/// first the repetition penalty over the last `repeat_last_n` tokens (once per distinct token),
/// then OpenAI's `logit -= count * frequency_penalty + presence_penalty` over the whole history.
/// History ids outside the vocabulary are ignored. `scratch` is reused to avoid allocating.
pub(crate) fn apply_penalties(
    candidates: &mut impl LogitsById,
    history: &[u32],
    params: &SamplingParams,
    scratch: &mut Vec<u32>,
) {
    if params.repeat_penalty != 1.0 && params.repeat_last_n > 0 {
        let start = history.len().saturating_sub(params.repeat_last_n);
        sorted_copy(scratch, history.get(start..).unwrap_or_default());
        scratch.dedup();
        for &id in scratch.iter() {
            if let Some(logit) = candidates.logit_mut(id) {
                *logit = repeat_penalised(*logit, params.repeat_penalty);
            }
        }
    }
    if params.presence_penalty != 0.0 || params.frequency_penalty != 0.0 {
        sorted_copy(scratch, history);
        for run in scratch.chunk_by(|a, b| a == b) {
            let Some(&id) = run.first() else { continue };
            if let Some(logit) = candidates.logit_mut(id) {
                let count = run.len() as f32;
                *logit -= count * params.frequency_penalty + params.presence_penalty;
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
