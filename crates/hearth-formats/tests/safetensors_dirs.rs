//! Safetensors model directories written by the tests: single-file and sharded layouts, config files,
//! and the errors for missing shards, bad indexes, unsupported dtypes and broken headers.

use std::collections::BTreeMap;
use std::path::Path;

use hearth_formats::safetensors::{write_safetensors, SafetensorsModel, StDtype, TensorToWrite};
use serde_json::json;

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn write_json(dir: &Path, name: &str, value: &serde_json::Value) {
    std::fs::write(dir.join(name), serde_json::to_vec_pretty(value).expect("json")).expect("write json");
}

fn write_config(dir: &Path) {
    write_json(dir, "config.json", &json!({"architectures": ["LlamaForCausalLM"], "hidden_size": 4}));
}

/// A safetensors file written by hand (not by the code under test): 8-byte header length, JSON, data.
fn hand_written_file(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let mut json = serde_json::to_vec(header).expect("json");
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(data);
    out
}

fn open_error(dir: &Path) -> String {
    let message = SafetensorsModel::open(dir).expect_err("should fail").to_string();
    assert!(!message.contains('\n'), "not one line: {message}");
    message
}

struct Fixture {
    embed: Vec<u8>,
    norm: Vec<u8>,
    bias: Vec<u8>,
}

fn fixture() -> Fixture {
    Fixture {
        embed: f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        // bf16 bit patterns for 1.0, 2.0, -1.0, 0.5
        norm: [0x3f80u16, 0x4000, 0xbf80, 0x3f00].iter().flat_map(|v| v.to_le_bytes()).collect(),
        // f16 bit patterns for 1.0 and 2.0
        bias: [0x3c00u16, 0x4000].iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

fn tensors(f: &Fixture) -> Vec<TensorToWrite<'_>> {
    vec![
        TensorToWrite { name: "model.embed_tokens.weight", dtype: StDtype::F32, shape: &[3, 2], data: &f.embed },
        TensorToWrite { name: "model.norm.weight", dtype: StDtype::BF16, shape: &[4], data: &f.norm },
        TensorToWrite { name: "lm_head.bias", dtype: StDtype::F16, shape: &[2], data: &f.bias },
    ]
}

#[test]
fn single_file_directory_round_trips() {
    let dir = tempfile::tempdir().expect("temp dir");
    let f = fixture();
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(&dir.path().join("model.safetensors"), &tensors(&f), &metadata).expect("write");
    write_config(dir.path());
    write_json(dir.path(), "generation_config.json", &json!({"eos_token_id": [1, 2]}));

    let model = SafetensorsModel::open(dir.path()).expect("opens");
    assert_eq!(
        model.tensor_names().collect::<Vec<_>>(),
        ["lm_head.bias", "model.embed_tokens.weight", "model.norm.weight"]
    );
    let embed = model.tensor("model.embed_tokens.weight").expect("embed");
    assert_eq!((embed.dtype, embed.shape.as_slice(), embed.data), (StDtype::F32, &[3usize, 2][..], &f.embed[..]));
    let norm = model.tensor("model.norm.weight").expect("norm");
    assert_eq!((norm.dtype, norm.shape.as_slice(), norm.data), (StDtype::BF16, &[4usize][..], &f.norm[..]));
    let bias = model.tensor("lm_head.bias").expect("bias");
    assert_eq!((bias.dtype, bias.data), (StDtype::F16, &f.bias[..]));

    assert_eq!(model.config()["hidden_size"], 4);
    assert_eq!(model.generation_config().map(|g| g["eos_token_id"].clone()), Some(json!([1, 2])));
    assert!(model.tokenizer_config().is_none());
    assert!(model.contains("lm_head.bias") && !model.contains("lm_head.weight"));
    let missing = model.tensor("lm_head.weight").expect_err("absent").to_string();
    assert!(missing.contains("'lm_head.weight'"), "{missing}");
}

#[test]
fn written_file_has_the_standard_layout() {
    // Read the writer's output by hand: header length, JSON header with dtype/shape/offsets, data.
    let dir = tempfile::tempdir().expect("temp dir");
    let f = fixture();
    let path = dir.path().join("out.safetensors");
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(&path, &tensors(&f), &metadata).expect("write");
    let bytes = std::fs::read(&path).expect("read back");
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).expect("header json");
    assert_eq!(header["__metadata__"], json!({"format": "pt"}));
    let embed = &header["model.embed_tokens.weight"];
    assert_eq!((&embed["dtype"], &embed["shape"]), (&json!("F32"), &json!([3, 2])));
    let start = 8 + header_len + embed["data_offsets"][0].as_u64().expect("offset") as usize;
    assert_eq!(&bytes[start..start + 24], &f.embed[..]);
    assert_eq!(bytes.len(), 8 + header_len + f.embed.len() + f.norm.len() + f.bias.len());
    // Atomic write: nothing but the final file is left in the directory.
    let names: Vec<_> = std::fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(names, ["out.safetensors"]);
}

#[test]
fn writer_overwrites_and_rejects_bad_tensors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("model.safetensors");
    let f = fixture();
    write_safetensors(&path, &tensors(&f), &BTreeMap::new()).expect("first write");
    let one = [TensorToWrite { name: "only", dtype: StDtype::F32, shape: &[1], data: &f.embed[..4] }];
    write_safetensors(&path, &one, &BTreeMap::new()).expect("overwrite");
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), std::fs::read(&path).expect("read").len() as u64);

    let short = [TensorToWrite { name: "w", dtype: StDtype::F32, shape: &[3, 2], data: &f.embed[..20] }];
    let message = write_safetensors(&path, &short, &BTreeMap::new()).expect_err("length mismatch").to_string();
    assert!(message.contains("tensor 'w'") && message.contains("needs 24 bytes, got 20"), "{message}");
    let twice = [one[0], one[0]];
    let message = write_safetensors(&path, &twice, &BTreeMap::new()).expect_err("duplicate").to_string();
    assert!(message.contains("tensor 'only'") && message.contains("more than once"), "{message}");
    // The failed writes left the previous file intact.
    write_config(dir.path());
    let model = SafetensorsModel::open(dir.path()).expect("previous file still valid");
    assert_eq!(model.tensor_names().collect::<Vec<_>>(), ["only"]);
}

/// Two shards plus a hand-written index.
fn sharded_dir(f: &Fixture) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let all = tensors(f);
    let first = dir.path().join("model-00001-of-00002.safetensors");
    let second = dir.path().join("model-00002-of-00002.safetensors");
    write_safetensors(&first, &all[..2], &BTreeMap::new()).expect("shard 1");
    write_safetensors(&second, &all[2..], &BTreeMap::new()).expect("shard 2");
    write_config(dir.path());
    write_json(
        dir.path(),
        "model.safetensors.index.json",
        &json!({
            "metadata": {"total_size": 44},
            "weight_map": {
                "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                "model.norm.weight": "model-00001-of-00002.safetensors",
                "lm_head.bias": "model-00002-of-00002.safetensors"
            }
        }),
    );
    dir
}

#[test]
fn sharded_directory_reads_every_shard() {
    let f = fixture();
    let dir = sharded_dir(&f);
    write_json(dir.path(), "tokenizer_config.json", &json!({"bos_token": "<s>"}));
    let model = SafetensorsModel::open(dir.path()).expect("opens");
    assert_eq!(model.tensor_names().len(), 3);
    assert_eq!(model.shard_paths().count(), 2);
    assert_eq!(model.tensor("lm_head.bias").expect("bias").data, &f.bias[..]);
    assert_eq!(model.tensor("model.embed_tokens.weight").expect("embed").data, &f.embed[..]);
    assert!(model.shard_of("lm_head.bias").is_some_and(|p| p.ends_with("model-00002-of-00002.safetensors")));
    assert_eq!(model.tokenizer_config().map(|t| t["bos_token"].clone()), Some(json!("<s>")));
}

#[test]
fn missing_shard_is_named() {
    let dir = sharded_dir(&fixture());
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).expect("remove");
    let message = open_error(dir.path());
    assert!(message.contains("model.safetensors.index.json"), "{message}");
    assert!(message.contains("'model-00002-of-00002.safetensors'") && message.contains("does not exist"), "{message}");
}

#[test]
fn indexed_tensor_missing_from_its_shard_is_named() {
    let dir = sharded_dir(&fixture());
    write_json(
        dir.path(),
        "model.safetensors.index.json",
        &json!({"weight_map": {
            "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
            "lm_head.bias": "model-00001-of-00002.safetensors"
        }}),
    );
    let message = open_error(dir.path());
    assert!(
        message.contains("tensor 'lm_head.bias'") && message.contains("model-00001-of-00002.safetensors"),
        "{message}"
    );
}

#[test]
fn index_problems_are_named() {
    let dir = sharded_dir(&fixture());
    let index = "model.safetensors.index.json";
    write_json(dir.path(), index, &json!({"weight_map": {"w": "../elsewhere.safetensors"}}));
    let message = open_error(dir.path());
    assert!(message.contains("weight_map.\"w\"") && message.contains("not a file name"), "{message}");
    write_json(dir.path(), index, &json!({"weight_map": {"w": 3}}));
    assert!(open_error(dir.path()).contains("weight_map.\"w\": is not a string"));
    write_json(dir.path(), index, &json!({"metadata": {}}));
    assert!(open_error(dir.path()).contains("weight_map: is missing"));
    std::fs::write(dir.path().join(index), b"{ not json").expect("write");
    let message = open_error(dir.path());
    assert!(message.contains(index) && message.contains("invalid JSON"), "{message}");
}

#[test]
fn unsupported_dtype_names_the_tensor() {
    let dir = tempfile::tempdir().expect("temp dir");
    let header = json!({
        "weight": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "position_ids": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]}
    });
    let mut data = f32_bytes(&[0.25, -4.0]);
    data.extend_from_slice(&7i64.to_le_bytes());
    std::fs::write(dir.path().join("model.safetensors"), hand_written_file(&header, &data)).expect("write");
    write_config(dir.path());
    let model = SafetensorsModel::open(dir.path()).expect("opens: unsupported dtypes fail only when read");
    let weight = model.tensor("weight").expect("F32 tensor");
    assert_eq!((weight.dtype, weight.data), (StDtype::F32, &data[..8]));
    let message = model.tensor("position_ids").expect_err("I64").to_string();
    assert!(message.contains("model.safetensors"), "{message}");
    assert!(message.contains("tensor 'position_ids' has dtype I64"), "{message}");
}

#[test]
fn broken_shard_header_names_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_config(dir.path());
    let header = json!({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}});
    // Only 8 of the promised 16 data bytes.
    std::fs::write(dir.path().join("model.safetensors"), hand_written_file(&header, &[0; 8])).expect("write");
    let message = open_error(dir.path());
    assert!(message.contains("model.safetensors: invalid safetensors header"), "{message}");
    std::fs::write(dir.path().join("model.safetensors"), [1u8, 2, 3]).expect("write");
    assert!(open_error(dir.path()).contains("model.safetensors: invalid safetensors header"));
}

#[test]
fn config_problems_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let f = fixture();
    write_safetensors(&dir.path().join("model.safetensors"), &tensors(&f), &BTreeMap::new()).expect("write");
    let message = open_error(dir.path());
    assert!(message.contains("config.json: cannot read"), "{message}");
    std::fs::write(dir.path().join("config.json"), b"{\"hidden_size\": ").expect("write");
    assert!(open_error(dir.path()).contains("config.json: invalid JSON"));
    std::fs::write(dir.path().join("config.json"), b"[1, 2]").expect("write");
    assert!(open_error(dir.path()).contains("config.json: top level: is not a JSON object"));
    write_config(dir.path());
    std::fs::write(dir.path().join("generation_config.json"), b"nope").expect("write");
    assert!(open_error(dir.path()).contains("generation_config.json: invalid JSON"));
}

#[test]
fn directory_without_weights() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_config(dir.path());
    let message = open_error(dir.path());
    assert!(message.contains("no model.safetensors or model.safetensors.index.json"), "{message}");
}
