//! Bounded property tests: a mutated or truncated safetensors file, or random bytes, either opens or
//! gives an error; `SafetensorsModel::open` and `tensor` never panic.

use std::collections::BTreeMap;

use hearth_formats::safetensors::{write_safetensors, SafetensorsModel, StDtype, TensorToWrite};
use proptest::prelude::*;

/// A small valid file, produced by the writer and read back as bytes.
fn valid_file() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("model.safetensors");
    let a = [0u8; 24];
    let b = [1u8; 8];
    let tensors = [
        TensorToWrite { name: "a", dtype: StDtype::F32, shape: &[2, 3], data: &a },
        TensorToWrite { name: "b", dtype: StDtype::BF16, shape: &[4], data: &b },
    ];
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(&path, &tensors, &metadata).expect("write fixture");
    std::fs::read(&path).expect("read fixture")
}

fn open_and_use(bytes: &[u8]) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("config.json"), b"{}").expect("config");
    std::fs::write(dir.path().join("model.safetensors"), bytes).expect("weights");
    match SafetensorsModel::open(dir.path()) {
        Ok(model) => {
            for name in model.tensor_names() {
                if let Ok(view) = model.tensor(name) {
                    let elements: usize = view.shape.iter().product();
                    assert_eq!(view.data.len(), elements * view.dtype.size_in_bytes(), "{name}");
                }
            }
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "multi-line error: {e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn header_mutations_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        truncate_to in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut bytes = valid_file();
        // Aim at the length prefix and the JSON header, where parsing happens.
        let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
        for (at, value) in edits {
            let i = at.index(header_end);
            bytes[i] = value;
        }
        if let Some(at) = truncate_to {
            bytes.truncate(at.index(bytes.len()));
        }
        open_and_use(&bytes);
    }

    #[test]
    fn json_header_digit_edits_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), prop_oneof![Just(b'0'), Just(b'9'), any::<u8>()]), 1..4),
    ) {
        // Change digits only: shapes and offsets go wrong while the JSON stays well-formed.
        let mut bytes = valid_file();
        let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
        let digits: Vec<usize> = (8..header_end).filter(|&i| bytes[i].is_ascii_digit()).collect();
        for (at, value) in edits {
            let i = digits[at.index(digits.len())];
            bytes[i] = if value.is_ascii_digit() { value } else { b'0' + value % 10 };
        }
        open_and_use(&bytes);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        open_and_use(&bytes);
    }
}

#[test]
fn the_unmutated_fixture_is_valid() {
    let bytes = valid_file();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("config.json"), b"{}").expect("config");
    std::fs::write(dir.path().join("model.safetensors"), &bytes).expect("weights");
    let model = SafetensorsModel::open(dir.path()).expect("fixture opens");
    assert_eq!(model.tensor_names().collect::<Vec<_>>(), ["a", "b"]);
}
