//! The per-sequence sampler: penalties, filters, temperature and a seeded draw.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use thiserror::Error;

use super::candidates::{argmax, Candidate, CandidateSet};
use super::logprobs::{log_sum_exp, top_logprobs};
use super::params::{SamplingParams, SamplingParamsError};
use super::penalties::{apply_penalties, LogitsById, SortedById, Vocabulary};

/// One sampled token.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledToken {
    pub id: u32,
    /// Log-probability of `id` under the model's raw distribution (log-softmax of the unpenalised
    /// logits, as OpenAI and vLLM report it); `None` unless `SamplingParams::logprobs` is set.
    pub logprob: Option<f32>,
    /// The `logprobs` most likely tokens of the raw distribution as `(id, logprob)`, most likely
    /// first; empty unless requested.
    pub top_logprobs: Vec<(u32, f32)>,
}

/// Logits that no token can be sampled from.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SampleError {
    #[error("the logits are empty")]
    EmptyLogits,
    #[error("{len} logits: more than token ids (u32) can address")]
    VocabTooLarge { len: usize },
    #[error("the logit of token {id} is {value}; the model produced a non-finite value")]
    NonFiniteLogit { id: u32, value: f32 },
    #[error("no token can be sampled: every logit is -inf after penalties and masking")]
    NoCandidates,
}

/// Working buffers of [`Sampler::sample_with`], reusable across sequences so that an engine
/// sampling many sequences in turn keeps one vocabulary-sized buffer instead of one per sequence.
#[derive(Default)]
pub struct SamplerScratch {
    candidates: Vec<Candidate>,
    history: Vec<u32>,
}

impl std::fmt::Debug for SamplerScratch {
    // The buffers hold a whole vocabulary of leftovers; their sizes are what matters.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamplerScratch")
            .field("candidates_capacity", &self.candidates.capacity())
            .field("history_capacity", &self.history.capacity())
            .finish()
    }
}

/// Picks the tokens of one sequence.
///
/// Each step runs llama.cpp's default chain: penalties (repeat, then presence/frequency) ->
/// `ignore_eos` masking -> top-k -> top-p -> min-p -> temperature -> weighted random draw.
/// Top-p and min-p see the softmax at temperature 1 of what the previous filters left.
/// Temperature 0 skips the filters and the draw: the result is the argmax of the penalised logits,
/// ties broken by the lowest id. The same seed and inputs always give the same tokens (with this
/// crate's pinned `rand` version).
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    eos_ids: Vec<u32>,
    seed: u64,
    rng: StdRng,
    scratch: SamplerScratch,
}

impl Sampler {
    /// Validates `params` and seeds the generator from `params.seed`, or from the OS when unset.
    pub fn new(params: SamplingParams, eos_ids: &[u32]) -> Result<Self, SamplingParamsError> {
        params.validate()?;
        let seed = params.seed.unwrap_or_else(|| rand::rng().random());
        Ok(Self {
            params,
            eos_ids: eos_ids.to_vec(),
            seed,
            rng: StdRng::seed_from_u64(seed),
            scratch: SamplerScratch::default(),
        })
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// The seed in use (drawn from the OS when the parameters had none), to report or replay.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// True for the end-of-sequence ids given to [`Sampler::new`].
    pub fn is_eos(&self, id: u32) -> bool {
        self.eos_ids.contains(&id)
    }

    /// Samples the next token from `logits` (one per vocabulary id). `history` is what the
    /// penalties look at, oldest first: the repetition penalty its last `repeat_last_n` tokens,
    /// presence/frequency all of it. OpenAI semantics count only generated tokens; llama.cpp and
    /// Ollama include the prompt; the caller chooses which slice to pass.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> Result<SampledToken, SampleError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let token = self.sample_with(&mut scratch, logits, history);
        self.scratch = scratch;
        token
    }

    /// [`Sampler::sample`] with caller-owned working buffers.
    pub fn sample_with(
        &mut self,
        scratch: &mut SamplerScratch,
        logits: &[f32],
        history: &[u32],
    ) -> Result<SampledToken, SampleError> {
        check_logits(logits)?;
        let id = if self.is_greedy() && !self.params.has_penalties() && !self.params.ignore_eos {
            // Nothing changes the logits, so skip copying them into candidates.
            argmax_of(logits).ok_or(SampleError::NoCandidates)?
        } else {
            self.choose_adjusted(scratch, logits, history)?
        };
        Ok(self.with_logprobs(id, logits))
    }

    /// True when the next token is the argmax of the raw logits and nothing else is read from them
    /// (greedy, no penalties, no EOS masking, no logprobs): a device may then pick it itself and
    /// hand over only its id ([`Sampler::greedy_token`]).
    pub fn is_plain_greedy(&self) -> bool {
        self.is_greedy() && !self.params.has_penalties() && !self.params.ignore_eos && self.params.logprobs.is_none()
    }

    /// The token a plain greedy sampler ([`Sampler::is_plain_greedy`]) chose as `id`, the argmax
    /// (lowest id on ties) of logits that held no NaN or +inf.
    pub fn greedy_token(&self, id: u32) -> SampledToken {
        SampledToken { id, logprob: None, top_logprobs: Vec::new() }
    }

    /// Greedy in effect: temperature 0, or so small that `1 / t` overflows (and would give NaN).
    fn is_greedy(&self) -> bool {
        let temperature = self.params.temperature;
        temperature == 0.0 || !(1.0 / temperature).is_finite()
    }

    /// Applies penalties and EOS masking to a copy of the logits, then chooses from it.
    fn choose_adjusted(
        &mut self,
        scratch: &mut SamplerScratch,
        logits: &[f32],
        history: &[u32],
    ) -> Result<u32, SampleError> {
        let candidates = &mut scratch.candidates;
        candidates.clear();
        candidates.extend(
            (0u32..)
                .zip(logits)
                .map(|(id, &logit)| Candidate { id, logit }),
        );
        apply_penalties(&mut Vocabulary(candidates), history, &self.params, &mut scratch.history);
        if self.params.ignore_eos {
            mask_tokens(&mut Vocabulary(candidates), &self.eos_ids);
        }
        self.choose(candidates)
    }

    /// True when penalties or EOS masking change logits before the choice.
    pub fn adjusts_logits(&self) -> bool {
        self.params.has_penalties() || self.params.ignore_eos
    }

    /// How many of a row's most likely logits [`Sampler::sample_from_top`] needs to decide this
    /// sampler's next token (`listed`, the most a device lists, caps it); `None` when no such list
    /// can: no top-k cut (top-p and the draw then see the whole vocabulary), penalties that may raise
    /// a logit, or log-probabilities asked for (they need the whole row's normaliser).
    pub fn top_needed(&self, listed: usize) -> Option<usize> {
        if self.params.logprobs.is_some() || !self.params.penalties_only_lower() {
            return None;
        }
        let keep = if self.is_greedy() { 1 } else { self.params.top_k };
        (1..=listed).contains(&keep).then_some(keep)
    }

    /// Samples from a row's `ids.len()` most likely raw logits (`ids` with their `logits`, best
    /// first and the lowest id first among equals, as a device lists them; the row has `vocab`
    /// entries) the token the whole row would give, with the same draw from the generator. `None`,
    /// with the generator untouched, when the list cannot tell: see [`Sampler::top_needed`], and
    /// penalties or EOS masking that pushed the kept candidates down to the list's last value,
    /// where tokens outside the list may tie or rank above them.
    pub fn sample_from_top(&mut self, ids: &[u32], logits: &[f32], vocab: usize, history: &[u32]) -> Option<Result<SampledToken, SampleError>> {
        let keep = self.top_needed(ids.len())?;
        if ids.len() != logits.len() || vocab <= ids.len() || check_logits(logits).is_err() {
            return None;
        }
        // Everything outside the list is at most this (raw, and penalties here only lower).
        let floor = logits.last().copied().unwrap_or(f32::NEG_INFINITY);
        let mut scratch = std::mem::take(&mut self.scratch);
        let candidates = &mut scratch.candidates;
        candidates.clear();
        candidates.extend(ids.iter().zip(logits).map(|(&id, &logit)| Candidate { id, logit }));
        let adjusted = self.adjusts_logits();
        if adjusted {
            candidates.sort_unstable_by_key(|c| c.id);
            apply_penalties(&mut SortedById(candidates), history, &self.params, &mut scratch.history);
            if self.params.ignore_eos {
                mask_tokens(&mut SortedById(candidates), &self.eos_ids);
            }
            // The host's top-k returns its survivors best first; so must a list the cut keeps whole.
            candidates.sort_unstable_by(super::candidates::best_first);
        }
        candidates.retain(|c| c.logit > f32::NEG_INFINITY);
        let decided = !adjusted || floor == f32::NEG_INFINITY || candidates.get(keep - 1).is_some_and(|c| c.logit > floor);
        let chosen = decided.then(|| self.choose(candidates));
        self.scratch = scratch;
        Some(chosen?.map(|id| SampledToken { id, logprob: None, top_logprobs: Vec::new() }))
    }

    fn choose(&mut self, candidates: &mut Vec<Candidate>) -> Result<u32, SampleError> {
        if self.is_greedy() {
            return argmax(candidates)
                .map(|c| c.id)
                .ok_or(SampleError::NoCandidates);
        }
        candidates.retain(|c| c.logit > f32::NEG_INFINITY);
        let mut set = CandidateSet::new(candidates);
        set.top_k(self.params.top_k);
        set.top_p(self.params.top_p);
        set.min_p(self.params.min_p);
        if set.len() == 0 {
            return Err(SampleError::NoCandidates);
        }
        set.draw(self.params.temperature, &mut self.rng)
            .ok_or(SampleError::NoCandidates)
    }

    fn with_logprobs(&self, id: u32, logits: &[f32]) -> SampledToken {
        let Some(n) = self.params.logprobs else {
            return SampledToken {
                id,
                logprob: None,
                top_logprobs: Vec::new(),
            };
        };
        let lse = log_sum_exp(logits);
        let logit = logits
            .get(id as usize)
            .copied()
            .unwrap_or(f32::NEG_INFINITY);
        SampledToken {
            id,
            logprob: Some(logit - lse),
            top_logprobs: top_logprobs(logits, n, lse),
        }
    }
}

/// Rejects logits no distribution can have. `-inf` is a legitimate mask; NaN and `+inf` mean the
/// forward pass went wrong.
fn check_logits(logits: &[f32]) -> Result<(), SampleError> {
    if logits.is_empty() {
        return Err(SampleError::EmptyLogits);
    }
    if u32::try_from(logits.len()).is_err() {
        return Err(SampleError::VocabTooLarge { len: logits.len() });
    }
    match (0u32..)
        .zip(logits)
        .find(|(_, l)| l.is_nan() || **l == f32::INFINITY)
    {
        Some((id, &value)) => Err(SampleError::NonFiniteLogit { id, value }),
        None => Ok(()),
    }
}

/// The id of the largest finite logit, the lowest id on ties.
fn argmax_of(logits: &[f32]) -> Option<u32> {
    let mut best: Option<(u32, f32)> = None;
    for (id, &logit) in (0u32..).zip(logits) {
        if logit > best.map_or(f32::NEG_INFINITY, |(_, l)| l) {
            best = Some((id, logit));
        }
    }
    best.map(|(id, _)| id)
}

fn mask_tokens(candidates: &mut impl LogitsById, ids: &[u32]) {
    for &id in ids {
        if let Some(logit) = candidates.logit_mut(id) {
            *logit = f32::NEG_INFINITY;
        }
    }
}
