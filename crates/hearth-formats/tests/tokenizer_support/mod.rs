//! Shared helpers of the tokenizer tests: locating the test models and the committed fixtures.
#![allow(dead_code)]

use std::path::PathBuf;

use hearth_formats::gguf::GgufFile;
use hearth_formats::tokenizer::Tokenizer;
use serde::Deserialize;

pub const SMOLLM: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";

/// HEARTH_TEST_MODELS, else $HEARTH_DEV_CACHE/models, else ~/.cache/hearth-dev/models.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HEARTH_TEST_MODELS") {
        return PathBuf::from(dir);
    }
    if let Some(cache) = std::env::var_os("HEARTH_DEV_CACHE") {
        return PathBuf::from(cache).join("models");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/hearth-dev/models")
}

/// Opens a test model; a missing model fails the test with instructions rather than skipping it.
pub fn open_model(file: &str) -> GgufFile {
    let path = models_dir().join(file);
    assert!(
        path.exists(),
        "test model {} is missing: run scripts/fetch-models.sh (or set HEARTH_TEST_MODELS)",
        path.display()
    );
    GgufFile::open(&path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

pub fn tokenizer(file: &str) -> Tokenizer {
    let gguf = open_model(file);
    Tokenizer::from_gguf(gguf.metadata()).unwrap_or_else(|e| panic!("tokenizer of {file}: {e}"))
}

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// One corpus string with llama.cpp's answers (see scripts/gen-tokenizer-fixtures.py).
#[derive(Debug, Deserialize)]
pub struct Case {
    pub text: String,
    /// add_special = true, parse_special = true.
    pub prompt: Vec<u32>,
    /// add_special = false, parse_special = false.
    pub raw: Vec<u32>,
    /// llama-server's /detokenize of `prompt`.
    pub detok: String,
}

/// Special ids as llama.cpp reports them when loading the model.
#[derive(Debug, Deserialize)]
pub struct Specials {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    pub eog: Vec<u32>,
}

#[derive(Debug, Deserialize)]
pub struct Fixture {
    pub model: String,
    pub specials: Specials,
    pub cases: Vec<Case>,
}

pub fn fixture(name: &str) -> Fixture {
    let path = fixtures_dir()
        .join("tokenizer")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}
