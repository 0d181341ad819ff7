//! Token sampling and the text side of generation: parameters, the sampler, stop strings,
//! incremental detokenization and finish reasons. Pure Rust over `&[f32]` logits.
//!
//! Per generated token the engine calls [`Sampler::sample`] on the logits, feeds the id to an
//! [`IncrementalDecoder`], the resulting text to a [`StopMatcher`], and ends the sequence with a
//! [`FinishReason`] on an EOS id ([`Sampler::is_eos`]), a stop string, or `max_tokens`.

mod candidates;
mod detokenize;
mod finish;
mod logprobs;
mod params;
mod penalties;
mod sampler;
mod stop;

#[cfg(test)]
mod tests;

pub use detokenize::{Detokenize, IncrementalDecoder};
pub use finish::{FinishReason, StopReason};
pub use params::{SamplingParams, SamplingParamsError, MAX_TOP_LOGPROBS};
pub use sampler::{SampleError, SampledToken, Sampler, SamplerScratch};
pub use stop::{StopMatcher, StopScan};
