//! The exported `tokenizer.json` / `tokenizer_config.json` reproduce llama.cpp's ids when run by the
//! Hugging Face `tokenizers` crate, and load back through `Tokenizer::from_hf_files`.

mod tokenizer_support;

use hearth_formats::tokenizer::Tokenizer;
use tokenizer_support::{fixture, tokenizer, GEMMA, SMOLLM};

/// Writes the export of `file` into a temp dir and returns (dir, the HF tokenizer, hearth's tokenizer).
fn export(file: &str) -> (tempfile::TempDir, Tokenizer) {
    let tok = tokenizer(file);
    let dir = tempfile::tempdir().expect("temp dir");
    let json = tok.to_hf_json().expect("to_hf_json");
    let config = tok.tokenizer_config_json(None);
    std::fs::write(dir.path().join("tokenizer.json"), json).expect("write tokenizer.json");
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string())
        .expect("write config");
    (dir, tok)
}

/// Cases where the HF tokenizer built from our export disagrees with llama.cpp.
fn hf_mismatches(file: &str, name: &str) -> Vec<String> {
    let (dir, tok) = export(file);
    let hf = tokenizers::Tokenizer::from_file(dir.path().join("tokenizer.json"))
        .expect("HF loads the export");
    let skip_bos = usize::from(tok.add_bos());
    let mut bad = Vec::new();
    for case in fixture(name).cases {
        let ids = hf
            .encode(case.text.as_str(), false)
            .expect("HF encode")
            .get_ids()
            .to_vec();
        let want = case.prompt.get(skip_bos..).unwrap_or_default();
        if ids != want {
            bad.push(format!(
                "{:?}\n  hf:        {ids:?}\n  llama.cpp: {want:?}",
                case.text
            ));
        }
    }
    bad
}

#[test]
fn smollm2_export_runs_in_hf_tokenizers_with_llama_cpp_ids() {
    let bad = hf_mismatches(SMOLLM, "smollm2-135m");
    assert!(
        bad.is_empty(),
        "{} cases differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn gemma3_export_runs_in_hf_tokenizers_with_llama_cpp_ids() {
    let bad = hf_mismatches(GEMMA, "gemma-3-270m");
    assert!(
        bad.is_empty(),
        "{} cases differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn exported_files_load_back_with_the_same_specials() {
    for (file, name) in [(SMOLLM, "smollm2-135m"), (GEMMA, "gemma-3-270m")] {
        let (dir, original) = export(file);
        let loaded = Tokenizer::from_hf_files(
            &dir.path().join("tokenizer.json"),
            Some(&dir.path().join("tokenizer_config.json")),
        )
        .expect("from_hf_files");
        assert_eq!(loaded.vocab_size(), original.vocab_size(), "{file}");
        assert_eq!(loaded.bos_id(), original.bos_id(), "{file}");
        assert_eq!(loaded.eos_id(), original.eos_id(), "{file}");
        assert_eq!(loaded.add_bos(), original.add_bos(), "{file}");
        assert_eq!(loaded.chat_template(), original.chat_template(), "{file}");
        for case in &fixture(name).cases {
            let ids = loaded.encode(&case.text, true, true).expect("encode");
            assert_eq!(ids, case.prompt, "{file}: {:?}", case.text);
            let raw = loaded.encode(&case.text, false, false).expect("encode raw");
            assert_eq!(raw, case.raw, "{file}: raw {:?}", case.text);
            assert_eq!(
                loaded.decode(&ids, false).expect("decode"),
                case.detok,
                "{file}: {:?}",
                case.text
            );
        }
    }
}

#[test]
fn missing_tokenizer_json_is_an_io_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tokenizer.json");
    match Tokenizer::from_hf_files(&path, None) {
        Err(hearth_formats::tokenizer::TokenizerError::Io { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    std::fs::write(&path, "{ not json").expect("write");
    let err = Tokenizer::from_hf_files(&path, None).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}
