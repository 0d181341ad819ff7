//! Behaviour of the tokenizer API beyond raw ids: special ids, decoding options, pieces, round
//! trips, and clear errors for bad metadata.

mod tokenizer_support;

use hearth_formats::gguf::{GgufArray, GgufMetadata, GgufValue};
use hearth_formats::tokenizer::{TokenType, Tokenizer, TokenizerError};
use tokenizer_support::{fixture, open_model, tokenizer, GEMMA, SMOLLM};

#[test]
fn special_ids_match_llama_cpp() {
    for (file, name) in [(SMOLLM, "smollm2-135m"), (GEMMA, "gemma-3-270m")] {
        let tok = tokenizer(file);
        let want = fixture(name).specials;
        assert_eq!(tok.bos_id(), want.bos, "{file} bos");
        assert_eq!(tok.eos_id(), want.eos, "{file} eos");
        assert_eq!(tok.unk_id(), want.unk, "{file} unk");
        assert_eq!(tok.pad_id(), want.pad, "{file} pad");
        assert_eq!(tok.eos_ids(), want.eog, "{file} end-of-generation set");
    }
}

#[test]
fn add_bos_follows_the_metadata() {
    assert!(!tokenizer(SMOLLM).add_bos());
    let gemma = tokenizer(GEMMA);
    assert!(gemma.add_bos());
    assert_eq!(gemma.encode("", true, true).unwrap(), vec![2]);
    assert_eq!(gemma.encode("", false, true).unwrap(), Vec::<u32>::new());
}

#[test]
fn decode_round_trips_where_llama_cpp_does() {
    for (file, name) in [(SMOLLM, "smollm2-135m"), (GEMMA, "gemma-3-270m")] {
        let tok = tokenizer(file);
        let bos_text = if tok.add_bos() {
            tok.id_to_token(tok.bos_id().unwrap()).unwrap().to_string()
        } else {
            String::new()
        };
        let mut checked = 0;
        for case in fixture(name).cases {
            // llama.cpp round-trips this string: its detokenization is BOS text + the input.
            if case.detok != format!("{bos_text}{}", case.text) {
                continue;
            }
            // Untrusted-text mode: control-token text stays text, so nothing is hidden on decode.
            let ids = tok.encode(&case.text, true, false).unwrap();
            assert_eq!(
                tok.decode(&ids, true).unwrap(),
                case.text,
                "{file}: decode(encode({:?}))",
                case.text
            );
            checked += 1;
        }
        assert!(checked >= 250, "{file}: only {checked} round-trip cases");
    }
}

#[test]
fn skip_special_hides_control_tokens_but_not_user_defined_ones() {
    let gemma = tokenizer(GEMMA);
    let ids = gemma
        .encode("<start_of_turn>user\nhi<end_of_turn>\n\n", true, true)
        .unwrap();
    assert_eq!(ids.first(), Some(&2));
    assert_eq!(
        gemma.decode(&ids, false).unwrap(),
        "<bos><start_of_turn>user\nhi<end_of_turn>\n\n"
    );
    assert_eq!(gemma.decode(&ids, true).unwrap(), "user\nhi\n\n");
    assert!(gemma.is_special(2) && gemma.is_special(106));
    // "\n\n" is a user-defined token in Gemma's vocabulary: text, not control.
    assert_eq!(gemma.token_type(108), Some(TokenType::UserDefined));
    assert!(!gemma.is_special(108));
}

#[test]
fn parse_special_false_keeps_control_text_as_text() {
    let smol = tokenizer(SMOLLM);
    let parsed = smol.encode("<|im_start|>user", false, true).unwrap();
    assert_eq!(parsed.first(), Some(&1));
    let literal = smol.encode("<|im_start|>user", false, false).unwrap();
    assert!(!literal.contains(&1), "{literal:?}");
    assert_eq!(smol.decode(&literal, false).unwrap(), "<|im_start|>user");
}

#[test]
fn byte_fallback_pieces_are_single_bytes() {
    let gemma = tokenizer(GEMMA);
    // U+20000 is not in Gemma's vocabulary: it becomes its four UTF-8 bytes.
    let ids = gemma.encode("𠀀", false, false).unwrap();
    assert_eq!(ids.len(), 4);
    let bytes: Vec<u8> = ids
        .iter()
        .flat_map(|&id| gemma.token_to_piece(id, false).unwrap())
        .collect();
    assert_eq!(bytes, "𠀀".as_bytes());
    assert_eq!(gemma.token_type(ids[0]), Some(TokenType::Byte));
    // A lone partial byte decodes lossily rather than failing.
    assert_eq!(gemma.decode(&ids[..1], false).unwrap(), "\u{FFFD}");
}

#[test]
fn byte_level_pieces_undo_the_gpt2_mapping() {
    let smol = tokenizer(SMOLLM);
    let ids = smol.encode(" héllo\n", false, false).unwrap();
    let bytes: Vec<u8> = ids
        .iter()
        .flat_map(|&id| smol.token_to_piece(id, true).unwrap())
        .collect();
    assert_eq!(bytes, " héllo\n".as_bytes());
    assert_eq!(
        smol.token_to_id("Ġthe").and_then(|id| smol.id_to_token(id)),
        Some("Ġthe")
    );
}

#[test]
fn out_of_range_ids_are_errors() {
    for file in [SMOLLM, GEMMA] {
        let tok = tokenizer(file);
        let id = tok.vocab_size() as u32;
        assert!(
            matches!(
                tok.decode(&[id], false),
                Err(TokenizerError::InvalidTokenId { .. })
            ),
            "{file}"
        );
        assert!(
            matches!(
                tok.token_to_piece(id, true),
                Err(TokenizerError::InvalidTokenId { .. })
            ),
            "{file}"
        );
        assert_eq!(tok.id_to_token(id), None);
    }
}

#[test]
fn vocab_sizes_match_the_metadata() {
    assert_eq!(tokenizer(SMOLLM).vocab_size(), 49152);
    assert_eq!(tokenizer(GEMMA).vocab_size(), 262144);
    assert!(tokenizer(SMOLLM)
        .chat_template()
        .is_some_and(|t| t.contains("<|im_start|>")));
    assert_eq!(tokenizer(GEMMA).chat_template(), None);
}

fn smollm_metadata() -> GgufMetadata {
    open_model(SMOLLM).metadata().clone()
}

#[test]
fn bad_metadata_gives_errors_naming_the_key() {
    let mut md = smollm_metadata();
    md.entries.remove("tokenizer.ggml.merges");
    let err = Tokenizer::from_gguf(&md).unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::MissingKey {
                key: "tokenizer.ggml.merges"
            }
        ),
        "{err}"
    );

    let mut md = smollm_metadata();
    md.entries.insert(
        "tokenizer.ggml.model".into(),
        GgufValue::String("bert".into()),
    );
    assert!(
        matches!(Tokenizer::from_gguf(&md).unwrap_err(), TokenizerError::UnsupportedModel(m) if m == "bert")
    );

    let mut md = smollm_metadata();
    md.entries.insert(
        "tokenizer.ggml.pre".into(),
        GgufValue::String("no-such-pre".into()),
    );
    assert!(
        matches!(Tokenizer::from_gguf(&md).unwrap_err(), TokenizerError::UnsupportedPre(p) if p == "no-such-pre")
    );

    let mut md = smollm_metadata();
    md.entries.insert(
        "tokenizer.ggml.token_type".into(),
        GgufValue::Array(GgufArray::I32(vec![1; 10])),
    );
    let err = Tokenizer::from_gguf(&md).unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::TooShort {
                key: "tokenizer.ggml.token_type",
                found: 10,
                ..
            }
        ),
        "{err}"
    );

    let mut md = smollm_metadata();
    md.entries
        .insert("tokenizer.ggml.tokens".into(), GgufValue::U32(3));
    assert!(matches!(
        Tokenizer::from_gguf(&md).unwrap_err(),
        TokenizerError::WrongType {
            key: "tokenizer.ggml.tokens",
            ..
        }
    ));
}

#[test]
fn out_of_range_bos_id_falls_back_to_the_default() {
    let mut md = smollm_metadata();
    md.entries
        .insert("tokenizer.ggml.add_bos_token".into(), GgufValue::Bool(true));
    md.entries.insert(
        "tokenizer.ggml.bos_token_id".into(),
        GgufValue::U32(9_999_999),
    );
    // An out-of-range id falls back to llama.cpp's BPE default (11), which exists: BOS is 11.
    assert_eq!(Tokenizer::from_gguf(&md).unwrap().bos_id(), Some(11));
}

#[test]
fn other_pre_tokenizers_build() {
    for pre in [
        "default",
        "gpt-2",
        "llama-bpe",
        "qwen2",
        "tekken",
        "gpt-4o",
        "starcoder",
    ] {
        let mut md = smollm_metadata();
        md.entries
            .insert("tokenizer.ggml.pre".into(), GgufValue::String(pre.into()));
        let tok = Tokenizer::from_gguf(&md).unwrap_or_else(|e| panic!("{pre}: {e}"));
        let text = "Hello, world! 12345 don't";
        let ids = tok.encode(text, false, false).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), text, "{pre}");
    }
}
