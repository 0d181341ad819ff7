//! Prefix caching and cancellation in the engine: a repeated prompt reuses its cached KV blocks (counted
//! as hits) and still gives the same tokens; a cancelled request leaves at once and frees its blocks.

mod common;

use common::*;
use hearth_engine::sampling::SamplingParams;
use hearth_engine::{EngineConfig, EngineCore, GenerateRequest, GenerationEvent};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;

fn core() -> EngineCore {
    let loaded = hearth_models::load(&tiny_model("qwen2/model-f32.gguf"), &candle_core::Device::Cpu).expect("load");
    EngineCore::new(loaded.model, Arc::new(loaded.tokenizer), loaded.eos_ids, EngineConfig::default()).expect("core")
}

fn request(prompt: &[u32], max_tokens: usize) -> GenerateRequest {
    let params = SamplingParams { max_tokens: Some(max_tokens), ignore_eos: true, ..Default::default() };
    GenerateRequest { prompt: prompt.to_vec(), params }
}

fn run_to_end(core: &mut EngineCore) {
    let mut steps = 0;
    while core.has_work() {
        core.step().expect("step");
        steps += 1;
        assert!(steps < 10_000, "no progress");
    }
}

fn tokens(rx: Receiver<GenerationEvent>) -> Vec<u32> {
    rx.try_iter()
        .filter_map(|e| match e {
            GenerationEvent::Token(t) => Some(t.id),
            GenerationEvent::Error(e) => panic!("{e}"),
            GenerationEvent::Done { .. } => None,
        })
        .collect()
}

#[test]
fn a_repeated_prompt_hits_the_prefix_cache_and_gives_the_same_tokens() {
    let mut core = core();
    let prompt: Vec<u32> = (0..70).map(|i| 100 + i * 7).collect(); // 4 full blocks of 16 + 6
    let (tx, first) = mpsc::channel();
    core.submit(request(&prompt, 12), tx);
    run_to_end(&mut core);
    let m1 = core.metrics().snapshot();
    assert_eq!((m1.prefix_queries, m1.prefix_hits), (70, 0));

    let (tx, second) = mpsc::channel();
    core.submit(request(&prompt, 12), tx);
    run_to_end(&mut core);
    let m2 = core.metrics().snapshot();
    assert_eq!(m2.prefix_queries - m1.prefix_queries, 70);
    assert_eq!(m2.prefix_hits - m1.prefix_hits, 64, "the four full prompt blocks are reused");
    assert_eq!(m2.prompt_tokens - m1.prompt_tokens, 70);
    assert_eq!(tokens(first), tokens(second), "cached prefix changed the output");

    // A prompt that shares only the first block hits only that block.
    let mut other = prompt.clone();
    other[20] += 1;
    let (tx, _third) = mpsc::channel();
    core.submit(request(&other, 2), tx);
    run_to_end(&mut core);
    assert_eq!(core.metrics().snapshot().prefix_hits - m2.prefix_hits, 16);
    assert_eq!(core.metrics().snapshot().blocks_used, 0, "finished sequences hold no blocks");
}

#[test]
fn a_cancelled_request_frees_its_blocks_at_the_next_step() {
    let mut core = core();
    let total = core.free_blocks();
    let cancel = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    core.submit_cancellable(request(&(0..40).map(|i| 200 + i).collect::<Vec<u32>>(), 500), tx, cancel.clone());
    for _ in 0..4 {
        core.step().expect("step");
    }
    assert!(core.free_blocks() < total, "the running request holds blocks");
    assert_eq!(core.metrics().snapshot().running, 1);
    cancel.store(true, Ordering::Relaxed);
    core.step().expect("step");
    assert!(!core.has_work(), "the cancelled request left");
    assert_eq!(core.free_blocks(), total, "its blocks went back");
    let m = core.metrics().snapshot();
    assert_eq!((m.running, m.blocks_used), (0, 0));
    assert!(tokens(rx).len() < 10, "generation stopped");
}
