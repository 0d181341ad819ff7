//! The engine's batching path: concurrent greedy requests give the same tokens as each alone, also when
//! a tiny KV cache forces preemption and recomputation, and chunked prefill changes nothing.

mod common;

use common::*;
use hearth_engine::sampling::SamplingParams;
use hearth_engine::{EngineConfig, EngineCore, EngineHandle, GenerateRequest, GenerationEvent};
use std::sync::{mpsc, Arc};
use std::sync::mpsc::Receiver;

fn prompts() -> Vec<Vec<u32>> {
    // Varied lengths; ids well inside the vocabulary.
    (0..6u32).map(|i| (0..(5 + 23 * i)).map(|j| 100 + (j * 37 + i * 11) % 5000).collect()).collect()
}

fn request(prompt: &[u32]) -> GenerateRequest {
    let params = SamplingParams { temperature: 0.0, max_tokens: Some(24), ignore_eos: true, ..Default::default() };
    GenerateRequest { prompt: prompt.to_vec(), params }
}

fn collect(rx: Receiver<GenerationEvent>) -> Vec<u32> {
    let mut ids = Vec::new();
    for e in rx {
        match e {
            GenerationEvent::Token(t) => ids.push(t.id),
            GenerationEvent::Done { .. } => return ids,
            GenerationEvent::Error(e) => panic!("generation failed: {e}"),
        }
    }
    panic!("engine stopped without Done")
}

fn engine(config: EngineConfig) -> EngineHandle {
    let model = tiny_model("qwen2/model-f32.gguf");
    let loaded = hearth_models::load(&model, &candle_core::Device::Cpu).expect("load");
    EngineHandle::start(loaded, config).expect("engine")
}

#[test]
fn concurrent_and_preempted_requests_match_solo_runs() {
    let solo_engine = engine(EngineConfig::default());
    let solo: Vec<Vec<u32>> = prompts().iter().map(|p| collect(solo_engine.generate(request(p)).expect("submit"))).collect();
    assert!(solo.iter().all(|ids| ids.len() == 24));

    // 12 blocks of 16 tokens cannot hold six sequences of up to 140 tokens: some must be preempted.
    // A 7-token prefill budget forces chunked prefill of every prompt.
    let loaded = hearth_models::load(&tiny_model("qwen2/model-f32.gguf"), &candle_core::Device::Cpu).expect("load");
    let bytes_per_token = loaded.model.kv_cache_config(1, 1).bytes_per_token();
    let cfg = |kv_blocks: usize| EngineConfig {
        kv_cache_bytes: Some(kv_blocks * 16 * bytes_per_token),
        max_batch_tokens: 7,
        ..Default::default()
    };
    let e = engine(EngineConfig::default());
    let receivers: Vec<_> = prompts().iter().map(|p| e.generate(request(p)).expect("submit")).collect();
    let together: Vec<Vec<u32>> = receivers.into_iter().map(collect).collect();
    assert_eq!(together, solo, "batched output differs from solo output");

    // Driven step by step, so the preemptions can be counted.
    let mut core = EngineCore::new(loaded.model, Arc::new(loaded.tokenizer), loaded.eos_ids, cfg(12)).expect("core");
    let receivers: Vec<_> = prompts()
        .iter()
        .map(|p| {
            let (tx, rx) = mpsc::channel();
            core.submit(request(p), tx);
            rx
        })
        .collect();
    let mut steps = 0;
    while core.has_work() {
        core.step().expect("step");
        steps += 1;
        assert!(steps < 10_000, "the scheduler made no progress");
    }
    assert!(core.preemptions() > 0, "a 12-block cache should have forced preemption");
    let squeezed: Vec<Vec<u32>> = receivers.into_iter().map(collect).collect();
    assert_eq!(squeezed, solo, "output after preemption and chunked prefill differs from solo output");
}

#[test]
fn a_prompt_that_cannot_fit_the_cache_is_refused_with_a_clear_error() {
    let e = engine(EngineConfig { kv_cache_bytes: Some(4 * 16 * 256), ..Default::default() });
    let rx = e.generate(request(&vec![100u32; 200])).expect("submit");
    match rx.recv().expect("an event") {
        GenerationEvent::Error(msg) => assert!(msg.contains("200 tokens") && msg.contains("at most"), "{msg}"),
        other => panic!("expected an error, got {other:?}"),
    }
}
