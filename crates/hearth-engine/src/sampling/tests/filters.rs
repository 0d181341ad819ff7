//! Tests of the candidate filters and penalties against hand-computed answers and naive references.

use proptest::prelude::*;

use crate::sampling::candidates::{Candidate, CandidateSet};
use crate::sampling::penalties::{apply_penalties, Vocabulary};
use crate::sampling::SamplingParams;

/// Candidates with logits `ln(p)`, listed in a scrambled id order so that no filter can rely on
/// its input being sorted.
fn from_probs(probs: &[f32]) -> Vec<Candidate> {
    let mut items: Vec<Candidate> = (0u32..)
        .zip(probs)
        .map(|(id, p)| Candidate { id, logit: p.ln() })
        .collect();
    items.reverse();
    items.rotate_left(probs.len() / 2);
    items
}

fn kept_after(probs: &[f32], filter: impl Fn(&mut CandidateSet)) -> Vec<u32> {
    let mut items = from_probs(probs);
    let mut set = CandidateSet::new(&mut items);
    filter(&mut set);
    set.ids()
}

const PROBS: [f32; 4] = [0.5, 0.3, 0.15, 0.05];

#[test]
fn top_p_keeps_smallest_set_reaching_mass() {
    assert_eq!(kept_after(&PROBS, |s| s.top_p(0.4)), vec![0]);
    assert_eq!(kept_after(&PROBS, |s| s.top_p(0.75)), vec![0, 1]);
    assert_eq!(kept_after(&PROBS, |s| s.top_p(0.85)), vec![0, 1, 2]);
    assert_eq!(kept_after(&PROBS, |s| s.top_p(0.99)), vec![0, 1, 2, 3]);
    assert_eq!(kept_after(&PROBS, |s| s.top_p(1.0)), vec![0, 1, 2, 3]);
}

#[test]
fn min_p_drops_tokens_below_fraction_of_best() {
    // Best is 0.5: min_p 0.2 keeps p >= 0.1, min_p 0.5 keeps p >= 0.25.
    assert_eq!(kept_after(&PROBS, |s| s.min_p(0.2)), vec![0, 1, 2]);
    assert_eq!(kept_after(&PROBS, |s| s.min_p(0.5)), vec![0, 1]);
    assert_eq!(kept_after(&PROBS, |s| s.min_p(0.9)), vec![0]);
    assert_eq!(kept_after(&PROBS, |s| s.min_p(0.0)), vec![0, 1, 2, 3]);
}

#[test]
fn top_k_keeps_k_best_with_lowest_ids_on_ties() {
    assert_eq!(kept_after(&PROBS, |s| s.top_k(2)), vec![0, 1]);
    assert_eq!(kept_after(&PROBS, |s| s.top_k(0)), vec![0, 1, 2, 3]);
    assert_eq!(kept_after(&PROBS, |s| s.top_k(9)), vec![0, 1, 2, 3]);
    assert_eq!(
        kept_after(&[0.2, 0.3, 0.2, 0.3], |s| s.top_k(3)),
        vec![0, 1, 3]
    );
}

#[test]
fn top_p_after_top_k_renormalises_over_the_k_kept() {
    // After top-k 2 of [0.4, 0.3, 0.2, 0.1] the kept masses are 4/7 and 3/7, so top-p 0.5 keeps
    // only the first; over the full distribution 0.4 < 0.5 would have kept two.
    let probs = [0.4, 0.3, 0.2, 0.1];
    assert_eq!(
        kept_after(&probs, |s| {
            s.top_k(2);
            s.top_p(0.5)
        }),
        vec![0]
    );
    assert_eq!(kept_after(&probs, |s| s.top_p(0.5)), vec![0, 1]);
}

/// Ids in the filters' order: most likely first, lowest id first on ties (full sort).
fn best_first_order(logits: &[f32]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    order
}

/// Reference top-p: how many of the best tokens it takes for normalised mass to reach `p`.
fn naive_top_p_len(logits: &[f32], order: &[u32], p: f32) -> usize {
    let max = logits[order[0] as usize];
    let total: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    let mut mass = 0.0;
    for (kept, &id) in order.iter().enumerate() {
        mass += f64::from((logits[id as usize] - max).exp()) / total;
        if mass >= f64::from(p) {
            return kept + 1;
        }
    }
    order.len()
}

fn sorted(mut ids: Vec<u32>) -> Vec<u32> {
    ids.sort_unstable();
    ids
}

/// Logit vectors with many ties, short (sorted outright by top-p) or long (bucketed).
fn flat_logits() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec((0u8..20).prop_map(|v| f32::from(v) * 0.05), 1..3000)
}

/// Long vectors spread over 50 nats, so nuclei end in varied buckets and tails pass the last one.
fn spread_logits() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-40.0f32..10.0, 1025..5000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn top_p_matches_full_sort_reference(
        logits in prop_oneof![flat_logits(), spread_logits()],
        p in 0.05f32..0.999,
    ) {
        let mut items: Vec<Candidate> =
            (0u32..).zip(&logits).map(|(id, &logit)| Candidate { id, logit }).collect();
        let mut set = CandidateSet::new(&mut items);
        set.top_p(p);
        let got = set.ids();
        let order = best_first_order(&logits);
        let expected_len = naive_top_p_len(&logits, &order, p);
        // Summation order differs from the reference, which may move an exact boundary by one.
        prop_assert!(got.len().abs_diff(expected_len) <= 1, "kept {} expected {}", got.len(), expected_len);
        prop_assert_eq!(got.clone(), sorted(order[..got.len()].to_vec()));
    }

    #[test]
    fn top_k_matches_full_sort_reference(logits in flat_logits(), k in 1usize..700) {
        let mut items: Vec<Candidate> =
            (0u32..).zip(&logits).map(|(id, &logit)| Candidate { id, logit }).collect();
        let mut set = CandidateSet::new(&mut items);
        set.top_k(k);
        let mut order = best_first_order(&logits);
        order.truncate(k);
        prop_assert_eq!(set.ids(), sorted(order));
    }
}

fn penalised(logits: &[f32], history: &[u32], params: &SamplingParams) -> Vec<f32> {
    let mut items: Vec<Candidate> = (0u32..)
        .zip(logits)
        .map(|(id, &logit)| Candidate { id, logit })
        .collect();
    apply_penalties(&mut Vocabulary(&mut items), history, params, &mut Vec::new());
    items.iter().map(|c| c.logit).collect()
}

fn assert_close(got: &[f32], expected: &[f32]) {
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(expected) {
        assert!((g - e).abs() < 1e-6, "got {got:?}, expected {expected:?}");
    }
}

#[test]
fn repeat_penalty_divides_positive_and_multiplies_negative_logits_once() {
    let params = SamplingParams {
        repeat_penalty: 2.0,
        ..SamplingParams::default()
    };
    let got = penalised(&[2.0, -1.0, 0.5, 3.0], &[0, 1, 0, 3], &params);
    // Token 0 appears twice but is penalised once; token 2 is absent.
    assert_close(&got, &[1.0, -2.0, 0.5, 1.5]);
}

#[test]
fn repeat_penalty_sees_only_the_last_n_tokens() {
    let params = SamplingParams {
        repeat_penalty: 2.0,
        repeat_last_n: 2,
        ..SamplingParams::default()
    };
    let got = penalised(&[2.0, 2.0, 2.0, 2.0], &[0, 1, 2, 2], &params);
    assert_close(&got, &[2.0, 2.0, 1.0, 2.0]);
    let off = SamplingParams {
        repeat_penalty: 2.0,
        repeat_last_n: 0,
        ..SamplingParams::default()
    };
    assert_close(&penalised(&[2.0, 2.0], &[0, 1], &off), &[2.0, 2.0]);
}

#[test]
fn presence_and_frequency_follow_openai_formula_over_whole_history() {
    let params = SamplingParams {
        presence_penalty: 0.5,
        frequency_penalty: 0.25,
        repeat_last_n: 1,
        ..SamplingParams::default()
    };
    // Counts: token 0 three times, token 2 once, token 1 never.
    let got = penalised(&[1.0, 1.0, 1.0], &[0, 2, 0, 0], &params);
    assert_close(&got, &[1.0 - 0.75 - 0.5, 1.0, 1.0 - 0.25 - 0.5]);
}

#[test]
fn repeat_penalty_applies_before_presence_and_frequency() {
    let params = SamplingParams {
        repeat_penalty: 2.0,
        presence_penalty: 0.5,
        frequency_penalty: 0.25,
        ..SamplingParams::default()
    };
    let got = penalised(&[2.0, -1.0, 0.5, 3.0], &[0, 1, 0, 3], &params);
    assert_close(
        &got,
        &[1.0 - 0.5 - 0.5, -2.0 - 0.25 - 0.5, 0.5, 1.5 - 0.25 - 0.5],
    );
}

#[test]
fn history_ids_outside_vocabulary_are_ignored() {
    let params = SamplingParams {
        repeat_penalty: 2.0,
        presence_penalty: 1.0,
        ..SamplingParams::default()
    };
    assert_close(
        &penalised(&[1.0, 1.0], &[7, u32::MAX], &params),
        &[1.0, 1.0],
    );
}
