//! Tests of `Sampler`: greedy, seeded draws, the filter chain end to end, errors and logprobs.

use proptest::prelude::*;

use crate::sampling::{SampleError, Sampler, SamplerScratch, SamplingParams};

fn sampler(params: SamplingParams) -> Sampler {
    Sampler::new(params, &[]).unwrap()
}

fn seeded(temperature: f32, seed: u64) -> SamplingParams {
    SamplingParams {
        temperature,
        seed: Some(seed),
        ..SamplingParams::default()
    }
}

fn ln_probs(probs: &[f32]) -> Vec<f32> {
    probs.iter().map(|p| p.ln()).collect()
}

/// Relative frequency of each id over `draws` samples of the same logits.
fn frequencies(sampler: &mut Sampler, logits: &[f32], draws: usize) -> Vec<f64> {
    let mut counts = vec![0usize; logits.len()];
    for _ in 0..draws {
        counts[sampler.sample(logits, &[]).unwrap().id as usize] += 1;
    }
    counts.iter().map(|&c| c as f64 / draws as f64).collect()
}

fn assert_frequencies_near(got: &[f64], expected: &[f64]) {
    for (g, e) in got.iter().zip(expected) {
        assert!(
            (g - e).abs() < 0.02,
            "frequencies {got:?}, expected {expected:?}"
        );
    }
}

/// Argmax with ties to the lowest id, written independently of the sampler.
fn first_max(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn greedy_breaks_ties_by_lowest_id() {
    let mut s = sampler(SamplingParams::default());
    assert_eq!(s.sample(&[1.0, 3.0, 3.0, 2.0], &[]).unwrap().id, 1);
    assert_eq!(
        s.sample(&[f32::NEG_INFINITY, -5.0, -5.0], &[]).unwrap().id,
        1
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn greedy_is_argmax(logits in prop::collection::vec(-8i8..8, 1..300)) {
        let logits: Vec<f32> = logits.iter().map(|&v| f32::from(v) * 0.5).collect();
        let mut s = sampler(SamplingParams::default());
        prop_assert_eq!(s.sample(&logits, &[]).unwrap().id, first_max(&logits));
    }

    #[test]
    fn top_k_one_is_greedy(
        logits in prop::collection::vec(-8i8..8, 1..300),
        temperature in 0.1f32..3.0,
        seed in any::<u64>(),
    ) {
        let logits: Vec<f32> = logits.iter().map(|&v| f32::from(v) * 0.5).collect();
        let params = SamplingParams { top_k: 1, ..seeded(temperature, seed) };
        let mut s = sampler(params);
        prop_assert_eq!(s.sample(&logits, &[]).unwrap().id, first_max(&logits));
    }

    #[test]
    fn logprobs_are_a_normalised_sorted_raw_distribution(
        logits in prop::collection::vec(-20.0f32..20.0, 1..=20),
        seed in any::<u64>(),
    ) {
        let params = SamplingParams {
            logprobs: Some(20),
            repeat_penalty: 1.5,
            presence_penalty: 1.0,
            ..seeded(1.0, seed)
        };
        let token = sampler(params).sample(&logits, &[0, 1, 2]).unwrap();
        let top = &token.top_logprobs;
        prop_assert_eq!(top.len(), logits.len());
        let max = top[0].1;
        let log_total = max + top.iter().map(|(_, lp)| (lp - max).exp()).sum::<f32>().ln();
        prop_assert!(log_total.abs() < 1e-4, "logsumexp of logprobs = {}", log_total);
        prop_assert!(top.windows(2).all(|w| w[0].1 >= w[1].1));
        // Unpenalised: differences of logprobs equal differences of the raw logits.
        for &(id, lp) in top {
            prop_assert!((lp - (logits[id as usize] - logits[top[0].0 as usize] + max)).abs() < 1e-4);
        }
        let chosen = top.iter().find(|(id, _)| *id == token.id).map(|(_, lp)| *lp);
        prop_assert_eq!(token.logprob, chosen);
    }

    #[test]
    fn top_logprobs_are_the_n_best_of_a_large_vocabulary(
        levels in prop::collection::vec(0u8..30, 1..2000),
        n in 0usize..=20,
    ) {
        let logits: Vec<f32> = levels.iter().map(|&v| f32::from(v) * 0.1).collect();
        let params = SamplingParams { logprobs: Some(n), ..SamplingParams::default() };
        let token = sampler(params).sample(&logits, &[]).unwrap();
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
        order.truncate(n);
        let ids: Vec<u32> = token.top_logprobs.iter().map(|(id, _)| *id).collect();
        prop_assert_eq!(ids, order);
    }
}

#[test]
fn same_seed_gives_same_tokens_and_different_seeds_differ() {
    let logits = vec![0.0f32; 50];
    let run = |seed| {
        let mut s = sampler(seeded(1.0, seed));
        (0..100)
            .map(|_| s.sample(&logits, &[]).unwrap().id)
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn unseeded_sampler_reports_a_seed_that_replays_it() {
    let logits = vec![0.0f32; 50];
    let mut first = sampler(SamplingParams {
        temperature: 1.0,
        ..SamplingParams::default()
    });
    let mut replay = sampler(seeded(1.0, first.seed()));
    for _ in 0..50 {
        assert_eq!(
            first.sample(&logits, &[]).unwrap().id,
            replay.sample(&logits, &[]).unwrap().id
        );
    }
    let other = sampler(SamplingParams {
        temperature: 1.0,
        ..SamplingParams::default()
    });
    assert_ne!(first.seed(), other.seed());
}

#[test]
fn draws_follow_the_softmax_distribution() {
    let mut s = sampler(seeded(1.0, 1));
    let got = frequencies(&mut s, &ln_probs(&[0.5, 0.3, 0.2]), 20_000);
    assert_frequencies_near(&got, &[0.5, 0.3, 0.2]);
}

#[test]
fn temperature_sharpens_the_distribution() {
    // At temperature 0.5 the probabilities become proportional to p^2: 0.25, 0.09, 0.04.
    let mut s = sampler(seeded(0.5, 2));
    let got = frequencies(&mut s, &ln_probs(&[0.5, 0.3, 0.2]), 20_000);
    assert_frequencies_near(&got, &[0.25 / 0.38, 0.09 / 0.38, 0.04 / 0.38]);
}

#[test]
fn top_p_draws_only_from_the_nucleus_renormalised() {
    let params = SamplingParams {
        top_p: 0.75,
        ..seeded(1.0, 3)
    };
    let got = frequencies(
        &mut sampler(params),
        &ln_probs(&[0.5, 0.3, 0.15, 0.05]),
        20_000,
    );
    assert_eq!(&got[2..], &[0.0, 0.0]);
    assert_frequencies_near(&got, &[0.5 / 0.8, 0.3 / 0.8]);
}

#[test]
fn min_p_draws_only_above_threshold() {
    let params = SamplingParams {
        min_p: 0.5,
        ..seeded(1.0, 4)
    };
    let got = frequencies(
        &mut sampler(params),
        &ln_probs(&[0.5, 0.3, 0.15, 0.05]),
        20_000,
    );
    assert_eq!(&got[2..], &[0.0, 0.0]);
    assert_frequencies_near(&got, &[0.5 / 0.8, 0.3 / 0.8]);
}

#[test]
fn top_k_applies_before_top_p() {
    // top_k 2 leaves 4/7 and 3/7; top_p 0.5 then keeps only token 0.
    let logits = ln_probs(&[0.4, 0.3, 0.2, 0.1]);
    let params = SamplingParams {
        top_k: 2,
        top_p: 0.5,
        ..seeded(1.0, 5)
    };
    let got = frequencies(&mut sampler(params), &logits, 500);
    assert_eq!(got, vec![1.0, 0.0, 0.0, 0.0]);
}

#[test]
fn temperature_applies_after_top_p() {
    // A high temperature flattens the distribution, but the nucleus was chosen at temperature 1.
    let logits = ln_probs(&[0.5, 0.3, 0.15, 0.05]);
    let params = SamplingParams {
        top_p: 0.75,
        ..seeded(100.0, 6)
    };
    let got = frequencies(&mut sampler(params), &logits, 2_000);
    assert_eq!(&got[2..], &[0.0, 0.0]);
}

#[test]
fn penalties_change_the_greedy_choice() {
    let logits = [3.0, 2.9];
    let plain = sampler(SamplingParams::default())
        .sample(&logits, &[0])
        .unwrap();
    assert_eq!(plain.id, 0);
    let params = SamplingParams {
        repeat_penalty: 1.1,
        ..SamplingParams::default()
    };
    assert_eq!(sampler(params).sample(&logits, &[0]).unwrap().id, 1);
}

#[test]
fn ignore_eos_masks_eos_ids() {
    let logits = [1.0, 5.0, 2.0, 4.0];
    let eos = [1, 3];
    let mut normal = Sampler::new(SamplingParams::default(), &eos).unwrap();
    assert_eq!(normal.sample(&logits, &[]).unwrap().id, 1);
    assert!(normal.is_eos(1) && normal.is_eos(3) && !normal.is_eos(2));
    let params = SamplingParams {
        ignore_eos: true,
        ..SamplingParams::default()
    };
    assert_eq!(
        Sampler::new(params, &eos)
            .unwrap()
            .sample(&logits, &[])
            .unwrap()
            .id,
        2
    );
}

#[test]
fn logprobs_ignore_penalties_and_report_the_chosen_token() {
    let logits = ln_probs(&[0.5, 0.3, 0.2]);
    let params = SamplingParams {
        logprobs: Some(2),
        repeat_penalty: 2.0,
        ..SamplingParams::default()
    };
    let token = sampler(params).sample(&logits, &[0]).unwrap();
    // The penalty doubles token 0's negative logit (ln 0.5 -> ln 0.25), so token 1 wins greedily,
    // while the logprobs still describe the unpenalised distribution.
    assert_eq!(token.id, 1);
    assert!((token.logprob.unwrap() - 0.3f32.ln()).abs() < 1e-5);
    let (ids, lps): (Vec<u32>, Vec<f32>) = token.top_logprobs.into_iter().unzip();
    assert_eq!(ids, vec![0, 1]);
    assert!((lps[0] - 0.5f32.ln()).abs() < 1e-5 && (lps[1] - 0.3f32.ln()).abs() < 1e-5);
}

#[test]
fn no_logprobs_unless_requested() {
    let token = sampler(SamplingParams::default())
        .sample(&[1.0, 2.0], &[])
        .unwrap();
    assert_eq!((token.logprob, token.top_logprobs.len()), (None, 0));
    let params = SamplingParams {
        logprobs: Some(0),
        ..SamplingParams::default()
    };
    let token = sampler(params).sample(&[1.0, 2.0], &[]).unwrap();
    assert!(token.logprob.is_some() && token.top_logprobs.is_empty());
}

#[test]
fn bad_logits_give_typed_errors() {
    let mut s = sampler(seeded(1.0, 9));
    assert_eq!(s.sample(&[], &[]), Err(SampleError::EmptyLogits));
    assert!(matches!(
        s.sample(&[0.0, f32::NAN], &[]),
        Err(SampleError::NonFiniteLogit { id: 1, .. })
    ));
    assert!(matches!(
        s.sample(&[f32::INFINITY], &[]),
        Err(SampleError::NonFiniteLogit { id: 0, .. })
    ));
    let masked = [f32::NEG_INFINITY; 3];
    assert_eq!(s.sample(&masked, &[]), Err(SampleError::NoCandidates));
    assert_eq!(
        sampler(SamplingParams::default()).sample(&masked, &[]),
        Err(SampleError::NoCandidates)
    );
    let params = SamplingParams {
        ignore_eos: true,
        ..SamplingParams::default()
    };
    let mut only_eos = Sampler::new(params, &[0]).unwrap();
    assert_eq!(
        only_eos.sample(&[1.0, f32::NEG_INFINITY], &[]),
        Err(SampleError::NoCandidates)
    );
}

#[test]
fn masked_tokens_are_never_drawn() {
    let logits = [0.0, f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY];
    let got = frequencies(&mut sampler(seeded(1.0, 10)), &logits, 1_000);
    assert_eq!((got[1], got[3]), (0.0, 0.0));
}

#[test]
fn tiny_temperature_behaves_greedily() {
    let params = seeded(1e-45, 11);
    assert_eq!(sampler(params).sample(&[1.0, 1.5, 1.2], &[]).unwrap().id, 1);
}

#[test]
fn shared_scratch_gives_the_same_tokens() {
    let logits: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32 * 0.03).collect();
    let params = SamplingParams {
        top_k: 50,
        top_p: 0.9,
        ..seeded(0.8, 12)
    };
    let mut own = sampler(params.clone());
    let mut shared = sampler(params);
    let mut scratch = SamplerScratch::default();
    for step in 0..100u32 {
        let history = [step % 7, step % 13];
        assert_eq!(
            own.sample(&logits, &history),
            shared.sample_with(&mut scratch, &logits, &history)
        );
    }
}

#[test]
fn large_vocabulary_samples_within_top_k() {
    let logits: Vec<f32> = (0..262_144u32)
        .map(|i| ((i.wrapping_mul(2_654_435_761)) >> 20) as f32 / 400.0)
        .collect();
    let mut best: Vec<u32> = (0..logits.len() as u32).collect();
    best.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    best.truncate(40);
    let params = SamplingParams {
        top_k: 40,
        top_p: 0.95,
        min_p: 0.05,
        ..seeded(0.8, 13)
    };
    let mut s = sampler(params);
    for _ in 0..20 {
        assert!(best.contains(&s.sample(&logits, &[1, 2, 3]).unwrap().id));
    }
}

/// A device may pick a plain greedy sampler's token itself only if the host would have picked the
/// same one from the same logits: the argmax, the lowest id on ties, and nothing else read. Any
/// setting that reads more than the argmax (penalties, EOS masking, logprobs, a temperature) must
/// make the sampler ask for the logits.
#[test]
fn plain_greedy_is_exactly_the_settings_whose_token_is_the_argmax() {
    let greedy = SamplingParams { temperature: 0.0, ..SamplingParams::default() };
    assert!(sampler(greedy.clone()).is_plain_greedy());
    let not_plain = [
        SamplingParams { temperature: 0.7, ..greedy.clone() },
        SamplingParams { repeat_penalty: 1.1, ..greedy.clone() },
        SamplingParams { presence_penalty: 0.5, ..greedy.clone() },
        SamplingParams { frequency_penalty: 0.5, ..greedy.clone() },
        SamplingParams { logprobs: Some(0), ..greedy.clone() },
        SamplingParams { ignore_eos: true, ..greedy.clone() },
    ];
    for params in not_plain {
        assert!(!sampler(params.clone()).is_plain_greedy(), "{params:?}");
    }
}

proptest! {
    #[test]
    fn a_plain_greedy_token_is_what_sampling_the_logits_gives(
        logits in prop::collection::vec(prop::sample::select(vec![-2.0f32, -1.0, 0.0, 0.5, 3.0, f32::NEG_INFINITY]), 1..64),
        history in prop::collection::vec(0u32..64, 0..8),
    ) {
        let mut s = sampler(SamplingParams { temperature: 0.0, ..SamplingParams::default() });
        prop_assume!(logits.iter().any(|l| l.is_finite()));
        // The first index of the largest value, as the device kernel computes it.
        let best = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let id = logits.iter().position(|&l| l == best).unwrap() as u32;
        let host = s.sample(&logits, &history).unwrap();
        let device = s.greedy_token(id);
        prop_assert_eq!((host.id, host.logprob, host.top_logprobs), (device.id, device.logprob, device.top_logprobs));
    }
}
