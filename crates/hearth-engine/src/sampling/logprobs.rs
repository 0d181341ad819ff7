//! Log-probabilities of the model's raw distribution: log-softmax of the unpenalised logits.

use std::cmp::Ordering;

use super::candidates::{best_first, Candidate};

/// `ln(sum(exp(logits)))`, computed around the maximum so it never overflows. Logits must not be
/// NaN or `+inf`; at least one must be finite.
pub(crate) fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l));
    let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    max + sum.ln() as f32
}

/// The `n` most likely tokens as `(id, logprob)`, most likely first (lowest id first on ties).
/// Tokens with probability zero (`-inf` logits) are never listed. One pass, no sort of the vocabulary.
pub(crate) fn top_logprobs(logits: &[f32], n: usize, log_sum_exp: f32) -> Vec<(u32, f32)> {
    if n == 0 {
        return Vec::new();
    }
    let mut top: Vec<Candidate> = Vec::with_capacity(n + 1);
    for (id, &logit) in (0u32..).zip(logits) {
        let candidate = Candidate { id, logit };
        let beats_worst = top.last().is_none_or(|worst| candidate.logit > worst.logit);
        if logit == f32::NEG_INFINITY || (top.len() == n && !beats_worst) {
            continue;
        }
        let position = top.partition_point(|t| best_first(t, &candidate) == Ordering::Less);
        top.insert(position, candidate);
        top.truncate(n);
    }
    top.into_iter()
        .map(|c| (c.id, c.logit - log_sum_exp))
        .collect()
}
