//! `Sampler::sample_from_top` against `Sampler::sample` on the whole row: a short best-first list
//! (what a device copies back instead of the row) must give the same token with the same draw, or
//! say it cannot tell and leave the generator untouched.

use proptest::prelude::*;

use crate::sampling::{SampleError, Sampler, SamplingParams};

/// The row's `len` best ids and logits in the host's order (logit by total_cmp, then lowest id).
fn top_list(logits: &[f32], len: usize) -> (Vec<u32>, Vec<f32>) {
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
    order.truncate(len);
    let values = order.iter().map(|&i| logits[i as usize]).collect();
    (order, values)
}

fn ids(r: Result<crate::sampling::SampledToken, SampleError>) -> Result<u32, SampleError> {
    r.map(|t| t.id)
}

/// Logits from a few levels (many ties) or spread out, some masked.
fn logits_strategy() -> impl Strategy<Value = Vec<f32>> {
    (300usize..1500, any::<bool>(), any::<u64>()).prop_map(|(n, coarse, seed)| {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let u = (x >> 40) as f32 / (1u64 << 24) as f32;
                match (u < 0.02, coarse) {
                    (true, _) => f32::NEG_INFINITY,
                    (false, true) => (u * 12.0).floor() - 4.0,
                    (false, false) => u * 10.0 - 3.0,
                }
            })
            .collect()
    })
}

fn params_strategy() -> impl Strategy<Value = SamplingParams> {
    (
        (prop::sample::select(vec![0.0f32, 0.7, 1.3]), 0usize..80, prop::sample::select(vec![1.0f32, 0.9, 0.5])),
        (prop::sample::select(vec![0.0f32, 0.05]), prop::sample::select(vec![1.0f32, 1.1, 1.5, 0.9])),
        (prop::sample::select(vec![0.0f32, 0.5, -0.5]), prop::sample::select(vec![0.0f32, 0.3]), any::<bool>(), any::<u64>()),
    )
        .prop_map(|((temperature, top_k, top_p), (min_p, repeat_penalty), (presence_penalty, frequency_penalty, ignore_eos, seed))| {
            SamplingParams {
                temperature,
                top_k,
                top_p,
                min_p,
                repeat_penalty,
                presence_penalty,
                frequency_penalty,
                ignore_eos,
                seed: Some(seed),
                ..SamplingParams::default()
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn a_top_list_gives_the_rows_token_or_declines(
        logits in logits_strategy(),
        params in params_strategy(),
        listed in 1usize..100,
        ranks in prop::collection::vec(0usize..130, 0..40),
        next in logits_strategy(),
    ) {
        // History and EOS tokens among the best ones and just past the list, where they reorder it.
        let (order, _) = top_list(&logits, logits.len());
        let history: Vec<u32> = ranks.iter().map(|&r| order[r]).collect();
        let eos = [order[listed / 2], order[listed]];
        let (ids_, values) = top_list(&logits, listed);
        let mut whole = Sampler::new(params.clone(), &eos).unwrap();
        let mut short = Sampler::new(params.clone(), &eos).unwrap();
        let want = ids(whole.sample(&logits, &history));
        let decidable = short.top_needed(listed).is_some();
        match short.sample_from_top(&ids_, &values, logits.len(), &history) {
            Some(got) => prop_assert_eq!(ids(got), want),
            None => {
                // Without penalties or masks, a list long enough for the cut always decides.
                prop_assert!(!decidable || short.adjusts_logits(), "declined a list of {listed} for {params:?}");
                prop_assert_eq!(ids(short.sample(&logits, &history)), want);
            }
        }
        // Both generators are in the same state: the next draws agree.
        prop_assert_eq!(ids(short.sample(&next, &history)), ids(whole.sample(&next, &history)));
    }
}

/// The Ollama defaults (top-k 40, top-p 0.9, temperature 0.8, repeat penalty 1.1 over 64 tokens)
/// with a 256-entry list: decided on ordinary rows even when most of the top tokens are penalised.
#[test]
fn ollama_defaults_decide_from_a_long_list() {
    let params = SamplingParams { temperature: 0.8, top_k: 40, top_p: 0.9, repeat_penalty: 1.1, seed: Some(7), ..SamplingParams::default() };
    let logits: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 5000) as f32 / 500.0).collect();
    let (ids_, values) = top_list(&logits, 256);
    let history: Vec<u32> = ids_[..30].to_vec();
    let mut whole = Sampler::new(params.clone(), &[]).unwrap();
    let mut short = Sampler::new(params, &[]).unwrap();
    let got = short.sample_from_top(&ids_, &values, logits.len(), &history).expect("a 256-entry list decides top-k 40");
    assert_eq!(got.unwrap().id, whole.sample(&logits, &history).unwrap().id);
}
