//! Reads the two real test models and checks what the reader reports against their published configs.

use std::path::PathBuf;

use hearth_formats::gguf::{GgmlType, GgufFile, TensorInfo};

/// The test-model directory: `$HEARTH_TEST_MODELS`, else `$HEARTH_DEV_CACHE/models`, else
/// `~/.cache/hearth-dev/models`. A missing model fails the test: run `scripts/fetch-models.sh`.
fn model_path(file: &str) -> PathBuf {
    let dir = std::env::var_os("HEARTH_TEST_MODELS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HEARTH_DEV_CACHE").map(|c| PathBuf::from(c).join("models")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/hearth-dev/models")))
        .expect("neither HEARTH_TEST_MODELS, HEARTH_DEV_CACHE nor HOME is set");
    let path = dir.join(file);
    assert!(path.is_file(), "test model {} is missing: run scripts/fetch-models.sh", path.display());
    path
}

fn smollm2() -> GgufFile {
    GgufFile::open(model_path("SmolLM2-135M-Instruct.Q4_1.gguf")).expect("SmolLM2 GGUF opens")
}

fn gemma3() -> GgufFile {
    GgufFile::open(model_path("gemma-3-270m-q4_k_m.gguf")).expect("gemma 3 GGUF opens")
}

fn dims_of(file: &GgufFile, name: &str) -> Vec<u64> {
    file.tensor(name).unwrap_or_else(|| panic!("tensor {name} present")).dims.clone()
}

/// Every tensor lies inside the file, has the size its type implies, and no two overlap.
fn assert_byte_ranges_sound(file: &GgufFile) {
    let size = std::fs::metadata(file.path()).expect("stat model").len();
    assert_eq!(file.file_size(), size);
    let mut ranges: Vec<&TensorInfo> = file.tensors().iter().collect();
    ranges.sort_by_key(|t| t.offset);
    for t in &ranges {
        let elements: u64 = t.dims.iter().product();
        assert_eq!(t.n_bytes, elements / t.ggml_type.block_size() * t.ggml_type.type_size(), "{}", t.name);
        assert!(t.offset >= file.data_offset() && t.offset + t.n_bytes <= size, "{} out of file", t.name);
        assert_eq!((t.offset - file.data_offset()) % file.alignment(), 0, "{} unaligned", t.name);
        assert_eq!(file.tensor_bytes(t).len() as u64, t.n_bytes, "{}", t.name);
    }
    for pair in ranges.windows(2) {
        assert!(pair[0].offset + pair[0].n_bytes <= pair[1].offset, "{} overlaps {}", pair[0].name, pair[1].name);
    }
}

#[test]
fn smollm2_header_metadata_and_tensors() {
    let file = smollm2();
    assert_eq!(file.architecture(), Some("llama"));
    assert!(matches!(file.version(), 2 | 3));
    let md = file.metadata();
    // SmolLM2-135M: 30 layers, hidden size 576, 9 query heads, 3 KV heads, vocabulary of 49152.
    assert_eq!(md.get_u64("llama.block_count"), Some(30));
    assert_eq!(md.get_u64("llama.embedding_length"), Some(576));
    assert_eq!(md.get_u64("llama.attention.head_count"), Some(9));
    assert_eq!(md.get_u64("llama.attention.head_count_kv"), Some(3));
    assert_eq!(md.get_str("tokenizer.ggml.model"), Some("gpt2"));
    assert_eq!(md.get_str_array("tokenizer.ggml.tokens").map(<[String]>::len), Some(49152));
    assert!(md.get_str("tokenizer.chat_template").is_some_and(|t| t.contains("im_start")));

    // 30 layers x 9 tensors + embedding + output norm.
    assert_eq!(file.tensors().len(), 30 * 9 + 2);
    assert_eq!(dims_of(&file, "token_embd.weight"), [576, 49152]);
    assert_eq!(dims_of(&file, "blk.0.attn_q.weight"), [576, 576]);
    assert_eq!(dims_of(&file, "blk.0.attn_k.weight"), [576, 192]);
    assert_eq!(dims_of(&file, "blk.29.ffn_down.weight"), [1536, 576]);
    assert!(file.tensor("blk.30.attn_q.weight").is_none());
    assert!(file.tensors().iter().any(|t| t.ggml_type == GgmlType::Q4_1));
    assert_eq!(file.tensor("blk.0.attn_norm.weight").map(|t| t.ggml_type), Some(GgmlType::F32));
    assert_byte_ranges_sound(&file);
}

#[test]
fn gemma3_header_metadata_and_tensors() {
    let file = gemma3();
    assert_eq!(file.architecture(), Some("gemma3"));
    let md = file.metadata();
    // gemma-3-270m: 18 layers, hidden size 640, 4 query heads of 256, 1 KV head, 262144-token vocabulary.
    assert_eq!(md.get_u64("gemma3.block_count"), Some(18));
    assert_eq!(md.get_u64("gemma3.embedding_length"), Some(640));
    assert_eq!(md.get_u64("gemma3.attention.head_count"), Some(4));
    assert_eq!(md.get_u64("gemma3.attention.head_count_kv"), Some(1));
    assert_eq!(md.get_str("tokenizer.ggml.model"), Some("llama"));
    assert_eq!(md.get_str_array("tokenizer.ggml.tokens").map(<[String]>::len), Some(262144));
    assert!(md.get_array("tokenizer.ggml.scores").and_then(|a| a.to_f32_vec()).is_some_and(|s| s.len() == 262144));

    assert!(file.tensors().len() > 18 * 10);
    assert_eq!(dims_of(&file, "token_embd.weight"), [640, 262144]);
    assert_eq!(dims_of(&file, "blk.0.attn_q.weight"), [640, 1024]);
    assert_eq!(dims_of(&file, "blk.0.attn_k.weight"), [640, 256]);
    let types: Vec<GgmlType> = file.tensors().iter().map(|t| t.ggml_type).collect();
    assert!(types.contains(&GgmlType::Q4_K) && types.contains(&GgmlType::Q6_K), "{types:?}");
    assert_byte_ranges_sound(&file);
}

#[test]
fn quantization_labels_match_llama_cpp_names() {
    assert_eq!(smollm2().quantization_label(), Some("Q4_1"));
    assert_eq!(gemma3().quantization_label(), Some("Q4_K_M"));
}

#[test]
fn real_models_use_only_supported_types() {
    for file in [smollm2(), gemma3()] {
        for t in file.tensors() {
            file.check_supported(t).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[test]
fn tensor_bytes_are_the_bytes_at_the_recorded_offset() {
    // Reading the file independently (not through the map) must give the same bytes.
    use std::io::{Read, Seek, SeekFrom};
    let file = smollm2();
    let info = file.tensor("blk.0.attn_norm.weight").expect("norm tensor");
    let mut raw = vec![0u8; info.n_bytes as usize];
    let mut f = std::fs::File::open(file.path()).expect("open model");
    f.seek(SeekFrom::Start(info.offset)).expect("seek");
    f.read_exact(&mut raw).expect("read");
    assert_eq!(file.tensor_bytes(info), &raw[..]);
    // An RMSNorm weight of 576 f32s: finite, and not all zero.
    let values: Vec<f32> = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(values.len(), 576);
    assert!(values.iter().all(|v| v.is_finite()) && values.iter().any(|&v| v != 0.0));
}
