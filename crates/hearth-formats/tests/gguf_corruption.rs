//! GGUF files written by the test writer, valid and deliberately broken: valid ones round-trip, and each
//! kind of damage gives a one-line error naming the file and the field.

use std::path::PathBuf;

use hearth_formats::gguf::write::RawTensor;
use hearth_formats::gguf::{value_type, GgmlType, GgufArray, GgufFile, GgufValue, GgufWriter};

/// Writes `bytes` as `model.gguf` in a fresh temp dir (kept alive by the returned guard).
fn write_temp(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, bytes).expect("write gguf");
    (dir, path)
}

fn open_bytes(bytes: &[u8]) -> Result<GgufFile, String> {
    let (_dir, path) = write_temp(bytes);
    GgufFile::open(&path).map_err(|e| e.to_string())
}

/// Opening must fail with one line that names the file and contains every one of `needles`.
fn expect_error(bytes: &[u8], needles: &[&str]) -> String {
    let message = match open_bytes(bytes) {
        Ok(_) => panic!("expected an error mentioning {needles:?}, but the file opened"),
        Err(message) => message,
    };
    assert!(!message.contains('\n'), "not one line: {message}");
    assert!(message.contains("model.gguf: "), "does not name the file: {message}");
    for needle in needles {
        assert!(message.contains(needle), "expected {needle:?} in: {message}");
    }
    message
}

/// A small valid model: some metadata and two tensors (an F32 norm and a Q8_0 matrix).
fn small_model() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", GgufValue::String("llama".into()))
        .add_metadata("llama.block_count", GgufValue::U32(1))
        .add_tensor("blk.0.attn_norm.weight", &[8], GgmlType::F32, f32_bytes(&[1.0; 8]))
        .add_tensor("blk.0.attn_q.weight", &[32, 2], GgmlType::Q8_0, vec![7u8; 2 * 34]);
    w
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn raw_tensor(name: &str, dims: &[u64], type_id: u32, data: Vec<u8>) -> RawTensor {
    RawTensor { name: name.into(), dims: dims.to_vec(), type_id, data, offset_override: None }
}

/// Little-endian u64 length followed by `bytes`: a GGUF string payload written by hand.
fn string_payload(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

// ---- valid files ----

#[test]
fn every_metadata_type_round_trips() {
    let values = [
        ("a.u8", GgufValue::U8(200)),
        ("a.i8", GgufValue::I8(-5)),
        ("a.u16", GgufValue::U16(60000)),
        ("a.i16", GgufValue::I16(-30000)),
        ("a.u32", GgufValue::U32(4_000_000_000)),
        ("a.i32", GgufValue::I32(-2_000_000_000)),
        ("a.u64", GgufValue::U64(u64::MAX)),
        ("a.i64", GgufValue::I64(i64::MIN)),
        ("a.f32", GgufValue::F32(1.5)),
        ("a.f64", GgufValue::F64(-2.25)),
        ("a.bool", GgufValue::Bool(true)),
        ("a.string", GgufValue::String("héllo ✓".into())),
        ("a.empty", GgufValue::Array(GgufArray::U32(vec![]))),
        ("a.tokens", GgufValue::Array(GgufArray::String(vec!["<s>".into(), "".into(), "▁the".into()]))),
        ("a.scores", GgufValue::Array(GgufArray::F32(vec![0.0, -1.5, 3.25]))),
        ("a.types", GgufValue::Array(GgufArray::I32(vec![1, 2, 3]))),
        ("a.flags", GgufValue::Array(GgufArray::Bool(vec![true, false]))),
        ("a.i64s", GgufValue::Array(GgufArray::I64(vec![-1, i64::MAX]))),
        ("a.f64s", GgufValue::Array(GgufArray::F64(vec![0.5]))),
        ("a.u8s", GgufValue::Array(GgufArray::U8(vec![0, 255]))),
        ("a.i8s", GgufValue::Array(GgufArray::I8(vec![-128, 127]))),
        ("a.u16s", GgufValue::Array(GgufArray::U16(vec![1, 65535]))),
        ("a.i16s", GgufValue::Array(GgufArray::I16(vec![-1]))),
        ("a.u64s", GgufValue::Array(GgufArray::U64(vec![u64::MAX]))),
        (
            "a.nested",
            GgufValue::Array(GgufArray::Array(vec![
                GgufArray::U32(vec![1, 2]),
                GgufArray::String(vec!["x".into()]),
                GgufArray::Array(vec![GgufArray::F32(vec![9.0])]),
            ])),
        ),
    ];
    let mut w = small_model();
    for (key, value) in &values {
        w.add_metadata(key, value.clone());
    }
    let file = open_bytes(&w.to_bytes()).expect("opens");
    for (key, value) in &values {
        assert_eq!(file.metadata().get(key), Some(value), "{key}");
    }
    assert_eq!(file.metadata().get_u64("a.u64"), Some(u64::MAX));
    assert_eq!(file.metadata().architecture(), Some("llama"));
}

#[test]
fn tensor_data_is_found_at_its_offset() {
    let norm = f32_bytes(&[0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5]);
    let q: Vec<u8> = (0..68).collect();
    let mut w = GgufWriter::new();
    w.set_alignment(64).add_tensor("norm", &[8], GgmlType::F32, norm.clone()).add_tensor(
        "q",
        &[32, 2],
        GgmlType::Q8_0,
        q.clone(),
    );
    let bytes = w.to_bytes();
    let file = open_bytes(&bytes).expect("opens");
    assert_eq!(file.alignment(), 64);
    assert_eq!(file.data_offset() % 64, 0);
    let norm_info = file.tensor("norm").expect("norm");
    let q_info = file.tensor("q").expect("q");
    assert_eq!((norm_info.n_bytes, q_info.n_bytes), (32, 68));
    assert_eq!(q_info.offset % 64, 0);
    assert_eq!(file.tensor_bytes(norm_info), &norm[..]);
    assert_eq!(file.tensor_bytes(q_info), &q[..]);
    // The data sits where the info says, in the raw bytes too.
    assert_eq!(&bytes[q_info.offset as usize..][..68], &q[..]);
    assert_eq!(file.tensors().iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["norm", "q"]);
}

#[test]
fn version_2_opens_and_version_is_reported() {
    let mut w = small_model();
    w.set_version(2);
    assert_eq!(open_bytes(&w.to_bytes()).expect("v2 opens").version(), 2);
    assert_eq!(open_bytes(&small_model().to_bytes()).expect("v3 opens").version(), 3);
}

#[test]
fn empty_model_with_no_tensors_opens() {
    let file = open_bytes(&GgufWriter::new().to_bytes()).expect("opens");
    assert!(file.tensors().is_empty() && file.metadata().entries.is_empty());
    assert_eq!(file.quantization_label(), None);
}

#[test]
fn quantization_label_from_file_type_and_from_tensor_types() {
    let mut w = small_model();
    w.add_metadata("general.file_type", GgufValue::U32(15));
    assert_eq!(open_bytes(&w.to_bytes()).expect("opens").quantization_label(), Some("Q4_K_M"));
    // llama.cpp's "guessed" flag (1024) does not change the label.
    let mut w = small_model();
    w.add_metadata("general.file_type", GgufValue::U32(1024 + 7));
    assert_eq!(open_bytes(&w.to_bytes()).expect("opens").quantization_label(), Some("Q8_0"));
    // Without general.file_type: the most common 2-D tensor type (Q8_0 twice beats F16 once).
    let mut w = small_model();
    w.add_tensor("blk.0.attn_k.weight", &[32, 1], GgmlType::Q8_0, vec![0; 34]).add_tensor(
        "blk.0.attn_v.weight",
        &[4, 2],
        GgmlType::F16,
        vec![0; 16],
    );
    assert_eq!(open_bytes(&w.to_bytes()).expect("opens").quantization_label(), Some("Q8_0"));
}

#[test]
fn missing_tensor_and_unsupported_type_errors_name_the_tensor() {
    let mut w = small_model();
    w.add_tensor("blk.0.attn_v.weight", &[256], GgmlType::IQ2_XXS, vec![0; 66]);
    let file = open_bytes(&w.to_bytes()).expect("recognised types open");
    let info = file.tensor("blk.0.attn_v.weight").expect("present");
    let message = file.check_supported(info).expect_err("IQ2_XXS unsupported").to_string();
    assert!(message.ends_with("tensor blk.0.attn_v.weight has type IQ2_XXS (16), which hearth does not support"));
    assert!(file.check_supported(file.tensor("blk.0.attn_q.weight").expect("q")).is_ok());
    let missing = file.require_tensor("output.weight").expect_err("absent").to_string();
    assert!(missing.contains("model.gguf: ") && missing.contains("'output.weight'"), "{missing}");
}

#[test]
fn ggml_type_table_matches_ggml_block_layouts() {
    // Sizes from ggml's block structs: d (f16) + quants, etc.
    let expected = [
        (GgmlType::F32, 0, 1, 4),
        (GgmlType::F16, 1, 1, 2),
        (GgmlType::Q4_0, 2, 32, 2 + 16),
        (GgmlType::Q4_1, 3, 32, 2 + 2 + 16),
        (GgmlType::Q5_0, 6, 32, 2 + 4 + 16),
        (GgmlType::Q5_1, 7, 32, 2 + 2 + 4 + 16),
        (GgmlType::Q8_0, 8, 32, 2 + 32),
        (GgmlType::Q8_1, 9, 32, 2 + 2 + 32),
        (GgmlType::Q2_K, 10, 256, 16 + 64 + 2 + 2),
        (GgmlType::Q3_K, 11, 256, 32 + 64 + 12 + 2),
        (GgmlType::Q4_K, 12, 256, 2 + 2 + 12 + 128),
        (GgmlType::Q5_K, 13, 256, 2 + 2 + 12 + 32 + 128),
        (GgmlType::Q6_K, 14, 256, 128 + 64 + 16 + 2),
        (GgmlType::Q8_K, 15, 256, 4 + 256 + 32),
        (GgmlType::BF16, 30, 1, 2),
    ];
    for (ty, id, block, size) in expected {
        assert_eq!((ty.id(), ty.block_size(), ty.type_size()), (id, block, size), "{ty}");
        assert_eq!(GgmlType::from_id(id), Some(ty));
        assert!(ty.is_supported());
    }
    assert_eq!(GgmlType::from_id(16).map(GgmlType::name), Some("IQ2_XXS"));
    assert!(GgmlType::from_id(4).is_none() && GgmlType::from_id(5).is_none() && GgmlType::from_id(1000).is_none());
}

// ---- header ----

#[test]
fn bad_magic() {
    let mut w = small_model();
    w.set_magic(*b"GGML");
    expect_error(&w.to_bytes(), &["bad magic", "GGUF"]);
}

#[test]
fn version_1_and_unknown_versions_are_unsupported() {
    for version in [1, 4, 99] {
        let mut w = small_model();
        w.set_version(version);
        expect_error(&w.to_bytes(), &["GGUF version", &version.to_string(), "not supported"]);
    }
}

#[test]
fn big_endian_file_is_rejected_by_name() {
    let mut w = small_model();
    w.set_version(3u32.swap_bytes());
    expect_error(&w.to_bytes(), &["big-endian"]);
}

#[test]
fn absurd_tensor_and_kv_counts() {
    let mut w = small_model();
    w.override_tensor_count(u64::MAX / 2);
    expect_error(&w.to_bytes(), &["tensor_count", "cannot fit"]);
    let mut w = small_model();
    w.override_kv_count(1 << 40);
    expect_error(&w.to_bytes(), &["kv_count", "cannot fit"]);
    // Plausible but wrong: one more tensor than the file holds runs into the data section.
    let mut w = small_model();
    w.override_tensor_count(3);
    open_bytes(&w.to_bytes()).expect_err("third tensor info is garbage");
}

// ---- metadata ----

#[test]
fn absurd_string_length() {
    let mut w = small_model();
    w.add_raw_metadata("general.name", value_type::STRING, (u64::MAX - 3).to_le_bytes().to_vec());
    expect_error(&w.to_bytes(), &["metadata 'general.name'", "string length", "cannot fit"]);
}

#[test]
fn absurd_array_length() {
    let mut payload = value_type::U32.to_le_bytes().to_vec();
    payload.extend_from_slice(&(1u64 << 60).to_le_bytes());
    let mut w = small_model();
    w.add_raw_metadata("tokenizer.ggml.token_type", value_type::ARRAY, payload);
    expect_error(&w.to_bytes(), &["metadata 'tokenizer.ggml.token_type'", "array length", "cannot fit"]);
}

#[test]
fn non_utf8_string_value_and_key() {
    let mut w = small_model();
    w.add_raw_metadata("general.name", value_type::STRING, string_payload(&[b'a', 0xff, 0xfe]));
    expect_error(&w.to_bytes(), &["metadata 'general.name'", "not valid UTF-8"]);

    // A key is the first thing in an entry, so patch a key's bytes in an otherwise valid file.
    let mut bytes = small_model().to_bytes();
    let at = bytes.windows(12).position(|w| w == b"llama.block_").expect("key present");
    bytes[at] = 0xc3; // a UTF-8 lead byte followed by ASCII: invalid
    expect_error(&bytes, &["metadata key #1", "not valid UTF-8"]);
}

#[test]
fn unknown_value_types() {
    let mut w = small_model();
    w.add_raw_metadata("general.mystery", 13, vec![0; 8]);
    expect_error(&w.to_bytes(), &["metadata 'general.mystery'", "unknown value type 13"]);

    let mut payload = 77u32.to_le_bytes().to_vec();
    payload.extend_from_slice(&1u64.to_le_bytes());
    let mut w = small_model();
    w.add_raw_metadata("general.list", value_type::ARRAY, payload);
    expect_error(&w.to_bytes(), &["metadata 'general.list'", "unknown value type 77"]);
}

/// A key holding control characters (found by the fuzz test in CI) must not break the one-line message.
#[test]
fn control_characters_in_names_are_escaped() {
    let mut w = small_model();
    w.add_raw_metadata("tokenizer.ggml.tokens\t\n  a\r", 13, vec![0; 8]);
    expect_error(&w.to_bytes(), &["metadata 'tokenizer.ggml.tokens\\t\\n  a\\r'", "unknown value type 13"]);
}

#[test]
fn duplicate_metadata_key() {
    let mut w = small_model();
    w.add_metadata("llama.block_count", GgufValue::U32(2));
    expect_error(&w.to_bytes(), &["duplicate metadata key 'llama.block_count'"]);
}

#[test]
fn deeply_nested_arrays_are_rejected_not_recursed() {
    let mut nested = GgufArray::U8(vec![1]);
    for _ in 0..20 {
        nested = GgufArray::Array(vec![nested]);
    }
    let mut w = small_model();
    w.add_metadata("general.deep", GgufValue::Array(nested));
    expect_error(&w.to_bytes(), &["metadata 'general.deep'", "nested"]);
}

#[test]
fn bad_alignment() {
    for value in [GgufValue::U32(0), GgufValue::U32(48), GgufValue::String("32".into())] {
        let mut w = small_model();
        w.add_metadata("general.alignment", value);
        expect_error(&w.to_bytes(), &["general.alignment", "power of two"]);
    }
}

// ---- tensor infos ----

#[test]
fn too_many_dims() {
    let mut w = small_model();
    w.add_raw_tensor(raw_tensor("blk.0.big", &[1, 1, 1, 1, 1], GgmlType::F32.id(), vec![0; 4]));
    expect_error(&w.to_bytes(), &["tensor 'blk.0.big'", "5 dimensions"]);
}

#[test]
fn zero_dim() {
    let mut w = small_model();
    w.add_raw_tensor(raw_tensor("blk.0.empty", &[4, 0], GgmlType::F32.id(), vec![]));
    expect_error(&w.to_bytes(), &["tensor 'blk.0.empty'", "dimension 1 is zero"]);
}

#[test]
fn overflowing_dims() {
    let mut w = small_model();
    w.add_raw_tensor(raw_tensor("blk.0.huge", &[1 << 32, 1 << 32], GgmlType::F32.id(), vec![0; 4]));
    expect_error(&w.to_bytes(), &["tensor 'blk.0.huge'", "overflow"]);
}

#[test]
fn row_not_whole_blocks() {
    let mut w = small_model();
    w.add_raw_tensor(raw_tensor("blk.0.ffn_up.weight", &[100, 256], GgmlType::Q4_K.id(), vec![0; 144 * 100]));
    expect_error(&w.to_bytes(), &["tensor 'blk.0.ffn_up.weight'", "not a multiple of Q4_K's block size 256"]);
}

#[test]
fn unknown_tensor_type() {
    let mut w = small_model();
    w.add_raw_tensor(raw_tensor("blk.0.odd", &[32], 4, vec![0; 32]));
    expect_error(&w.to_bytes(), &["tensor 'blk.0.odd'", "unknown ggml type id 4"]);
}

#[test]
fn unaligned_offset() {
    let mut w = small_model();
    let mut t = raw_tensor("blk.0.attn_k.weight", &[8], GgmlType::F32.id(), vec![0; 32]);
    t.offset_override = Some(64 + 4);
    w.add_raw_tensor(t);
    expect_error(&w.to_bytes(), &["tensor 'blk.0.attn_k.weight'", "offset 68", "alignment 32"]);
}

#[test]
fn tensor_past_end_of_file() {
    let mut w = small_model();
    let mut t = raw_tensor("blk.3.ffn_up.weight", &[8], GgmlType::F32.id(), vec![0; 32]);
    t.offset_override = Some(1 << 20);
    w.add_raw_tensor(t);
    let bytes = w.to_bytes();
    let message = expect_error(&bytes, &["tensor 'blk.3.ffn_up.weight' data [offset ", "extends past end of file"]);
    assert!(message.contains(&format!("({} bytes)", bytes.len())), "{message}");
    // An offset so large that offset + size overflows is out of range too, not a panic.
    let mut w = small_model();
    let mut t = raw_tensor("blk.3.ffn_up.weight", &[8], GgmlType::F32.id(), vec![0; 32]);
    t.offset_override = Some(u64::MAX - 31);
    w.add_raw_tensor(t);
    expect_error(&w.to_bytes(), &["tensor 'blk.3.ffn_up.weight'", "extends past end of file"]);
}

#[test]
fn overlapping_tensors() {
    let mut w = small_model();
    let mut t = raw_tensor("blk.0.attn_k.weight", &[8], GgmlType::F32.id(), vec![0; 32]);
    t.offset_override = Some(0); // on top of blk.0.attn_norm.weight
    w.add_raw_tensor(t);
    expect_error(&w.to_bytes(), &["overlaps", "blk.0.attn_norm.weight", "blk.0.attn_k.weight"]);
}

#[test]
fn duplicate_tensor_name() {
    let mut w = small_model();
    w.add_tensor("blk.0.attn_norm.weight", &[8], GgmlType::F32, vec![0; 32]);
    expect_error(&w.to_bytes(), &["duplicate tensor name 'blk.0.attn_norm.weight'"]);
}

#[test]
fn non_utf8_tensor_name() {
    let mut bytes = small_model().to_bytes();
    let at = bytes.windows(10).position(|w| w == b"attn_q.wei").expect("name present");
    bytes[at] = 0xff;
    expect_error(&bytes, &["tensor info #1 name", "not valid UTF-8"]);
}

// ---- truncation ----

#[test]
fn truncated_anywhere_names_what_was_being_read() {
    let bytes = small_model().to_bytes();
    let file = open_bytes(&bytes).expect("full file opens");
    let last = file.tensor("blk.0.attn_q.weight").expect("q").clone();
    let data_start = file.data_offset() as usize;
    // Layout: 24-byte header, 78 bytes of metadata (to 102), two tensor infos (to 215), padding, data.
    let cases: [(usize, &[&str]); 7] = [
        (0, &["magic", "truncated"]),
        (6, &["version", "truncated"]),
        (20, &["kv_count", "truncated"]),
        // Too short for the promised 2 entries + 2 tensor infos: caught as a count before reading on.
        (30, &["kv_count = 2", "cannot fit"]),
        (100, &["metadata 'llama.block_count'", "truncated"]),
        (data_start - 10, &["tensor 'blk.0.attn_q.weight' offset", "truncated"]),
        (last.offset as usize + 10, &["tensor 'blk.0.attn_q.weight' data", "extends past end of file"]),
    ];
    for (len, needles) in cases {
        expect_error(&bytes[..len], needles);
    }
    // Every shorter prefix fails cleanly.
    for len in 0..bytes.len() {
        open_bytes(&bytes[..len]).expect_err("a truncated file must not open");
    }
}

#[test]
fn missing_file_is_an_io_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let message = GgufFile::open(dir.path().join("absent.gguf")).expect_err("absent").to_string();
    assert!(message.contains("absent.gguf: cannot read file"), "{message}");
}
