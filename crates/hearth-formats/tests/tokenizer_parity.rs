//! Token-for-token parity with llama.cpp on the committed corpus, for both test models.

mod tokenizer_support;

use hearth_formats::tokenizer::Tokenizer;
use tokenizer_support::{fixture, tokenizer, Fixture, GEMMA, SMOLLM};

/// Every mismatch, described, so one run shows them all.
fn mismatches(tok: &Tokenizer, fx: &Fixture) -> Vec<String> {
    let mut bad = Vec::new();
    for case in &fx.cases {
        let prompt = tok.encode(&case.text, true, true).expect("encode prompt");
        if prompt != case.prompt {
            bad.push(format!(
                "prompt {:?}\n  hearth:    {prompt:?}\n  llama.cpp: {:?}",
                case.text, case.prompt
            ));
        }
        let raw = tok.encode(&case.text, false, false).expect("encode raw");
        if raw != case.raw {
            bad.push(format!(
                "raw {:?}\n  hearth:    {raw:?}\n  llama.cpp: {:?}",
                case.text, case.raw
            ));
        }
        let detok = tok.decode(&case.prompt, false).expect("decode");
        if detok != case.detok {
            bad.push(format!(
                "detok {:?}\n  hearth:    {detok:?}\n  llama.cpp: {:?}",
                case.text, case.detok
            ));
        }
    }
    bad
}

fn check(file: &str, name: &str) {
    let tok = tokenizer(file);
    let fx = fixture(name);
    assert_eq!(
        fx.model, file,
        "fixture {name} was generated for another model"
    );
    assert!(
        fx.cases.len() >= 200,
        "corpus too small: {}",
        fx.cases.len()
    );
    let bad = mismatches(&tok, &fx);
    assert!(
        bad.is_empty(),
        "{} of {} cases differ from llama.cpp:\n{}",
        bad.len(),
        fx.cases.len(),
        bad.join("\n")
    );
}

#[test]
fn smollm2_matches_llama_cpp() {
    check(SMOLLM, "smollm2-135m");
}

#[test]
fn gemma3_matches_llama_cpp() {
    check(GEMMA, "gemma-3-270m");
}
