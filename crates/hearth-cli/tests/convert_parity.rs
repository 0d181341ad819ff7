//! `hearth convert`: the safetensors directory it writes must behave like the GGUF file it came from.
//! Teacher-forced on the llama.cpp fixture prompts, the converted model's log-probabilities are compared
//! with hearth's own GGUF path; the exported tokenizer must give the GGUF tokenizer's ids.

mod common;

use common::*;
use hearth_engine::score_tokens;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Top-1 must agree where the GGUF path's own top-1/top-2 gap is at least this (nats).
const MARGIN: f32 = 0.3;
/// The GGUF path's top-5 tokens' log-probabilities must agree within this (nats).
const TOLERANCE: f32 = 0.3;

fn hearth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth")).args(args).output().expect("the hearth binary runs")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 paths")
}

fn convert(gguf: &Path, out: &Path, dtype: &str) {
    let o = hearth(&["convert", s(gguf), "--to", s(out), "--dtype", dtype]);
    assert!(o.status.success(), "hearth convert {} failed:\n{}", gguf.display(), String::from_utf8_lossy(&o.stderr));
}

/// The five most likely tokens of a log-softmax row, most likely first.
fn top5(row: &[f32]) -> Vec<(u32, f32)> {
    let mut ids: Vec<u32> = (0..row.len() as u32).collect();
    ids.select_nth_unstable_by(4, |&a, &b| row[b as usize].total_cmp(&row[a as usize]));
    ids.truncate(5);
    ids.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]));
    ids.into_iter().map(|id| (id, row[id as usize])).collect()
}

/// Teacher-forced log-softmax rows of the continuation steps of every fixture prompt.
fn continuation_rows(model: &hearth_models::Transformer, fx: &Fixture, prompt: &FixturePrompt) -> Vec<Vec<f32>> {
    let mut tokens = prompt.prompt_ids.clone();
    tokens.extend_from_slice(&prompt.continuation_ids[..prompt.continuation_ids.len() - 1]);
    let rows = score_tokens(model, &tokens, 64).unwrap_or_else(|e| panic!("scoring {}: {e}", fx.model));
    rows[prompt.prompt_ids.len() - 1..].to_vec()
}

/// hearth's GGUF path as the reference: per prompt, per step, its top-5 (id, logprob). The model is
/// dropped on return, so only one model is in memory at a time.
fn gguf_reference(gguf: &Path, fx: &Fixture) -> Vec<Vec<Vec<(u32, f32)>>> {
    let loaded = hearth_models::load(gguf, &candle_core::Device::Cpu).unwrap_or_else(|e| panic!("loading {}: {e}", gguf.display()));
    fx.prompts.iter().map(|p| continuation_rows(&loaded.model, fx, p).iter().map(|r| top5(r)).collect()).collect()
}

fn assert_layout(dir: &Path, expect_template: bool) {
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "model.safetensors"] {
        assert!(dir.join(f).is_file(), "{} is missing from the converted directory", f);
    }
    let tok_cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer_config.json")).expect("read")).expect("tokenizer_config.json is JSON");
    let template = tok_cfg.get("chat_template").and_then(|t| t.as_str());
    assert_eq!(template.is_some(), expect_template, "tokenizer_config.json chat_template: {template:?}");
    let gen: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("generation_config.json")).expect("read")).expect("generation_config.json is JSON");
    assert!(gen.get("eos_token_id").is_some_and(|v| !v.is_null()), "generation_config.json has no eos_token_id: {gen}");
}

const TOKENIZER_SAMPLES: &[&str] = &[
    "Hello, world!",
    "  two leading spaces,\ttabs\tand\n\nnewlines  ",
    "Unicode: café, naïve, 日本語, emoji 🦀🔥",
    "Numbers 1234567 and 3.14159, code: fn main() { println!(\"hi\"); }",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<start_of_turn>user\nhi<end_of_turn>",
];

/// The converted tokenizer.json (read by the HF tokenizers library) against the GGUF tokenizer.
fn tokenizer_mismatches(gguf: &Path, dir: &Path) -> Vec<String> {
    let a = hearth_models::open(gguf).unwrap_or_else(|e| panic!("{e}")).tokenizer;
    let b = hearth_models::open(dir).unwrap_or_else(|e| panic!("{e}")).tokenizer;
    let mut failures = Vec::new();
    for text in TOKENIZER_SAMPLES {
        for (add_special, parse_special) in [(true, false), (false, true)] {
            let ours = a.encode(text, add_special, parse_special).expect("GGUF tokenizer encodes");
            let theirs = b.encode(text, add_special, parse_special).expect("converted tokenizer encodes");
            if ours != theirs {
                failures.push(format!("tokenizer on {text:?} (add_special {add_special}, parse_special {parse_special}):\n  gguf      {ours:?}\n  converted {theirs:?}"));
            }
        }
    }
    failures
}

/// Converts `gguf` to f32 safetensors and compares the two paths on the fixture `fixture_id`.
fn check_conversion(fixture_id: &str, gguf: &Path, expect_template: bool) {
    let fx = fixture(fixture_id);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("converted");
    convert(gguf, &dir, "f32");
    assert_layout(&dir, expect_template);
    let mut failures = tokenizer_mismatches(gguf, &dir);
    let deq = tmp.path().join("dequantized.gguf");
    write_dequantized_gguf(gguf, &deq);
    let reference = gguf_reference(&deq, &fx);
    let loaded = hearth_models::load(&dir, &candle_core::Device::Cpu).unwrap_or_else(|e| panic!("loading the converted {}: {e}", dir.display()));
    for (n, (p, top)) in fx.prompts.iter().zip(&reference).enumerate() {
        let rows = continuation_rows(&loaded.model, &fx, p);
        failures.extend(compare_steps(&format!("prompt {n}"), &rows, top, MARGIN, TOLERANCE));
    }
    assert!(failures.is_empty(), "{} converted vs GGUF ({} failures):\n{}", fx.model, failures.len(), failures.join("\n"));
}

/// `src` with every tensor dequantized to F32 (same metadata), written to `dst`: hearth's GGUF path on
/// exactly the weights the conversion writes, without the quantized kernels' int8 activations.
fn write_dequantized_gguf(src: &Path, dst: &Path) {
    use hearth_formats::gguf::{GgmlType, GgufWriter};
    let m = hearth_models::open(src).unwrap_or_else(|e| panic!("{e}"));
    let hearth_models::weights::WeightFiles::Gguf(file) = &m.files else { panic!("{} is not GGUF", src.display()) };
    let mut w = GgufWriter::new();
    for (key, value) in &file.metadata().entries {
        if key != "general.file_type" && key != "general.alignment" {
            w.add_metadata(key, value.clone());
        }
    }
    for info in file.tensors() {
        let t = m.files.require(&info.name, m.config.family, &candle_core::Device::Cpu).expect("tensor").to_f32(&candle_core::Device::Cpu).expect("dequantize");
        let data: Vec<u8> = t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("f32 data").iter().flat_map(|x| x.to_le_bytes()).collect();
        w.add_tensor(&info.name, &info.dims, GgmlType::F32, data);
    }
    w.write_to(dst).expect("write dequantized GGUF");
}

#[test]
fn smollm2_q4_1_converts_to_an_equivalent_directory() {
    check_conversion("smollm2-135m-instruct-q4_1", &real_model("SmolLM2-135M-Instruct.Q4_1.gguf"), true);
}

#[test]
fn gemma3_q4_k_m_converts_to_an_equivalent_directory() {
    check_conversion("gemma-3-270m-q4_k_m", &real_model("gemma-3-270m-q4_k_m.gguf"), false);
}

#[test]
fn tiny_models_convert_to_equivalent_directories() {
    for arch in ["qwen2", "qwen3", "mistral", "llama3"] {
        check_conversion(&format!("tiny-{arch}-f32"), &tiny_model(&format!("{arch}/model-f32.gguf")), true);
    }
}

#[test]
fn half_precision_conversions_load_and_generate() {
    let gguf = real_model("SmolLM2-135M-Instruct.Q4_1.gguf");
    let tmp = tempfile::tempdir().expect("tempdir");
    for (dtype, label) in [("f16", "F16"), ("bf16", "BF16")] {
        let dir = tmp.path().join(dtype);
        convert(&gguf, &dir, dtype);
        let show = hearth(&["show", s(&dir)]);
        let shown = String::from_utf8_lossy(&show.stdout);
        assert!(show.status.success(), "show {dtype}: {}", String::from_utf8_lossy(&show.stderr));
        assert!(shown.lines().any(|l| l.contains("quantization") && l.trim_end().ends_with(label)), "show {dtype} does not report {label}:\n{shown}");
        let run = hearth(&["run", s(&dir), "What is the capital of France?", "--temperature", "0", "--max-tokens", "6"]);
        let text = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success(), "run {dtype}: {}", String::from_utf8_lossy(&run.stderr));
        assert!(!text.trim().is_empty(), "run {dtype} printed nothing");
    }
}

#[test]
fn converting_into_a_non_empty_directory_fails_cleanly() {
    let gguf = tiny_model("qwen2/model-f32.gguf");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir: PathBuf = tmp.path().join("occupied");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("keep.txt"), "mine").expect("write");
    let o = hearth(&["convert", s(&gguf), "--to", s(&dir)]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "convert into a non-empty directory succeeded");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line:\n{stderr}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains(s(&dir)) && lines[0].contains("not empty"), "{}", lines[0]);
    let left: Vec<_> = std::fs::read_dir(tmp.path()).expect("ls").filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("occupied")], "convert left files beside the target");
    let inside: Vec<_> = std::fs::read_dir(&dir).expect("ls").filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(inside, vec![std::ffi::OsString::from("keep.txt")], "convert touched the occupied directory");
    assert_eq!(std::fs::read_to_string(dir.join("keep.txt")).expect("read"), "mine");

    let file = dir.join("keep.txt");
    let o = hearth(&["convert", s(&gguf), "--to", s(&file)]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.trim().lines().count() == 1, "convert onto a file:\n{stderr}");
    assert!(stderr.starts_with("error: ") && stderr.contains(s(&file)) && stderr.contains("not a directory"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "mine");
}
