//! The GGUF path against llama.cpp: teacher-forced logprobs and free-running greedy output, for the
//! real test models and the tiny random-weight models of architectures without a shipped model.

mod common;

use common::*;
use hearth_engine::sampling::SamplingParams;
use hearth_engine::{score_like_generation, EngineConfig, EngineHandle, GenerateRequest, GenerationEvent};
use std::path::Path;

const MARGIN: f32 = 0.1;
const TOLERANCE: f32 = 0.1;

fn check_against_llama_cpp(fixture_id: &str, model_path: &Path) {
    let fx = fixture(fixture_id);
    let device = candle_core::Device::Cpu;
    let loaded = hearth_models::load(model_path, &device).unwrap_or_else(|e| panic!("loading {}: {e}", model_path.display()));
    let mut failures = Vec::new();
    for (n, p) in fx.prompts.iter().enumerate() {
        let mut tokens = p.prompt_ids.clone();
        tokens.extend_from_slice(&p.continuation_ids[..p.continuation_ids.len() - 1]);
        // Computed as llama.cpp computed them: the prompt in one pass, then one decode step per token.
        let steps = score_like_generation(&loaded.model, &tokens, p.prompt_ids.len()).expect("scoring");
        failures.extend(compare_steps(&format!("prompt {n}"), &steps, &p.top5, MARGIN, TOLERANCE));
    }
    let engine = EngineHandle::start(loaded, EngineConfig::default()).expect("engine");
    for (n, p) in fx.prompts.iter().enumerate() {
        let ours = greedy(&engine, &p.prompt_ids, p.continuation_ids.len());
        let agree_until = first_uncertain_step(&p.top5, &fx.eog_ids, MARGIN);
        if ours[..agree_until.min(ours.len())] != p.continuation_ids[..agree_until] {
            failures.push(format!(
                "prompt {n}: free-running greedy differs before step {agree_until}:\n  ours  {:?}\n  llama {:?}",
                &ours[..agree_until.min(ours.len())],
                &p.continuation_ids[..agree_until]
            ));
        }
    }
    assert!(failures.is_empty(), "{} vs llama.cpp ({}):\n{}", fx.model, failures.len(), failures.join("\n"));
}

fn greedy(engine: &EngineHandle, prompt: &[u32], n: usize) -> Vec<u32> {
    let params = SamplingParams { temperature: 0.0, max_tokens: Some(n), ignore_eos: true, ..Default::default() };
    let events = engine.generate(GenerateRequest { prompt: prompt.to_vec(), params }).expect("submit");
    let mut ids = Vec::new();
    for e in events {
        match e {
            GenerationEvent::Token(t) => ids.push(t.id),
            GenerationEvent::Done { .. } => break,
            GenerationEvent::Error(e) => panic!("generation failed: {e}"),
        }
    }
    ids
}

// The quantized models are checked at the same 0.1 nats. They pass because hearth's CPU path computes
// llama.cpp's bits (its activation quantization, kernels' summation orders, exp, GELU table, rope
// angles; see hearth_layers::cpu::reduce and quant::RowBatch): these models are so sensitive to a flipped
// 8-bit rounding that a last-bit difference anywhere moves log-probabilities by tenths of a nat.

#[test]
fn smollm2_q4_1_matches_llama_cpp() {
    check_against_llama_cpp("smollm2-135m-instruct-q4_1", &real_model("SmolLM2-135M-Instruct.Q4_1.gguf"));
}

#[test]
fn gemma3_270m_q4_k_m_matches_llama_cpp() {
    check_against_llama_cpp("gemma-3-270m-q4_k_m", &real_model("gemma-3-270m-q4_k_m.gguf"));
}

#[test]
fn tiny_qwen2_f32_matches_llama_cpp() {
    check_against_llama_cpp("tiny-qwen2-f32", &tiny_model("qwen2/model-f32.gguf"));
}

#[test]
fn tiny_qwen3_f32_matches_llama_cpp() {
    check_against_llama_cpp("tiny-qwen3-f32", &tiny_model("qwen3/model-f32.gguf"));
}

#[test]
fn tiny_mistral_f32_matches_llama_cpp() {
    check_against_llama_cpp("tiny-mistral-f32", &tiny_model("mistral/model-f32.gguf"));
}

#[test]
fn tiny_llama3_rope_scaling_matches_llama_cpp() {
    check_against_llama_cpp("tiny-llama3-f32", &tiny_model("llama3/model-f32.gguf"));
    check_against_llama_cpp("tiny-llama3-q8_0", &tiny_model("llama3/model-q8_0.gguf"));
}

#[test]
fn tiny_q8_0_models_match_llama_cpp() {
    for arch in ["qwen2", "qwen3", "mistral"] {
        check_against_llama_cpp(&format!("tiny-{arch}-q8_0"), &tiny_model(&format!("{arch}/model-q8_0.gguf")));
    }
}
