//! Shared helpers of the model-level tests: where the real and tiny test models live, the llama.cpp
//! reference fixtures, and the margin-aware comparison.
#![allow(dead_code)]

use serde::Deserialize;
use std::path::{Path, PathBuf};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn dev_cache() -> PathBuf {
    std::env::var_os("HEARTH_DEV_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/hearth-dev"))
}

/// A real test model fetched by scripts/fetch-models.sh; panics with the fix if it is missing.
pub fn real_model(file: &str) -> PathBuf {
    let dir = std::env::var_os("HEARTH_TEST_MODELS").map(PathBuf::from).unwrap_or_else(|| dev_cache().join("models"));
    let p = dir.join(file);
    assert!(p.is_file(), "test model {} is missing: run scripts/fetch-models.sh", p.display());
    p
}

/// A tiny random-weight model written by scripts/gen-tiny-models.py (`arch/model-f32.gguf`, `arch/hf`).
pub fn tiny_model(rel: &str) -> PathBuf {
    let dir = std::env::var_os("HEARTH_TINY_MODELS").map(PathBuf::from).unwrap_or_else(|| dev_cache().join("tiny-models"));
    let p = dir.join(rel);
    assert!(p.exists(), "tiny model {} is missing: run scripts/gen-tiny-models.py (scripts/test.sh does)", p.display());
    p
}

#[derive(Deserialize)]
pub struct Fixture {
    pub model: String,
    pub eog_ids: Vec<u32>,
    pub prompts: Vec<FixturePrompt>,
}

#[derive(Deserialize)]
pub struct FixturePrompt {
    pub text: String,
    pub prompt_ids: Vec<u32>,
    pub continuation_ids: Vec<u32>,
    /// Per step, llama.cpp's five most likely tokens as (id, logprob).
    pub top5: Vec<Vec<(u32, f32)>>,
}

pub fn fixture(id: &str) -> Fixture {
    let p = repo_root().join("tests/fixtures/llama").join(format!("{id}.json"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// The top-1/top-2 gap of a reference step, optionally ignoring end-of-generation tokens (which
/// llama.cpp's `ignore_eos` masks when it picks the continuation).
pub fn gap(top: &[(u32, f32)], skip: &[u32]) -> f32 {
    let mut lps = top.iter().filter(|(id, _)| !skip.contains(id)).map(|&(_, lp)| lp);
    match (lps.next(), lps.next()) {
        (Some(a), Some(b)) => a - b,
        _ => 0.0,
    }
}

/// Margin-aware teacher-forced comparison of `rows` (hearth's log-softmax at each continuation step)
/// with reference `top` lists: top-1 must agree where the reference's gap is at least `margin`, and
/// the reference's top tokens' logprobs must be within `tol`. Returns human-readable failures.
pub fn compare_steps(label: &str, rows: &[Vec<f32>], top: &[Vec<(u32, f32)>], margin: f32, tol: f32) -> Vec<String> {
    let mut failures = Vec::new();
    for (step, (row, reference)) in rows.iter().zip(top).enumerate() {
        let Some(&(best, _)) = reference.first() else { continue };
        let ours = argmax(row);
        if gap(reference, &[]) >= margin && ours != best {
            failures.push(format!("{label} step {step}: top-1 {ours} (lp {:.3}) != reference {best} (our lp {:.3}, gap {:.3})", row[ours as usize], row[best as usize], gap(reference, &[])));
        }
        for &(id, lp) in reference {
            let mine = row.get(id as usize).copied().unwrap_or(f32::NAN);
            if !((mine - lp).abs() <= tol) {
                failures.push(format!("{label} step {step}: logprob of {id} is {mine:.4}, reference {lp:.4} (tol {tol})"));
            }
        }
    }
    failures
}

/// Index of the first step whose (EOG-masked) reference gap is under `margin`: free-running greedy
/// output must agree up to there.
pub fn first_uncertain_step(top: &[Vec<(u32, f32)>], eog: &[u32], margin: f32) -> usize {
    top.iter().position(|t| gap(t, eog) < margin).unwrap_or(top.len())
}
