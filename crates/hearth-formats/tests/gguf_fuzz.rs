//! Bounded property tests: mutated, truncated and random GGUF files either open or give an error;
//! `GgufFile::open` never panics and never allocates without bound.

use hearth_formats::gguf::{GgmlType, GgufArray, GgufFile, GgufValue, GgufWriter};
use proptest::prelude::*;

/// A small valid file touching every section: strings, typed and nested arrays, three tensor types.
fn valid_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", GgufValue::String("llama".into()))
        .add_metadata("general.file_type", GgufValue::U32(7))
        .add_metadata("tokenizer.ggml.tokens", GgufValue::Array(GgufArray::String(vec!["a".into(), "bc".into()])))
        .add_metadata("tokenizer.ggml.scores", GgufValue::Array(GgufArray::F32(vec![0.0, -1.0])))
        .add_metadata("x.nested", GgufValue::Array(GgufArray::Array(vec![GgufArray::U8(vec![1, 2])])))
        .add_tensor("norm", &[8], GgmlType::F32, vec![0; 32])
        .add_tensor("w", &[32, 2], GgmlType::Q8_0, vec![1; 68])
        .add_tensor("k", &[256], GgmlType::Q4_K, vec![2; 144]);
    w.to_bytes()
}

/// Opens `bytes` from a temp file; on success, touches everything a caller would.
fn open_and_use(bytes: &[u8]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fuzz.gguf");
    std::fs::write(&path, bytes).expect("write");
    match GgufFile::open(&path) {
        Ok(file) => {
            for info in file.tensors() {
                assert_eq!(file.tensor_bytes(info).len() as u64, info.n_bytes);
                let _ = file.check_supported(info);
            }
            let _ = file.quantization_label();
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "multi-line error: {e}"),
    }
}

/// Values that tend to break length and offset arithmetic.
fn interesting_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX / 2),
        Just(1 << 32),
        Just(1 << 62),
        0u64..4096,
        any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn byte_mutations_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        truncate_to in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut bytes = valid_file();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if let Some(at) = truncate_to {
            bytes.truncate(at.index(bytes.len()));
        }
        open_and_use(&bytes);
    }

    #[test]
    fn u64_field_overwrites_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), interesting_u64()), 1..4),
    ) {
        let mut bytes = valid_file();
        for (at, value) in edits {
            let i = at.index(bytes.len() - 8);
            bytes[i..i + 8].copy_from_slice(&value.to_le_bytes());
        }
        open_and_use(&bytes);
    }

    #[test]
    fn random_bytes_after_a_valid_magic_never_panic(
        tail in prop::collection::vec(any::<u8>(), 0..512),
        version in prop_oneof![Just(2u32), Just(3u32), any::<u32>()],
    ) {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(&tail);
        open_and_use(&bytes);
        open_and_use(&tail);
    }
}

#[test]
fn the_unmutated_fixture_is_valid() {
    // Guards the property tests: if the fixture itself failed to open, they would test nothing useful.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ok.gguf");
    std::fs::write(&path, valid_file()).expect("write");
    let file = GgufFile::open(&path).expect("fixture opens");
    assert_eq!(file.tensors().len(), 3);
    assert_eq!(file.quantization_label(), Some("Q8_0"));
}
