//! The real `hearth` binary on broken inputs: every case must exit non-zero with exactly one stderr
//! line, `error: ...`, naming the file and the field or tensor at fault, and never panic.

mod common;

use common::*;
use hearth_formats::gguf::write::RawTensor;
use hearth_formats::gguf::{value_type, GgufFile, GgufValue, GgufWriter};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn hearth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the hearth binary runs")
}

/// Asserts the one-line error contract and that the line contains every `needles` entry.
fn assert_clean_error(case: &str, out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!out.status.success(), "{case}: exited successfully; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{case}: panicked:\n{stderr}");
    assert_eq!(lines.len(), 1, "{case}: expected one stderr line, got:\n{stderr}");
    let line = lines[0];
    assert!(line.starts_with("error: "), "{case}: stderr line does not start with 'error: ': {line}");
    for needle in needles {
        assert!(line.contains(needle), "{case}: error does not mention {needle:?}: {line}");
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

fn smollm2() -> PathBuf {
    real_model("SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn tiny_qwen2() -> PathBuf {
    tiny_model("qwen2/model-f32.gguf")
}

/// A writer holding every metadata entry and tensor of `src`, to be altered and written again.
fn rebuild(src: &Path, keep_key: impl Fn(&str) -> bool) -> (GgufWriter, GgufFile) {
    let file = GgufFile::open(src).unwrap_or_else(|e| panic!("{e}"));
    let mut w = GgufWriter::new();
    for (key, value) in &file.metadata().entries {
        if keep_key(key) && key != "general.alignment" {
            w.add_metadata(key, value.clone());
        }
    }
    (w, file)
}

fn add_tensors(w: &mut GgufWriter, file: &GgufFile, mut alter: impl FnMut(&mut RawTensor)) {
    for info in file.tensors() {
        let mut t = RawTensor {
            name: info.name.clone(),
            dims: info.dims.clone(),
            type_id: info.ggml_type.id(),
            data: file.tensor_bytes(info).to_vec(),
            offset_override: None,
        };
        alter(&mut t);
        w.add_raw_tensor(t);
    }
}

/// Position of the first occurrence of `needle` in `haystack` at or after `from`.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> usize {
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
        .unwrap_or_else(|| panic!("{:?} not found", String::from_utf8_lossy(needle)))
}

#[test]
fn bad_magic_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = std::fs::read(tiny_qwen2()).expect("read tiny model");
    bytes[..4].copy_from_slice(b"GGUX");
    let p = dir.path().join("bad-magic.gguf");
    std::fs::write(&p, &bytes).expect("write");
    assert_clean_error("bad magic (show)", &hearth(&["show", path_str(&p)]), &["bad-magic.gguf", "magic"]);
    assert_clean_error("bad magic (run)", &hearth(&["run", path_str(&p), "hi", "--max-tokens", "1"]), &["bad-magic.gguf", "magic"]);
}

#[test]
fn truncated_smollm2_names_where_it_ends() {
    let src = smollm2();
    let bytes = std::fs::read(&src).expect("read SmolLM2");
    let file = GgufFile::open(&src).expect("SmolLM2 opens");
    let data_start = file.data_offset() as usize;
    // Tensor names appear only in the tensor table (after their u64 length); llama.cpp writes the
    // table in data order.
    // A late entry, so the table's plausible-size check passes and the read itself runs out.
    let late = &file.tensors()[200];
    let late_info = find(&bytes, late.name.as_bytes(), 0) - 8;
    let tokens_key = find(&bytes, b"tokenizer.ggml.tokens", 0);
    let in_data = data_start + (file.tensors()[5].offset as usize - data_start) + 100;
    let past_end_tensor = file
        .tensors()
        .iter()
        .find(|t| t.offset + t.n_bytes > in_data as u64)
        .map(|t| t.name.clone())
        .expect("a tensor ends after the cut");
    let cases: Vec<(&str, usize, String)> = vec![
        ("inside the header", 12, "count".into()),
        // Deep enough that the header's tensor_count plausibility check still passes.
        ("inside metadata", tokens_key + 100_000, "tokenizer.ggml.tokens".into()),
        ("inside the tensor table", late_info + 8 + late.name.len() + 6, format!("'{}'", late.name)),
        ("inside tensor data", in_data, format!("'{past_end_tensor}'")),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    for (where_, cut, field) in cases {
        let p = dir.path().join(format!("cut-at-{cut}.gguf"));
        std::fs::write(&p, &bytes[..cut]).expect("write");
        let name = format!("cut-at-{cut}.gguf");
        assert_clean_error(&format!("truncated {where_}"), &hearth(&["show", path_str(&p)]), &[&name, &field]);
    }
}

/// A minimal well-formed llama header plus one tensor, for the structural cases.
fn small_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", GgufValue::String("llama".into()));
    w.add_tensor("token_embd.weight", &[8, 4], hearth_formats::gguf::GgmlType::F32, vec![0u8; 8 * 4 * 4]);
    w
}

#[test]
fn tensor_offset_past_the_end_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = small_writer();
    w.add_raw_tensor(RawTensor {
        name: "output.weight".into(),
        dims: vec![8, 4],
        type_id: 0,
        data: vec![0u8; 128],
        offset_override: Some(1 << 40),
    });
    let p = dir.path().join("offset.gguf");
    w.write_to(&p).expect("write");
    assert_clean_error("offset past end", &hearth(&["show", path_str(&p)]), &["offset.gguf", "'output.weight'", "past end"]);
}

#[test]
fn absurd_counts_are_refused_without_allocating() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = small_writer();
    w.override_tensor_count(1 << 60);
    let p = dir.path().join("tensor-count.gguf");
    w.write_to(&p).expect("write");
    assert_clean_error("tensor_count 2^60", &hearth(&["show", path_str(&p)]), &["tensor-count.gguf", "tensor_count"]);

    let mut w = small_writer();
    let mut payload = value_type::STRING.to_le_bytes().to_vec();
    payload.extend_from_slice(&(1u64 << 60).to_le_bytes());
    w.add_raw_metadata("tokenizer.ggml.tokens", value_type::ARRAY, payload);
    let p = dir.path().join("array-len.gguf");
    w.write_to(&p).expect("write");
    assert_clean_error("array length 2^60", &hearth(&["show", path_str(&p)]), &["array-len.gguf", "tokenizer.ggml.tokens"]);
}

#[test]
fn unknown_architecture_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut w, file) = rebuild(&tiny_qwen2(), |k| k != "general.architecture");
    w.add_metadata("general.architecture", GgufValue::String("mamba9".into()));
    add_tensors(&mut w, &file, |_| {});
    let p = dir.path().join("mamba.gguf");
    w.write_to(&p).expect("write");
    assert_clean_error("unknown architecture", &hearth(&["show", path_str(&p)]), &["mamba.gguf", "mamba9", "architecture"]);
    assert_clean_error("unknown architecture (run)", &hearth(&["run", path_str(&p), "hi", "--max-tokens", "1"]), &["mamba.gguf", "mamba9"]);
}

#[test]
fn unsupported_tensor_type_is_named() {
    const IQ2_XXS: u32 = 16;
    const IQ2_XXS_BLOCK: (u64, usize) = (256, 66); // elements, bytes
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut w, file) = rebuild(&tiny_qwen2(), |_| true);
    let target = "blk.1.ffn_down.weight";
    add_tensors(&mut w, &file, |t| {
        if t.name == target {
            assert_eq!(t.dims[0] % IQ2_XXS_BLOCK.0, 0, "{target} rows must hold whole IQ2_XXS blocks");
            let blocks = (t.dims.iter().product::<u64>() / IQ2_XXS_BLOCK.0) as usize;
            t.type_id = IQ2_XXS;
            t.data = vec![0u8; blocks * IQ2_XXS_BLOCK.1];
        }
    });
    let p = dir.path().join("iq2.gguf");
    w.write_to(&p).expect("write");
    let out = hearth(&["run", path_str(&p), "hi", "--max-tokens", "1"]);
    assert_clean_error("IQ2_XXS tensor", &out, &["iq2.gguf", target, "IQ2_XXS"]);
}

#[test]
fn missing_tensor_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut w, file) = rebuild(&tiny_qwen2(), |_| true);
    let mut kept = file.tensors().to_vec();
    kept.retain(|t| t.name != "blk.1.attn_k.weight");
    assert_eq!(kept.len() + 1, file.tensors().len(), "the tiny model has blk.1.attn_k.weight");
    for info in &kept {
        w.add_tensor(&info.name, &info.dims, info.ggml_type, file.tensor_bytes(info).to_vec());
    }
    let p = dir.path().join("no-attn-k.gguf");
    w.write_to(&p).expect("write");
    let out = hearth(&["run", path_str(&p), "hi", "--max-tokens", "1"]);
    assert_clean_error("missing tensor", &out, &["no-attn-k.gguf", "blk.1.attn_k.weight"]);
}

#[test]
fn gguf_without_tokenizer_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut w, file) = rebuild(&tiny_qwen2(), |k| !k.starts_with("tokenizer."));
    add_tensors(&mut w, &file, |_| {});
    let p = dir.path().join("no-tokenizer.gguf");
    w.write_to(&p).expect("write");
    assert_clean_error("no tokenizer (show)", &hearth(&["show", path_str(&p)]), &["no-tokenizer.gguf", "missing tokenizer"]);
    assert_clean_error("no tokenizer (run)", &hearth(&["run", path_str(&p), "hi"]), &["no-tokenizer.gguf", "missing tokenizer"]);
}

#[test]
fn safetensors_dir_without_tokenizer_json_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hf = tiny_model("qwen2/hf");
    let model_dir = dir.path().join("qwen2-no-tok");
    std::fs::create_dir(&model_dir).expect("mkdir");
    for f in ["config.json", "model.safetensors", "generation_config.json"] {
        std::fs::copy(hf.join(f), model_dir.join(f)).expect("copy");
    }
    let out = hearth(&["run", path_str(&model_dir), "hi", "--max-tokens", "1"]);
    assert_clean_error("no tokenizer.json", &out, &["qwen2-no-tok/tokenizer.json", "missing tokenizer"]);
}

#[test]
fn prompt_longer_than_the_context_is_refused() {
    // The tiny models have a 2048-token context; this prompt is several thousand tokens.
    let prompt = "The quick brown fox jumps over the lazy dog. ".repeat(330);
    let out = hearth(&["run", path_str(&tiny_qwen2()), &prompt, "--max-tokens", "1"]);
    // One position is kept for the token to generate, so 2047 of the 2048 are left for the prompt.
    assert_clean_error("prompt too long", &out, &["prompt", "context", "2047"]);
}

#[test]
fn missing_path_is_named() {
    let out = hearth(&["run", "/nonexistent/hearth-test/model.gguf", "hi"]);
    assert_clean_error("missing path (run)", &out, &["/nonexistent/hearth-test/model.gguf", "no such file"]);
    let out = hearth(&["show", "/nonexistent/hearth-test/model.gguf"]);
    assert_clean_error("missing path (show)", &out, &["/nonexistent/hearth-test/model.gguf", "no such file"]);
    let out = hearth(&["convert", "/nonexistent/hearth-test/model.gguf", "--to", "/tmp/hearth-never-written"]);
    assert_clean_error("missing path (convert)", &out, &["/nonexistent/hearth-test/model.gguf", "no such file"]);
}
