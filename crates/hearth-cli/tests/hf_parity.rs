//! The safetensors + config.json path on its own: each tiny model's Hugging Face directory, written by
//! the Python generator with transformers (not by hearth), against llama.cpp's fixtures for the f32 GGUF
//! of the same weights. This exercises the HF rope layout, HF tensor and norm names, config.json
//! parsing and tokenizer.json, none of which the GGUF parity tests touch.

mod common;

use common::*;
use hearth_engine::score_tokens;

const MARGIN: f32 = 0.1;
const TOLERANCE: f32 = 0.1;

fn check_hf_dir_against_llama_cpp(arch: &str) {
    let fx = fixture(&format!("tiny-{arch}-f32"));
    let dir = tiny_model(&format!("{arch}/hf"));
    let loaded = hearth_models::load(&dir, &candle_core::Device::Cpu).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()));
    assert_eq!(loaded.info.format, "safetensors", "{} was not read as a safetensors directory", dir.display());
    let mut failures = Vec::new();
    for (n, p) in fx.prompts.iter().enumerate() {
        // llama.cpp tokenized the rendered prompt text with special tokens parsed and added.
        let ids = loaded.tokenizer.encode(&p.text, true, true).expect("tokenizer.json encodes");
        if ids != p.prompt_ids {
            failures.push(format!("prompt {n}: tokenizer.json gives {ids:?}\n  llama.cpp {:?}", p.prompt_ids));
        }
        let mut tokens = p.prompt_ids.clone();
        tokens.extend_from_slice(&p.continuation_ids[..p.continuation_ids.len() - 1]);
        let rows = score_tokens(&loaded.model, &tokens, 64).expect("scoring");
        failures.extend(compare_steps(&format!("prompt {n}"), &rows[p.prompt_ids.len() - 1..], &p.top5, MARGIN, TOLERANCE));
    }
    assert!(failures.is_empty(), "{arch}/hf vs llama.cpp on {} ({} failures):\n{}", fx.model, failures.len(), failures.join("\n"));
}

#[test]
fn tiny_qwen2_hf_dir_matches_llama_cpp() {
    check_hf_dir_against_llama_cpp("qwen2");
}

#[test]
fn tiny_qwen3_hf_dir_matches_llama_cpp() {
    check_hf_dir_against_llama_cpp("qwen3");
}

#[test]
fn tiny_mistral_hf_dir_matches_llama_cpp() {
    check_hf_dir_against_llama_cpp("mistral");
}

#[test]
fn tiny_llama3_hf_dir_rope_scaling_matches_llama_cpp() {
    check_hf_dir_against_llama_cpp("llama3");
}
