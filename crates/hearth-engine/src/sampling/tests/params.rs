//! Tests of `SamplingParams` defaults, serde and validation.

use crate::sampling::{Sampler, SamplingParams, SamplingParamsError};

fn rejected_field(params: SamplingParams) -> &'static str {
    match params.validate() {
        Err(error) => error.field(),
        Ok(()) => panic!("parameters should have been rejected: {params:?}"),
    }
}

#[test]
fn defaults_are_greedy_and_valid() {
    let params = SamplingParams::default();
    assert!(params.is_greedy());
    assert_eq!(params.top_k, 0);
    assert_eq!(params.top_p, 1.0);
    assert_eq!(params.repeat_penalty, 1.0);
    assert_eq!(params.validate(), Ok(()));
}

#[test]
fn each_out_of_range_field_is_named() {
    let base = SamplingParams::default;
    assert_eq!(
        rejected_field(SamplingParams {
            temperature: -0.1,
            ..base()
        }),
        "temperature"
    );
    assert_eq!(
        rejected_field(SamplingParams {
            temperature: f32::NAN,
            ..base()
        }),
        "temperature"
    );
    assert_eq!(
        rejected_field(SamplingParams {
            temperature: f32::INFINITY,
            ..base()
        }),
        "temperature"
    );
    assert_eq!(
        rejected_field(SamplingParams {
            top_p: 0.0,
            ..base()
        }),
        "top_p"
    );
    assert_eq!(
        rejected_field(SamplingParams {
            top_p: 1.01,
            ..base()
        }),
        "top_p"
    );
    assert_eq!(
        rejected_field(SamplingParams {
            min_p: -0.01,
            ..base()
        }),
        "min_p"
    );
    assert_eq!(
        rejected_field(SamplingParams {
            min_p: 1.5,
            ..base()
        }),
        "min_p"
    );
    assert_eq!(
        rejected_field(SamplingParams {
            repeat_penalty: 0.0,
            ..base()
        }),
        "repeat_penalty"
    );
    assert_eq!(
        rejected_field(SamplingParams {
            presence_penalty: 2.5,
            ..base()
        }),
        "presence_penalty"
    );
    assert_eq!(
        rejected_field(SamplingParams {
            frequency_penalty: -2.5,
            ..base()
        }),
        "frequency_penalty"
    );
    assert_eq!(
        rejected_field(SamplingParams {
            max_tokens: Some(0),
            ..base()
        }),
        "max_tokens"
    );
    assert_eq!(
        rejected_field(SamplingParams {
            logprobs: Some(21),
            ..base()
        }),
        "logprobs"
    );
    let stop = vec!["ok".to_owned(), String::new()];
    assert_eq!(
        SamplingParams { stop, ..base() }.validate(),
        Err(SamplingParamsError::EmptyStop { index: 1 })
    );
}

#[test]
fn boundary_values_are_accepted() {
    let params = SamplingParams {
        temperature: 0.0,
        top_p: 1.0,
        min_p: 1.0,
        presence_penalty: -2.0,
        frequency_penalty: 2.0,
        max_tokens: Some(1),
        logprobs: Some(20),
        ..SamplingParams::default()
    };
    assert_eq!(params.validate(), Ok(()));
}

#[test]
fn error_message_names_field_and_value() {
    let error = SamplingParams {
        top_p: 1.5,
        ..SamplingParams::default()
    }
    .validate()
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("top_p") && message.contains("1.5"),
        "{message}"
    );
}

#[test]
fn sampler_new_rejects_invalid_params() {
    let params = SamplingParams {
        temperature: -1.0,
        ..SamplingParams::default()
    };
    let error = Sampler::new(params, &[]).unwrap_err();
    assert_eq!(error.field(), "temperature");
}

#[test]
fn missing_json_fields_take_defaults() {
    let params: SamplingParams =
        serde_json::from_str(r#"{"temperature": 0.7, "stop": ["\n\n"], "seed": 42}"#).unwrap();
    assert_eq!(params.temperature, 0.7);
    assert_eq!(params.stop, vec!["\n\n".to_owned()]);
    assert_eq!(params.seed, Some(42));
    assert_eq!(params.top_p, 1.0);
    assert_eq!(params.repeat_last_n, 64);
}

#[test]
fn json_round_trip_keeps_every_field() {
    let params = SamplingParams {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.9,
        min_p: 0.05,
        repeat_penalty: 1.1,
        repeat_last_n: 32,
        presence_penalty: 0.5,
        frequency_penalty: -0.5,
        seed: Some(7),
        max_tokens: Some(128),
        stop: vec!["</s>".to_owned()],
        logprobs: Some(5),
        ignore_eos: true,
    };
    let json = serde_json::to_string(&params).unwrap();
    let back: SamplingParams = serde_json::from_str(&json).unwrap();
    assert_eq!(back, params);
}
