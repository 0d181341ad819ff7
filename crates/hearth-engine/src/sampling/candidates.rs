//! The candidate list of one sampling step and the filters that shrink it (top-k, top-p, min-p).
//!
//! A 262k-entry vocabulary is never fully sorted: top-k uses partial selection and sorts only the
//! k kept; top-p on a long list finds its cut with a histogram and sorts one bucket; min-p and the
//! draw need no order at all.

use std::cmp::Ordering;

use rand::Rng;

/// A token id with its current (possibly penalised) logit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Candidate {
    pub id: u32,
    pub logit: f32,
}

/// Orders the most likely first; among equal logits the lowest id first, so every selection
/// (argmax, top-k, the sorted prefix) is deterministic.
pub(crate) fn best_first(a: &Candidate, b: &Candidate) -> Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// The most likely candidate with a finite logit, ties broken by the lowest id.
pub(crate) fn argmax(items: &[Candidate]) -> Option<Candidate> {
    items
        .iter()
        .filter(|c| c.logit > f32::NEG_INFINITY)
        .min_by(|a, b| best_first(a, b))
        .copied()
}

/// Top-p sorts candidate lists up to this length outright; longer ones go through buckets.
const SORT_FULLY_UP_TO: usize = 1024;
/// Top-p histogram resolution: 1/64 nat per bucket over 32 nats below the maximum logit, past
/// which probabilities (< e^-32 of the best) share the last bucket.
const BUCKETS_PER_NAT: f32 = 64.0;
const BUCKETS: usize = 64 * 32;

/// Candidates with finite logits; `items[..sorted_len]` are the best ones, sorted by [`best_first`].
pub(crate) struct CandidateSet<'a> {
    items: &'a mut Vec<Candidate>,
    sorted_len: usize,
}

impl<'a> CandidateSet<'a> {
    /// Wraps candidates that all have finite logits (the caller drops `-inf` ones).
    pub fn new(items: &'a mut Vec<Candidate>) -> Self {
        Self {
            items,
            sorted_len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    #[cfg(test)]
    pub fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.items.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids
    }

    /// Keeps the `k` most likely candidates; `0` keeps all.
    pub fn top_k(&mut self, k: usize) {
        if k == 0 || k >= self.items.len() {
            return;
        }
        self.sort_prefix(k);
        self.items.truncate(k);
    }

    /// Keeps the smallest set of most likely candidates whose softmax mass (temperature 1, over the
    /// current candidates) reaches `p`.
    pub fn top_p(&mut self, p: f32) {
        if p >= 1.0 || self.items.len() <= 1 {
            return;
        }
        if self.sorted_len == self.items.len() || self.items.len() <= SORT_FULLY_UP_TO {
            self.sort_prefix(self.items.len());
            self.top_p_sorted(p);
        } else {
            self.top_p_bucketed(p);
        }
    }

    fn top_p_sorted(&mut self, p: f32) {
        let max = self.max_logit();
        let total: f64 = self.items.iter().map(|c| weight(c.logit, max)).sum();
        let kept = nucleus_len(self.items, max, f64::from(p) * total, 0.0);
        self.items.truncate(kept);
        self.sorted_len = kept;
    }

    /// Top-p without sorting the vocabulary: a histogram of probability mass over logit buckets
    /// finds the bucket where the nucleus ends; only that bucket is sorted. The result is the
    /// same as with a full sort, since buckets are ordered by logit and ties share a bucket.
    fn top_p_bucketed(&mut self, p: f32) {
        let max = self.max_logit();
        let mut bucket_mass = [0.0f64; BUCKETS];
        for c in self.items.iter() {
            bucket_mass[bucket_of(c.logit, max)] += weight(c.logit, max);
        }
        let target = f64::from(p) * bucket_mass.iter().sum::<f64>();
        let Some((boundary, mass_before)) = boundary_bucket(&bucket_mass, target) else {
            return; // Rounding kept the target out of reach: everything is in the nucleus.
        };
        let inside = partition(self.items, |c| bucket_of(c.logit, max) < boundary);
        let edge = inside
            + partition(&mut self.items[inside..], |c| {
                bucket_of(c.logit, max) == boundary
            });
        let edge_bucket = &mut self.items[inside..edge];
        edge_bucket.sort_unstable_by(best_first);
        let kept = inside + nucleus_len(edge_bucket, max, target, mass_before);
        self.items.truncate(kept);
        // Only when nothing came before the edge bucket is the kept list fully sorted.
        self.sorted_len = if inside == 0 { kept } else { 0 };
    }

    /// Drops candidates whose probability is below `min_p` times the best one's. Compared in logit
    /// space (`logit >= max + ln(min_p)`), which needs neither a softmax nor a sort.
    pub fn min_p(&mut self, min_p: f32) {
        if min_p <= 0.0 || self.items.is_empty() {
            return;
        }
        let threshold = self.max_logit() + min_p.ln();
        let keep = |c: &Candidate| c.logit >= threshold;
        let sorted_kept = self.items[..self.sorted_len]
            .iter()
            .filter(|c| keep(c))
            .count();
        self.items.retain(keep);
        // Retaining preserves order, and the sorted prefix holds the largest logits, so what
        // survives of it is still the sorted front.
        self.sorted_len = sorted_kept;
    }

    /// Draws one id from the softmax of `logit / temperature`. Overwrites the logits with weights.
    pub fn draw(&mut self, temperature: f32, rng: &mut impl Rng) -> Option<u32> {
        let max = self.max_logit();
        let inv_t = 1.0 / temperature;
        let mut total = 0.0f64;
        for candidate in self.items.iter_mut() {
            let w = ((candidate.logit - max) * inv_t).exp();
            candidate.logit = w;
            total += f64::from(w);
        }
        let mut remaining = rng.random::<f64>() * total;
        for candidate in self.items.iter() {
            remaining -= f64::from(candidate.logit);
            if remaining < 0.0 {
                return Some(candidate.id);
            }
        }
        // Rounding left `remaining` at or just above zero: take the last token that had weight.
        self.items
            .iter()
            .rev()
            .find(|c| c.logit > 0.0)
            .map(|c| c.id)
    }

    fn max_logit(&self) -> f32 {
        if self.sorted_len > 0 {
            self.items[0].logit
        } else {
            self.items
                .iter()
                .fold(f32::NEG_INFINITY, |m, c| m.max(c.logit))
        }
    }

    /// Makes `items[..want]` the `want` best candidates in sorted order, sorting only what is new.
    fn sort_prefix(&mut self, want: usize) {
        let want = want.min(self.items.len());
        if want <= self.sorted_len {
            return;
        }
        let rest = &mut self.items[self.sorted_len..];
        let needed = want - self.sorted_len;
        if needed < rest.len() {
            rest.select_nth_unstable_by(needed - 1, best_first);
        }
        rest[..needed].sort_unstable_by(best_first);
        self.sorted_len = want;
    }
}

/// The histogram bucket of `logit`: 0 for the maximum, growing as the logit falls.
fn bucket_of(logit: f32, max: f32) -> usize {
    // `as` saturates, and `max - logit` is finite and >= 0 for candidates.
    (((max - logit) * BUCKETS_PER_NAT) as usize).min(BUCKETS - 1)
}

/// The first bucket at which the running mass reaches `target`, with the mass before it.
fn boundary_bucket(bucket_mass: &[f64], target: f64) -> Option<(usize, f64)> {
    let mut before = 0.0;
    for (bucket, &mass) in bucket_mass.iter().enumerate() {
        if before + mass >= target {
            return Some((bucket, before));
        }
        before += mass;
    }
    None
}

/// How many of the leading `sorted` candidates it takes for the mass, starting from
/// `mass_before`, to reach `target` (all of them if it never does).
fn nucleus_len(sorted: &[Candidate], max: f32, target: f64, mass_before: f64) -> usize {
    let mut mass = mass_before;
    for (index, candidate) in sorted.iter().enumerate() {
        mass += weight(candidate.logit, max);
        if mass >= target {
            return index + 1;
        }
    }
    sorted.len()
}

/// Moves the candidates satisfying `keep` to the front (in no particular order); returns how many.
fn partition(items: &mut [Candidate], keep: impl Fn(&Candidate) -> bool) -> usize {
    let mut front = 0;
    for index in 0..items.len() {
        if keep(&items[index]) {
            items.swap(front, index);
            front += 1;
        }
    }
    front
}

/// Unnormalised softmax weight of `logit` relative to the maximum (so it never overflows).
fn weight(logit: f32, max: f32) -> f64 {
    f64::from((logit - max).exp())
}
