//! Counters and gauges the engine thread publishes after every step, read by anyone holding the
//! handle (the server's `/metrics`) without a round trip to the engine.

use std::sync::atomic::{AtomicU64, Ordering};

/// Engine state as plain atomics: gauges are overwritten each step, counters only grow.
#[derive(Debug, Default)]
pub struct EngineMetrics {
    running: AtomicU64,
    waiting: AtomicU64,
    blocks_used: AtomicU64,
    blocks_total: AtomicU64,
    /// Prompt tokens looked up in the prefix cache, and those found (vLLM counts tokens, as here).
    prefix_queries: AtomicU64,
    prefix_hits: AtomicU64,
    prompt_tokens: AtomicU64,
    generation_tokens: AtomicU64,
    preemptions: AtomicU64,
}

/// A consistent-enough copy of [`EngineMetrics`] for rendering.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MetricsSnapshot {
    pub running: u64,
    pub waiting: u64,
    pub blocks_used: u64,
    pub blocks_total: u64,
    pub prefix_queries: u64,
    pub prefix_hits: u64,
    pub prompt_tokens: u64,
    pub generation_tokens: u64,
    pub preemptions: u64,
}

impl MetricsSnapshot {
    /// Fraction of KV blocks held by sequences, 0..=1.
    pub fn kv_usage(&self) -> f64 {
        if self.blocks_total == 0 { 0.0 } else { self.blocks_used as f64 / self.blocks_total as f64 }
    }
}

impl EngineMetrics {
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            running: get(&self.running),
            waiting: get(&self.waiting),
            blocks_used: get(&self.blocks_used),
            blocks_total: get(&self.blocks_total),
            prefix_queries: get(&self.prefix_queries),
            prefix_hits: get(&self.prefix_hits),
            prompt_tokens: get(&self.prompt_tokens),
            generation_tokens: get(&self.generation_tokens),
            preemptions: get(&self.preemptions),
        }
    }

    pub(crate) fn set_state(&self, running: usize, waiting: usize, blocks_used: usize, blocks_total: usize) {
        self.running.store(running as u64, Ordering::Relaxed);
        self.waiting.store(waiting as u64, Ordering::Relaxed);
        self.blocks_used.store(blocks_used as u64, Ordering::Relaxed);
        self.blocks_total.store(blocks_total as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_prefix(&self, queried: usize, hit: usize) {
        self.prefix_queries.fetch_add(queried as u64, Ordering::Relaxed);
        self.prefix_hits.fetch_add(hit as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_prompt_tokens(&self, n: usize) {
        self.prompt_tokens.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_generation_tokens(&self, n: usize) {
        self.generation_tokens.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_preemption(&self) {
        self.preemptions.fetch_add(1, Ordering::Relaxed);
    }
}
